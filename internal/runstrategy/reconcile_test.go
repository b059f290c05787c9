package runstrategy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// decisionWant is what a case expects of Reconcile. It leaves out Why, the
// free text for logs.
type decisionWant struct {
	Action                  Action
	StartPaused             bool
	AppendRequests          string // fmtQueue of Decision.AppendRequests, "" for none
	RequeueAfter            time.Duration
	Err                     *Failure
	AddVMFinalizer          bool
	RemoveInstanceFinalizer bool
}

func summarize(d Decision) decisionWant {
	w := decisionWant{
		Action: d.Action, StartPaused: d.StartPaused, RequeueAfter: d.RequeueAfter, Err: d.Err,
		AddVMFinalizer: d.AddVMFinalizer, RemoveInstanceFinalizer: d.RemoveInstanceFinalizer,
	}
	if len(d.AppendRequests) > 0 {
		w.AppendRequests = fmtQueue(d.AppendRequests)
	}
	return w
}

var (
	create      = decisionWant{Action: CreateInstance}
	createPause = decisionWant{Action: CreateInstance, StartPaused: true}
	del         = decisionWant{Action: DeleteInstance}
	nothing     = decisionWant{}
	// A final VMI that still carries the controller finalizer gets it
	// removed after the status is written (section 2.2 step 9).
	delFinal     = decisionWant{Action: DeleteInstance, RemoveInstanceFinalizer: true}
	nothingFinal = decisionWant{RemoveInstanceFinalizer: true}
)

func requeue(d time.Duration) decisionWant { return decisionWant{RequeueAfter: d} }

type reconcileCase struct {
	name string // the spec section and row the case pins
	vm   VM
	inst *Instance
	// phases, when set, runs the case once per phase, replacing inst's phase.
	phases        []Phase
	createPending bool
	deletePending bool
	want          decisionWant
}

func runReconcileCases(t *testing.T, cases []reconcileCase) {
	t.Helper()
	for _, c := range cases {
		phases := c.phases
		if len(phases) == 0 {
			phases = []Phase{"-"}
		}
		for _, ph := range phases {
			name := c.name
			inst := c.inst
			if ph != "-" {
				name += "/" + phaseName(ph)
				cp := *inst
				cp.Phase = ph
				inst = &cp
			}
			t.Run(name, func(t *testing.T) {
				p := Pass{VM: c.vm, Instance: inst, CreatePending: c.createPending, DeletePending: c.deletePending, Now: t0}
				d := Reconcile(p)
				if diff := cmp.Diff(c.want, summarize(d)); diff != "" {
					t.Errorf("Reconcile (-want +got):\n%s\nwhy: %s", diff, d.Why)
				}
				if d.Why == "" && d.Action != None {
					t.Errorf("Reconcile returned %v without saying why", d.Action)
				}
			})
		}
	}
}

