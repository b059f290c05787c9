package vm

// Tests of the VM controller against a real API server on an embedded etcd.
// They assert on the resulting objects, on the events, and on the API calls
// the controller made (logged by an http.RoundTripper around its client's
// transport); nothing of the server or the client is faked. The clock is a
// fake the test moves, so that the crash-loop waits take no real time.
// The tests are internal so that they can see each pass's Result (the
// requeue delay) and, for one test, run passes by hand.

import (
	"context"
	"net/http"
	"slices"
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
	"github.com/vigil-vm/vigil/internal/controller"
)

var bg = context.Background()

const ns = v1.DefaultNamespace

// fakeClock is the controller's clock; it moves only when the test says.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// apiCall is one request the controller made and the status it got.
type apiCall struct {
	method, path string
	code         int
}

// callLog records the controller's API calls.
type callLog struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []apiCall
}

func (l *callLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	l.mu.Lock()
	l.calls = append(l.calls, apiCall{method: req.Method, path: req.URL.Path, code: code})
	l.mu.Unlock()
	return resp, err
}

// count returns how many calls had method and a path ending in suffix.
func (l *callLog) count(method, suffix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c.method == method && strings.HasSuffix(c.path, suffix) {
			n++
		}
	}
	return n
}

func (l *callLog) codes(method, suffix string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, c := range l.calls {
		if c.method == method && strings.HasSuffix(c.path, suffix) {
			out = append(out, c.code)
		}
	}
	return out
}

// Paths the tests count calls to.
const (
	vmisPath = "/namespaces/" + ns + "/virtualmachineinstances"
)

func vmiPath(name string) string { return vmisPath + "/" + name }

// pass is the outcome of one reconcile pass.
type pass struct {
	key   string
	start int // order in which the pass started, from 1
	res   controller.Result
	err   error
}

type env struct {
	t     *testing.T
	c     *client.Client // the test's own client
	calls *callLog       // the controller's calls
	clock *fakeClock
	ctl   *Controller

	mu      sync.Mutex // guards started and passes
	started int
	passes  []pass
}

// newEnv starts an API server and builds a controller whose passes are
// recorded; run starts it. The status writes of a start are not held back
// (StartingHold), so that every test sees each step's status; the hold has
// its own tests.
func newEnv(t *testing.T) *env {
	return newEnvHold(t, -1)
}

// newEnvHold is newEnv with the given StartingHold.
func newEnvHold(t *testing.T, hold time.Duration) *env {
	s := apiservertest.Start(t, apiservertest.Config{})
	e := &env{t: t, c: s.Client(t, client.Config{}), clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}}
	e.calls = &callLog{next: http.DefaultTransport.(*http.Transport).Clone()}
	cc := s.Client(t, client.Config{Transport: e.calls})
	e.ctl = New(Config{Client: cc, Recorder: record.New(e.c, "virtualmachine-controller", "test", nil), Workers: 2, Now: e.clock.Now, StartingHold: hold})
	// Wrap the reconcile function to record every pass. The informer
	// handlers reach the queue through e.ctl.ctrl, so they feed this one.
	e.ctl.ctrl = controller.New("vm", e.reconcile, controller.Options{Workers: 2})
	return e
}

func (e *env) reconcile(ctx context.Context, key string) (controller.Result, error) {
	e.mu.Lock()
	e.started++
	n := e.started
	e.mu.Unlock()
	res, err := e.ctl.reconcile(ctx, key)
	e.mu.Lock()
	e.passes = append(e.passes, pass{key: key, start: n, res: res, err: err})
	e.mu.Unlock()
	return res, err
}

// run runs the controller and its event recorder until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{}, 2)
	go func() { e.ctl.cfg.Recorder.Run(ctx); done <- struct{}{} }()
	go func() { e.ctl.Run(ctx); done <- struct{}{} }()
	e.t.Cleanup(func() { cancel(); <-done; <-done })
}

// poke asks for a pass over key and waits until a pass that started after
// the request has finished.
func (e *env) poke(key string) {
	e.t.Helper()
	e.mu.Lock()
	mark := e.started
	e.mu.Unlock()
	e.ctl.ctrl.Enqueue(key)
	e.eventually("a pass over "+key, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, p := range e.passes {
			if p.key == key && p.start > mark {
				return true
			}
		}
		return false
	})
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

