package informer_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
)

const ns = "test"

var bg = context.Background()

func newVMI(name, node string) *v1.VirtualMachineInstance {
	vmi := &v1.VirtualMachineInstance{TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}}}
	if node != "" {
		vmi.Labels = map[string]string{"node": node}
	}
	return vmi
}

// recorder records handler calls, in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

// deleteVMI deletes a VMI and drops its finalizers, as its node agent would.
func deleteVMI(t *testing.T, vmis *client.VMIs, name string) {
	t.Helper()
	if _, err := vmis.Delete(bg, name, client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := vmis.Patch(bg, name, client.MergePatch, []byte(`{"metadata":{"finalizers":null}}`), "", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

func (r *recorder) handler() informer.Handler[*v1.VirtualMachineInstance] {
	return informer.Handler[*v1.VirtualMachineInstance]{
		OnAdd: func(o *v1.VirtualMachineInstance) { r.add("add " + o.Name) },
		OnUpdate: func(old, o *v1.VirtualMachineInstance) {
			r.add("update " + o.Name + " " + old.Labels["node"] + "->" + o.Labels["node"])
		},
		OnDelete: func(o *v1.VirtualMachineInstance) { r.add("delete " + o.Name) },
	}
}

// waitCalls waits until the recorder holds want (in any order), and fails
// on anything else.
func waitCalls(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < len(want) {
		got = append(got, r.take()...)
		if time.Now().After(deadline) {
			t.Fatalf("handlers saw %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("handlers saw %v, want %v", got, w)
	}
}

func run(t *testing.T, inf interface{ Run(context.Context) }) {
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestInformer: handlers see adds, updates and deletes; Get, List and
// indexes follow; the resourceVersion follows bookmarks; selectors
// restrict what the informer holds.
func TestInformer(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Config{API: apiserver.Config{BookmarkInterval: 50 * time.Millisecond}})
	c := s.Client(t, client.Config{})
	vmis := c.VirtualMachineInstances(ns)
	if _, err := vmis.Create(bg, newVMI("pre", "n1"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	inf := informer.New[*v1.VirtualMachineInstance](vmis, client.ListOptions{}, nil)
	rec := &recorder{}
	inf.AddHandler(rec.handler())
	inf.AddIndex("node", func(o *v1.VirtualMachineInstance) []string {
		if n := o.Labels["node"]; n != "" {
			return []string{n}
		}
		return nil
	})
	if inf.HasSynced() {
		t.Error("synced before running")
	}
	run(t, inf)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add pre")

	a, err := vmis.Create(bg, newVMI("a", "n1"), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add a")
	if got := len(inf.ByIndex("node", "n1")); got != 2 {
		t.Errorf("ByIndex(n1) = %d objects, want 2", got)
	}
	a.Labels["node"] = "n2"
	if a, err = vmis.Update(bg, a, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "update a n1->n2")
	if got := len(inf.ByIndex("node", "n1")); got != 1 {
		t.Errorf("ByIndex(n1) after the move = %d, want 1", got)
	}
	if got := inf.ByIndex("node", "n2"); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("ByIndex(n2) = %v", got)
	}
	if got, ok := inf.Get(informer.Key(a)); !ok || got.ResourceVersion != a.ResourceVersion {
		t.Errorf("Get(a) = %v %v", got, ok)
	}
	deleteVMI(t, vmis, "a")
	// The delete marks the VMI first; it goes when its finalizers do.
	waitCalls(t, rec, "update a n2->n2", "delete a")
	if _, ok := inf.Get(ns + "/a"); ok {
		t.Error("a deleted object is still cached")
	}
	if len(inf.ByIndex("node", "n2")) != 0 || len(inf.List()) != 1 {
		t.Errorf("after delete: index %v, list %d", inf.ByIndex("node", "n2"), len(inf.List()))
	}

	// Bookmarks move the resourceVersion on without changes of its own.
	node, err := c.Nodes().Create(bg, &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n"}}, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.ParseInt(node.ResourceVersion, 10, 64)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := strconv.ParseInt(inf.ResourceVersion(), 10, 64)
		if got >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("informer resourceVersion %d, want at least %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A selector restricts the cache; an object leaving it is deleted.
	sel := informer.New[*v1.VirtualMachineInstance](vmis, client.ListOptions{LabelSelector: "node=n1"}, nil)
	srec := &recorder{}
	sel.AddHandler(srec.handler())
	run(t, sel)
	if err := sel.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, srec, "add pre")
	if _, err := vmis.Patch(bg, "pre", client.MergePatch, []byte(`{"metadata":{"labels":{"node":"n3"}}}`), "", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, srec, "delete pre")
	waitCalls(t, rec, "update pre n1->n3")
	if len(sel.List()) != 0 {
		t.Errorf("selected informer holds %d objects", len(sel.List()))
	}
}

// gatedLW wraps a ListWatcher so that a test can end the current watch and
// hold the next one back, while it changes things behind the informer's
// back.
type gatedLW struct {
	inner informer.ListWatcher[*v1.VirtualMachineInstance]

	mu     sync.Mutex
	cancel context.CancelFunc
	gate   chan struct{} // closed: watches may start
	lists  int
}

func (g *gatedLW) List(ctx context.Context, opts client.ListOptions) (*client.List[*v1.VirtualMachineInstance], error) {
	g.mu.Lock()
	g.lists++
	g.mu.Unlock()
	return g.inner.List(ctx, opts)
}

func (g *gatedLW) Watch(ctx context.Context, opts client.ListOptions) (*client.Watch[*v1.VirtualMachineInstance], error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	wctx, cancel := context.WithCancel(ctx)
	g.mu.Lock()
	g.cancel = cancel
	g.mu.Unlock()
	w, err := g.inner.Watch(wctx, opts)
	if err != nil {
		cancel()
	}
	return w, err
}

// cut ends the current watch and holds the next one back until open.
func (g *gatedLW) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	if g.cancel != nil {
		g.cancel()
	}
}

func (g *gatedLW) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
}

func (g *gatedLW) listCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lists
}

// TestInformerRelistAfterGone: when the informer's resourceVersion has left
// the server's watch history (410), it lists again and reports every
// difference: objects added, deleted and changed meanwhile.
func TestInformerRelistAfterGone(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Config{API: apiserver.Config{WatchHistory: 4}})
	c := s.Client(t, client.Config{})
	vmis := c.VirtualMachineInstances(ns)
	for _, n := range []string{"keep", "change", "remove"} {
		if _, err := vmis.Create(bg, newVMI(n, "n1"), client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lw := &gatedLW{inner: vmis, gate: make(chan struct{})}
	close(lw.gate)
	inf := informer.New[*v1.VirtualMachineInstance](lw, client.ListOptions{}, nil)
	rec := &recorder{}
	inf.AddHandler(rec.handler())
	run(t, inf)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add keep", "add change", "add remove")
	// Make sure the watch is established before cutting it.
	if _, err := vmis.Create(bg, newVMI("probe", ""), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add probe")
	stale := inf.ResourceVersion()

	lw.cut()
	// More changes than the history holds, while the informer cannot watch.
	if _, err := vmis.Create(bg, newVMI("new", "n1"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleteVMI(t, vmis, "remove")
	for i := range 6 {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"node":"n%d"}}}`, i+2)
		if _, err := vmis.Patch(bg, "change", client.MergePatch, []byte(patch), "", client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The server's history moves on once its watch cache has applied the
	// writes, which it does on its own time.
	for deadline := time.Now().Add(10 * time.Second); ; {
		w, err := vmis.Watch(bg, client.ListOptions{ResourceVersion: stale})
		if err != nil {
			if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
				t.Fatalf("watch from the stale resourceVersion: %v, want a 410", err)
			}
			break
		}
		w.Stop()
		if time.Now().After(deadline) {
			t.Fatal("the informer's resourceVersion is still in the history: the test would not force a relist")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lists := lw.listCount()
	lw.open()
	waitCalls(t, rec, "add new", "delete remove", "update change n1->n7")
	if lw.listCount() != lists+1 {
		t.Errorf("%d lists after the 410, want 1", lw.listCount()-lists)
	}
	var names []string
	for _, o := range inf.List() {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"change", "keep", "new", "probe"}) {
		t.Errorf("cache after relist = %v", names)
	}
	// And it watches again afterwards.
	if _, err := vmis.Create(bg, newVMI("later", ""), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add later")
}

// TestInformerResumesWithoutRelist: a watch that ends while its
// resourceVersion is still in the history resumes from it, with no list
// and no missed change.
func TestInformerResumesWithoutRelist(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Config{})
	c := s.Client(t, client.Config{})
	vmis := c.VirtualMachineInstances(ns)
	lw := &gatedLW{inner: vmis, gate: make(chan struct{})}
	close(lw.gate)
	inf := informer.New[*v1.VirtualMachineInstance](lw, client.ListOptions{}, nil)
	rec := &recorder{}
	inf.AddHandler(rec.handler())
	run(t, inf)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vmis.Create(bg, newVMI("probe", ""), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, "add probe")
	lw.cut()
	if _, err := vmis.Create(bg, newVMI("meanwhile", ""), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lw.open()
	waitCalls(t, rec, "add meanwhile")
	if lw.listCount() != 1 {
		t.Errorf("%d lists, want 1 (a resume needs none)", lw.listCount())
	}
}
