package runstrategy

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// answer is a lifecycle request's outcome, printed the way the API server
// would answer it: "202" (or "200") and what it writes, or "409: message".
type answer struct {
	Code    int
	Message string
	// What an accepted request writes; empty fields write nothing.
	Strategy          string // "Always", "Halted", "running=true", "running=false"
	Queue             string // fmtQueue of the new queue, when the queue is written
	ClearStartFailure bool
	GracePeriod       string // the VMI's new grace period, when written
	InstanceAction    InstanceAction
}

func answerOf(okCode int, c Change, r *Refusal) answer {
	if r != nil {
		return answer{Code: r.Code, Message: r.Message}
	}
	a := answer{Code: okCode, ClearStartFailure: c.ClearStartFailure, InstanceAction: c.InstanceAction}
	if w := c.Strategy; w != nil {
		a.Strategy = string(w.Strategy)
		if w.UseRunning {
			a.Strategy = fmt.Sprintf("running=%v", w.Strategy == Always)
		}
	}
	if c.SetRequests {
		a.Queue = fmtQueue(c.Requests)
	}
	if c.InstanceGracePeriod != nil {
		a.GracePeriod = fmt.Sprint(*c.InstanceGracePeriod)
	}
	return a
}

func refused(code int, msg string) answer { return answer{Code: code, Message: msg} }

var (
	alreadyRunning  = refused(409, "VM is already running")
	notRunning      = refused(409, "VM is not running")
	underway        = refused(409, "unable to complete request: stop/start already underway")
	queue202        = func(q string) answer { return answer{Code: 202, Queue: q} }
	strategy202     = func(s string) answer { return answer{Code: 202, Strategy: s} }
	bothFields      = VM{Running: ptr(true), RunStrategy: ptr(Always)}
	mutuallyExcl500 = refused(500, "running and runstrategy are mutually exclusive")
)

type lifecycleCase struct {
	name string
	vm   VM
	inst *Instance
	// phases, when set, runs the case once per phase, replacing inst's phase.
	phases []Phase
	want   answer
}

