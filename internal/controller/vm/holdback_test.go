package vm

import (
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

const webStatusPath = "/virtualmachines/web/status"

// TestStartingHeldUntilRunning: a VMI that runs within the hold costs the
// VM one status write (Running), not one for Starting and one for Running.
func TestStartingHeldUntilRunning(t *testing.T) {
	e := newEnvHold(t, time.Minute) // the fake clock does not move: the hold never ends by itself
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))
	e.waitVMI("web", "created", exists)
	e.settledPoke("web")
	if n := e.calls.count(http.MethodPut, webStatusPath); n != 0 {
		t.Fatalf("%d VM status writes while the new VMI is not running yet and the hold lasts, want 0", n)
	}
	if st := e.getVM("web").Status; st.PrintableStatus != "" {
		t.Fatalf("VM printableStatus during the hold = %q, want it unwritten", st.PrintableStatus)
	}
	e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) {
		st.Phase = v1.Running
		st.NodeName = "n1"
		st.Conditions = []v1.VirtualMachineInstanceCondition{{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue}}
	})
	e.vmStatus("web", "running", func(st *v1.VirtualMachineStatus) bool {
		return st.PrintableStatus == v1.VirtualMachineStatusRunning && st.Created && st.Ready
	})
	e.settledPoke("web")
	if n := e.calls.count(http.MethodPut, webStatusPath); n != 1 {
		t.Fatalf("%d VM status writes for a start, want 1", n)
	}
}

// TestStartingWrittenAfterHold: a VMI that does not run within the hold
// gets its Starting status written once the hold has passed.
func TestStartingWrittenAfterHold(t *testing.T) {
	e := newEnvHold(t, time.Minute)
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))
	e.waitVMI("web", "created", exists)
	e.settledPoke("web")
	if n := e.calls.count(http.MethodPut, webStatusPath); n != 0 {
		t.Fatalf("%d VM status writes during the hold, want 0", n)
	}
	e.clock.Set(e.clock.Now().Add(time.Minute + time.Second))
	e.poke(ns + "/web")
	vm := e.vmStatus("web", "starting", func(st *v1.VirtualMachineStatus) bool {
		return st.PrintableStatus == v1.VirtualMachineStatusStarting
	})
	if !vm.Status.Created {
		t.Errorf("VM status after the hold: created = false, want true")
	}
}

// TestOnlyProgress: which status changes a hold may delay.
func TestOnlyProgress(t *testing.T) {
	base := v1.VirtualMachineStatus{PrintableStatus: v1.VirtualMachineStatusStopped, RunStrategy: v1.RunStrategyManual}
	for _, tc := range []struct {
		name   string
		change func(*v1.VirtualMachineStatus)
		want   bool
	}{
		{"nothing", func(*v1.VirtualMachineStatus) {}, true},
		{"printable, created, ready", func(s *v1.VirtualMachineStatus) {
			s.PrintableStatus, s.Created, s.Ready = v1.VirtualMachineStatusStarting, true, true
		}, true},
		{"conditions and generations", func(s *v1.VirtualMachineStatus) {
			s.Conditions = []v1.VirtualMachineCondition{{Type: v1.VirtualMachineReady, Status: metav1.ConditionFalse}}
			s.ObservedGeneration, s.DesiredGeneration = 2, 2
		}, true},
		{"strategy echoed", func(s *v1.VirtualMachineStatus) { s.RunStrategy = v1.RunStrategyAlways }, true},
		{"a request consumed", func(s *v1.VirtualMachineStatus) {
			s.StateChangeRequests = []v1.VirtualMachineStateChangeRequest{{Action: v1.StartRequest}}
		}, false},
		{"start failure", func(s *v1.VirtualMachineStatus) {
			s.StartFailure = &v1.VirtualMachineStartFailure{ConsecutiveFailCount: 1}
		}, false},
		{"once started", func(s *v1.VirtualMachineStatus) { s.OnceStarted = true }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			tc.change(&next)
			if got := onlyProgress(&base, &next); got != tc.want {
				t.Errorf("onlyProgress = %v, want %v", got, tc.want)
			}
		})
	}
}