// TestReconcileStrategyTable pins every cell of section 2.4's summary table:
// strategy x VMI state x head request, with the crash-loop gate.
func TestReconcileStrategyTable(t *testing.T) {
	const uid, other = "vmi-1", "vmi-0"
	alive := newInst(uid, PhaseRunning)
	succeeded := newInst(uid, PhaseSucceeded, everRunning)
	failed := newInst(uid, PhaseFailed)
	beingDeleted := newInst(uid, PhaseRunning, deleting)
	finalDeleted := newInst(uid, PhaseSucceeded, deleting)
	gate := failures(2, other, 30*time.Second)    // retry 30 s from now
	expired := failures(2, other, -1*time.Second) // retry time passed

	runReconcileCases(t, []reconcileCase{
		// Always
		{name: "2.4 Always/no VMI/create", vm: newVM(Always), want: create},
		{name: "2.4 Always/no VMI/head Start irrelevant", vm: newVM(Always, queued(startReq())), want: create},
		{name: "2.4 Always/no VMI/head Start paused creates paused", vm: newVM(Always, queued(startPausedReq())), want: createPause},
		{name: "2.4 Always/no VMI/head Stop of a gone VMI", vm: newVM(Always, queued(stopReq(other), startReq())), want: create},
		{name: "2.4 Always/no VMI/backoff gate holds", vm: newVM(Always, gate), want: requeue(30 * time.Second)},
		{name: "2.4 Always/no VMI/backoff gate passed", vm: newVM(Always, expired), want: create},
		{name: "2.4 Always/alive/nothing", vm: newVM(Always), inst: alive, phases: alivePhases, want: nothing},
		{name: "2.4 Always/alive/head Start nothing", vm: newVM(Always, queued(startReq())), inst: alive, phases: alivePhases, want: nothing},
		{name: "2.4 Always/alive/head Stop(uid) restarts", vm: newVM(Always, queued(stopReq(uid), startReq())), inst: alive, phases: alivePhases, want: del},
		{name: "2.4 Always/alive/head Stop(other uid) ignored", vm: newVM(Always, queued(stopReq(other))), inst: alive, want: nothing},
		{name: "2.4 Always/alive/head Stop without uid ignored", vm: newVM(Always, queued(stopReq(""))), inst: alive, want: nothing},
		{name: "2.4 Always/Succeeded/delete", vm: newVM(Always), inst: succeeded, want: delFinal},
		{name: "2.4 Always/Failed/delete", vm: newVM(Always), inst: failed, want: delFinal},
		{name: "2.4 Always/Failed/delete not gated by backoff", vm: newVM(Always, gate), inst: failed, want: delFinal},
		{name: "2.4 Always/being deleted/wait", vm: newVM(Always), inst: beingDeleted, want: nothing},
		{name: "2.4 Always/being deleted final/wait", vm: newVM(Always), inst: finalDeleted, want: nothingFinal},
		{name: "2.4 Always/being deleted/head Stop(uid) no second delete", vm: newVM(Always, queued(stopReq(uid))), inst: beingDeleted, want: nothing},

		// RerunOnFailure
		{name: "2.4 RerunOnFailure/no VMI/never started creates", vm: newVM(RerunOnFailure), want: create},
		{name: "2.4 RerunOnFailure/no VMI/stopped stays stopped", vm: newVM(RerunOnFailure, recorded(RerunOnFailure)), want: nothing},
		{name: "2.4 RerunOnFailure/no VMI/head Start creates", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(startReq())), want: create},
		{name: "2.4 RerunOnFailure/no VMI/head Start paused", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(startPausedReq())), want: createPause},
		{name: "2.4 RerunOnFailure/no VMI/head Stop does not start", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(other), startReq())), want: nothing},
		{name: "2.4 RerunOnFailure/no VMI/switched from Always creates", vm: newVM(RerunOnFailure, recorded(Always)), want: create},
		{name: "2.4 RerunOnFailure/no VMI/head Start backoff gate holds", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(startReq()), gate), want: requeue(30 * time.Second)},
		{name: "2.4 RerunOnFailure/no VMI/never started backoff gate holds", vm: newVM(RerunOnFailure, gate), want: requeue(30 * time.Second)},
		{name: "2.4 RerunOnFailure/no VMI/head Start backoff gate passed", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(startReq()), expired), want: create},
		{name: "2.4 RerunOnFailure/alive/nothing", vm: newVM(RerunOnFailure, recorded(RerunOnFailure)), inst: alive, phases: alivePhases, want: nothing},
		{name: "2.4 RerunOnFailure/alive/head Stop(uid) deletes", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(uid))), inst: alive, phases: alivePhases, want: del},
		{name: "2.4 RerunOnFailure/alive/head Stop(other uid) ignored", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(other))), inst: alive, want: nothing},
		{name: "2.4 RerunOnFailure/Succeeded/delete without restart", vm: newVM(RerunOnFailure, recorded(RerunOnFailure)), inst: succeeded, want: delFinal},
		{name: "2.4 RerunOnFailure/Failed/delete and append Start", vm: newVM(RerunOnFailure, recorded(RerunOnFailure)), inst: failed,
			want: decisionWant{Action: DeleteInstance, AppendRequests: "[Start]", RemoveInstanceFinalizer: true}},
		{name: "2.4 RerunOnFailure/Failed/head Stop(other uid) still restarts", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(other))), inst: failed,
			want: decisionWant{Action: DeleteInstance, AppendRequests: "[Start]", RemoveInstanceFinalizer: true}},
		{name: "2.4 RerunOnFailure/Failed/head Stop(uid) is a stop, no restart (Vigil)", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(uid))), inst: failed, want: delFinal},
		{name: "2.4 RerunOnFailure/Failed/delete not gated by backoff", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), gate), inst: failed,
			want: decisionWant{Action: DeleteInstance, AppendRequests: "[Start]", RemoveInstanceFinalizer: true}},
		{name: "2.4 RerunOnFailure/Succeeded/head Stop(uid) deletes", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(uid))), inst: succeeded, want: delFinal},
		{name: "2.4 RerunOnFailure/being deleted/wait", vm: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq(uid))), inst: beingDeleted, want: nothing},
		{name: "2.4 RerunOnFailure/being deleted Failed/no restart", vm: newVM(RerunOnFailure, recorded(RerunOnFailure)), inst: newInst(uid, PhaseFailed, deleting), want: nothingFinal},

		// Manual
		{name: "2.4 Manual/no VMI/nothing", vm: newVM(Manual), want: nothing},
		{name: "2.4 Manual/no VMI/head Start creates", vm: newVM(Manual, queued(startReq())), want: create},
		{name: "2.4 Manual/no VMI/head Start paused", vm: newVM(Manual, queued(startPausedReq())), want: createPause},
		{name: "2.4 Manual/no VMI/head Start ignores backoff", vm: newVM(Manual, queued(startReq()), gate), want: create},
		{name: "2.4 Manual/no VMI/head Stop does not start", vm: newVM(Manual, queued(stopReq(other), startReq())), want: nothing},
		{name: "2.4 Manual/alive/nothing", vm: newVM(Manual), inst: alive, phases: alivePhases, want: nothing},
		{name: "2.4 Manual/alive/head Start nothing", vm: newVM(Manual, queued(startReq())), inst: alive, want: nothing},
		{name: "2.4 Manual/alive/head Stop(uid) deletes", vm: newVM(Manual, queued(stopReq(uid))), inst: alive, phases: alivePhases, want: del},
		{name: "2.4 Manual/alive/head Stop(other uid) ignored", vm: newVM(Manual, queued(stopReq(other))), inst: alive, want: nothing},
		{name: "2.4 Manual/Succeeded/kept", vm: newVM(Manual), inst: succeeded, want: nothingFinal},
		{name: "2.4 Manual/Failed/kept", vm: newVM(Manual), inst: failed, want: nothingFinal},
		{name: "2.4 Manual/Succeeded/head Stop(uid) deletes", vm: newVM(Manual, queued(stopReq(uid), startReq())), inst: succeeded, want: delFinal},
		{name: "2.4 Manual/Failed/head Stop(uid) deletes", vm: newVM(Manual, queued(stopReq(uid), startReq())), inst: failed, want: delFinal},
		{name: "2.4 Manual/being deleted/head Stop(uid) no second delete", vm: newVM(Manual, queued(stopReq(uid))), inst: beingDeleted, want: nothing},

		// Halted
		{name: "2.4 Halted/no VMI/nothing", vm: newVM(Halted), want: nothing},
		{name: "2.4 Halted/no VMI/leftover Start discarded, no strategy change (Vigil)", vm: newVM(Halted, queued(startReq())), want: nothing},
		{name: "2.4 Halted/no VMI/leftover Start paused discarded (Vigil)", vm: newVM(Halted, queued(startPausedReq())), want: nothing},
		{name: "2.4 Halted/alive/delete", vm: newVM(Halted), inst: alive, phases: alivePhases, want: del},
		{name: "2.4 Halted/alive/head Stop(uid) deletes anyway", vm: newVM(Halted, queued(stopReq(uid))), inst: alive, want: del},
		{name: "2.4 Halted/Succeeded/delete", vm: newVM(Halted), inst: succeeded, want: delFinal},
		{name: "2.4 Halted/Failed/delete", vm: newVM(Halted), inst: failed, want: delFinal},
		{name: "2.4 Halted/being deleted/no second delete", vm: newVM(Halted), inst: beingDeleted, want: nothing},

		// Once
		{name: "2.4 Once/no VMI/create", vm: newVM(Once), want: create},
		{name: "2.4 Once/no VMI/no backoff gate", vm: newVM(Once, gate), want: create},
		{name: "2.4 Once/no VMI/head Stop ignored", vm: newVM(Once, queued(stopReq(other))), want: create},
		{name: "2.4 Once/no VMI/after its run (Vigil)", vm: newVM(Once, onceStarted), want: nothing},
		{name: "2.4 Once/alive/nothing", vm: newVM(Once, onceStarted), inst: alive, phases: alivePhases, want: nothing},
		{name: "2.4 Once/alive/head Stop(uid) ignored", vm: newVM(Once, onceStarted, queued(stopReq(uid))), inst: alive, want: nothing},
		{name: "2.4 Once/Succeeded/kept forever", vm: newVM(Once, onceStarted), inst: succeeded, want: nothingFinal},
		{name: "2.4 Once/Failed/kept", vm: newVM(Once, onceStarted), inst: failed, want: nothingFinal},
		{name: "2.4 Once/Failed/head Stop(uid) ignored", vm: newVM(Once, onceStarted, queued(stopReq(uid))), inst: failed, want: nothingFinal},
		{name: "2.4 Once/being deleted/nothing", vm: newVM(Once, onceStarted), inst: beingDeleted, want: nothing},
	})
}