// newVM builds a VM whose template carries labels, annotations and a node
// selector, all of which its VMI must carry over.
func newVM(name string, rs v1.RunStrategy) *v1.VirtualMachine {
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template: &v1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      map[string]string{"app": name, "tier": "web"},
					Annotations: map[string]string{"example.com/note": "from the template"},
				},
				Spec: v1.VirtualMachineInstanceSpec{
					NodeSelector: map[string]string{"zone": "x"},
					Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
						v1.ResourceMemory: resource.MustParse("64Mi"),
					}}},
				},
			},
		},
	}
}

func (e *env) createVM(vm *v1.VirtualMachine) *v1.VirtualMachine {
	e.t.Helper()
	out, err := e.c.VirtualMachines(ns).Create(bg, vm, client.WriteOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) getVM(name string) *v1.VirtualMachine {
	e.t.Helper()
	vm, err := e.c.VirtualMachines(ns).Get(bg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return vm
}

// getVMI returns the VMI, or nil when there is none.
func (e *env) getVMI(name string) *v1.VirtualMachineInstance {
	e.t.Helper()
	vmi, err := e.c.VirtualMachineInstances(ns).Get(bg, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return vmi
}

// vmStatus waits until the VM's status satisfies cond, and returns the VM.
func (e *env) vmStatus(name, what string, cond func(*v1.VirtualMachineStatus) bool) *v1.VirtualMachine {
	e.t.Helper()
	var vm *v1.VirtualMachine
	e.eventually("VM "+name+": "+what, func() bool {
		vm = e.getVM(name)
		return cond(&vm.Status)
	})
	return vm
}

// waitVMI waits until a VMI satisfies cond, and returns it.
func (e *env) waitVMI(name, what string, cond func(*v1.VirtualMachineInstance) bool) *v1.VirtualMachineInstance {
	e.t.Helper()
	var vmi *v1.VirtualMachineInstance
	e.eventually("VMI "+name+": "+what, func() bool {
		vmi = e.getVMI(name)
		return cond(vmi)
	})
	return vmi
}

func exists(vmi *v1.VirtualMachineInstance) bool { return vmi != nil }
func gone(vmi *v1.VirtualMachineInstance) bool   { return vmi == nil }
func deleting(vmi *v1.VirtualMachineInstance) bool {
	return vmi != nil && vmi.DeletionTimestamp != nil
}

// setVMIStatus changes a VMI's status as its node agent would, retrying
// on conflicts with the controller's own writes.
func (e *env) setVMIStatus(name string, mutate func(*v1.VirtualMachineInstanceStatus)) {
	e.t.Helper()
	for range 20 {
		vmi := e.getVMI(name)
		if vmi == nil {
			e.t.Fatalf("VMI %s is gone", name)
		}
		mutate(&vmi.Status)
		_, err := e.c.VirtualMachineInstances(ns).UpdateStatus(bg, vmi, client.WriteOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatal(err)
		}
	}
	e.t.Fatalf("could not update the status of VMI %s", name)
}

// releaseAgent removes the agent finalizer from a VMI, as its node agent
// does once the guest is gone.
func (e *env) releaseAgent(name string) {
	e.t.Helper()
	for range 20 {
		vmi := e.getVMI(name)
		if vmi == nil || !slices.Contains(vmi.Finalizers, v1.AgentFinalizer) {
			return
		}
		fins := slices.DeleteFunc(slices.Clone(vmi.Finalizers), func(f string) bool { return f == v1.AgentFinalizer })
		_, err := e.c.VirtualMachineInstances(ns).Patch(bg, name, client.MergePatch, finalizerPatch(vmi.ResourceVersion, fins), "", client.WriteOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatal(err)
		}
	}
	e.t.Fatalf("could not remove the agent finalizer of VMI %s", name)
}

// event waits for an event about the VM with reason, and returns it.
func (e *env) event(vm, reason string) *v1.Event {
	e.t.Helper()
	var found *v1.Event
	e.eventually("a "+reason+" event about VM "+vm, func() bool {
		list, err := e.c.Events(ns).List(bg, client.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.InvolvedObject.Kind == v1.KindVirtualMachine && ev.InvolvedObject.Name == vm && ev.Reason == reason {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func vmCondition(st *v1.VirtualMachineStatus, t v1.VirtualMachineConditionType) *v1.VirtualMachineCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// TestCreatesVMIFromTemplate checks that a VM to run gets exactly one VMI,
// named after it, in its namespace, controlled by it, carrying the
// template's labels, annotations and spec and the controller finalizer;
// that the VM gets the controller finalizer and a status saying the VMI
// exists; and that a SuccessfulCreate event is recorded.
func TestCreatesVMIFromTemplate(t *testing.T) {
	e := newEnv(t)
	e.run()
	vm := e.createVM(newVM("web", v1.RunStrategyAlways))

	vmi := e.waitVMI("web", "created", exists)
	if len(vmi.OwnerReferences) != 1 {
		t.Fatalf("owner references = %+v, want one", vmi.OwnerReferences)
	}
	o := vmi.OwnerReferences[0]
	if o.Kind != v1.KindVirtualMachine || o.Name != "web" || o.UID != vm.UID || o.Controller == nil || !*o.Controller {
		t.Errorf("owner reference = %+v, want the VM (uid %s) as controller", o, vm.UID)
	}
	for k, v := range vm.Spec.Template.ObjectMeta.Labels {
		if vmi.Labels[k] != v {
			t.Errorf("VMI label %s = %q, want %q from the template", k, vmi.Labels[k], v)
		}
	}
	for k, v := range vm.Spec.Template.ObjectMeta.Annotations {
		if vmi.Annotations[k] != v {
			t.Errorf("VMI annotation %s = %q, want %q from the template", k, vmi.Annotations[k], v)
		}
	}
	if vmi.Spec.NodeSelector["zone"] != "x" {
		t.Errorf("VMI nodeSelector = %v, want the template's", vmi.Spec.NodeSelector)
	}
	if !slices.Contains(vmi.Finalizers, v1.VirtualMachineControllerFinalizer) {
		t.Errorf("VMI finalizers = %v, want the controller finalizer", vmi.Finalizers)
	}

	got := e.vmStatus("web", "created", func(st *v1.VirtualMachineStatus) bool { return st.Created })
	if !slices.Contains(got.Finalizers, v1.VirtualMachineControllerFinalizer) {
		t.Errorf("VM finalizers = %v, want the controller finalizer", got.Finalizers)
	}
	if got.Status.PrintableStatus != v1.VirtualMachineStatusStarting {
		t.Errorf("VM printableStatus = %q, want Starting", got.Status.PrintableStatus)
	}
	if ev := e.event("web", "SuccessfulCreate"); ev.Type != v1.EventTypeNormal || !strings.Contains(ev.Message, "web") {
		t.Errorf("SuccessfulCreate event: type %q message %q", ev.Type, ev.Message)
	}
	e.poke(ns + "/web")
	if n := e.calls.count(http.MethodPost, vmisPath); n != 1 {
		t.Errorf("the controller issued %d VMI creates, want 1", n)
	}
}

// handRun starts the controller's informers but not its workers, so that
// the test runs passes itself; stopVMIs stops the VMI informer, whose cache
// then keeps what it last saw.
func (e *env) handRun() (pass func(key string), stopVMIs func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(bg)
	vmiCtx, vmiCancel := context.WithCancel(ctx)
	vmsDone, vmisDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(vmsDone); e.ctl.vms.Run(ctx) }()
	go func() { defer close(vmisDone); e.ctl.vmis.Run(vmiCtx) }()
	e.t.Cleanup(func() { cancel(); <-vmsDone; <-vmisDone })
	stopVMIs = func() { vmiCancel(); <-vmisDone }
	pass = func(key string) {
		e.t.Helper()
		// Wait until the cache shows the VM as stored now, so that no pass
		// works from a VM it has itself changed.
		rv := e.getVM(strings.TrimPrefix(key, ns+"/")).ResourceVersion
		e.eventually("the VM cache to catch up", func() bool {
			cached, ok := e.ctl.vms.Get(key)
			return ok && cached.ResourceVersion == rv
		})
		if _, err := e.ctl.reconcile(bg, key); err != nil {
			e.t.Fatalf("pass: %v", err)
		}
	}
	if err := e.ctl.vms.WaitForSync(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := e.ctl.vmis.WaitForSync(ctx); err != nil {
		e.t.Fatal(err)
	}
	return pass, stopVMIs
}

// TestNoDuplicateCreateWhileInFlight checks the create expectation: passes
// run while the VMI the controller created is not in its cache yet succeed
// and issue no second create, and only once the expectation runs out (its
// TTL, on the controller's clock) does a pass create again. The VMI
// informer is stopped, so the cache never catches up.
func TestNoDuplicateCreateWhileInFlight(t *testing.T) {
	e := newEnv(t)
	vm := e.createVM(newVM("web", v1.RunStrategyAlways))
	pass, stopVMIs := e.handRun()
	stopVMIs()
	key := ns + "/web"

	pass(key)
	if codes := e.calls.codes(http.MethodPost, vmisPath); len(codes) != 1 || codes[0] != http.StatusCreated {
		t.Fatalf("first pass: VMI create calls answered %v, want one 201", codes)
	}
	vmi := e.getVMI("web")
	if vmi == nil || vmi.OwnerReferences[0].UID != vm.UID {
		t.Fatalf("first pass did not create the VM's VMI: %+v", vmi)
	}
	for range 3 {
		pass(key)
	}
	if n := e.calls.count(http.MethodPost, vmisPath); n != 1 {
		t.Fatalf("%d VMI creates after four passes with the first create unobserved, want 1", n)
	}
	if st := e.getVM("web").Status; st.PrintableStatus != v1.VirtualMachineStatusStarting || st.Created {
		t.Errorf("VM status while the create is in flight: printable %q created %v, want Starting and not created",
			st.PrintableStatus, st.Created)
	}

	// The expectation outlives a lost watch event only for its TTL.
	e.clock.Set(e.clock.Now().Add(expectationTTL + time.Second))
	pass(key)
	if codes := e.calls.codes(http.MethodPost, vmisPath); len(codes) != 2 || codes[1] != http.StatusConflict {
		t.Fatalf("after the TTL: VMI create calls answered %v, want a second create refused with 409", codes)
	}
}

// TestNoDuplicateDeleteWhileInFlight checks the delete expectation: once a
// pass has deleted the VMI (here because the VM was set to Halted), passes
// run while the cache still shows it running issue no second delete and
// show the VM Stopping; once the expectation runs out a pass deletes again.
func TestNoDuplicateDeleteWhileInFlight(t *testing.T) {
	e := newEnv(t)
	e.createVM(newVM("web", v1.RunStrategyAlways))
	pass, stopVMIs := e.handRun()
	key := ns + "/web"
	pass(key)
	e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) { st.Phase, st.NodeName = v1.Running, "n1" })
	e.eventually("the VMI cache to show the VMI running", func() bool {
		vmi, ok := e.ctl.vmis.Get(key)
		return ok && vmi.Status.Phase == v1.Running
	})
	stopVMIs()
	pass(key)
	if st := e.getVM("web").Status; st.PrintableStatus != v1.VirtualMachineStatusRunning {
		t.Fatalf("VM printableStatus = %q, want Running", st.PrintableStatus)
	}

	vm := e.getVM("web")
	halted := v1.RunStrategyHalted
	vm.Spec.RunStrategy = &halted
	if _, err := e.c.VirtualMachines(ns).Update(bg, vm, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	pass(key)
	if codes := e.calls.codes(http.MethodDelete, vmiPath("web")); len(codes) != 1 || codes[0] != http.StatusOK {
		t.Fatalf("first pass under Halted: VMI delete calls answered %v, want one 200", codes)
	}
	if !deleting(e.getVMI("web")) {
		t.Fatal("the VMI was not deleted")
	}
	for range 3 {
		pass(key)
	}
	if n := e.calls.count(http.MethodDelete, vmiPath("web")); n != 1 {
		t.Fatalf("%d VMI deletes after four passes with the first delete unobserved, want 1", n)
	}
	if st := e.getVM("web").Status; st.PrintableStatus != v1.VirtualMachineStatusStopping {
		t.Errorf("VM printableStatus while the delete is in flight = %q, want Stopping", st.PrintableStatus)
	}

	e.clock.Set(e.clock.Now().Add(expectationTTL + time.Second))
	pass(key)
	if n := e.calls.count(http.MethodDelete, vmiPath("web")); n != 2 {
		t.Fatalf("after the TTL: %d VMI deletes, want 2", n)
	}
}

// settledPoke waits until the controller's caches show the VM and its VMI
// as stored now, then asks for a pass and waits for it: a pass that finds
// nothing new.
func (e *env) settledPoke(name string) {
	e.t.Helper()
	key := ns + "/" + name
	e.eventually("the caches to catch up", func() bool {
		vm, ok := e.ctl.vms.Get(key)
		if !ok || vm.ResourceVersion != e.getVM(name).ResourceVersion {
			return false
		}
		vmi, cached := e.ctl.vmis.Get(key)
		stored := e.getVMI(name)
		if stored == nil || !cached {
			return stored == nil && !cached
		}
		return vmi.ResourceVersion == stored.ResourceVersion
	})
	e.poke(key)
}

// TestStatusWrittenOnlyWhenChanged checks that passes that find nothing
// new send no status write at all (the server would drop an unchanged one,
// so the writes are counted as the controller sends them), and that a
// change of the VMI leads to exactly one status write.
func TestStatusWrittenOnlyWhenChanged(t *testing.T) {
	e := newEnv(t)
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))
	const statusPath = "/virtualmachines/web/status"
	count200 := func() int {
		n := 0
		for _, c := range e.calls.codes(http.MethodPut, statusPath) {
			if c == http.StatusOK {
				n++
			}
		}
		return n
	}
	e.vmStatus("web", "created", func(st *v1.VirtualMachineStatus) bool { return st.Created })
	e.settledPoke("web")
	before := e.calls.count(http.MethodPut, statusPath)
	for range 3 {
		e.settledPoke("web")
	}
	if n := e.calls.count(http.MethodPut, statusPath) - before; n != 0 {
		t.Fatalf("%d status writes by passes that found nothing new, want 0", n)
	}

	written := count200()
	e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) {
		st.Phase = v1.Running
		st.NodeName = "n1"
		st.Conditions = []v1.VirtualMachineInstanceCondition{{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue}}
	})
	e.vmStatus("web", "running and ready", func(st *v1.VirtualMachineStatus) bool {
		return st.Ready && st.PrintableStatus == v1.VirtualMachineStatusRunning
	})
	e.settledPoke("web")
	if n := count200() - written; n != 1 {
		t.Errorf("the VMI becoming Running and Ready led to %d status writes, want 1", n)
	}
	before = e.calls.count(http.MethodPut, statusPath)
	for range 3 {
		e.settledPoke("web")
	}
	if n := e.calls.count(http.MethodPut, statusPath) - before; n != 0 {
		t.Fatalf("%d status writes by passes that found nothing new after the change, want 0", n)
	}
}

// TestForeignVMIIsReported checks that a VMI of the VM's name that the VM
// does not own is neither replaced nor adopted: no create is issued, a
// FailedCreate warning event is recorded, and the VM's Failure condition
// says why.
func TestForeignVMIIsReported(t *testing.T) {
	e := newEnv(t)
	foreign := &v1.VirtualMachineInstance{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}},
	}
	foreign, err := e.c.VirtualMachineInstances(ns).Create(bg, foreign, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))

	ev := e.event("web", "FailedCreate")
	if ev.Type != v1.EventTypeWarning || !strings.Contains(ev.Message, "not owned by this VM") {
		t.Errorf("FailedCreate event: type %q message %q", ev.Type, ev.Message)
	}
	e.vmStatus("web", "a FailedCreate Failure condition", func(st *v1.VirtualMachineStatus) bool {
		c := vmCondition(st, v1.VirtualMachineFailure)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "FailedCreate" && strings.Contains(c.Message, "not owned")
	})
	if n := e.calls.count(http.MethodPost, vmisPath); n != 0 {
		t.Errorf("the controller issued %d VMI creates over a foreign VMI, want 0", n)
	}
	if vmi := e.getVMI("web"); vmi == nil || vmi.UID != foreign.UID || len(vmi.OwnerReferences) != 0 {
		t.Errorf("the foreign VMI was replaced or adopted: %+v", vmi)
	}
}

