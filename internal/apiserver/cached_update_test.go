package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

// cacheGate holds the watch cache back: while it is held, the cache
// applies no change from etcd.
type cacheGate struct {
	mu     sync.Mutex
	closed chan struct{} // nil when open
}

func (g *cacheGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

func (g *cacheGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// pass is the cache's BeforeApply: it waits while the gate is held.
func (g *cacheGate) pass(int64) {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// lagHarness is an API server whose watch cache a test can hold back, so
// that writes are made against a cache that lags etcd.
type lagHarness struct {
	t    *testing.T
	s    *Server
	st   *store.Store
	gate *cacheGate
	vms  *client.VMs
	vmis *client.VMIs
}

func newLagHarness(t *testing.T) *lagHarness {
	t.Helper()
	st := store.New(etcdtest.Start(t).Client)
	s := New(Config{Store: st, Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), CompactionInterval: -1})
	gate := &cacheGate{}
	// The server's cache, as New makes it, with the gate before every change.
	decoders := map[string]watchcache.Decoder{}
	for _, r := range s.resources {
		decoders[r.keyPrefix()] = s.decoderFor(r)
	}
	s.cache = watchcache.New(watchcache.Config{Store: st, Prefix: registryPrefix, Resources: decoders, Log: s.log, BeforeApply: gate.pass})
	runServer(t, s)
	t.Cleanup(gate.open) // first: the server stops only with its cache going
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	c, err := client.New(client.Config{Server: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &lagHarness{t: t, s: s, st: st, gate: gate, vms: c.VirtualMachines("test"), vmis: c.VirtualMachineInstances("test")}
}

// lag lets the cache catch up with etcd, then holds it there.
func (h *lagHarness) lag() {
	h.t.Helper()
	h.gate.open()
	if err := h.s.cache.WaitFresh(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.gate.hold()
}

// catchUp lets the cache go and waits until it has caught up.
func (h *lagHarness) catchUp() {
	h.t.Helper()
	h.gate.open()
	if err := h.s.cache.WaitFresh(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// cachedRV is the resourceVersion of the cache's copy of a VM ("" for none).
func (h *lagHarness) cachedRV(name string) string {
	r := h.s.vmRes()
	if e := h.s.cache.Get(r.keyPrefix(), r.key("test", name)); e != nil {
		return strconv.FormatInt(e.Rev, 10)
	}
	return ""
}

// etcdRV is the resourceVersion of a VM in etcd ("" for none).
func (h *lagHarness) etcdRV(name string) string {
	h.t.Helper()
	kv, err := h.st.Get(context.Background(), h.s.vmRes().key("test", name))
	if store.IsNotFound(err) {
		return ""
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return strconv.FormatInt(kv.ModRevision, 10)
}

// lagging fails the test unless the cache's copy of VM name is still at rv.
func (h *lagHarness) lagging(name, rv string) {
	h.t.Helper()
	if got := h.cachedRV(name); got != rv {
		h.t.Fatalf("the cache has VM %s at %q, want it held at %q", name, got, rv)
	}
}

func (h *lagHarness) createVM(name string, rs v1.RunStrategy, labels map[string]string) *v1.VirtualMachine {
	h.t.Helper()
	vm := &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "test", Labels: labels},
		Spec: v1.VirtualMachineSpec{RunStrategy: &rs, Template: &v1.VirtualMachineInstanceTemplateSpec{Spec: v1.VirtualMachineInstanceSpec{
			Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: apiresource.MustParse("64Mi")}}},
		}}},
	}
	out, err := h.vms.Create(context.Background(), vm, client.WriteOptions{})
	if err != nil {
		h.t.Fatalf("creating VM %s: %v", name, err)
	}
	return out
}

func (h *lagHarness) patch(name, patch string) (*v1.VirtualMachine, error) {
	return h.vms.Patch(context.Background(), name, client.MergePatch, []byte(patch), "", client.WriteOptions{})
}

func (h *lagHarness) mustPatch(name, patch string) *v1.VirtualMachine {
	h.t.Helper()
	out, err := h.patch(name, patch)
	if err != nil {
		h.t.Fatalf("patching VM %s with %s: %v", name, patch, err)
	}
	return out
}

func labelPatch(k, v string) string { return fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, k, v) }

// behind changes VM name in etcd behind the server's back, as another API
// server would, and returns its new resourceVersion.
func (h *lagHarness) behind(name string, change func(vm *v1.VirtualMachine)) string {
	h.t.Helper()
	r := h.s.vmRes()
	kv, err := h.st.Get(context.Background(), r.key("test", name))
	if err != nil {
		h.t.Fatal(err)
	}
	obj, err := decodeStored(r, kv)
	if err != nil {
		h.t.Fatal(err)
	}
	vm := obj.(*v1.VirtualMachine)
	change(vm)
	return strconv.FormatInt(put(h.t, h.st, r, vm), 10)
}

// deleteBehind deletes VM name behind the server's back.
func (h *lagHarness) deleteBehind(name string) {
	h.t.Helper()
	if _, err := h.st.Delete(context.Background(), h.s.vmRes().key("test", name), 0); err != nil {
		h.t.Fatal(err)
	}
}

func setLabel(k, v string) func(*v1.VirtualMachine) {
	return func(vm *v1.VirtualMachine) {
		if vm.Labels == nil {
			vm.Labels = map[string]string{}
		}
		vm.Labels[k] = v
	}
}

// TestUpdateLaggingCachePrecondition: a resourceVersion precondition newer
// than the cache's copy is met when it is etcd's, and stale or unknown ones
// fail, older or newer than the cache's.
func TestUpdateLaggingCachePrecondition(t *testing.T) {
	h := newLagHarness(t)
	ctx := context.Background()
	vm := h.createVM("a", v1.RunStrategyHalted, nil)
	rv1 := vm.ResourceVersion
	h.lag()
	rvB := h.behind("a", setLabel("x", "1"))
	rvC := h.behind("a", setLabel("x", "2"))
	cur, err := h.vms.Get(ctx, "a")
	if err != nil || cur.ResourceVersion != rvC {
		t.Fatalf("get: %v, %+v", err, cur)
	}

	for _, rv := range []string{rv1, rvB, "999999999", "0" + rvC, "x"} {
		stale := cur.DeepCopy()
		stale.ResourceVersion = rv
		stale.Labels["x"] = "stale"
		if _, err := h.vms.Update(ctx, stale, client.WriteOptions{}); !apierrors.IsConflict(err) {
			t.Errorf("update with resourceVersion %s (etcd at %s, the cache at %s): %v, want a conflict", rv, rvC, rv1, err)
		}
		if _, err := h.vms.UpdateStatus(ctx, stale, client.WriteOptions{}); !apierrors.IsConflict(err) {
			t.Errorf("status write with resourceVersion %s: %v, want a conflict", rv, err)
		}
		if _, err := h.patch("a", fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"labels":{"x":"stale"}}}`, rv)); !apierrors.IsConflict(err) {
			t.Errorf("patch with resourceVersion %s: %v, want a conflict", rv, err)
		}
	}
	if got := h.etcdRV("a"); got != rvC {
		t.Errorf("refused writes changed the VM: at %s, want %s", got, rvC)
	}
	h.lagging("a", rv1)

	// etcd's resourceVersion, newer than the cache's.
	cur.Labels["x"] = "3"
	out, err := h.vms.Update(ctx, cur, client.WriteOptions{})
	if err != nil {
		t.Fatalf("update with etcd's resourceVersion %s, the cache at %s: %v", rvC, rv1, err)
	}
	if out.Labels["x"] != "3" || out.ResourceVersion == rvC {
		t.Errorf("update answered %v at %s", out.Labels, out.ResourceVersion)
	}
	h.lagging("a", rv1)

	// The same for a status write and a patch, on another VM.
	b := h.createVM("b", v1.RunStrategyHalted, nil)
	h.lag()
	rvB = h.behind("b", setLabel("x", "1"))
	b.ResourceVersion, b.Labels = rvB, map[string]string{"x": "1"}
	b.Status.PrintableStatus = v1.VirtualMachineStatusStopped
	if _, err := h.vms.UpdateStatus(ctx, b, client.WriteOptions{}); err != nil {
		t.Fatalf("status write with etcd's resourceVersion: %v", err)
	}
	c := h.createVM("c", v1.RunStrategyHalted, nil)
	h.lag()
	rvB = h.behind("c", setLabel("x", "1"))
	if _, err := h.patch("c", fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"labels":{"x":"2"}}}`, rvB)); err != nil {
		t.Fatalf("patch with etcd's resourceVersion: %v", err)
	}
	h.lagging("c", c.ResourceVersion)

	h.catchUp()
	got, err := h.vms.Get(ctx, "a")
	if err != nil || got.Labels["x"] != "3" || got.ResourceVersion != out.ResourceVersion {
		t.Errorf("after the writes: %v, %+v", err, got)
	}
	got, err = h.vms.Get(ctx, "b")
	if err != nil || got.Status.PrintableStatus != v1.VirtualMachineStatusStopped {
		t.Errorf("after the status write: %v, %+v", err, got)
	}
}