// TestReconcilePassOrder pins steps 1 to 4 of section 2.2 and the VM
// deletion rules of section 2.8.
func TestReconcilePassOrder(t *testing.T) {
	alive := newInst("vmi-1", PhaseRunning)
	failedFin := newInst("vmi-1", PhaseFailed)
	runReconcileCases(t, []reconcileCase{
		{name: "2.2 step 1/creation pending: status only", vm: newVM(Always), createPending: true, want: nothing},
		{name: "2.2 step 1/deletion pending: status only", vm: newVM(Halted), inst: newInst("vmi-1", PhaseRunning, deleting), deletePending: true, want: nothing},
		{name: "2.2 step 1/deletion pending: no second create", vm: newVM(Always), deletePending: true, want: nothing},
		{name: "2.2 step 1/creation pending: no delete of a final VMI", vm: newVM(Always), inst: failedFin, createPending: true, want: nothingFinal},
		{name: "2.2 step 1/creation pending: no finalizer added", vm: newVM(Always, noVMFinalizer), createPending: true, want: nothing},
		{name: "2.2 step 1/pending with a bad strategy: no error", vm: VM{Running: ptr(true), RunStrategy: ptr(Always), HasFinalizer: true}, createPending: true, want: nothing},
		{name: "2.2 step 9/final VMI finalizer removed", vm: newVM(Manual), inst: failedFin, want: nothingFinal},
		{name: "2.2 step 9/final VMI without finalizer", vm: newVM(Manual), inst: newInst("vmi-1", PhaseFailed, noInstFinalizer), want: nothing},
		{name: "2.2 step 9/alive VMI keeps finalizer", vm: newVM(Manual), inst: alive, want: nothing},
		{name: "2.2 step 3/finalizer added", vm: newVM(Manual, noVMFinalizer), want: decisionWant{AddVMFinalizer: true}},
		{name: "2.2 step 3/finalizer added with the action", vm: newVM(Always, noVMFinalizer), want: decisionWant{Action: CreateInstance, AddVMFinalizer: true}},
		{name: "2.2 step 3/finalizer added before a strategy error", vm: VM{Running: ptr(true), RunStrategy: ptr(Always)},
			want: decisionWant{AddVMFinalizer: true, Err: &Failure{Reason: ReasonFailedCreate, Message: "Error fetching RunStrategy: running and runstrategy are mutually exclusive"}}},

		{name: "2.8 VM deleted/alive VMI deleted", vm: newVM(Always, deletingVM), inst: alive, phases: alivePhases, want: del},
		{name: "2.8 VM deleted/paused VMI deleted", vm: newVM(Always, deletingVM), inst: newInst("vmi-1", PhaseRunning, cond("Paused=True")), want: del},
		{name: "2.8 VM deleted/final VMI deleted", vm: newVM(Manual, deletingVM), inst: failedFin, want: delFinal},
		{name: "2.8 VM deleted/VMI being deleted: wait", vm: newVM(Always, deletingVM), inst: newInst("vmi-1", PhaseRunning, deleting), want: nothing},
		{name: "2.8 VM deleted/no VMI: finalizer removed", vm: newVM(Always, deletingVM), want: decisionWant{Action: RemoveVMFinalizer}},
		{name: "2.8 VM deleted/no VMI, no finalizer: nothing", vm: newVM(Always, deletingVM, noVMFinalizer), want: nothing},
		{name: "2.8 VM deleted/strategy ignored (Halted, no VMI)", vm: newVM(Halted, deletingVM, queued(startReq())), want: decisionWant{Action: RemoveVMFinalizer}},
		{name: "2.8 VM deleted/bad strategy ignored", vm: VM{Deleting: true, HasFinalizer: true, Running: ptr(true), RunStrategy: ptr(Always)}, inst: alive, want: del},
		{name: "2.8 VM deleted/expectations first", vm: newVM(Always, deletingVM), inst: alive, deletePending: true, want: nothing},
	})
}

