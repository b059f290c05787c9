package runstrategy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// pass runs one full pass (Reconcile then NextStatus) with the action
// applied successfully, or failing with o.
func pass(p Pass, o Outcome) (Decision, Status) {
	if p.Now.IsZero() {
		p.Now = t0
	}
	d := Reconcile(p)
	return d, NextStatus(p, d, o)
}

// TestTrimQueue pins the trimming table of section 2.3.
func TestTrimQueue(t *testing.T) {
	alive := newInst("vmi-1", PhaseRunning)
	cases := []struct {
		name   string
		p      Pass
		phases []Phase
		o      Outcome
		want   string
	}{
		{name: "2.3 Stop/no VMI/removed", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1")))}, want: "[]"},
		{name: "2.3 Stop/no UID/removed", p: Pass{VM: newVM(Manual, queued(stopReq(""))), Instance: alive}, want: "[]"},
		{name: "2.3 Stop/other UID/removed", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-0"))), Instance: alive}, want: "[]"},
		{name: "2.3 Stop/same UID/kept", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"))), Instance: alive}, phases: alivePhases, want: "[Stop(vmi-1)]"},
		{name: "2.3 Stop/same UID, final/kept", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"))), Instance: newInst("vmi-1", PhaseSucceeded)}, want: "[Stop(vmi-1)]"},
		{name: "2.3 Stop/same UID, being deleted/kept", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"))), Instance: newInst("vmi-1", PhaseRunning, deleting)}, want: "[Stop(vmi-1)]"},
		{name: "2.3 Start/VMI alive, not deleted/removed", p: Pass{VM: newVM(Manual, queued(startReq())), Instance: alive}, phases: alivePhases, want: "[]"},
		{name: "2.3 Start paused/VMI alive/removed", p: Pass{VM: newVM(Manual, queued(startPausedReq())), Instance: alive}, want: "[]"},
		{name: "2.3 Start/no VMI/kept", p: Pass{VM: newVM(Manual, queued(startReq()))}, want: "[Start]"},
		{name: "2.3 Start/VMI Succeeded/kept", p: Pass{VM: newVM(Manual, queued(startReq())), Instance: newInst("vmi-1", PhaseSucceeded)}, want: "[Start]"},
		{name: "2.3 Start/VMI Failed/kept", p: Pass{VM: newVM(Manual, queued(startReq())), Instance: newInst("vmi-1", PhaseFailed)}, want: "[Start]"},
		{name: "2.3 Start/VMI being deleted/kept", p: Pass{VM: newVM(Manual, queued(startReq())), Instance: newInst("vmi-1", PhaseRunning, deleting)}, want: "[Start]"},
		{name: "2.3 at most one per pass/stop done, start stays", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"), startReq()))}, want: "[Start]"},
		{name: "2.3 at most one per pass/two stale stops", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-0"), stopReq("vmi-1"))), Instance: newInst("vmi-2", PhaseRunning)}, want: "[Stop(vmi-1)]"},
		{name: "2.3 only the head/start done, stop stays", p: Pass{VM: newVM(Manual, queued(startReq(), stopReq("vmi-1"))), Instance: alive}, want: "[Stop(vmi-1)]"},
		{name: "2.3 only the head/stop pending, start stays", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"), startReq())), Instance: alive}, want: "[Stop(vmi-1) Start]"},
		{name: "2.3 unknown action/removed", p: Pass{VM: newVM(Manual, queued(Request{Action: "Migrate"}, startReq()))}, want: "[Start]"},
		{name: "2.3 empty queue", p: Pass{VM: newVM(Manual)}, want: "[]"},
		{name: "2.3 Halted/leftover Start discarded (Vigil)", p: Pass{VM: newVM(Halted, queued(startPausedReq()))}, want: "[]"},
		{name: "2.3 Halted/leftover Start discarded beside a final VMI (Vigil)", p: Pass{VM: newVM(Halted, queued(startReq())), Instance: newInst("vmi-1", PhaseSucceeded, deleting)}, want: "[]"},
		{name: "2.3 judged on the VMI at pass start/Always create keeps Start", p: Pass{VM: newVM(Always, queued(startPausedReq()))}, want: "[Start{paused}]"},
		{name: "2.3 judged on the VMI at pass start/Manual delete keeps Stop", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"), startReq())), Instance: alive}, want: "[Stop(vmi-1) Start]"},
		{name: "2.3 trimmed while expectations pending", p: Pass{VM: newVM(Manual, queued(stopReq("vmi-1"), startReq())), DeletePending: true}, want: "[Start]"},
		{name: "2.4.2 RerunOnFailure Failed/appended Start kept", p: Pass{VM: newVM(RerunOnFailure, recorded(RerunOnFailure)), Instance: newInst("vmi-1", PhaseFailed)}, want: "[Start]"},
		{name: "2.4.2 RerunOnFailure Failed/appended after a stale stop", p: Pass{VM: newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq("vmi-0"))), Instance: newInst("vmi-1", PhaseFailed)}, want: "[Start]"},
		{name: "2.4.2 RerunOnFailure Failed/delete failed: nothing appended", p: Pass{VM: newVM(RerunOnFailure, recorded(RerunOnFailure)), Instance: newInst("vmi-1", PhaseFailed)},
			o: Outcome{Err: &Failure{Reason: ReasonFailedDelete, Message: "boom"}}, want: "[]"},
	}
	for _, c := range cases {
		phases := c.phases
		if len(phases) == 0 {
			phases = []Phase{"-"}
		}
		for _, ph := range phases {
			name, p := c.name, c.p
			if ph != "-" {
				name += "/" + phaseName(ph)
				in := *p.Instance
				in.Phase = ph
				p.Instance = &in
			}
			t.Run(name, func(t *testing.T) {
				_, st := pass(p, c.o)
				if got := fmtQueue(st.Requests); got != c.want {
					t.Errorf("queue %s -> %s, want %s", fmtQueue(p.VM.Status.Requests), got, c.want)
				}
			})
		}
	}
}

// TestRequestDataKept checks that trimming keeps the other requests as
// they are, data included.
func TestRequestDataKept(t *testing.T) {
	q := []Request{stopReq("vmi-0"), {Action: StartRequest, Data: map[string]string{"paused": "true", "other": "x"}}}
	_, st := pass(Pass{VM: newVM(Manual, queued(q...))}, Outcome{})
	if diff := cmp.Diff(q[1:], st.Requests); diff != "" {
		t.Errorf("queue after trimming (-want +got):\n%s", diff)
	}
}

// TestRunStrategyTracking pins section 2.5: status.runStrategy stays empty
// until a VMI is seen, then mirrors the effective strategy on every pass.
func TestRunStrategyTracking(t *testing.T) {
	cases := []struct {
		name string
		p    Pass
		want Strategy
	}{
		{name: "2.5 empty while no VMI was ever seen", p: Pass{VM: newVM(Manual)}, want: ""},
		{name: "2.5 empty on the pass that creates the VMI", p: Pass{VM: newVM(Always)}, want: ""},
		{name: "2.5 empty while the creation is pending", p: Pass{VM: newVM(RerunOnFailure), CreatePending: true}, want: ""},
		{name: "2.5 set on the first pass that sees a VMI", p: Pass{VM: newVM(RerunOnFailure), Instance: newInst("vmi-1", PhasePending)}, want: RerunOnFailure},
		{name: "2.5 set even while expectations are pending", p: Pass{VM: newVM(Manual), Instance: newInst("vmi-1", PhasePending), CreatePending: true}, want: Manual},
		{name: "2.5 follows a strategy change without VMI", p: Pass{VM: newVM(Halted, recorded(Always))}, want: Halted},
		{name: "2.5 follows a strategy change with VMI", p: Pass{VM: newVM(RerunOnFailure, recorded(Manual)), Instance: newInst("vmi-1", PhaseRunning)}, want: RerunOnFailure},
		{name: "2.5 legacy running: true recorded as Always", p: Pass{VM: newVM(Halted, legacyRunning(true), recorded(Halted)), Instance: newInst("vmi-1", PhasePending)}, want: Always},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := pass(c.p, Outcome{})
			if st.RunStrategy != c.want {
				t.Errorf("status.runStrategy = %q, want %q", st.RunStrategy, c.want)
			}
		})
	}
}

// TestRerunOnFailureShouldStart is section 2.5's truth table of "should a
// RerunOnFailure VM without VMI start".
func TestRerunOnFailureShouldStart(t *testing.T) {
	cases := []struct {
		name     string
		head     []Request
		recorded Strategy
		start    bool
	}{
		{name: "2.5 truth/none, never started", recorded: "", start: true},
		{name: "2.5 truth/none, RerunOnFailure", recorded: RerunOnFailure, start: false},
		{name: "2.5 truth/Start, RerunOnFailure", head: []Request{startReq()}, recorded: RerunOnFailure, start: true},
		{name: "2.5 truth/none, Always", recorded: Always, start: true},
		{name: "2.5 truth/none, Halted", recorded: Halted, start: true},
		{name: "2.5 truth/Start, Always", head: []Request{startReq()}, recorded: Always, start: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Reconcile(Pass{VM: newVM(RerunOnFailure, recorded(c.recorded), queued(c.head...)), Now: t0})
			if got := d.Action == CreateInstance; got != c.start {
				t.Errorf("start = %v (%v: %s), want %v", got, d.Action, d.Why, c.start)
			}
		})
	}
}

// TestConditions pins the table of section 1.5.
func TestConditions(t *testing.T) {
	boom := &Failure{Reason: ReasonFailedDelete, Message: "Failure attempting to delete VMI: boom"}
	running := func(opts ...instOpt) *Instance {
		return newInst("vmi-1", PhaseRunning, append([]instOpt{cond("Ready=True")}, opts...)...)
	}
	cases := []struct {
		name string
		p    Pass
		o    Outcome
		want string
	}{
		{name: "1.5 Ready/no VMI", p: Pass{VM: newVM(Manual)}, want: "Ready=False/VMINotExists"},
		{name: "1.5 Ready/VMI without Ready", p: Pass{VM: newVM(Manual), Instance: newInst("vmi-1", PhasePending)}, want: "Ready=False/VMIConditionMissing"},
		{name: "1.5 Ready/copied from the VMI", p: Pass{VM: newVM(Manual), Instance: running()}, want: "Ready=True"},
		{name: "1.5 Ready/copied False with its reason", p: Pass{VM: newVM(Manual), Instance: newInst("vmi-1", PhaseScheduled, cond("Ready=False/GuestNotRunning"))}, want: "Ready=False/GuestNotRunning"},
		{name: "1.5 Failure/set by the core's own error", p: Pass{VM: newVM("Bogus")}, want: "Ready=False/VMINotExists Failure=True/FailedCreate"},
		{name: "1.5 Failure/set by a failed action", p: Pass{VM: newVM(Halted), Instance: running()}, o: Outcome{Err: boom}, want: "Ready=True Failure=True/FailedDelete"},
		{name: "1.5 Failure/removed after a successful pass", p: Pass{VM: newVM(Manual, withConditions(parseCond("Failure=True/FailedDelete"))), Instance: running()}, want: "Ready=True"},
		{name: "1.5 Failure/removed while expectations are pending", p: Pass{VM: newVM(Always, withConditions(parseCond("Failure=True/FailedCreate"))), CreatePending: true}, want: "Ready=False/VMINotExists"},
		{name: "1.5 Failure/no spurious Failure on the Halted start (Vigil)", p: Pass{VM: newVM(Always, queued(startPausedReq()))}, want: "Ready=False/VMINotExists"},
		{name: "1.5 Paused/mirrored", p: Pass{VM: newVM(Manual), Instance: running(cond("Paused=True/PausedByUser"))}, want: "Ready=True Paused=True/PausedByUser"},
		{name: "1.5 Paused/removed when the VMI drops it", p: Pass{VM: newVM(Manual, withConditions(parseCond("Paused=True/PausedByUser"))), Instance: running()}, want: "Ready=True"},
		{name: "1.5 mirrored/added and updated", p: Pass{VM: newVM(Manual, withConditions(parseCond("AgentConnected=False"))), Instance: running(cond("AgentConnected=True"), cond("Synchronized=False/DiskNotFound"))},
			want: "Ready=True AgentConnected=True Synchronized=False/DiskNotFound"},
		{name: "1.5 mirrored/removed when absent from the VMI", p: Pass{VM: newVM(Manual, withConditions(parseCond("AgentConnected=True"), parseCond("PodScheduled=False/Unschedulable"))), Instance: running()}, want: "Ready=True"},
		{name: "1.5 mirrored/kept as they were without VMI", p: Pass{VM: newVM(Manual, withConditions(parseCond("Ready=True"), parseCond("Paused=True"), parseCond("AgentConnected=True")))},
			want: "Ready=False/VMINotExists Paused=True AgentConnected=True"},
		{name: "1.5 mirrored/the VMI's Failure and RestartRequired are not copied", p: Pass{VM: newVM(Manual), Instance: running(cond("Failure=True/X"), cond("RestartRequired=True/Y"))}, want: "Ready=True"},
		{name: "1.5 RestartRequired/set for a live VMI from an old template", p: Pass{VM: newVM(Manual), Instance: running(staleTemplate)}, want: "Ready=True RestartRequired=True/TemplateChanged"},
		{name: "1.5 RestartRequired/not set for a current template", p: Pass{VM: newVM(Manual), Instance: running()}, want: "Ready=True"},
		{name: "1.5 RestartRequired/cleared by the pass that deletes the VMI", p: Pass{VM: newVM(Halted, withConditions(parseCond("RestartRequired=True/TemplateChanged"))), Instance: running(staleTemplate)}, want: "Ready=True"},
		{name: "1.5 RestartRequired/kept when the delete failed", p: Pass{VM: newVM(Halted, withConditions(parseCond("RestartRequired=True/TemplateChanged"))), Instance: running(staleTemplate)}, o: Outcome{Err: boom},
			want: "Ready=True Failure=True/FailedDelete RestartRequired=True/TemplateChanged"},
		{name: "1.5 RestartRequired/stays cleared while the VMI is deleted", p: Pass{VM: newVM(Halted), Instance: running(staleTemplate, deleting)}, want: "Ready=True"},
		{name: "1.5 RestartRequired/not set for a final VMI (Vigil reading)", p: Pass{VM: newVM(Manual), Instance: newInst("vmi-1", PhaseSucceeded, staleTemplate)}, want: "Ready=False/VMIConditionMissing"},
		{name: "1.5 RestartRequired/cleared when a new VMI is created", p: Pass{VM: newVM(Always, withConditions(parseCond("RestartRequired=True/TemplateChanged")))}, want: "Ready=False/VMINotExists"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := pass(c.p, c.o)
			if got := fmtConds(st.Conditions); got != c.want {
				t.Errorf("conditions\n got: %s\nwant: %s", got, c.want)
			}
		})
	}
}

// TestConditionDetails pins the messages and times of the VM's own conditions.
func TestConditionDetails(t *testing.T) {
	earlier := t0.Add(-time.Hour)
	t.Run("1.5 Ready/no VMI message", func(t *testing.T) {
		_, st := pass(Pass{VM: newVM(Manual)}, Outcome{})
		want := Condition{Type: CondReady, Status: ConditionFalse, Reason: ReasonVMINotExists, Message: "VMI does not exist", LastTransitionTime: t0}
		if diff := cmp.Diff(want, st.Conditions[0]); diff != "" {
			t.Errorf("Ready (-want +got):\n%s", diff)
		}
	})
	t.Run("1.5 Ready/copied with message and times", func(t *testing.T) {
		ready := Condition{Type: CondReady, Status: ConditionTrue, Reason: "R", Message: "m", LastProbeTime: earlier, LastTransitionTime: earlier}
		in := newInst("vmi-1", PhaseRunning)
		in.Conditions = []Condition{ready}
		_, st := pass(Pass{VM: newVM(Manual), Instance: in}, Outcome{})
		if diff := cmp.Diff(ready, st.Conditions[0]); diff != "" {
			t.Errorf("Ready (-want +got):\n%s", diff)
		}
	})
	t.Run("1.5 Ready/transition time kept while unchanged", func(t *testing.T) {
		old := Condition{Type: CondReady, Status: ConditionFalse, Reason: ReasonVMINotExists, Message: "VMI does not exist", LastTransitionTime: earlier}
		_, st := pass(Pass{VM: newVM(Manual, withConditions(old))}, Outcome{})
		if diff := cmp.Diff(old, st.Conditions[0]); diff != "" {
			t.Errorf("Ready (-want +got):\n%s", diff)
		}
	})
	t.Run("1.5 Ready/transition time moves on a change", func(t *testing.T) {
		old := Condition{Type: CondReady, Status: ConditionTrue, LastTransitionTime: earlier}
		_, st := pass(Pass{VM: newVM(Manual, withConditions(old)), Instance: newInst("vmi-1", PhasePending)}, Outcome{})
		if got := st.Conditions[0]; got.Status != ConditionFalse || !got.LastTransitionTime.Equal(t0) {
			t.Errorf("Ready = %+v, want False with transition time %v", got, t0)
		}
	})
	t.Run("1.5 Failure/message and transition time kept across failing passes", func(t *testing.T) {
		f := &Failure{Reason: ReasonFailedCreate, Message: "Failure while starting VMI: boom"}
		_, st1 := pass(Pass{VM: newVM(Always)}, Outcome{Err: f})
		vm := newVM(Always)
		vm.Status = st1
		_, st2 := pass(Pass{VM: vm, Now: t0.Add(time.Minute)}, Outcome{Err: f})
		want := Condition{Type: CondFailure, Status: ConditionTrue, Reason: f.Reason, Message: f.Message, LastTransitionTime: t0}
		if diff := cmp.Diff(want, *condition(st2.Conditions, CondFailure)); diff != "" {
			t.Errorf("Failure (-want +got):\n%s", diff)
		}
	})
}

// TestStartFailureBookkeeping pins section 6's bookkeeping, done at status
// time on every pass. The backoff has no jitter, so delays are exact.
func TestStartFailureBookkeeping(t *testing.T) {
	early := func(uid string, ph Phase, opts ...instOpt) *Instance { return newInst(uid, ph, opts...) }
	record := func(count int, uid string, retryIn time.Duration) *StartFailure {
		return &StartFailure{Count: count, LastFailedUID: uid, RetryAfter: t0.Add(retryIn)}
	}
	cases := []struct {
		name string
		p    Pass
		want *StartFailure
	}{
		{name: "6 reset/VMI reached Running", p: Pass{VM: newVM(Always, failures(3, "vmi-0", time.Minute)), Instance: newInst("vmi-1", PhaseRunning)}, want: nil},
		{name: "6 reset/VMI ran, then failed", p: Pass{VM: newVM(Always, failures(3, "vmi-0", time.Minute)), Instance: early("vmi-1", PhaseFailed, everRunning)}, want: nil},
		{name: "6 reset/Manual", p: Pass{VM: newVM(Manual, failures(3, "vmi-0", time.Minute))}, want: nil},
		{name: "6 reset/Manual does not count an early failure", p: Pass{VM: newVM(Manual), Instance: early("vmi-1", PhaseFailed)}, want: nil},
		{name: "6 reset/Halted", p: Pass{VM: newVM(Halted, failures(3, "vmi-0", time.Minute)), Instance: early("vmi-1", PhaseFailed)}, want: nil},
		{name: "6 kept/no VMI, Always", p: Pass{VM: newVM(Always, failures(2, "vmi-0", time.Minute))}, want: record(2, "vmi-0", time.Minute)},
		{name: "6 kept/no VMI, RerunOnFailure", p: Pass{VM: newVM(RerunOnFailure, recorded(RerunOnFailure), failures(2, "vmi-0", time.Minute))}, want: record(2, "vmi-0", time.Minute)},
		{name: "6 kept/no VMI, Once", p: Pass{VM: newVM(Once, onceStarted, failures(1, "vmi-0", time.Minute))}, want: record(1, "vmi-0", time.Minute)},
		{name: "6 kept/VMI still starting", p: Pass{VM: newVM(Always, failures(2, "vmi-0", time.Minute)), Instance: early("vmi-1", PhaseScheduled)}, want: record(2, "vmi-0", time.Minute)},
		{name: "6 kept/VMI phase Unknown", p: Pass{VM: newVM(Always, failures(2, "vmi-0", time.Minute)), Instance: early("vmi-1", PhaseUnknown)}, want: record(2, "vmi-0", time.Minute)},
		{name: "6 counted/first early failure", p: Pass{VM: newVM(Always), Instance: early("vmi-1", PhaseFailed)}, want: record(1, "vmi-1", 10*time.Second)},
		{name: "6 counted/early Succeeded counts too", p: Pass{VM: newVM(Always), Instance: early("vmi-1", PhaseSucceeded)}, want: record(1, "vmi-1", 10*time.Second)},
		{name: "6 counted/RerunOnFailure", p: Pass{VM: newVM(RerunOnFailure), Instance: early("vmi-1", PhaseFailed)}, want: record(1, "vmi-1", 10*time.Second)},
		{name: "6 counted/Once", p: Pass{VM: newVM(Once), Instance: early("vmi-1", PhaseFailed)}, want: record(1, "vmi-1", 10*time.Second)},
		{name: "6 counted/while being deleted", p: Pass{VM: newVM(Always), Instance: early("vmi-1", PhaseFailed, deleting)}, want: record(1, "vmi-1", 10*time.Second)},
		{name: "6 counted once per UID", p: Pass{VM: newVM(Always, failures(1, "vmi-1", 3*time.Second)), Instance: early("vmi-1", PhaseFailed), Now: t0.Add(7 * time.Second)}, want: record(1, "vmi-1", 3*time.Second)},
		{name: "6 increment/second failure", p: Pass{VM: newVM(Always, failures(1, "vmi-0", -time.Second)), Instance: early("vmi-1", PhaseFailed)}, want: record(2, "vmi-1", 40*time.Second)},
		{name: "6 increment/third failure", p: Pass{VM: newVM(Always, failures(2, "vmi-0", -time.Second)), Instance: early("vmi-1", PhaseFailed)}, want: record(3, "vmi-1", 90*time.Second)},
		{name: "6 increment/capped", p: Pass{VM: newVM(RerunOnFailure, failures(7, "vmi-0", -time.Second)), Instance: early("vmi-1", PhaseFailed)}, want: record(8, "vmi-1", 300*time.Second)},
		{name: "6 increment/record without retry time", p: Pass{VM: newVM(Always, vmOpt(func(vm *VM) { vm.Status.StartFailure = &StartFailure{Count: 1, LastFailedUID: "vmi-0"} })), Instance: early("vmi-1", PhaseFailed)},
			want: record(2, "vmi-1", 40*time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := pass(c.p, Outcome{})
			if diff := cmp.Diff(c.want, st.StartFailure); diff != "" {
				t.Errorf("startFailure (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusFields pins status.created, status.ready, the generations and
// Vigil's status.onceStarted.
func TestStatusFields(t *testing.T) {
	type fields struct {
		Created, Ready, OnceStarted bool
		Observed, Desired           int64
	}
	vmGen3 := func(s Strategy, opts ...vmOpt) VM {
		vm := newVM(s, opts...)
		vm.Generation = 3
		vm.Status.ObservedGeneration, vm.Status.DesiredGeneration = 2, 2
		return vm
	}
	failCreate := Outcome{Err: &Failure{Reason: ReasonFailedCreate, Message: "boom"}}
	cases := []struct {
		name string
		p    Pass
		o    Outcome
		want fields
	}{
		{name: "1.3 created false without VMI, generations untouched", p: Pass{VM: vmGen3(Manual)}, want: fields{Observed: 2, Desired: 2}},
		{name: "1.3 created false on the creating pass", p: Pass{VM: vmGen3(Always)}, want: fields{Observed: 2, Desired: 2}},
		{name: "1.3 created true for a final VMI", p: Pass{VM: vmGen3(Manual), Instance: newInst("vmi-1", PhaseFailed)}, want: fields{Created: true, Observed: 3, Desired: 3}},
		{name: "1.3 created true for a VMI being deleted", p: Pass{VM: vmGen3(Halted), Instance: newInst("vmi-1", PhaseRunning, deleting)}, want: fields{Created: true, Observed: 3, Desired: 3}},
		{name: "1.3 ready from the VMI's Ready condition", p: Pass{VM: vmGen3(Manual), Instance: newInst("vmi-1", PhaseRunning, cond("Ready=True"))}, want: fields{Created: true, Ready: true, Observed: 3, Desired: 3}},
		{name: "1.3 not ready with Ready=False", p: Pass{VM: vmGen3(Manual), Instance: newInst("vmi-1", PhaseRunning, cond("Ready=False"))}, want: fields{Created: true, Observed: 3, Desired: 3}},
		{name: "1.3 observed generation of an old template", p: Pass{VM: vmGen3(Manual), Instance: newInst("vmi-1", PhaseRunning, staleTemplate)}, want: fields{Created: true, Observed: 1, Desired: 3}},
		{name: "Vigil onceStarted/set by the creating pass", p: Pass{VM: newVM(Once)}, want: fields{OnceStarted: true}},
		{name: "Vigil onceStarted/not set when the create failed", p: Pass{VM: newVM(Once)}, o: failCreate, want: fields{}},
		{name: "Vigil onceStarted/set while the creation is pending", p: Pass{VM: newVM(Once), CreatePending: true}, want: fields{OnceStarted: true}},
		{name: "Vigil onceStarted/set when a VMI exists", p: Pass{VM: newVM(Once), Instance: newInst("vmi-1", PhaseSucceeded)}, want: fields{Created: true, OnceStarted: true, Observed: 1, Desired: 1}},
		{name: "Vigil onceStarted/kept without VMI", p: Pass{VM: newVM(Once, onceStarted)}, want: fields{OnceStarted: true}},
		{name: "Vigil onceStarted/cleared when the strategy is no longer Once", p: Pass{VM: newVM(Halted, onceStarted)}, want: fields{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := pass(c.p, c.o)
			got := fields{Created: st.Created, Ready: st.Ready, OnceStarted: st.OnceStarted, Observed: st.ObservedGeneration, Desired: st.DesiredGeneration}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPassDoesNotMutateInput checks that Reconcile and NextStatus leave
// their input alone: the controller may reuse it.
func TestPassDoesNotMutateInput(t *testing.T) {
	vm := newVM(RerunOnFailure, recorded(RerunOnFailure), queued(stopReq("vmi-0"), startPausedReq()), failures(1, "vmi-0", -time.Second),
		withConditions(parseCond("Ready=True"), parseCond("Paused=True")))
	in := newInst("vmi-1", PhaseFailed, cond("Ready=False"))
	p := Pass{VM: vm, Instance: in, Now: t0}
	before := clonePass(p)
	d := Reconcile(p)
	_ = NextStatus(p, d, Outcome{})
	if diff := cmp.Diff(before, p); diff != "" {
		t.Errorf("the pass input changed (-before +after):\n%s", diff)
	}
}

func clonePass(p Pass) Pass {
	out := p
	out.VM = cloneVM(p.VM)
	out.Instance = cloneInst(p.Instance)
	return out
}