// TestUpdateLaggingCacheNotFound: an object the cache has not seen yet is
// updated, and one it still has after it was deleted is not found.
func TestUpdateLaggingCacheNotFound(t *testing.T) {
	h := newLagHarness(t)
	ctx := context.Background()
	gone := h.createVM("gone", v1.RunStrategyHalted, nil)
	h.lag()
	fresh := &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Namespace: "test", UID: "fresh-uid"}, Spec: gone.Spec}
	put(t, h.st, h.s.vmRes(), fresh)
	h.deleteBehind("gone")
	h.lagging("fresh", "")
	h.lagging("gone", gone.ResourceVersion)

	goneRV := gone.ResourceVersion
	gone.Labels = map[string]string{"x": "1"}
	for _, rv := range []string{goneRV, ""} {
		gone.ResourceVersion = rv
		if _, err := h.vms.Update(ctx, gone, client.WriteOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("update (resourceVersion %q) of a deleted VM the cache still has: %v, want NotFound", rv, err)
		}
		if _, err := h.vms.UpdateStatus(ctx, gone, client.WriteOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("status write (resourceVersion %q) of a deleted VM the cache still has: %v, want NotFound", rv, err)
		}
	}
	if _, err := h.patch("gone", labelPatch("x", "1")); !apierrors.IsNotFound(err) {
		t.Errorf("patch of a deleted VM the cache still has: %v, want NotFound", err)
	}
	if got := h.etcdRV("gone"); got != "" {
		t.Errorf("the deleted VM is back at %s", got)
	}
	h.lagging("gone", goneRV)

	out, err := h.patch("fresh", labelPatch("x", "1"))
	if err != nil || out.Labels["x"] != "1" || out.UID != "fresh-uid" {
		t.Errorf("patch of a VM the cache has not seen: %v, %+v", err, out)
	}
	h.lagging("fresh", "")
}