func runLifecycleCases(t *testing.T, okCode int, cases []lifecycleCase, call func(VM, *Instance) (Change, *Refusal)) {
	t.Helper()
	for _, c := range cases {
		phases := c.phases
		if len(phases) == 0 {
			phases = []Phase{"-"}
		}
		for _, ph := range phases {
			name, inst := c.name, c.inst
			if ph != "-" {
				name += "/" + phaseName(ph)
				cp := *inst
				cp.Phase = ph
				inst = &cp
			}
			t.Run(name, func(t *testing.T) {
				vmBefore := clonePass(Pass{VM: c.vm, Instance: inst})
				ch, ref := call(c.vm, inst)
				if diff := cmp.Diff(c.want, answerOf(okCode, ch, ref)); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
				if ref != nil && !cmp.Equal(ch, Change{}) {
					t.Errorf("a refused request returned a non-empty change: %+v", ch)
				}
				if diff := cmp.Diff(vmBefore, clonePass(Pass{VM: c.vm, Instance: inst})); diff != "" {
					t.Errorf("the request changed its input (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// TestStart pins section 4.2 with Vigil's decisions: 409 for "already
// underway", and the Halted start-paused path written in one change.
func TestStart(t *testing.T) {
	final := []Phase{PhaseSucceeded, PhaseFailed}
	startable := []Phase{PhaseUnset, PhaseUnknown}
	running := []Phase{PhasePending, PhaseScheduling, PhaseScheduled, PhaseRunning}
	inst := newInst("vmi-1", PhaseRunning)
	start := func(paused bool) func(VM, *Instance) (Change, *Refusal) {
		return func(vm VM, in *Instance) (Change, *Refusal) { return Start(vm, in, StartOptions{Paused: paused}) }
	}
	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.2 check 2/already running/Always", vm: newVM(Always), inst: inst, phases: running, want: alreadyRunning},
		{name: "4.2 check 2/already running/Manual", vm: newVM(Manual), inst: inst, phases: running, want: alreadyRunning},
		{name: "4.2 check 2/already running/RerunOnFailure", vm: newVM(RerunOnFailure), inst: inst, phases: running, want: alreadyRunning},
		{name: "4.2 check 2/already running/Halted", vm: newVM(Halted), inst: inst, phases: running, want: alreadyRunning},
		{name: "4.2 check 2/already running/Once", vm: newVM(Once), inst: inst, phases: running, want: alreadyRunning},
		{name: "4.2 check 2/already running while being deleted", vm: newVM(Manual), inst: newInst("vmi-1", PhaseRunning, deleting), want: alreadyRunning},
		{name: "4.2 check 2/before the strategy check", vm: bothFields, inst: inst, want: alreadyRunning},
		{name: "4.2 strategy error/500", vm: bothFields, want: mutuallyExcl500},

		{name: "4.2 Halted/no VMI/becomes Always", vm: newVM(Halted), want: strategy202("Always")},
		{name: "4.2 Halted/final VMI/becomes Always", vm: newVM(Halted), inst: inst, phases: final, want: strategy202("Always")},
		{name: "4.2 Halted/phase Unknown or unset/becomes Always", vm: newVM(Halted), inst: inst, phases: startable, want: strategy202("Always")},
		{name: "4.2 Halted/legacy running: false/running: true", vm: newVM(Halted, legacyRunning(false)), want: strategy202("running=true")},
		{name: "4.2 Halted/neither field set/writes runStrategy", vm: VM{}, want: strategy202("Always")},
		{name: "4.2 Halted/queue not looked at without paused", vm: newVM(Halted, queued(stopReq("vmi-1"))), inst: newInst("vmi-1", PhaseSucceeded, deleting), want: strategy202("Always")},
		{name: "4.2 Manual/no VMI", vm: newVM(Manual), want: queue202("[Start]")},
		{name: "4.2 Manual/phase Unknown or unset", vm: newVM(Manual), inst: inst, phases: startable, want: queue202("[Start]")},
		{name: "4.2 Manual/final VMI/stop it first", vm: newVM(Manual), inst: inst, phases: final, want: queue202("[Stop(vmi-1) Start]")},
		{name: "4.2 Manual/final VMI being deleted", vm: newVM(Manual), inst: newInst("vmi-1", PhaseFailed, deleting), want: queue202("[Stop(vmi-1) Start]")},
		{name: "4.2 Manual/queue not empty/409 (Vigil)", vm: newVM(Manual, queued(startReq())), want: underway},
		{name: "4.2 Manual/queue with a stop/409 (Vigil)", vm: newVM(Manual, queued(stopReq("vmi-1"))), inst: newInst("vmi-1", PhaseSucceeded), want: underway},
		{name: "4.1 Manual/clears the crash-loop record", vm: newVM(Manual, failures(2, "vmi-0", time.Minute)), want: answer{Code: 202, Queue: "[Start]", ClearStartFailure: true}},
		{name: "4.2 RerunOnFailure/no VMI", vm: newVM(RerunOnFailure), want: queue202("[Start]")},
		{name: "4.2 RerunOnFailure/phase Unknown or unset", vm: newVM(RerunOnFailure), inst: inst, phases: startable, want: queue202("[Start]")},
		{name: "4.2 RerunOnFailure/Succeeded/stop it first", vm: newVM(RerunOnFailure), inst: newInst("vmi-1", PhaseSucceeded), want: queue202("[Stop(vmi-1) Start]")},
		{name: "4.2 RerunOnFailure/Failed/409", vm: newVM(RerunOnFailure), inst: newInst("vmi-1", PhaseFailed), want: refused(409, "RerunOnFailure does not support starting VM from failed state")},
		{name: "4.2 RerunOnFailure/during backoff, Start queued/409 (Vigil)", vm: newVM(RerunOnFailure, queued(startReq()), failures(1, "vmi-1", time.Minute)), want: underway},
		{name: "4.1 RerunOnFailure/clears the crash-loop record", vm: newVM(RerunOnFailure, failures(2, "vmi-0", time.Minute)), inst: newInst("vmi-1", PhaseSucceeded),
			want: answer{Code: 202, Queue: "[Stop(vmi-1) Start]", ClearStartFailure: true}},
		{name: "4.2 Always/no VMI/409", vm: newVM(Always), want: refused(409, "Always does not support manual start requests")},
		{name: "4.2 Always/final VMI/409", vm: newVM(Always), inst: inst, phases: final, want: refused(409, "Always does not support manual start requests")},
		{name: "4.2 Always/phase Unknown/409", vm: newVM(Always), inst: newInst("vmi-1", PhaseUnknown), want: refused(409, "Always does not support manual start requests")},
		{name: "4.2 Always/legacy running: true/409", vm: newVM(Halted, legacyRunning(true)), want: refused(409, "Always does not support manual start requests")},
		{name: "4.2 Once/no VMI/409", vm: newVM(Once), want: refused(409, "Once does not support manual start requests")},
		{name: "4.2 Once/final VMI/409", vm: newVM(Once, onceStarted), inst: inst, phases: final, want: refused(409, "Once does not support manual start requests")},
		{name: "4.2 WaitAsReceiver/refused (Vigil)", vm: newVM(WaitAsReceiver), want: refused(500, "Invalid RunStrategy (WaitAsReceiver)")},
	}, start(false))

	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.2 paused/Halted: strategy and Start{paused} in one change (Vigil)", vm: newVM(Halted), want: answer{Code: 202, Strategy: "Always", Queue: "[Start{paused}]"}},
		{name: "4.2 paused/Halted beside a final VMI (Vigil)", vm: newVM(Halted), inst: inst, phases: final, want: answer{Code: 202, Strategy: "Always", Queue: "[Start{paused}]"}},
		{name: "4.2 paused/Halted legacy running (Vigil)", vm: newVM(Halted, legacyRunning(false)), want: answer{Code: 202, Strategy: "running=true", Queue: "[Start{paused}]"}},
		{name: "4.2 paused/Halted with a queued request/409, strategy unchanged", vm: newVM(Halted, queued(stopReq("vmi-1"))), inst: newInst("vmi-1", PhaseSucceeded, deleting), want: underway},
		{name: "4.2 paused/Halted clears the crash-loop record", vm: newVM(Halted, failures(1, "vmi-0", time.Minute)), want: answer{Code: 202, Strategy: "Always", Queue: "[Start{paused}]", ClearStartFailure: true}},
		{name: "4.2 paused/Manual", vm: newVM(Manual), want: queue202("[Start{paused}]")},
		{name: "4.2 paused/Manual final VMI", vm: newVM(Manual), inst: newInst("vmi-1", PhaseSucceeded), want: queue202("[Stop(vmi-1) Start{paused}]")},
		{name: "4.2 paused/RerunOnFailure", vm: newVM(RerunOnFailure), want: queue202("[Start{paused}]")},
		{name: "4.2 paused/Always/409", vm: newVM(Always), want: refused(409, "Always does not support manual start requests")},
		{name: "4.2 paused/already running", vm: newVM(Manual), inst: inst, want: alreadyRunning},
	}, start(true))
}

// TestStop pins section 4.3 with Vigil's decisions: 409 for "already
// underway", and a refused request never touches the VMI's grace period.
func TestStop(t *testing.T) {
	final := []Phase{PhaseSucceeded, PhaseFailed}
	alive := newInst("vmi-1", PhaseRunning)
	stop := func(g *int64) func(VM, *Instance) (Change, *Refusal) {
		return func(vm VM, in *Instance) (Change, *Refusal) { return Stop(vm, in, StopOptions{GracePeriod: g}) }
	}
	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.3 Always/alive/becomes Halted", vm: newVM(Always), inst: alive, phases: alivePhases, want: strategy202("Halted")},
		{name: "4.3 Always/no VMI (crash loop)/becomes Halted", vm: newVM(Always, failures(3, "vmi-1", time.Minute)), want: strategy202("Halted")},
		{name: "4.3 Always/final VMI/becomes Halted", vm: newVM(Always), inst: alive, phases: final, want: strategy202("Halted")},
		{name: "4.3 Always/legacy running: true/running: false", vm: newVM(Halted, legacyRunning(true)), inst: alive, want: strategy202("running=false")},
		{name: "4.3 Always/queue left alone", vm: newVM(Always, queued(stopReq("vmi-1"), startReq())), inst: alive, want: strategy202("Halted")},
		{name: "4.3 Once/alive/becomes Halted", vm: newVM(Once), inst: alive, want: strategy202("Halted")},
		{name: "4.3 Once/no VMI/becomes Halted", vm: newVM(Once, onceStarted), want: strategy202("Halted")},
		{name: "4.3 Once/final VMI/becomes Halted", vm: newVM(Once, onceStarted), inst: alive, phases: final, want: strategy202("Halted")},
		{name: "4.3 Manual/no VMI/409", vm: newVM(Manual), want: notRunning},
		{name: "4.3 Manual/final VMI/409", vm: newVM(Manual), inst: alive, phases: final, want: notRunning},
		{name: "4.3 Manual/alive/queue Stop(uid)", vm: newVM(Manual), inst: alive, phases: alivePhases, want: queue202("[Stop(vmi-1)]")},
		{name: "4.3 Manual/a stop replaces a pending start", vm: newVM(Manual, queued(startReq())), inst: newInst("vmi-1", PhaseUnknown), want: queue202("[Stop(vmi-1)]")},
		{name: "4.3 Manual/a stop replaces a pending restart", vm: newVM(Manual, queued(stopReq("vmi-1"), startReq())), inst: alive, want: queue202("[Stop(vmi-1)]")},
		{name: "4.3 Manual/being deleted is still alive", vm: newVM(Manual), inst: newInst("vmi-1", PhaseRunning, deleting), want: queue202("[Stop(vmi-1)]")},
		{name: "4.1 Manual/clears the crash-loop record", vm: newVM(Manual, failures(1, "vmi-0", time.Minute)), inst: alive, want: answer{Code: 202, Queue: "[Stop(vmi-1)]", ClearStartFailure: true}},
		{name: "4.3 RerunOnFailure/no VMI/409", vm: newVM(RerunOnFailure), want: notRunning},
		{name: "4.3 RerunOnFailure/during backoff, no VMI/409", vm: newVM(RerunOnFailure, queued(startReq()), failures(1, "vmi-1", time.Minute)), want: notRunning},
		{name: "4.3 RerunOnFailure/final VMI/409", vm: newVM(RerunOnFailure), inst: alive, phases: final, want: notRunning},
		{name: "4.3 RerunOnFailure/alive/queue Stop(uid)", vm: newVM(RerunOnFailure), inst: alive, phases: alivePhases, want: queue202("[Stop(vmi-1)]")},
		{name: "4.3 Halted/no VMI/409", vm: newVM(Halted), want: notRunning},
		{name: "4.3 Halted/final VMI/409", vm: newVM(Halted), inst: alive, phases: final, want: notRunning},
		{name: "4.3 Halted/alive, no grace period/409", vm: newVM(Halted), inst: newInst("vmi-1", PhaseRunning, grace(1800)), want: refused(409, "Halted only supports manual stop requests with a shorter graceperiod")},
		{name: "4.3 Halted/phase Unknown, no grace period/409", vm: newVM(Halted), inst: newInst("vmi-1", PhaseUnknown), want: refused(409, "Halted only supports manual stop requests with a shorter graceperiod")},
		{name: "4.3 strategy error/500", vm: bothFields, inst: alive, want: mutuallyExcl500},
		{name: "4.3 WaitAsReceiver/refused (Vigil)", vm: newVM(WaitAsReceiver), want: refused(500, "Invalid RunStrategy (WaitAsReceiver)")},
	}, stop(nil))

	// The Halted grace-period table, and grace periods on the other strategies.
	halted := func(g *int64, want answer, opts ...instOpt) lifecycleCase {
		name := "4.3 Halted grace/VMI unset"
		in := newInst("vmi-1", PhaseRunning, opts...)
		if in.GracePeriod != nil {
			name = fmt.Sprintf("4.3 Halted grace/VMI %d", *in.GracePeriod)
		}
		if g != nil {
			name += fmt.Sprintf(", request %d", *g)
		} else {
			name += ", request none"
		}
		return lifecycleCase{name: name, vm: newVM(Halted), inst: in, want: want}
	}
	shorter := refused(409, "Halted only supports manual stop requests with a shorter graceperiod")
	for _, c := range []struct {
		g    *int64
		want answer
		opts []instOpt
	}{
		{nil, shorter, []instOpt{grace(1800)}},
		{ptr(int64(1800)), shorter, []instOpt{grace(1800)}},
		{ptr(int64(2400)), shorter, []instOpt{grace(1800)}}, // Vigil: the VMI keeps 1800
		{ptr(int64(1800)), answer{Code: 202, Queue: "[Stop(vmi-1)]", GracePeriod: "1800"}, nil},
		{ptr(int64(800)), answer{Code: 202, Queue: "[Stop(vmi-1)]", GracePeriod: "800"}, []instOpt{grace(1800)}},
	} {
		runLifecycleCases(t, 202, []lifecycleCase{halted(c.g, c.want, c.opts...)}, stop(c.g))
	}
	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.3 force stop/Always alive: Halted and grace 0", vm: newVM(Always), inst: alive, want: answer{Code: 202, Strategy: "Halted", GracePeriod: "0"}},
		{name: "4.3 force stop/Always Failed VMI: no grace patch", vm: newVM(Always), inst: newInst("vmi-1", PhaseFailed), want: strategy202("Halted")},
		{name: "4.3 force stop/Always no VMI", vm: newVM(Always), want: strategy202("Halted")},
		{name: "4.3 force stop/Manual alive: Stop and grace 0", vm: newVM(Manual), inst: newInst("vmi-1", PhaseRunning, grace(30)), want: answer{Code: 202, Queue: "[Stop(vmi-1)]", GracePeriod: "0"}},
		{name: "4.3 force stop/Halted shorter grace: queued", vm: newVM(Halted), inst: newInst("vmi-1", PhaseUnknown, grace(30)), want: answer{Code: 202, Queue: "[Stop(vmi-1)]", GracePeriod: "0"}},
		{name: "4.3 force stop/Manual final VMI: 409, no grace patch (Vigil)", vm: newVM(Manual), inst: newInst("vmi-1", PhaseSucceeded), want: notRunning},
		{name: "4.3 force stop/strategy error: 500, no grace patch (Vigil)", vm: bothFields, inst: alive, want: mutuallyExcl500},
	}, stop(ptr(int64(0))))
}