// TestHaltedDeletesVMI checks that setting a running VM's strategy to
// Halted deletes its VMI exactly once, with a SuccessfulDelete event, shows
// the VM Stopping until the VMI has ended and gone, then Stopped, and never
// starts another VMI.
func TestHaltedDeletesVMI(t *testing.T) {
	e := newEnv(t)
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))
	e.waitVMI("web", "created", exists)
	e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) { st.Phase, st.NodeName = v1.Running, "n1" })
	e.vmStatus("web", "running", func(st *v1.VirtualMachineStatus) bool {
		return st.PrintableStatus == v1.VirtualMachineStatusRunning
	})

	for range 20 {
		vm := e.getVM("web")
		halted := v1.RunStrategyHalted
		vm.Spec.RunStrategy = &halted
		_, err := e.c.VirtualMachines(ns).Update(bg, vm, client.WriteOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	e.waitVMI("web", "deleted", deleting)
	e.vmStatus("web", "stopping", func(st *v1.VirtualMachineStatus) bool {
		return st.PrintableStatus == v1.VirtualMachineStatusStopping
	})
	if ev := e.event("web", "SuccessfulDelete"); !strings.Contains(ev.Message, "Halted") {
		t.Errorf("SuccessfulDelete event message = %q, want it to say why (Halted)", ev.Message)
	}

	// The agent stops the guest and lets the VMI go.
	e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) { st.Phase = v1.Succeeded })
	e.releaseAgent("web")
	e.waitVMI("web", "gone", gone)
	e.vmStatus("web", "stopped", func(st *v1.VirtualMachineStatus) bool {
		return !st.Created && st.PrintableStatus == v1.VirtualMachineStatusStopped
	})
	e.poke(ns + "/web")
	if n := e.calls.count(http.MethodDelete, vmiPath("web")); n != 1 {
		t.Errorf("the controller issued %d VMI deletes, want 1", n)
	}
	if n := e.calls.count(http.MethodPost, vmisPath); n != 1 {
		t.Errorf("the controller issued %d VMI creates, want 1 (none after Halted)", n)
	}
}

