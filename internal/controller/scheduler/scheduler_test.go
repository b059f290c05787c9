package scheduler_test

// Tests of the scheduler against a real API server on an embedded etcd:
// what it writes on the VMIs (binding, PodScheduled, phase), the events it
// records, and that a VMI waiting for room is bound once room appears. The
// placement rule itself is table-tested in choose_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
	"github.com/vigil-vm/vigil/internal/controller/scheduler"
)

var bg = context.Background()

const ns = v1.DefaultNamespace

type env struct {
	t *testing.T
	c *client.Client
}

func newEnv(t *testing.T) *env {
	s := apiservertest.Start(t, apiservertest.Config{})
	return &env{t: t, c: s.Client(t, client.Config{})}
}

// start runs a scheduler (with two workers) until the test ends. Nodes
// created before start are in its cache before it places anything.
func (e *env) start() { e.startWith(scheduler.Config{}) }

// startWith runs a scheduler configured as cfg (client, recorder and
// workers filled in) and returns it.
func (e *env) startWith(cfg scheduler.Config) *scheduler.Scheduler {
	ctx, cancel := context.WithCancel(bg)
	rec := record.New(e.c, "scheduler", "test", nil)
	cfg.Client, cfg.Recorder, cfg.Workers = e.c, rec, 2
	s := scheduler.New(cfg)
	done := make(chan struct{}, 2)
	go func() { rec.Run(ctx); done <- struct{}{} }()
	go func() { s.Run(ctx); done <- struct{}{} }()
	e.t.Cleanup(func() { cancel(); <-done; <-done })
	return s
}

type nodeOpt func(*v1.Node)

