package apiserver_test

import (
	"net/http"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// TestCreateVMIOnNode: a VMI created with ?nodeName= is stored already
// scheduled to that node: status.nodeName, phase Scheduling, PodScheduled
// True, and a phase transition; every bad use of the parameter is refused
// and stores nothing.
func TestCreateVMIOnNode(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	if _, err := h.c.Nodes().Create(ctx(), &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	vmi, err := h.vmis().CreateOnNode(ctx(), newVMI(h.ns, "bound"), "n1", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := vmi.Status
	if st.NodeName != "n1" || st.Phase != v1.Scheduling || len(st.PhaseTransitionTimestamps) != 1 || st.PhaseTransitionTimestamps[0].Phase != v1.Scheduling {
		t.Fatalf("created on n1: node %q phase %q transitions %+v, want n1, Scheduling, one transition", st.NodeName, st.Phase, st.PhaseTransitionTimestamps)
	}
	if c := st.Condition(v1.VirtualMachineInstancePodScheduled); c == nil || c.Status != metav1.ConditionTrue || c.LastTransitionTime.IsZero() {
		t.Fatalf("PodScheduled = %+v, want True with a transition time", c)
	}
	if got := h.getVMI("bound"); got.Status.NodeName != "n1" || got.ResourceVersion != vmi.ResourceVersion {
		t.Fatalf("stored: node %q rv %s, want n1 rv %s", got.Status.NodeName, got.ResourceVersion, vmi.ResourceVersion)
	}
	// A plain create still drops any status the body carries.
	withStatus := newVMI(h.ns, "plain")
	withStatus.Status.NodeName = "n1"
	if out, err := h.vmis().Create(ctx(), withStatus, client.WriteOptions{}); err != nil || out.Status.NodeName != "" {
		t.Fatalf("plain create with a status: node %q err %v, want the status dropped", out.Status.NodeName, err)
	}

	cases := []struct {
		name, path string
		code       int
		msg        string
	}{
		{"missing node", h.vmisPath() + "?nodeName=n2", http.StatusUnprocessableEntity, "status.nodeName"},
		{"invalid node name", h.vmisPath() + "?nodeName=N_1", http.StatusBadRequest, "not a valid node name"},
		{"empty node name", h.vmisPath() + "?nodeName=", http.StatusBadRequest, "not a valid node name"},
		{"given twice", h.vmisPath() + "?nodeName=n1&nodeName=n1", http.StatusBadRequest, "given 2 times"},
		{"not a VMI", h.vmsPath() + "?nodeName=n1", http.StatusBadRequest, "only to creating virtualmachineinstances"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := any(newVMI(h.ns, "refused"))
			if tc.name == "not a VMI" {
				body = newVM(h.ns, "refused", v1.RunStrategyHalted)
			}
			h.do(http.MethodPost, tc.path, body, "").expectStatusContains(t, tc.code, tc.msg)
			h.absent(h.vmiPath("refused"))
			h.absent(h.vmPath("refused"))
		})
	}
}

// TestControllerFinalizerAtCreate: with ControllerFinalizers a new VM is
// stored with the VM controller's finalizer (saving the controller's first
// write); without it, the VM is stored as sent.
func TestControllerFinalizerAtCreate(t *testing.T) {
	for _, on := range []bool{true, false} {
		h := newHarness(t, apiserver.Config{ControllerFinalizers: on})
		vm := h.createVM("vm", v1.RunStrategyHalted)
		if has := slices.Contains(vm.Finalizers, v1.VirtualMachineControllerFinalizer); has != on {
			t.Errorf("ControllerFinalizers=%v: created VM finalizers %v", on, vm.Finalizers)
		}
		// Added once, not again when the user already lists it.
		again := newVM(h.ns, "listed", v1.RunStrategyHalted)
		again.Finalizers = []string{v1.VirtualMachineControllerFinalizer}
		out, err := h.vms().Create(ctx(), again, client.WriteOptions{})
		if err != nil || len(out.Finalizers) != 1 {
			t.Errorf("ControllerFinalizers=%v: VM created with the finalizer listed: %v (err %v), want it once", on, out.Finalizers, err)
		}
	}
}