// TestUpdateLaggingCacheNoop: "nothing changed, no write" is decided on
// etcd's object, not on the cache's.
func TestUpdateLaggingCacheNoop(t *testing.T) {
	h := newLagHarness(t)
	ctx := context.Background()
	one := map[string]string{"x": "1"}
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		h.createVM(name, v1.RunStrategyHalted, one)
	}
	h.lag()
	cached := map[string]string{}
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		cached[name] = h.cachedRV(name)
	}

	// The cache's copy has x=1 already, etcd's x=2: a write.
	rv := h.behind("n1", setLabel("x", "2"))
	out := h.mustPatch("n1", labelPatch("x", "1"))
	if out.ResourceVersion == rv || out.ResourceVersion == cached["n1"] || out.Labels["x"] != "1" || h.etcdRV("n1") != out.ResourceVersion {
		t.Errorf("setting x=1 back answered %v at %s (etcd at %s; x=2 at %s): no write", out.Labels, out.ResourceVersion, h.etcdRV("n1"), rv)
	}

	// The cache's copy has x=1, etcd's x=2: no write, etcd's object.
	rv = h.behind("n2", setLabel("x", "2"))
	out = h.mustPatch("n2", labelPatch("x", "2"))
	if out.ResourceVersion != rv || out.Labels["x"] != "2" || h.etcdRV("n2") != rv {
		t.Errorf("a patch that changes nothing in etcd answered %v at %s, etcd at %s, want %s unchanged", out.Labels, out.ResourceVersion, h.etcdRV("n2"), rv)
	}

	// Both have x=1, etcd's a newer version: no write, etcd's object.
	rv = h.behind("n3", func(vm *v1.VirtualMachine) { vm.Annotations = map[string]string{"a": "1"} })
	out = h.mustPatch("n3", labelPatch("x", "1"))
	if out.ResourceVersion != rv || out.Annotations["a"] != "1" || h.etcdRV("n3") != rv {
		t.Errorf("a patch that changes nothing answered %v at %s, etcd at %s, want etcd's object at %s", out.Annotations, out.ResourceVersion, h.etcdRV("n3"), rv)
	}

	// Writing back etcd's object, as a PUT and a status write.
	rv = h.behind("n4", func(vm *v1.VirtualMachine) { vm.Annotations = map[string]string{"a": "1"} })
	cur, err := h.vms.Get(ctx, "n4")
	if err != nil {
		t.Fatal(err)
	}
	for _, write := range []func(context.Context, *v1.VirtualMachine, client.WriteOptions) (*v1.VirtualMachine, error){h.vms.UpdateStatus, h.vms.Update} {
		out, err := write(ctx, cur.DeepCopy(), client.WriteOptions{})
		if err != nil || out.ResourceVersion != rv || h.etcdRV("n4") != rv {
			t.Errorf("writing back etcd's object: %v, at %s, etcd at %s, want %s unchanged", err, out.ResourceVersion, h.etcdRV("n4"), rv)
		}
	}
	for name, rv := range cached {
		h.lagging(name, rv)
	}
}