// TestCrashLoopBackoffGrows checks the crash-loop wait: each VMI that fails
// before running is deleted and replaced only after a wait; the pass that
// finds the VM waiting asks to be requeued after the time left until the
// recorded retry time, no VMI is created meanwhile, the VM shows
// CrashLoopBackOff, and the wait grows with every consecutive failure.
func TestCrashLoopBackoffGrows(t *testing.T) {
	e := newEnv(t)
	e.run()
	e.createVM(newVM("web", v1.RunStrategyAlways))
	key := ns + "/web"

	var waits []time.Duration
	for failure := 1; failure <= 3; failure++ {
		vmi := e.waitVMI("web", "created", exists)
		e.mu.Lock()
		mark := len(e.passes)
		e.mu.Unlock()
		e.setVMIStatus("web", func(st *v1.VirtualMachineInstanceStatus) { st.Phase = v1.Failed })
		e.waitVMI("web", "deleted", deleting)
		e.releaseAgent("web")
		e.waitVMI("web", "gone", gone)
		vm := e.vmStatus("web", "the failure counted", func(st *v1.VirtualMachineStatus) bool {
			sf := st.StartFailure
			return sf != nil && sf.ConsecutiveFailCount == failure && sf.LastFailedVMIUID == vmi.UID
		})
		if vm.Status.PrintableStatus != v1.VirtualMachineStatusCrashLoopBackOff {
			t.Errorf("failure %d: printableStatus %q, want CrashLoopBackOff", failure, vm.Status.PrintableStatus)
		}
		var requeue time.Duration
		e.eventually("a pass asking to be requeued", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, p := range e.passes[mark:] {
				if p.key == key && p.err == nil && p.res.RequeueAfter > 0 {
					requeue = p.res.RequeueAfter
					return true
				}
			}
			return false
		})
		retryAt := vm.Status.StartFailure.RetryAfterTimestamp.Time
		if want := retryAt.Sub(e.clock.Now()); requeue != want {
			t.Errorf("failure %d: requeued after %v, want the %v left until the retry time", failure, requeue, want)
		}
		waits = append(waits, requeue)

		// Until the retry time no VMI is created, however often the VM is looked at.
		e.poke(key)
		if vmi := e.getVMI("web"); vmi != nil {
			t.Fatalf("failure %d: a VMI was created during the crash-loop wait", failure)
		}
		if n := e.calls.count(http.MethodPost, vmisPath); n != failure {
			t.Fatalf("failure %d: %d VMI creates, want %d", failure, n, failure)
		}
		e.clock.Set(retryAt)
		e.poke(key)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] <= waits[i-1] {
			t.Fatalf("crash-loop waits %v do not grow", waits)
		}
	}
	e.waitVMI("web", "created after the last wait", exists)
}