// TestRestart pins section 4.4 with Vigil's messages (no typo, no
// hard-coded "Halted") and 409 for "already underway".
func TestRestart(t *testing.T) {
	restart := func(g *int64) func(VM, *Instance) (Change, *Refusal) {
		return func(vm VM, in *Instance) (Change, *Refusal) {
			return Restart(vm, in, RestartOptions{GracePeriodSeconds: g})
		}
	}
	running := newInst("vmi-1", PhaseRunning)
	anyPhase := []Phase{PhasePending, PhaseRunning, PhaseSucceeded, PhaseFailed, PhaseUnknown}
	restartQueue := queue202("[Stop(vmi-1) Start]")
	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.4 Always/any phase", vm: newVM(Always), inst: running, phases: anyPhase, want: restartQueue},
		{name: "4.4 Manual/any phase", vm: newVM(Manual), inst: running, phases: anyPhase, want: restartQueue},
		{name: "4.4 RerunOnFailure/any phase", vm: newVM(RerunOnFailure), inst: running, phases: anyPhase, want: restartQueue},
		{name: "4.4 paused VMI", vm: newVM(Always), inst: newInst("vmi-1", PhaseRunning, cond("Paused=True")), want: restartQueue},
		{name: "4.4 VMI being deleted", vm: newVM(Manual), inst: newInst("vmi-1", PhaseRunning, deleting), want: restartQueue},
		{name: "4.4 legacy running: true", vm: newVM(Halted, legacyRunning(true)), inst: running, want: restartQueue},
		{name: "4.4 Halted/409 (Vigil message)", vm: newVM(Halted), inst: running, want: refused(409, "RunStrategy Halted does not support manual restart requests")},
		{name: "4.4 Halted legacy running: false/409", vm: newVM(Halted, legacyRunning(false)), want: refused(409, "RunStrategy Halted does not support manual restart requests")},
		{name: "4.4 Once/409 (Vigil message)", vm: newVM(Once), inst: running, want: refused(409, "RunStrategy Once does not support manual restart requests")},
		{name: "4.4 Always/no VMI/409 (Vigil message)", vm: newVM(Always), want: notRunning},
		{name: "4.4 Manual/no VMI/409 (Vigil message)", vm: newVM(Manual), want: notRunning},
		{name: "4.4 RerunOnFailure/no VMI/409 (Vigil message)", vm: newVM(RerunOnFailure), want: notRunning},
		{name: "4.4 queue not empty/409 (Vigil)", vm: newVM(Manual, queued(stopReq("vmi-1"))), inst: running, want: underway},
		{name: "4.1 clears the crash-loop record", vm: newVM(Always, failures(1, "vmi-0", time.Minute)), inst: running, want: answer{Code: 202, Queue: "[Stop(vmi-1) Start]", ClearStartFailure: true}},
		{name: "4.4 strategy error/500", vm: bothFields, inst: running, want: mutuallyExcl500},
	}, restart(nil))

	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.4 force restart/grace lowered to 1", vm: newVM(Always), inst: newInst("vmi-1", PhaseRunning, grace(180)), want: answer{Code: 202, Queue: "[Stop(vmi-1) Start]", GracePeriod: "1"}},
		{name: "4.4 force restart/queue not empty: grace untouched (Vigil)", vm: newVM(Manual, queued(startReq())), inst: newInst("vmi-1", PhaseUnknown, grace(180)), want: underway},
		{name: "4.4 force restart/Halted: grace untouched", vm: newVM(Halted), inst: running, want: refused(409, "RunStrategy Halted does not support manual restart requests")},
		{name: "4.4 force restart/no VMI", vm: newVM(Manual), want: notRunning},
	}, restart(ptr(int64(0))))

	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.4 check 2/grace > 0 is 400", vm: newVM(Always), inst: running, want: refused(400, "For force restart, only gracePeriod=0 is supported for now")},
		{name: "4.4 check 2/before the strategy check", vm: bothFields, inst: running, want: refused(400, "For force restart, only gracePeriod=0 is supported for now")},
	}, restart(ptr(int64(30))))
	runLifecycleCases(t, 202, []lifecycleCase{
		{name: "4.4 check 2/grace < 0 is 400", vm: newVM(Manual), inst: running, want: refused(400, "gracePeriod has to be greater or equal to 0")},
	}, restart(ptr(int64(-1))))
}