// TestUpdateLaggingCacheRefusals: refusals that the cache's stale copy
// would cause (a failed JSON patch test, a patch that does not apply, a
// UID precondition, a lifecycle refusal) are decided on etcd's object, and
// dry runs answer with etcd's.
func TestUpdateLaggingCacheRefusals(t *testing.T) {
	h := newLagHarness(t)
	ctx := context.Background()
	for _, name := range []string{"p1", "p2", "p3"} {
		h.createVM(name, v1.RunStrategyHalted, map[string]string{"x": "1"})
	}
	old := h.createVM("u", v1.RunStrategyHalted, nil)
	h.createVM("s", v1.RunStrategyAlways, nil)
	h.lag()
	cached := map[string]string{}
	for _, name := range []string{"p1", "p2", "p3", "u", "s"} {
		cached[name] = h.cachedRV(name)
	}
	withF := func(vm *v1.VirtualMachine) {
		vm.Labels["x"] = "2"
		vm.Finalizers = []string{"example.com/f"}
	}

	// A JSON patch whose test holds on etcd's object only.
	h.behind("p1", withF)
	out, err := h.vms.Patch(ctx, "p1", client.JSONPatch, []byte(`[{"op":"test","path":"/metadata/labels/x","value":"2"},{"op":"replace","path":"/metadata/labels/x","value":"3"}]`), "", client.WriteOptions{})
	if err != nil || out.Labels["x"] != "3" {
		t.Errorf("JSON patch testing etcd's value: %v", err)
	}
	// A JSON patch of a path only etcd's object has.
	h.behind("p2", withF)
	out, err = h.vms.Patch(ctx, "p2", client.JSONPatch, []byte(`[{"op":"remove","path":"/metadata/finalizers/0"}]`), "", client.WriteOptions{})
	if err != nil || len(out.Finalizers) != 0 {
		t.Errorf("JSON patch removing a finalizer only etcd has: %v", err)
	}
	// A dry run answers with etcd's object.
	rv := h.behind("p3", withF)
	dry, err := h.vms.Patch(ctx, "p3", client.MergePatch, []byte(labelPatch("y", "1")), "", client.WriteOptions{DryRun: true})
	if err != nil || dry.Labels["x"] != "2" || dry.Labels["y"] != "1" || dry.ResourceVersion != rv {
		t.Errorf("dry run: %v, %v at %s, want x=2 y=1 at %s", err, dry.Labels, dry.ResourceVersion, rv)
	}

	// The VM was replaced: a write with the new one's UID applies to it,
	// one with the old one's does not.
	h.deleteBehind("u")
	replaced := old.DeepCopy()
	replaced.UID, replaced.ResourceVersion = "new-uid", ""
	put(t, h.st, h.s.vmRes(), replaced)
	replaced.Labels = map[string]string{"new": "1"}
	replaced.UID = old.UID
	if _, err := h.vms.Update(ctx, replaced, client.WriteOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with the old VM's UID: %v, want a conflict", err)
	}
	replaced.UID = "new-uid"
	if _, err := h.vms.Update(ctx, replaced, client.WriteOptions{}); err != nil {
		t.Errorf("update with the new VM's UID, the cache with the old one's: %v", err)
	}

	// The cache has s Always (start refused), etcd has it Halted.
	h.behind("s", func(vm *v1.VirtualMachine) { rs := v1.RunStrategyHalted; vm.Spec.RunStrategy = &rs })
	if err := h.vms.Start(ctx, "s", v1.StartOptions{}); err != nil {
		t.Errorf("start of a Halted VM the cache has as Always: %v", err)
	}
	for name, rv := range cached {
		h.lagging(name, rv)
	}
	h.catchUp()
	got, err := h.vms.Get(ctx, "s")
	if err != nil || got.Spec.RunStrategy == nil || *got.Spec.RunStrategy != v1.RunStrategyAlways {
		t.Errorf("after start: %v, %+v", err, got.Spec.RunStrategy)
	}
}

