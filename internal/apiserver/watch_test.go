package apiserver_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

func rvInt(t *testing.T, rv string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not an integer", rv)
	}
	return n
}

// TestWatchFromResourceVersion: a watch from a list's resourceVersion sees
// every later change of its namespace, in order, with increasing
// resourceVersions; a deletion carries the last state and the deletion's
// revision; a watch can resume from any event's resourceVersion; a watch
// without one starts with the current objects as ADDED.
func TestWatchFromResourceVersion(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	h.createVM("a", v1.RunStrategyHalted)
	list, err := h.vms().List(ctx(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := h.vms().Watch(ctx(), client.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	all := h.watchRaw(kvBase + "/virtualmachines?watch=true&resourceVersion=" + list.ResourceVersion)

	b := h.createVM("b", v1.RunStrategyHalted)
	other := h.c.VirtualMachines("other")
	if _, err := other.Create(ctx(), newVM("other", "o", v1.RunStrategyHalted), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	a := h.getVM("a")
	a.Labels = map[string]string{"x": "y"}
	a, err = h.vms().Update(ctx(), a, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	del, err := h.vms().Delete(ctx(), "b", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}

	want := []struct {
		typ  client.EventType
		name string
		rv   string
	}{{client.Added, "b", b.ResourceVersion}, {client.Modified, "a", a.ResourceVersion}, {client.Deleted, "b", del.ResourceVersion}}
	var last int64
	var modifiedRV string
	for _, wt := range want {
		ev := nextEvent(t, w)
		if ev.Type != wt.typ || ev.Object.Name != wt.name || ev.ResourceVersion != wt.rv {
			t.Errorf("got %s %s rv %s, want %s %s rv %s", ev.Type, ev.Object.Name, ev.ResourceVersion, wt.typ, wt.name, wt.rv)
		}
		if n := rvInt(t, ev.ResourceVersion); n <= last {
			t.Errorf("resourceVersion %d after %d", n, last)
		} else {
			last = n
		}
		if ev.Type == client.Modified {
			modifiedRV = ev.ResourceVersion
		}
		if ev.Type == client.Deleted && ev.Object.Spec.RunStrategy == nil {
			t.Error("DELETED carries no object state")
		}
	}
	// The cluster-wide watch also saw the other namespace's VM.
	seen := map[string]bool{}
	for range 4 {
		ev := all.next(t)
		seen[ev.Type+" "+ev.meta(t).Namespace+"/"+ev.meta(t).Name] = true
	}
	if !seen["ADDED other/o"] || !seen["DELETED test/b"] {
		t.Errorf("cluster-wide watch saw %v", seen)
	}

	// Resume from the MODIFIED event: only the deletion follows.
	w2, err := h.vms().Watch(ctx(), client.ListOptions{ResourceVersion: modifiedRV})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	if ev := nextEvent(t, w2); ev.Type != client.Deleted || ev.Object.Name != "b" {
		t.Errorf("resumed watch: %s %s, want DELETED b", ev.Type, ev.Object.Name)
	}

	// Without a resourceVersion: the current objects first, then changes.
	w3, err := h.vms().Watch(ctx(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Stop()
	if ev := nextEvent(t, w3); ev.Type != client.Added || ev.Object.Name != "a" || ev.ResourceVersion != a.ResourceVersion {
		t.Errorf("initial event %s %s rv %s, want ADDED a rv %s", ev.Type, ev.Object.Name, ev.ResourceVersion, a.ResourceVersion)
	}
	h.createVM("c", v1.RunStrategyHalted)
	if ev := nextEvent(t, w3); ev.Type != client.Added || ev.Object.Name != "c" {
		t.Errorf("then %s %s, want ADDED c", ev.Type, ev.Object.Name)
	}
}

func nextEvent[T client.Object](t *testing.T, w *client.Watch[T]) client.Event[T] {
	t.Helper()
	for {
		select {
		case ev, ok := <-w.C:
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			if ev.Type == client.Bookmark {
				continue
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event within 10s")
		}
	}
}

// TestWatchBookmarks: with allowWatchBookmarks a watch gets BOOKMARKs of
// the resource's kind whose resourceVersion never goes backwards and
// follows writes anywhere in the store.
func TestWatchBookmarks(t *testing.T) {
	h := newHarness(t, apiserver.Config{BookmarkInterval: 50 * time.Millisecond})
	vm := h.createVM("a", v1.RunStrategyHalted)
	w := h.watchRaw(h.vmsPath() + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + vm.ResourceVersion)
	ev := w.nextAny(t)
	if ev.Type != "BOOKMARK" {
		t.Fatalf("first event %s, want BOOKMARK", ev.Type)
	}
	var obj struct {
		Kind, APIVersion string
		Metadata         metav1.ObjectMeta
	}
	if err := json.Unmarshal(ev.Object, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Kind != "VirtualMachine" || obj.APIVersion != v1.KubeVirtAPIVersion || rvInt(t, obj.Metadata.ResourceVersion) < rvInt(t, vm.ResourceVersion) {
		t.Errorf("bookmark %+v", obj)
	}
	// A write elsewhere (another resource) moves the bookmarks forward.
	node, err := h.c.Nodes().Create(ctx(), &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n"}}, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for {
		ev := w.nextAny(t)
		if ev.Type != "BOOKMARK" {
			t.Fatalf("unexpected %s", ev.Type)
		}
		n := rvInt(t, ev.meta(t).ResourceVersion)
		if n < last {
			t.Fatalf("bookmark went back from %d to %d", last, n)
		}
		last = n
		if n >= rvInt(t, node.ResourceVersion) {
			break
		}
	}
	// After an event, bookmarks are at least its resourceVersion.
	b := h.createVM("b", v1.RunStrategyHalted)
	for {
		ev := w.nextAny(t)
		if ev.Type == "ADDED" {
			break
		}
	}
	if ev := w.nextAny(t); ev.Type != "BOOKMARK" || rvInt(t, ev.meta(t).ResourceVersion) < rvInt(t, b.ResourceVersion) {
		t.Errorf("bookmark after ADDED b (rv %s): %s %s", b.ResourceVersion, ev.Type, ev.meta(t).ResourceVersion)
	}
}

// TestWatchSelectorSemantics: an object that starts matching a watch's
// selector is ADDED for it, one that stops matching is DELETED (with its
// new state), as in Kubernetes.
func TestWatchSelectorSemantics(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	rv := h.createVMI("x", "").ResourceVersion
	byPhase := h.watchRaw(h.vmisPath() + "?watch=true&fieldSelector=status.phase%3DRunning&resourceVersion=" + rv)
	byLabel := h.watchRaw(h.vmisPath() + "?watch=true&labelSelector=app%3Dweb&resourceVersion=" + rv)
	byName := h.watchRaw(h.vmisPath() + "?watch=true&fieldSelector=metadata.name%3Dx&resourceVersion=" + rv)

	patch := func(sub, body string) {
		t.Helper()
		if _, err := h.vmis().Patch(ctx(), "x", client.MergePatch, []byte(body), sub, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	phaseOf := func(ev rawEvent) string {
		var vmi v1.VirtualMachineInstance
		if err := json.Unmarshal(ev.Object, &vmi); err != nil {
			t.Fatal(err)
		}
		return string(vmi.Status.Phase)
	}
	patch("status", `{"status":{"phase":"Scheduled","nodeName":"n1"}}`) // matches nothing
	patch("status", `{"status":{"phase":"Running"}}`)                   // starts matching byPhase
	patch("", `{"metadata":{"labels":{"app":"web"}}}`)                  // starts matching byLabel
	patch("status", `{"status":{"phase":"Succeeded"}}`)                 // stops matching byPhase
	patch("", `{"metadata":{"labels":{"app":"db"}}}`)                   // stops matching byLabel
	if _, err := h.vmis().Delete(ctx(), "x", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.release("x")
	// A sentinel that matches both, so that nothing else can be pending.
	s := newVMI(h.ns, "sentinel")
	s.Labels = map[string]string{"app": "web"}
	out, err := h.vmis().Create(ctx(), s, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out.Status.Phase = v1.Running
	if _, err := h.vmis().UpdateStatus(ctx(), out, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	expect := func(w *rawWatch, want ...string) {
		t.Helper()
		for _, wt := range want {
			ev := w.next(t)
			got := ev.Type + " " + ev.meta(t).Name + " " + phaseOf(ev)
			if got != wt {
				t.Errorf("got %q, want %q", got, wt)
			}
		}
	}
	expect(byPhase, "ADDED x Running", "MODIFIED x Running", "DELETED x Succeeded", "ADDED sentinel Running")
	expect(byLabel, "ADDED x Running", "MODIFIED x Succeeded", "DELETED x Succeeded", "ADDED sentinel ")
	expect(byName, "MODIFIED x Scheduled", "MODIFIED x Running", "MODIFIED x Running", "MODIFIED x Succeeded", "MODIFIED x Succeeded", "MODIFIED x Succeeded", "DELETED x Succeeded")
}

// TestWatchGone: a watch from a resourceVersion older than the watch
// cache's history answers 410 Gone before streaming; the typed client
// reports it as expired.
func TestWatchGone(t *testing.T) {
	h := newHarness(t, apiserver.Config{WatchHistory: 5})
	old := h.createVM("vm", v1.RunStrategyHalted).ResourceVersion
	for i := range 10 {
		if _, err := h.vms().Patch(ctx(), "vm", client.MergePatch, []byte(`{"metadata":{"labels":{"i":"`+strconv.Itoa(i)+`"}}}`), "", client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A consistent list waits for the watch cache to hold every patch, so
	// that the history has moved past old (else the watch would start).
	if _, err := h.vms().List(ctx(), client.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", h.vmsPath()+"?watch=true&resourceVersion="+old, nil, "")
	st := r.expectStatus(t, 410, "")
	if st.Reason != metav1.StatusReasonExpired && st.Reason != metav1.StatusReasonGone {
		t.Errorf("reason = %q", st.Reason)
	}
	if _, err := h.vms().Watch(ctx(), client.ListOptions{ResourceVersion: old}); !isExpired(err) {
		t.Errorf("typed watch from a gone resourceVersion: %v", err)
	}
	// From the current list it works, and from within the history too.
	list, err := h.vms().List(ctx(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := h.vms().Watch(ctx(), client.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	recent := rvInt(t, list.ResourceVersion) - 2
	w, err = h.vms().Watch(ctx(), client.ListOptions{ResourceVersion: strconv.FormatInt(recent, 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for range 2 {
		if ev := nextEvent(t, w); ev.Type != client.Modified {
			t.Errorf("resumed within the history: %s", ev.Type)
		}
	}
}

// TestWatchTimeout: timeoutSeconds ends the stream.
func TestWatchTimeout(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	w, err := h.vms().Watch(ctx(), client.ListOptions{TimeoutSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	select {
	case _, ok := <-w.C:
		if ok {
			t.Error("unexpected event")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch did not end after its timeout")
	}
	if w.Err() != nil {
		t.Errorf("a timed-out watch ended with %v", w.Err())
	}
}

// TestWatchList: sendInitialEvents=true (client-go's watch-list) sends the
// current objects as ADDED, then a BOOKMARK annotated
// k8s.io/initial-events-end at the revision they reflect, then changes;
// sendInitialEvents=false without a resourceVersion sends changes only.
func TestWatchList(t *testing.T) {
	h := newHarness(t, apiserver.Config{BookmarkInterval: time.Hour})
	h.createVM("a", v1.RunStrategyHalted)
	b := h.createVM("b", v1.RunStrategyHalted)
	w := h.watchRaw(h.vmsPath() + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	seen := map[string]bool{}
	for range 2 {
		ev := w.nextAny(t)
		if ev.Type != "ADDED" {
			t.Fatalf("initial event %s, want ADDED", ev.Type)
		}
		seen[ev.meta(t).Name] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("initial events: %v", seen)
	}
	end := w.nextAny(t)
	if end.Type != "BOOKMARK" || end.meta(t).Annotations["k8s.io/initial-events-end"] != "true" || rvInt(t, end.meta(t).ResourceVersion) < rvInt(t, b.ResourceVersion) {
		t.Errorf("after the initial events: %s %+v", end.Type, end.meta(t))
	}
	h.createVM("c", v1.RunStrategyHalted)
	if ev := w.nextAny(t); ev.Type != "ADDED" || ev.meta(t).Name != "c" {
		t.Errorf("then %s %s", ev.Type, ev.meta(t).Name)
	}

	// An empty collection: the end bookmark at once.
	empty := h.watchRaw(kvBase + "/namespaces/empty/virtualmachines?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	if ev := empty.nextAny(t); ev.Type != "BOOKMARK" || ev.meta(t).Annotations["k8s.io/initial-events-end"] != "true" {
		t.Errorf("empty watch-list: %s %+v", ev.Type, ev.meta(t))
	}

	// sendInitialEvents=false: no initial events.
	now := h.watchRaw(h.vmsPath() + "?watch=true&sendInitialEvents=false")
	h.createVM("d", v1.RunStrategyHalted)
	if ev := now.next(t); ev.Type != "ADDED" || ev.meta(t).Name != "d" {
		t.Errorf("sendInitialEvents=false: first event %s %s, want ADDED d", ev.Type, ev.meta(t).Name)
	}

	h.do("GET", h.vmsPath()+"?watch=true&sendInitialEvents=true", nil, "").expectStatus(t, 400, "")
	h.do("GET", h.vmsPath()+"?watch=true&resourceVersionMatch=NotOlderThan", nil, "").expectStatus(t, 400, "")
	h.do("GET", h.vmsPath()+"?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=Exact", nil, "").expectStatus(t, 400, "")
}