// TestInstanceActions pins sections 4.5 (pause), 4.6 (unpause) and 4.7
// (soft-reboot), which act on the VMI only.
func TestInstanceActions(t *testing.T) {
	notRunningPhases := []Phase{PhaseUnset, PhasePending, PhaseScheduled, PhaseSucceeded, PhaseFailed, PhaseUnknown}
	running := newInst("vmi-1", PhaseRunning)
	paused := newInst("vmi-1", PhaseRunning, cond("Paused=True/PausedByUser"))
	call := func(f func(Instance) (Change, *Refusal)) func(VM, *Instance) (Change, *Refusal) {
		return func(_ VM, in *Instance) (Change, *Refusal) { return f(*in) }
	}
	ok := func(a InstanceAction) answer { return answer{Code: 200, InstanceAction: a} }
	runLifecycleCases(t, 200, []lifecycleCase{
		{name: "4.5 pause/not Running", inst: running, phases: notRunningPhases, want: notRunning},
		{name: "4.5 pause/already paused", inst: paused, want: refused(409, "VMI is already paused")},
		{name: "4.5 pause/pause already requested", inst: newInst("vmi-1", PhaseRunning, pending(ActionPause)), want: refused(409, "VMI is already paused")},
		{name: "4.5 pause/paused, unpause requested", inst: newInst("vmi-1", PhaseRunning, cond("Paused=True"), pending(ActionUnpause)), want: ok(ActionPause)},
		{name: "4.5 pause/Paused=False", inst: newInst("vmi-1", PhaseRunning, cond("Paused=False")), want: ok(ActionPause)},
		{name: "4.5 pause/Running", inst: running, want: ok(ActionPause)},
	}, call(Pause))
	runLifecycleCases(t, 200, []lifecycleCase{
		{name: "4.6 unpause/not Running", inst: paused, phases: notRunningPhases, want: refused(409, "VMI is not running")},
		{name: "4.6 unpause/not paused", inst: running, want: refused(409, "VMI is not paused")},
		{name: "4.6 unpause/unpause already requested", inst: newInst("vmi-1", PhaseRunning, cond("Paused=True"), pending(ActionUnpause)), want: refused(409, "VMI is not paused")},
		{name: "4.6 unpause/pause requested", inst: newInst("vmi-1", PhaseRunning, pending(ActionPause)), want: ok(ActionUnpause)},
		{name: "4.6 unpause/paused", inst: paused, want: ok(ActionUnpause)},
	}, call(Unpause))
	runLifecycleCases(t, 200, []lifecycleCase{
		{name: "4.7 soft-reboot/not Running", inst: running, phases: notRunningPhases, want: notRunning},
		{name: "4.7 soft-reboot/paused", inst: paused, want: refused(409, "VMI is paused")},
		{name: "4.7 soft-reboot/pause requested", inst: newInst("vmi-1", PhaseRunning, pending(ActionPause)), want: refused(409, "VMI is paused")},
		{name: "4.7 soft-reboot/no agent, ACPI off", inst: newInst("vmi-1", PhaseRunning, acpiOff), want: refused(409, "VMI neither have the agent connected nor the ACPI feature enabled")},
		{name: "4.7 soft-reboot/agent, ACPI off", inst: newInst("vmi-1", PhaseRunning, acpiOff, cond("AgentConnected=True")), want: ok(ActionSoftReboot)},
		{name: "4.7 soft-reboot/no agent, ACPI on", inst: running, want: ok(ActionSoftReboot)},
		{name: "4.7 soft-reboot/paused before ACPI", inst: newInst("vmi-1", PhaseRunning, acpiOff, cond("Paused=True")), want: refused(409, "VMI is paused")},
	}, call(SoftReboot))
}

