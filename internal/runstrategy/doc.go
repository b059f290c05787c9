// Package runstrategy is Vigil's lifecycle core: every rule of
// shared/spec/lifecycle.md about RunStrategies, the request queue, the
// crash-loop backoff, the printable status and the start / stop / restart /
// pause / unpause / soft-reboot requests, as pure functions.
//
// The package does no I/O, starts no goroutines, logs nothing, and reads
// neither the clock nor a random source: the time is Pass.Now and the jitter
// is Backoff.Jitter. It works on its own small model (VM, Instance, Status)
// rather than the API types, so that its import graph stays free of
// networking code; internal/vmstate converts between the two.
//
// # One reconcile pass
//
// The VM controller runs one pass per VM key:
//
//  1. Build a Pass: the VM, its VMI from the cache (or nil), the
//     outstanding create/delete expectations, the time and the backoff
//     parameters.
//  2. d := Reconcile(pass). Apply d.AddVMFinalizer, then d.Action (create or
//     delete the VMI, or release a deleted VM). Record an expectation for a
//     create or delete that succeeded.
//  3. st := NextStatus(pass, d, Outcome{Err: ...}), passing the failure of
//     step 2 if there was one. Write st if it differs from the stored status.
//  4. Remove the VMI's finalizer if d.RemoveInstanceFinalizer. Requeue after
//     d.RequeueAfter if it is set; retry with backoff if d.Err is set.
//
// Reconcile and NextStatus are evaluated against the VMI seen at the start of
// the pass, never against the effect of the pass's own action (section 2.2).
//
// # Lifecycle requests
//
// Start, Stop and Restart decide a request on a VM; Pause, Unpause and
// SoftReboot on a VMI. Each returns either a Change for the API server to
// write, or a Refusal with the HTTP code and message. The decision is made
// before anything is written, so a refused request changes nothing.
//
// # Where Vigil differs from KubeVirt
//
// The project's decisions (top of the lifecycle spec) are implemented here:
// 409 instead of 500 for "stop/start already underway"; restart messages
// without the typo and the hard-coded "Halted"; the Halted start-paused path
// written by the start handler in one update, so a leftover Start under
// Halted is discarded; a Once VM runs once even if its VMI is deleted
// (Status.OnceStarted); a Once VM whose run failed early is Stopped, not
// CrashLoopBackOff. One clarification of our own: a RerunOnFailure VMI that
// fails while a stop request for it is queued is not restarted, because a
// stop overrides a pending start (section 9.4). docs/architecture/runstrategy.md
// has the full tables, every difference from KubeVirt, and the readings the
// core takes where the spec leaves room (RestartRequired only for a live
// VMI; the crash-loop gate in whole seconds, its retry time rounded up).
package runstrategy
