// Package agent is the node agent: it registers its Node, renews its Lease,
// watches the VMIs bound to its node, and runs one runner per VMI that
// drives the VM runtime (package driver) and reports phases, conditions and
// reasons on the VMI.
//
// A runner owns one VMI's guest: it starts it (or re-adopts it after an
// agent restart), carries out pause, unpause and soft-reboot requests queued
// on the VMI, stops it gracefully when the VMI is deleted (ACPI repeated
// until the grace period ends, then a kill; grace 0 kills at once), and
// turns how the guest ended into the VMI's final phase:
//
//	guest powered off, graceful stop completed, force stop    Succeeded
//	hypervisor crash, guest panic, failed start               Failed (Crashed, GuestPanicked, StartFailed, DiskNotFound)
//	killed after the grace period expired                     Failed (GracePeriodExpired)
//	guest gone while the agent believed it running            Failed (Vanished)
//	deleted before it ever started                            Failed (DeletedBeforeStart)
//
// The agent removes its finalizer from a VMI only when the VMI's guest is
// gone. Guests outlive the agent: stopping the agent leaves them running,
// and the next agent re-adopts them from the runtime's state directory. A
// guest the runtime still has but whose VMI is gone, final, or bound to
// another node is killed and never reported Running.
package agent
