package nodehealth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
	"github.com/vigil-vm/vigil/internal/controller/nodehealth"
)

var bg = context.Background()

// lostAfter is short so that the tests run fast; nothing below depends on
// how long a step takes, only on the order of what happens.
const lostAfter = 1500 * time.Millisecond

type env struct {
	t *testing.T
	c *client.Client
}

func newEnv(t *testing.T) *env {
	s := apiservertest.Start(t, apiservertest.Config{})
	return &env{t: t, c: s.Client(t, client.Config{})}
}

// run starts a node-health controller until the test ends.
func (e *env) run(fence ...string) context.CancelFunc {
	ctx, cancel := context.WithCancel(bg)
	rec := record.New(e.c, "node-health", "test", nil)
	ctl := nodehealth.New(nodehealth.Config{Client: e.c, Recorder: rec, NodeLostAfter: lostAfter, FenceCommand: fence})
	done := make(chan struct{}, 2)
	go func() { rec.Run(ctx); done <- struct{}{} }()
	go func() { ctl.Run(ctx); done <- struct{}{} }()
	stop := func() { cancel(); <-done; <-done }
	e.t.Cleanup(stop)
	return cancel
}

func (e *env) node(name string) {
	e.t.Helper()
	n := &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: name}}
	n, err := e.c.Nodes().Create(bg, n, client.WriteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: metav1.ConditionTrue, Reason: "AgentReady", LastTransitionTime: now}}
	if _, err := e.c.Nodes().UpdateStatus(bg, n, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	holder := name
	l := &v1.Lease{TypeMeta: v1.TypeMetaFor(v1.KindLease), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.NodeLeaseNamespace},
		Spec: v1.LeaseSpec{HolderIdentity: &holder}}
	if _, err := e.c.Leases(v1.NodeLeaseNamespace).Create(bg, l, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// renew renews a node's lease once, as its agent does.
func (e *env) renew(name string) {
	e.t.Helper()
	l, err := e.c.Leases(v1.NodeLeaseNamespace).Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	if _, err := e.c.Leases(v1.NodeLeaseNamespace).Update(bg, l, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// renewFor keeps renewing a node's lease every 200 ms for d.
func (e *env) renewFor(name string, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		e.renew(name)
	}
}

func (e *env) vmi(name, node string, phase v1.VirtualMachineInstancePhase) {
	e.t.Helper()
	vmi := &v1.VirtualMachineInstance{
		TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}},
	}
	out, err := e.c.VirtualMachineInstances("default").Create(bg, vmi, client.WriteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out.Status.NodeName, out.Status.Phase = node, phase
	if _, err := e.c.VirtualMachineInstances("default").UpdateStatus(bg, out, client.WriteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) ready(name string) metav1.ConditionStatus {
	e.t.Helper()
	n, err := e.c.Nodes().Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	if c := n.Status.Condition(v1.NodeReady); c != nil {
		return c.Status
	}
	return ""
}

func (e *env) getVMI(name string) *v1.VirtualMachineInstance {
	e.t.Helper()
	vmi, err := e.c.VirtualMachineInstances("default").Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return vmi
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	e.t.Fatalf("timed out waiting for %s", what)
}

// TestNodeLost: a node whose lease is renewed stays Ready and keeps its
// VMIs; once renewals stop it becomes Ready=Unknown, is fenced once, and
// its live VMIs fail with NodeLost and lose the agent finalizer, while its
// finished VMIs are left alone. When renewals resume it is Ready again.
func TestNodeLost(t *testing.T) {
	e := newEnv(t)
	fenceLog := filepath.Join(t.TempDir(), "fenced")
	e.node("n1")
	e.node("n2")
	e.vmi("live", "n1", v1.Running)
	e.vmi("done", "n1", v1.Succeeded)
	e.vmi("other", "n2", v1.Running)
	e.run("sh", "-c", `echo "$VIGIL_NODE" >> `+fenceLog)

	// Both renew for longer than lostAfter: nothing happens.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				e.renew("n2")
			}
		}
	}()
	defer close(stop)
	e.renewFor("n1", 2*lostAfter)
	if e.ready("n1") != metav1.ConditionTrue || e.getVMI("live").Status.Phase != v1.Running {
		t.Fatal("a renewing node was declared lost")
	}

	// n1 stops renewing.
	e.eventually("n1 Ready=Unknown", func() bool { return e.ready("n1") == metav1.ConditionUnknown })
	e.eventually("the live VMI to fail", func() bool { return e.getVMI("live").Status.Phase == v1.Failed })
	live := e.getVMI("live")
	if live.Status.Reason != v1.ReasonNodeLost || !strings.Contains(live.Status.Message, "n1") {
		t.Errorf("live VMI: %s %q, want NodeLost naming n1", live.Status.Reason, live.Status.Message)
	}
	e.eventually("the agent finalizer to go", func() bool {
		for _, f := range e.getVMI("live").Finalizers {
			if f == v1.AgentFinalizer {
				return false
			}
		}
		return true
	})
	if done := e.getVMI("done"); done.Status.Phase != v1.Succeeded || done.Status.Reason != "" {
		t.Errorf("a finished VMI was changed: %s %s", done.Status.Phase, done.Status.Reason)
	}
	if e.ready("n2") != metav1.ConditionTrue || e.getVMI("other").Status.Phase != v1.Running {
		t.Error("the healthy node was touched")
	}
	b, _ := os.ReadFile(fenceLog)
	if got := strings.Fields(string(b)); len(got) != 1 || got[0] != "n1" {
		t.Errorf("fence command runs: %q, want one for n1", got)
	}

	// n1 comes back.
	e.renew("n1")
	e.renew("n1")
	e.eventually("n1 Ready again", func() bool { return e.ready("n1") == metav1.ConditionTrue })
}

