// Package qemu is the runtime for real guests: each VMI runs in its own
// qemu-system-x86_64 process, controlled over QMP.
//
// The command line is a pure function of the VMI's spec (BuildPlan, then
// Plan.Args), tested with golden files. A guest starts with its vCPUs
// stopped (-S) so that the driver is connected to QMP and to the serial
// console before the guest can do anything; then it lets the vCPUs run,
// or not, for a paused start. QEMU runs in its own session and outlives
// the agent: its state directory (guests/<id>/) holds a record of the
// process (PID and start time, so a reused PID is not mistaken for it),
// the QMP and serial sockets, the console log, and the exit once known,
// and a later agent takes the guest back from there (Recover).
//
// Outcomes come from QMP, not from exit codes. With -no-shutdown and
// -action panic=pause, a guest that powers off or panics leaves QEMU
// paused in state "shutdown" or "guest-panicked", so the outcome can be
// read even by an agent that was away when it happened; the driver then
// ends QEMU itself. QEMU ending without such an event is a crash.
//
// KVM is used when it really works: ProbeKVM boots the firmware under KVM
// once at start-up, since /dev/kvm may exist and still fail. Otherwise
// guests run with TCG, and the Node's status says so.
package qemu