// TestReconcileVMIDeletedDirectly pins section 2.4.7: a VMI deleted by
// someone else, observed while being deleted and then gone, per strategy.
func TestReconcileVMIDeletedDirectly(t *testing.T) {
	cases := []struct {
		name     string
		vm       VM
		phase    Phase // the phase the deleted VMI ended in
		ranFirst bool  // it reached Running before
		want     decisionWant
	}{
		{name: "2.4.7 Always/new VMI", vm: newVM(Always), phase: PhaseSucceeded, ranFirst: true, want: create},
		{name: "2.4.7 Always/subject to backoff", vm: newVM(Always), phase: PhaseSucceeded, want: requeue(10 * time.Second)},
		{name: "2.4.7 RerunOnFailure/Succeeded stays stopped", vm: newVM(RerunOnFailure), phase: PhaseSucceeded, ranFirst: true, want: nothing},
		{name: "2.4.7 RerunOnFailure/Failed stays stopped", vm: newVM(RerunOnFailure), phase: PhaseFailed, ranFirst: true, want: nothing},
		{name: "2.4.7 Manual/stays stopped", vm: newVM(Manual), phase: PhaseSucceeded, ranFirst: true, want: nothing},
		{name: "2.4.7 Halted/stays stopped", vm: newVM(Halted), phase: PhaseSucceeded, ranFirst: true, want: nothing},
		{name: "2.4.7 Once/does not run again (Vigil)", vm: newVM(Once), phase: PhaseSucceeded, ranFirst: true, want: nothing},
		{name: "2.4.7 Once/early failure does not run again (Vigil)", vm: newVM(Once), phase: PhaseFailed, want: nothing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inst := newInst("vmi-1", PhaseRunning)
			inst.EverRunning = c.ranFirst
			vm := c.vm
			// The VMI runs for a pass, then is deleted by a user, ends,
			// and disappears; the controller sees each step.
			seen := []*Instance{inst, {UID: "vmi-1", Phase: PhaseRunning, Deleting: true, HasFinalizer: true, EverRunning: c.ranFirst, TemplateCurrent: true}}
			final := *seen[1]
			final.Phase = c.phase
			seen = append(seen, &final)
			if !c.ranFirst {
				seen[0].Phase, seen[1].Phase = PhasePending, PhasePending
			}
			if s, _ := Effective(vm); s == Halted {
				seen = seen[1:] // Halted would delete a live VMI itself
			}
			for i, in := range seen {
				p := Pass{VM: vm, Instance: in, Now: t0}
				d := Reconcile(p)
				if d.Action != None {
					t.Fatalf("pass %d with the VMI %s (deleting=%v): got %v, want no action (%s)", i, in.Phase, in.Deleting, d.Action, d.Why)
				}
				vm.Status = NextStatus(p, d, Outcome{})
			}
			p := Pass{VM: vm, Now: t0}
			d := Reconcile(p)
			if diff := cmp.Diff(c.want, summarize(d)); diff != "" {
				t.Errorf("pass after the VMI is gone (-want +got):\n%s\nwhy: %s\nstatus: %+v", diff, d.Why, vm.Status)
			}
		})
	}
}

