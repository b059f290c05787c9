// Package sim is the simulated runtime: guests that exist only as state,
// scripted by annotations on the VMI, deterministic, and cheap enough to run
// tens of thousands on one machine.
//
// Annotations (read from the VMI when the guest starts):
//
//	sim.vigil.dev/boot-delay: "300ms"   time from start to Running (default 0s)
//	sim.vigil.dev/fail-start: "true"    never reaches Running: exits StartFailed after the boot delay
//	sim.vigil.dev/run-for: "5s"         with sim.vigil.dev/then: shutdown|crash|panic|reboot,
//	                                    the scripted end of each run: exits Shutdown, Crashed or
//	                                    Panicked, or reboots in place and starts the next run
//	sim.vigil.dev/ignore-acpi: "true"   ACPI shutdown requests are ignored
//
// A value that does not parse, or then without run-for (or the reverse),
// makes Start fail with a *driver.StartError (reason StartFailed) whose
// message names the annotation.
//
// sim.vigil.dev/action: shutdown|crash|panic|reboot|hang is not read at
// start: the node agent hands its value to Act when it sees it on a running
// VMI, and Act does each distinct value once in a guest's life ("shutdown",
// "crash", "panic": exits as above; "reboot": an in-place reboot; "hang":
// from then on the guest ignores ACPI shutdown and reboot requests).
//
// The clocks stop while a guest is paused: the boot delay and run-for count
// unpaused time only. A guest started paused is Running and paused at once,
// and its first run begins when it is resumed (a guest scripted with
// fail-start ignores the paused start, and fails after its boot delay). A
// reboot, scripted or asked for, starts a new run. An ACPI shutdown powers a
// guest off at once, booting or paused, unless it ignores ACPI.
//
// Guests persist their state, so they outlive the agent: Close releases a
// guest without stopping it, and Recover (or Start with the same ID)
// re-adopts it and replays whatever its script did meanwhile (booting,
// ending, rebooting) at the times it happened. With Config.Persist the
// state is a file per guest in the state directory and survives the
// process; without it, it lives in the Driver's memory.
//
// Each guest start and stop can be appended to a journal file (one JSON
// object per line), from which tests prove that no two instances of one VM
// ever overlapped (Intervals, Overlaps).
package sim