// TestFenceMustSucceed: the VMIs of a lost node wait until the fence
// command succeeds.
func TestFenceMustSucceed(t *testing.T) {
	e := newEnv(t)
	ok := filepath.Join(t.TempDir(), "ok")
	e.node("n1")
	e.vmi("live", "n1", v1.Running)
	e.run("sh", "-c", "test -f "+ok)
	e.eventually("n1 Ready=Unknown", func() bool { return e.ready("n1") == metav1.ConditionUnknown })
	time.Sleep(lostAfter)
	if phase := e.getVMI("live").Status.Phase; phase != v1.Running {
		t.Fatalf("the VMI of an unfenced node went %s", phase)
	}
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.eventually("the VMI to fail once fenced", func() bool { return e.getVMI("live").Status.Phase == v1.Failed })
}

// TestNewControllerWaits: a controller that starts (a new leader) counts
// from its own start, whatever the lease's timestamps say, and declares
// nothing lost before a full NodeLostAfter of its own observation.
func TestNewControllerWaits(t *testing.T) {
	e := newEnv(t)
	e.node("n1")
	e.vmi("live", "n1", v1.Running)
	// The lease was last renewed long ago by its timestamp.
	l, err := e.c.Leases(v1.NodeLeaseNamespace).Get(bg, "n1")
	if err != nil {
		t.Fatal(err)
	}
	old := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	l.Spec.RenewTime = &old
	if _, err := e.c.Leases(v1.NodeLeaseNamespace).Update(bg, l, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	e.run()
	e.eventually("n1 Ready=Unknown", func() bool { return e.ready("n1") == metav1.ConditionUnknown })
	if waited := time.Since(started); waited < lostAfter {
		t.Errorf("declared lost %s after the controller started, before its own %s", waited, lostAfter)
	}
}

// TestDigestBeats: heartbeats streamed to the API server, committed in its
// digest, keep a node Ready with no Lease update at all; when the beats
// stop (the stream still open) the node is lost and its VMIs fail; beats
// bring it back.
func TestDigestBeats(t *testing.T) {
	e := newEnv(t)
	e.node("n1")
	e.vmi("live", "n1", v1.Running)
	s, err := e.c.Heartbeat(bg, "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n uint64
	beat := func() {
		t.Helper()
		n++
		if err := s.Beat(n); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Ack(); err != nil || got != n {
			t.Fatalf("beat %d: acknowledged %d, %v", n, got, err)
		}
	}
	beat() // the digest holds n1 before the controller starts
	e.run()
	for end := time.Now().Add(2 * lostAfter); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		beat()
	}
	if e.ready("n1") != metav1.ConditionTrue || e.getVMI("live").Status.Phase != v1.Running {
		t.Fatal("a node beating through the digest was declared lost")
	}

	// The beats stop; the stream stays open.
	e.eventually("n1 Ready=Unknown", func() bool { return e.ready("n1") == metav1.ConditionUnknown })
	e.eventually("the live VMI to fail", func() bool { return e.getVMI("live").Status.Phase == v1.Failed })
	if r := e.getVMI("live").Status.Reason; r != v1.ReasonNodeLost {
		t.Errorf("live VMI failed with %q, want NodeLost", r)
	}

	beat()
	beat()
	e.eventually("n1 Ready again", func() bool { return e.ready("n1") == metav1.ConditionTrue })
}