// TestUpdateWhileCacheLags: writes through the server, one after another,
// while the cache lags behind all of them, all apply.
func TestUpdateWhileCacheLags(t *testing.T) {
	h := newLagHarness(t)
	ctx := context.Background()
	vm := h.createVM("w", v1.RunStrategyHalted, nil)
	h.lag()
	for i := range 5 {
		vm.Labels = map[string]string{"i": strconv.Itoa(i)}
		out, err := h.vms.Update(ctx, vm, client.WriteOptions{})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		vm = out
		if _, err := h.patch("w", labelPatch("j", strconv.Itoa(i))); err != nil {
			t.Fatalf("patch %d: %v", i, err)
		}
		if vm, err = h.vms.Get(ctx, "w"); err != nil {
			t.Fatal(err)
		}
	}
	if vm.Labels["i"] != "4" || vm.Labels["j"] != "4" {
		t.Errorf("after the writes: %v", vm.Labels)
	}
}

// TestUpdateFromCacheConflict: writers racing on one object through a
// current cache all succeed, one after another, and none is lost.
func TestUpdateFromCacheConflict(t *testing.T) {
	h := newLagHarness(t)
	h.createVM("c", v1.RunStrategyHalted, nil)
	const writers, writes = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				if _, err := h.patch("c", labelPatch(fmt.Sprintf("w%d-%d", w, i), "1")); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := h.vms.Get(context.Background(), "c")
	if err != nil || len(got.Labels) != writers*writes {
		t.Errorf("after %d patches: %v, %d labels", writers*writes, err, len(got.Labels))
	}
}
