package runstrategy

import (
	"fmt"
	"strings"
	"time"
)

// Fixtures shared by the table tests. Every case starts from a VM that
// already carries the controller finalizer, so that a decision's
// AddVMFinalizer only shows up where a case asks for it.

// t0 is the time of every table-test pass unless a case says otherwise.
var t0 = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

type vmOpt func(*VM)

// newVM returns a VM whose spec.runStrategy is s.
func newVM(s Strategy, opts ...vmOpt) VM {
	vm := VM{UID: "vm-uid", Generation: 1, HasFinalizer: true, RunStrategy: ptr(s)}
	for _, o := range opts {
		o(&vm)
	}
	return vm
}

// queued sets the request queue.
func queued(reqs ...Request) vmOpt {
	return func(vm *VM) { vm.Status.Requests = reqs }
}

// recorded sets status.runStrategy (section 2.5).
func recorded(s Strategy) vmOpt { return func(vm *VM) { vm.Status.RunStrategy = s } }

// failures sets a crash-loop record: count failures, the last one uid,
// retry allowed at t0+retryIn.
func failures(count int, uid string, retryIn time.Duration) vmOpt {
	return func(vm *VM) {
		vm.Status.StartFailure = &StartFailure{Count: count, LastFailedUID: uid, RetryAfter: t0.Add(retryIn)}
	}
}

func deletingVM(vm *VM)    { vm.Deleting = true }
func noVMFinalizer(vm *VM) { vm.HasFinalizer = false }
func onceStarted(vm *VM)   { vm.Status.OnceStarted = true }

// legacyRunning replaces spec.runStrategy by the deprecated spec.running.
func legacyRunning(b bool) vmOpt {
	return func(vm *VM) { vm.RunStrategy, vm.Running = nil, ptr(b) }
}

// withConditions sets the VM's status conditions.
func withConditions(c ...Condition) vmOpt { return func(vm *VM) { vm.Status.Conditions = c } }

type instOpt func(*Instance)

// newInst returns a VMI with the given UID and phase, carrying the
// controller finalizer and created from the VM's current template. A VMI in
// phase Running is marked EverRunning.
func newInst(uid string, phase Phase, opts ...instOpt) *Instance {
	in := &Instance{UID: uid, Phase: phase, HasFinalizer: true, TemplateCurrent: true, Generation: 1}
	if phase == PhaseRunning {
		in.EverRunning = true
	}
	for _, o := range opts {
		o(in)
	}
	return in
}

func deleting(in *Instance)        { in.Deleting = true }
func everRunning(in *Instance)     { in.EverRunning = true }
func noInstFinalizer(in *Instance) { in.HasFinalizer = false }
func staleTemplate(in *Instance)   { in.TemplateCurrent = false }
func grace(s int64) instOpt        { return func(in *Instance) { in.GracePeriod = ptr(s) } }
func acpiOff(in *Instance)         { in.ACPIDisabled = true }
func pending(a ...InstanceAction) instOpt {
	return func(in *Instance) { in.PendingActions = a }
}

// cond adds a condition "Type=Status" or "Type=Status/Reason".
func cond(spec string) instOpt {
	return func(in *Instance) { in.Conditions = append(in.Conditions, parseCond(spec)) }
}

func parseCond(spec string) Condition {
	typ, rest, _ := strings.Cut(spec, "=")
	st, reason, _ := strings.Cut(rest, "/")
	return Condition{Type: typ, Status: ConditionStatus(st), Reason: reason}
}

func startReq() Request { return Request{Action: StartRequest} }
func startPausedReq() Request {
	return Request{Action: StartRequest, Data: map[string]string{"paused": "true"}}
}
func stopReq(uid string) Request {
	return Request{Action: StopRequest, UID: uid}
}

// alivePhases are the phases of section 2.4's "VMI alive" column that Vigil
// produces (no WaitingForSync: Vigil has no migration).
var alivePhases = []Phase{PhaseUnset, PhasePending, PhaseScheduling, PhaseScheduled, PhaseRunning, PhaseUnknown}

// phaseName prints the unset phase readably in test names.
func phaseName(p Phase) string {
	if p == PhaseUnset {
		return "Unset"
	}
	return string(p)
}

// fmtQueue prints a request queue as [Stop(uid) Start{paused}].
func fmtQueue(q []Request) string {
	parts := make([]string, 0, len(q))
	for _, r := range q {
		s := string(r.Action)
		if r.Action == StopRequest {
			s += "(" + r.UID + ")"
		}
		if r.Paused() {
			s += "{paused}"
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fmtConds prints conditions as Type=Status/Reason, in order.
func fmtConds(cs []Condition) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		s := fmt.Sprintf("%s=%s", c.Type, c.Status)
		if c.Reason != "" {
			s += "/" + c.Reason
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