func notReady(n *v1.Node) { n.Status.Conditions[0].Status = metav1.ConditionFalse }
func cordoned(n *v1.Node) { n.Spec.Unschedulable = true }
func labelled(k, v string) nodeOpt {
	return func(n *v1.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

// node creates a Ready, schedulable node offering cpu and mem.
func (e *env) node(name, cpu, mem string, opts ...nodeOpt) {
	e.t.Helper()
	n := &v1.Node{
		TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: metav1.ConditionTrue, LastTransitionTime: metav1.Now()}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	out, err := e.c.Nodes().Create(bg, n, client.WriteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	// Whatever the server keeps of a created node's status, make it what
	// the test asked for.
	out.Status = n.Status
	if _, err := e.c.Nodes().UpdateStatus(bg, out, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// updateNode applies mutate to a node's metadata and spec, then to its status.
func (e *env) updateNode(name string, mutate nodeOpt) {
	e.t.Helper()
	n, err := e.c.Nodes().Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	mutate(n)
	if n, err = e.c.Nodes().Update(bg, n, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	mutate(n)
	if _, err := e.c.Nodes().UpdateStatus(bg, n, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// vmi creates a pending VMI requesting cpu and mem, restricted by selector.
func (e *env) vmi(name, cpu, mem string, selector map[string]string) *v1.VirtualMachineInstance {
	e.t.Helper()
	vmi := &v1.VirtualMachineInstance{
		TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.VirtualMachineInstanceSpec{NodeSelector: selector, Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}}}},
	}
	out, err := e.c.VirtualMachineInstances(ns).Create(bg, vmi, client.WriteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) getVMI(name string) *v1.VirtualMachineInstance {
	e.t.Helper()
	vmi, err := e.c.VirtualMachineInstances(ns).Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return vmi
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	e.t.Fatalf("timed out waiting for %s", what)
}

// bound waits until a VMI is bound and returns its node.
func (e *env) bound(name string) string {
	e.t.Helper()
	var node string
	e.eventually("VMI "+name+" to be bound", func() bool {
		node = e.getVMI(name).Status.NodeName
		return node != ""
	})
	return node
}

// unschedulable waits until a VMI is marked unschedulable and returns the
// condition's message.
func (e *env) unschedulable(name string) string {
	e.t.Helper()
	var msg string
	e.eventually("VMI "+name+" to be marked unschedulable", func() bool {
		c := e.getVMI(name).Status.Condition(v1.VirtualMachineInstancePodScheduled)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1.UnschedulableReason {
			return false
		}
		msg = c.Message
		return true
	})
	return msg
}

// event waits for an event about the named VMI with reason, and returns it.
func (e *env) event(vmi, reason string) *v1.Event {
	e.t.Helper()
	var found *v1.Event
	e.eventually("a "+reason+" event about "+vmi, func() bool {
		list, err := e.c.Events(ns).List(bg, client.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.InvolvedObject.Name == vmi && ev.InvolvedObject.Kind == v1.KindVirtualMachineInstance && ev.Reason == reason {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// removeFinalizers lets a deleted VMI go, as its node agent would.
func (e *env) removeFinalizers(name string) {
	e.t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": []string{}}})
	if _, err := e.c.VirtualMachineInstances(ns).Patch(bg, name, client.MergePatch, patch, "", client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// TestUnschedulableThenNodeAdded checks that a VMI that fits no node is left
// unbound, Pending, with PodScheduled=False/Unschedulable whose message
// counts the nodes per reason (CPU, selector, not Ready, cordoned) and a
// FailedScheduling event; and that a fitting node added later gets it bound:
// PodScheduled=True, phase Scheduling, a Scheduled event.
func TestUnschedulableThenNodeAdded(t *testing.T) {
	e := newEnv(t)
	e.node("down", "64", "64Gi", labelled("zone", "x"), notReady)
	e.node("cordoned", "64", "64Gi", labelled("zone", "x"), cordoned)
	e.node("elsewhere", "64", "64Gi", labelled("zone", "y"))
	e.node("small", "1", "64Gi", labelled("zone", "x"))
	e.start()
	e.vmi("web", "2", "1Gi", map[string]string{"zone": "x"})

	const want = "0/4 nodes are available: 1 insufficient cpu, 1 node(s) didn't match the VMI's node selector, " +
		"1 node(s) were not ready, 1 node(s) were unschedulable."
	if msg := e.unschedulable("web"); msg != want {
		t.Fatalf("PodScheduled message = %q, want %q", msg, want)
	}
	vmi := e.getVMI("web")
	if vmi.Status.NodeName != "" || vmi.Status.Phase != v1.Pending {
		t.Fatalf("unschedulable VMI: node %q phase %q, want unbound and Pending", vmi.Status.NodeName, vmi.Status.Phase)
	}
	if ev := e.event("web", "FailedScheduling"); ev.Type != v1.EventTypeWarning || ev.Message != want {
		t.Errorf("FailedScheduling event: type %q message %q", ev.Type, ev.Message)
	}

	e.node("big", "4", "4Gi", labelled("zone", "x"))
	if node := e.bound("web"); node != "big" {
		t.Fatalf("bound to %q, want big", node)
	}
	vmi = e.getVMI("web")
	c := vmi.Status.Condition(v1.VirtualMachineInstancePodScheduled)
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("PodScheduled after binding = %+v, want True", c)
	}
	if vmi.Status.Phase != v1.Scheduling {
		t.Errorf("phase after binding = %q, want Scheduling", vmi.Status.Phase)
	}
	if ev := e.event("web", "Scheduled"); !strings.Contains(ev.Message, "to big") {
		t.Errorf("Scheduled event message = %q, want it to name node big", ev.Message)
	}
}

// TestRetriedWhenNodeChanges checks that a VMI waiting for room is bound as
// soon as a change to an existing node makes it fit, for every node change
// that can: becoming Ready, being uncordoned, gaining the selected label,
// growing its allocatable.
func TestRetriedWhenNodeChanges(t *testing.T) {
	tests := []struct {
		name   string
		before []nodeOpt
		reason string
		change nodeOpt
	}{
		{"becomes ready", []nodeOpt{notReady}, "node(s) were not ready",
			func(n *v1.Node) { n.Status.Conditions[0].Status = metav1.ConditionTrue }},
		{"uncordoned", []nodeOpt{cordoned}, "node(s) were unschedulable",
			func(n *v1.Node) { n.Spec.Unschedulable = false }},
		{"labelled", nil, "node(s) didn't match the VMI's node selector", labelled("zone", "x")},
		{"grows", []nodeOpt{func(n *v1.Node) { n.Status.Allocatable[v1.ResourceMemory] = resource.MustParse("512Mi") }},
			"insufficient memory",
			func(n *v1.Node) { n.Status.Allocatable[v1.ResourceMemory] = resource.MustParse("2Gi") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			opts := tt.before
			if tt.name != "labelled" {
				opts = append(opts, labelled("zone", "x"))
			}
			e.node("n1", "2", "2Gi", opts...)
			e.start()
			e.vmi("web", "1", "1Gi", map[string]string{"zone": "x"})
			if msg, want := e.unschedulable("web"), "0/1 nodes are available: 1 "+tt.reason+"."; msg != want {
				t.Fatalf("PodScheduled message = %q, want %q", msg, want)
			}
			e.updateNode("n1", tt.change)
			if node := e.bound("web"); node != "n1" {
				t.Fatalf("bound to %q, want n1", node)
			}
		})
	}
}

// TestBoundWhenRoomFreed checks that a VMI waiting for CPU held by another
// VMI is bound to that node once the other VMI stops holding it: when it is
// deleted and gone, or when it ends.
func TestBoundWhenRoomFreed(t *testing.T) {
	tests := []struct {
		name string
		free func(e *env)
	}{
		{"deleted", func(e *env) {
			if _, err := e.c.VirtualMachineInstances(ns).Delete(bg, "first", client.DeleteOptions{}); err != nil {
				e.t.Fatal(err)
			}
			e.removeFinalizers("first")
			e.eventually("VMI first to be gone", func() bool {
				_, err := e.c.VirtualMachineInstances(ns).Get(bg, "first")
				return apierrors.IsNotFound(err)
			})
		}},
		{"ended", func(e *env) {
			vmi := e.getVMI("first")
			vmi.Status.Phase = v1.Succeeded
			if _, err := e.c.VirtualMachineInstances(ns).UpdateStatus(bg, vmi, client.WriteOptions{}); err != nil {
				e.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.node("n1", "1", "4Gi")
			e.start()
			e.vmi("first", "1", "1Gi", nil)
			if node := e.bound("first"); node != "n1" {
				t.Fatalf("first bound to %q, want n1", node)
			}
			e.vmi("second", "1", "1Gi", nil)
			if msg, want := e.unschedulable("second"), "0/1 nodes are available: 1 insufficient cpu."; msg != want {
				t.Fatalf("PodScheduled message = %q, want %q", msg, want)
			}
			tt.free(e)
			if node := e.bound("second"); node != "n1" {
				t.Fatalf("second bound to %q, want n1", node)
			}
		})
	}
}

// TestLeastAllocatedSpreads checks that VMIs placed one after another on
// equal nodes alternate between them, the least allocated first and ties to
// the first by name.
func TestLeastAllocatedSpreads(t *testing.T) {
	e := newEnv(t)
	e.node("a", "4", "8Gi")
	e.node("b", "4", "8Gi")
	e.start()
	var got []string
	for _, name := range []string{"v1", "v2", "v3", "v4"} {
		e.vmi(name, "1", "1Gi", nil)
		got = append(got, e.bound(name))
	}
	if want := []string{"a", "b", "a", "b"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("placements = %v, want %v", got, want)
	}
}

// TestNoOvercommitUnderBurst checks that VMIs queued all at once (they
// exist before the scheduler starts) and placed back to back by two workers,
// faster than the cache shows the bindings, never overfill a node: two nodes
// with room for two each take exactly two each, and the fifth VMI is
// unschedulable for lack of CPU.
func TestNoOvercommitUnderBurst(t *testing.T) {
	e := newEnv(t)
	e.node("a", "2", "8Gi")
	e.node("b", "2", "8Gi")
	names := []string{"v1", "v2", "v3", "v4", "v5"}
	for _, name := range names {
		e.vmi(name, "1", "1Gi", nil)
	}
	e.start()
	perNode := map[string]int{}
	var waiting []string
	e.eventually("every VMI to be bound or unschedulable", func() bool {
		clear(perNode)
		waiting = waiting[:0]
		for _, name := range names {
			vmi := e.getVMI(name)
			c := vmi.Status.Condition(v1.VirtualMachineInstancePodScheduled)
			switch {
			case vmi.Status.NodeName != "":
				perNode[vmi.Status.NodeName]++
			case c != nil && c.Status == metav1.ConditionFalse:
				waiting = append(waiting, name)
			default:
				return false
			}
		}
		return true
	})
	if perNode["a"] != 2 || perNode["b"] != 2 || len(waiting) != 1 {
		t.Fatalf("VMIs per node = %v, unschedulable = %v; want 2 on each node and 1 unschedulable", perNode, waiting)
	}
	if msg, want := e.unschedulable(waiting[0]), "0/2 nodes are available: 2 insufficient cpu."; msg != want {
		t.Errorf("PodScheduled message = %q, want %q", msg, want)
	}
}

// TestDeletedBeforeBound checks that a VMI deleted while waiting for a node
// is ended by the scheduler (Failed, DeletedBeforeStart) and released (its
// agent finalizer removed, so it goes away), since no agent will see it.
func TestDeletedBeforeBound(t *testing.T) {
	e := newEnv(t)
	e.start()
	created := e.vmi("web", "1", "1Gi", nil)
	e.unschedulable("web")
	w, err := e.c.VirtualMachineInstances(ns).Watch(bg, client.ListOptions{ResourceVersion: created.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := e.c.VirtualMachineInstances(ns).Delete(bg, "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.C:
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			if ev.Type != client.Deleted {
				continue
			}
			st := ev.Object.Status
			if st.Phase != v1.Failed || st.Reason != v1.ReasonDeletedBeforeStart || st.NodeName != "" {
				t.Fatalf("last state of the deleted VMI: phase %q reason %q node %q; want Failed, %s, unbound",
					st.Phase, st.Reason, st.NodeName, v1.ReasonDeletedBeforeStart)
			}
			return
		case <-timeout:
			t.Fatal("timed out waiting for the deleted VMI to go")
		}
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// renew creates or renews a node's lease.
func (e *env) renew(node string) {
	e.t.Helper()
	leases := e.c.Leases(v1.NodeLeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(bg, node)
	if err != nil {
		l = &v1.Lease{TypeMeta: v1.TypeMetaFor(v1.KindLease), ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: v1.NodeLeaseNamespace},
			Spec: v1.LeaseSpec{HolderIdentity: &node, RenewTime: &now}}
		if _, err := leases.Create(bg, l, client.WriteOptions{}); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	l.Spec.RenewTime = &now
	if _, err := leases.Update(bg, l, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// TestSilentNodeSkipped checks that a Ready node whose lease the scheduler
// has not seen renewed for SilentAfter gets no VMI (it may be about to be
// declared lost), that the Unschedulable message says so, and that the
// node takes waiting VMIs again once it renews.
func TestSilentNodeSkipped(t *testing.T) {
	e := newEnv(t)
	clock := &fakeClock{t: time.Now()}
	e.node("a", "4", "4Gi")
	e.node("b", "4", "4Gi")
	e.renew("a")
	e.renew("b")
	s := e.startWith(scheduler.Config{Now: clock.now, SilentAfter: 3 * time.Second})
	// Let the scheduler see both leases before the clock moves.
	e.vmi("first", "1", "1Gi", nil)
	if n := e.bound("first"); n != "a" {
		t.Fatalf("first bound to %q, want a (ties go to the first by name)", n)
	}
	clock.add(5 * time.Second)
	e.renew("b") // seen before or after second arrives: either way second waits for it
	e.vmi("second", "1", "1Gi", nil)
	if n := e.bound("second"); n != "b" {
		t.Fatalf("second bound to %q, want b: a is silent", n)
	}
	e.updateNode("b", cordoned)
	// The node and VMI watches are apart: wait until the scheduler has seen
	// the cordon, or third may reach it first and be bound to b. A probe
	// placed on b gives its room back.
	probe := newVMI("probe", "1")
	e.eventually("the scheduler to see b cordoned", func() bool {
		n := s.Place(probe)
		if n != "" {
			s.Placed(probe, n, errors.New("a probe, not created"))
		}
		return n == ""
	})
	e.vmi("third", "1", "1Gi", nil)
	want := "0/2 nodes are available: 1 node(s) had no heartbeat lately, 1 node(s) were unschedulable."
	if msg := e.unschedulable("third"); msg != want {
		t.Fatalf("PodScheduled message = %q, want %q", msg, want)
	}
	e.renew("a")
	if n := e.bound("third"); n != "a" {
		t.Fatalf("third bound to %q after a renewed, want a", n)
	}
}

// newVMI is an unsaved VMI requesting cpu and 1Mi.
func newVMI(name, cpu string) *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("1Mi")}}}},
	}
}

// TestPlaceReservesRoom: Place (the VM controller placing a VMI before it
// creates it) reserves the room it hands out, a failed create gives it
// back, and a VMI created on the placed node is bound there with the
// Scheduled event, without a binding write by the scheduler.
func TestPlaceReservesRoom(t *testing.T) {
	e := newEnv(t)
	e.node("n1", "2", "1Gi")
	s := e.startWith(scheduler.Config{})
	a, b, c := newVMI("a", "1"), newVMI("b", "1"), newVMI("c", "1")
	e.eventually("the scheduler to see n1", func() bool { return s.Place(a) == "n1" })
	if got := s.Place(b); got != "n1" {
		t.Fatalf("second 1-CPU VMI on a 2-CPU node placed on %q, want n1", got)
	}
	if got := s.Place(c); got != "" {
		t.Fatalf("third 1-CPU VMI on a 2-CPU node with two placed: placed on %q, want none", got)
	}
	s.Placed(b, "n1", apierrors.NewServiceUnavailable("etcd is down"))
	if got := s.Place(c); got != "n1" {
		t.Fatalf("after b's create failed, c placed on %q, want n1 (b's room given back)", got)
	}

	created, err := e.c.VirtualMachineInstances(ns).CreateOnNode(bg, a, "n1", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Placed(created, "n1", nil)
	if created.Status.NodeName != "n1" || created.Status.Phase != v1.Scheduling {
		t.Fatalf("VMI created on n1: node %q phase %q, want n1 Scheduling", created.Status.NodeName, created.Status.Phase)
	}
	if c := created.Status.Condition(v1.VirtualMachineInstancePodScheduled); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("VMI created on n1: PodScheduled = %+v, want True", c)
	}
	e.event("a", "Scheduled")
	// The cache now holds a's reservation instead of the assumption: the
	// node stays full for another VMI.
	if got := s.Place(newVMI("d", "1")); got != "" {
		t.Fatalf("a 1-CPU VMI placed on %q while a and c fill n1, want none", got)
	}
	if vmi := e.getVMI("a"); vmi.ResourceVersion != created.ResourceVersion {
		t.Errorf("VMI a was written after its create (resourceVersion %s, created %s); the scheduler must not bind it again", vmi.ResourceVersion, created.ResourceVersion)
	}
}