// TestEffective pins section 1.2 and the table of section 3.
func TestEffective(t *testing.T) {
	cases := []struct {
		name        string
		running     *bool
		runStrategy *Strategy
		want        Strategy
		wantErr     string
	}{
		{name: "3 running true", running: ptr(true), want: Always},
		{name: "3 running false", running: ptr(false), want: Halted},
		{name: "3 runStrategy Always", runStrategy: ptr(Always), want: Always},
		{name: "3 runStrategy RerunOnFailure", runStrategy: ptr(RerunOnFailure), want: RerunOnFailure},
		{name: "3 runStrategy Manual", runStrategy: ptr(Manual), want: Manual},
		{name: "3 runStrategy Halted", runStrategy: ptr(Halted), want: Halted},
		{name: "3 runStrategy Once", runStrategy: ptr(Once), want: Once},
		{name: "3 neither set is Halted", want: Halted},
		{name: "3 both set", running: ptr(true), runStrategy: ptr(Always), wantErr: "running and runstrategy are mutually exclusive"},
		{name: "3 both set, false and Halted", running: ptr(false), runStrategy: ptr(Halted), wantErr: "running and runstrategy are mutually exclusive"},
		{name: "3 WaitAsReceiver not run by Vigil", runStrategy: ptr(WaitAsReceiver), wantErr: "Invalid RunStrategy (WaitAsReceiver)"},
		{name: "3 unknown word", runStrategy: ptr(Strategy("Sometimes")), wantErr: "Invalid RunStrategy (Sometimes)"},
		{name: "3 empty runStrategy", runStrategy: ptr(Unknown), wantErr: "Invalid RunStrategy ()"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Effective(VM{Running: c.running, RunStrategy: c.runStrategy})
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("Effective: got (%q, %v), want error %q", got, err, c.wantErr)
				}
				if got != Unknown {
					t.Errorf("Effective with an error: strategy %q, want Unknown", got)
				}
				if strings.Contains(c.wantErr, "mutually") && !errors.Is(err, ErrRunningAndRunStrategy) {
					t.Errorf("error %v is not ErrRunningAndRunStrategy", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Effective: got (%q, %v), want %q", got, err, c.want)
			}
		})
	}
}