// TestActionMatrix pins section 4.9: the effect of start, stop and restart
// on the VM's strategy, with a VMI in the state each action needs.
func TestActionMatrix(t *testing.T) {
	type effect struct{ start, stop, restart string } // the new strategy, "=" for unchanged, or the HTTP code
	cases := []struct {
		s    Strategy
		want effect
	}{
		{Always, effect{start: "409", stop: "Halted", restart: "="}},
		{RerunOnFailure, effect{start: "=", stop: "=", restart: "="}},
		{Manual, effect{start: "=", stop: "=", restart: "="}},
		{Halted, effect{start: "Always", stop: "409", restart: "409"}},
		{Once, effect{start: "409", stop: "Halted", restart: "409"}},
	}
	of := func(vm VM, c Change, r *Refusal) string {
		switch {
		case r != nil:
			return fmt.Sprint(r.Code)
		case c.Strategy == nil:
			return "="
		}
		vm.RunStrategy = ptr(c.Strategy.Strategy)
		s, _ := Effective(vm)
		return string(s)
	}
	for _, c := range cases {
		t.Run("4.9 "+string(c.s), func(t *testing.T) {
			vm := newVM(c.s)
			stopped := newInst("vmi-1", PhaseSucceeded)
			running := newInst("vmi-1", PhaseRunning)
			var got effect
			ch, r := Start(vm, stopped, StartOptions{})
			got.start = of(vm, ch, r)
			ch, r = Stop(vm, running, StopOptions{})
			got.stop = of(vm, ch, r)
			ch, r = Restart(vm, running, RestartOptions{})
			got.restart = of(vm, ch, r)
			if got != c.want {
				t.Errorf("start/stop/restart on %s: got %+v, want %+v", c.s, got, c.want)
			}
		})
	}
}

// TestRefusalError keeps Refusal usable as an error.
func TestRefusalError(t *testing.T) {
	var err error = &Refusal{Code: 409, Message: "VM is not running"}
	if got := err.Error(); got != "409: VM is not running" {
		t.Errorf("Error() = %q", got)
	}
}