// TestReconcileInvalidStrategy pins section 1.2's error case: a Failure
// with reason FailedCreate and the "Error fetching RunStrategy:" prefix, and
// no action.
func TestReconcileInvalidStrategy(t *testing.T) {
	cases := []struct {
		name string
		vm   VM
		inst *Instance
		msg  string
	}{
		{name: "3 both fields, no VMI", vm: VM{HasFinalizer: true, Running: ptr(false), RunStrategy: ptr(Manual)}, msg: "running and runstrategy are mutually exclusive"},
		{name: "3 both fields, running VMI", vm: VM{HasFinalizer: true, Running: ptr(true), RunStrategy: ptr(Always)}, inst: newInst("vmi-1", PhaseRunning), msg: "running and runstrategy are mutually exclusive"},
		{name: "3 WaitAsReceiver", vm: newVM(WaitAsReceiver), msg: "Invalid RunStrategy (WaitAsReceiver)"},
		{name: "3 unknown value, final VMI", vm: newVM("Bogus"), inst: newInst("vmi-1", PhaseFailed, noInstFinalizer), msg: "Invalid RunStrategy (Bogus)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Reconcile(Pass{VM: c.vm, Instance: c.inst, Now: t0})
			want := decisionWant{Err: &Failure{Reason: ReasonFailedCreate, Message: "Error fetching RunStrategy: " + c.msg}}
			if diff := cmp.Diff(want, summarize(d)); diff != "" {
				t.Errorf("Reconcile (-want +got):\n%s", diff)
			}
			st := NextStatus(Pass{VM: c.vm, Instance: c.inst, Now: t0}, d, Outcome{})
			f := condition(st.Conditions, CondFailure)
			if f == nil || f.Status != ConditionTrue || f.Reason != ReasonFailedCreate || !strings.HasPrefix(f.Message, "Error fetching RunStrategy:") {
				t.Errorf("Failure condition = %+v, want True/FailedCreate with the \"Error fetching RunStrategy:\" prefix", f)
			}
		})
	}
}

// TestActionString keeps the names used in logs and scenario files.
func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{None: "None", CreateInstance: "CreateInstance", DeleteInstance: "DeleteInstance", RemoveVMFinalizer: "RemoveVMFinalizer", Action(9): "Action(9)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}
