package apiserver_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// TestFinalizerDeletion: deleting an object with finalizers only marks it
// (deletionTimestamp, generation bumped); no finalizer can be added then;
// the write that removes the last finalizer deletes it.
func TestFinalizerDeletion(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	vm := newVM(h.ns, "vm", v1.RunStrategyHalted)
	vm.Finalizers = []string{"test.vigil.dev/a", "test.vigil.dev/b"}
	created, err := h.vms().Create(ctx(), vm, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := h.watchRaw(h.vmsPath() + "?watch=true&resourceVersion=" + created.ResourceVersion)

	marked, err := h.vms().Delete(ctx(), "vm", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if marked.DeletionTimestamp == nil || marked.DeletionGracePeriodSeconds == nil || *marked.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("delete answered deletionTimestamp %v, grace %v", marked.DeletionTimestamp, marked.DeletionGracePeriodSeconds)
	}
	if marked.Generation != created.Generation+1 {
		t.Errorf("generation %d after marking, want %d", marked.Generation, created.Generation+1)
	}
	got := h.getVM("vm")
	if got.DeletionTimestamp == nil || got.ResourceVersion != marked.ResourceVersion {
		t.Fatalf("stored object not marked: %+v", got.ObjectMeta)
	}
	if ev := w.next(t); ev.Type != "MODIFIED" || ev.meta(t).DeletionTimestamp == nil {
		t.Errorf("watch saw %s %+v, want MODIFIED with a deletionTimestamp", ev.Type, ev.meta(t))
	}

	// Deleting again changes nothing.
	again, err := h.vms().Delete(ctx(), "vm", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != marked.ResourceVersion {
		t.Errorf("a second delete wrote (rv %s -> %s)", marked.ResourceVersion, again.ResourceVersion)
	}
	// No new finalizer may be added.
	h.do("PATCH", h.vmPath("vm"), `{"metadata":{"finalizers":["test.vigil.dev/a","test.vigil.dev/b","test.vigil.dev/c"]}}`, "application/merge-patch+json").expectStatus(t, 422, "")
	h.unchanged(h.vmPath("vm"), marked.ResourceVersion)
	// The deletion timestamp cannot be taken back by an update.
	got.DeletionTimestamp = nil
	if out, err := h.vms().Update(ctx(), got, client.WriteOptions{}); err == nil && out.DeletionTimestamp == nil {
		t.Error("an update removed the deletionTimestamp")
	}

	// Removing one finalizer keeps the object; removing the last deletes it.
	if _, err := h.vms().Patch(ctx(), "vm", client.JSONPatch, []byte(`[{"op":"remove","path":"/metadata/finalizers/0"}]`), "", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := h.getVM("vm"); len(got.Finalizers) != 1 {
		t.Fatalf("finalizers = %v", got.Finalizers)
	}
	if ev := w.next(t); ev.Type != "MODIFIED" {
		t.Errorf("watch saw %s, want MODIFIED", ev.Type)
	}
	if _, err := h.vms().Patch(ctx(), "vm", client.MergePatch, []byte(`{"metadata":{"finalizers":null}}`), "", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.absent(h.vmPath("vm"))
	if ev := w.next(t); ev.Type != "DELETED" {
		t.Errorf("watch saw %s, want DELETED", ev.Type)
	}

	// The same through the status subresource is refused? No: /status never
	// changes metadata, so a finalizer removal there is ignored.
	vmi := h.createVMI("vmi", v1.Running, withFinalizer("test.vigil.dev/a"))
	if _, err := h.vmis().Delete(ctx(), "vmi", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur := h.getVMI("vmi")
	cur.Finalizers = nil
	if _, err := h.vmis().UpdateStatus(ctx(), cur, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := h.getVMI("vmi"); len(got.Finalizers) != 2 {
		t.Errorf("a status write removed finalizers: %v", got.Finalizers)
	}
	// A PUT that drops the finalizer deletes it.
	cur = h.getVMI("vmi")
	cur.Finalizers = nil
	if _, err := h.vmis().Update(ctx(), cur, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.absent(h.vmiPath("vmi"))
	_ = vmi

	// Preconditions.
	h.createVMI("pre", "")
	pre := h.getVMI("pre")
	if _, err := h.vmis().Delete(ctx(), "pre", client.DeleteOptions{UID: "other"}); !isConflict(err) {
		t.Errorf("delete with another UID: %v, want Conflict", err)
	}
	if _, err := h.vmis().Delete(ctx(), "pre", client.DeleteOptions{ResourceVersion: "1"}); !isConflict(err) {
		t.Errorf("delete with a stale resourceVersion: %v, want Conflict", err)
	}
	h.unchanged(h.vmiPath("pre"), pre.ResourceVersion)
	if _, err := h.vmis().Delete(ctx(), "pre", client.DeleteOptions{UID: string(pre.UID), ResourceVersion: pre.ResourceVersion}); err != nil {
		t.Errorf("delete with matching preconditions: %v", err)
	}
	h.release("pre")
	h.absent(h.vmiPath("pre"))
}

// TestVMIDeletionGracePeriod: a VMI marked for deletion records the grace
// period its guest gets: the request's, else its own
// terminationGracePeriodSeconds, else 30. A later delete may shorten it,
// never lengthen it.
func TestVMIDeletionGracePeriod(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	fin := withFinalizer(v1.AgentFinalizer)
	cases := []struct {
		name  string
		opts  []vmiOpt
		query string
		body  string
		want  int64
	}{
		{name: "own", opts: []vmiOpt{fin, withGrace(77)}, want: 77},
		{name: "default", opts: []vmiOpt{fin}, want: 30},
		{name: "query", opts: []vmiOpt{fin, withGrace(77)}, query: "?gracePeriodSeconds=5", want: 5},
		{name: "body", opts: []vmiOpt{fin, withGrace(77)}, body: `{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":3}`, want: 3},
		{name: "zero", opts: []vmiOpt{fin}, query: "?gracePeriodSeconds=0", want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.createVMI(tc.name, v1.Running, tc.opts...)
			var body any
			if tc.body != "" {
				body = tc.body
			}
			var out v1.VirtualMachineInstance
			h.do("DELETE", h.vmiPath(tc.name)+tc.query, body, "").expectCode(t, 200).into(t, &out)
			got := h.getVMI(tc.name)
			if got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != tc.want {
				t.Fatalf("deletionGracePeriodSeconds = %v, want %d", got.DeletionGracePeriodSeconds, tc.want)
			}
			if out.ResourceVersion != got.ResourceVersion {
				t.Errorf("delete answered rv %s, stored %s", out.ResourceVersion, got.ResourceVersion)
			}
		})
	}
	// Shorter later: lowered. Longer later: unchanged, nothing written.
	g := int64(10)
	if _, err := h.vmis().Delete(ctx(), "own", client.DeleteOptions{GracePeriodSeconds: &g}); err != nil {
		t.Fatal(err)
	}
	got := h.getVMI("own")
	if *got.DeletionGracePeriodSeconds != 10 {
		t.Errorf("after a shorter delete: %d, want 10", *got.DeletionGracePeriodSeconds)
	}
	g = 60
	if _, err := h.vmis().Delete(ctx(), "own", client.DeleteOptions{GracePeriodSeconds: &g}); err != nil {
		t.Fatal(err)
	}
	h.unchanged(h.vmiPath("own"), got.ResourceVersion)

	// A VMI goes as soon as its agent lets it go.
	h.createVMI("plain", v1.Running, withGrace(77))
	if _, err := h.vmis().Delete(ctx(), "plain", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.release("plain")
	h.absent(h.vmiPath("plain"))
}

// TestOwnerReferenceGC: deleting a VM deletes its VMI (background
// propagation), marks it when it has finalizers, and leaves it alone with
// propagationPolicy Orphan, removing the owner reference. Dependents whose
// owners are gone are found by the sweep.
func TestOwnerReferenceGC(t *testing.T) {
	h := newHarness(t, apiserver.Config{GCSweepInterval: 200 * time.Millisecond})

	// Background.
	vm := h.createVM("bg", v1.RunStrategyAlways)
	h.createVMI("bg", v1.Running, withOwner(vm))
	if _, err := h.vms().Delete(ctx(), "bg", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the VMI of a deleted VM to be marked", func() bool {
		vmi, err := h.vmis().Get(ctx(), "bg")
		return err == nil && vmi.DeletionTimestamp != nil
	})
	h.release("bg")
	eventually(t, "the VMI of a deleted VM to be deleted", func() bool {
		_, err := h.vmis().Get(ctx(), "bg")
		return isNotFound(err)
	})

	// A dependent with finalizers is marked, with its own grace period.
	vm = h.createVM("fin", v1.RunStrategyAlways)
	h.createVMI("fin", v1.Running, withOwner(vm), withFinalizer(v1.AgentFinalizer), withGrace(12))
	if _, err := h.vms().Delete(ctx(), "fin", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the VMI of a deleted VM to be marked", func() bool {
		vmi, err := h.vmis().Get(ctx(), "fin")
		return err == nil && vmi.DeletionTimestamp != nil
	})
	if g := h.getVMI("fin").DeletionGracePeriodSeconds; g == nil || *g != 12 {
		t.Errorf("grace period of the collected VMI = %v, want 12", g)
	}

	// From here on, collected means marked: the VMIs wait for their agent.
	marked := func(name string) bool {
		vmi, err := h.vmis().Get(ctx(), name)
		return err == nil && vmi.DeletionTimestamp != nil
	}

	// Orphan.
	vm = h.createVM("orphan", v1.RunStrategyAlways)
	h.createVMI("orphan", v1.Running, withOwner(vm))
	if _, err := h.vms().Delete(ctx(), "orphan", client.DeleteOptions{Orphan: true}); err != nil {
		t.Fatal(err)
	}
	h.absent(h.vmPath("orphan"))
	if got := h.getVMI("orphan"); len(got.OwnerReferences) != 0 {
		t.Errorf("orphaned VMI keeps owner references %v", got.OwnerReferences)
	}
	// The collector handles deletions in order: once a later owner's
	// dependent is gone, the orphan would have been collected already.
	vm = h.createVM("later", v1.RunStrategyAlways)
	h.createVMI("later", v1.Running, withOwner(vm))
	if _, err := h.vms().Delete(ctx(), "later", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the later VMI to be collected", func() bool { return marked("later") })
	if marked("orphan") {
		t.Error("the orphaned VMI was collected")
	}
	// Orphan by query parameter, on a dry run: nothing changes.
	vm = h.createVM("dry", v1.RunStrategyAlways)
	dep := h.createVMI("dry", v1.Running, withOwner(vm))
	h.do("DELETE", h.vmPath("dry")+"?propagationPolicy=Orphan&dryRun=All", nil, "").expectCode(t, 200)
	h.unchanged(h.vmiPath("dry"), dep.ResourceVersion)

	// Across resources: a Lease owned by a Node goes with it.
	node, err := h.c.Nodes().Create(ctx(), &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "gc-node"}}, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease := &v1.Lease{TypeMeta: v1.TypeMetaFor(v1.KindLease), ObjectMeta: metav1.ObjectMeta{Name: "gc-node", Namespace: v1.NodeLeaseNamespace,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "gc-node", UID: node.UID}}}}
	if _, err := h.c.Leases(v1.NodeLeaseNamespace).Create(ctx(), lease, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Nodes().Delete(ctx(), "gc-node", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lease of a deleted node to be deleted", func() bool {
		_, err := h.c.Leases(v1.NodeLeaseNamespace).Get(ctx(), "gc-node")
		return isNotFound(err)
	})

	// The sweep: a dependent whose owner never existed (or is long gone).
	ghost := &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "ghost", UID: "00000000-0000-0000-0000-00000000dead"}}
	h.createVMI("swept", v1.Running, withOwner(ghost))
	eventually(t, "the sweep to delete a dependent of a missing owner", func() bool { return marked("swept") })
	// One owner of several alive keeps the dependent.
	live := h.createVM("live", v1.RunStrategyAlways)
	h.createVMI("two-owners", v1.Running, withOwner(ghost), withOwner(live))
	h.createVMI("swept-2", v1.Running, withOwner(ghost))
	eventually(t, "the sweep to run again", func() bool {
		two, err := h.vmis().Get(ctx(), "two-owners")
		if err != nil || two.DeletionTimestamp != nil {
			t.Fatalf("the sweep deleted a dependent with a live owner: %v", err)
		}
		return marked("swept-2") && len(two.OwnerReferences) == 1
	})
	if refs := h.getVMI("two-owners").OwnerReferences; len(refs) != 1 || refs[0].UID != live.UID {
		t.Errorf("a dependent with a live owner: owner references %v, want only the live one", refs)
	}
}

// TestDeleteCollection deletes what the selectors select, marking objects
// with finalizers.
func TestDeleteCollection(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	h.createVMI("a", v1.Running)
	h.createVMI("b", v1.Succeeded)
	h.createVMI("c", v1.Running, withFinalizer("test.vigil.dev/x"))
	var list v1.VirtualMachineInstanceList
	h.do("DELETE", h.vmisPath()+"?fieldSelector=status.phase%3DRunning", nil, "").expectCode(t, 200).into(t, &list)
	if len(list.Items) != 2 {
		t.Errorf("deletecollection answered %d items, want 2", len(list.Items))
	}
	h.release("a")
	h.absent(h.vmiPath("a"))
	h.getVMI("b")
	if c := h.getVMI("c"); c.DeletionTimestamp == nil {
		t.Error("deletecollection did not mark the VMI with a finalizer")
	}
}

// TestVMIAgentFinalizer: every VMI is created with the node agent's
// finalizer, exactly once, even when a dry run or the client already named
// it; a delete only marks the VMI until the agent removes it.
func TestVMIAgentFinalizer(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	count := func(vmi *v1.VirtualMachineInstance) int {
		n := 0
		for _, f := range vmi.Finalizers {
			if f == v1.AgentFinalizer {
				n++
			}
		}
		return n
	}
	if got := h.createVMI("plain", ""); count(got) != 1 {
		t.Errorf("created VMI finalizers = %v, want one %s", got.Finalizers, v1.AgentFinalizer)
	}
	if got := h.createVMI("given", "", withFinalizer(v1.AgentFinalizer)); count(got) != 1 {
		t.Errorf("a VMI created with the agent finalizer has %v", got.Finalizers)
	}
	dry, err := h.vmis().Create(ctx(), newVMI(h.ns, "dry"), client.WriteOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if count(dry) != 1 {
		t.Errorf("a dry-run create answered finalizers %v", dry.Finalizers)
	}
	h.absent(h.vmiPath("dry"))

	if _, err := h.vmis().Delete(ctx(), "plain", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	marked := h.getVMI("plain")
	if marked.DeletionTimestamp == nil {
		t.Fatal("a deleted VMI was not marked")
	}
	// Another delete while the agent works changes nothing.
	if _, err := h.vmis().Delete(ctx(), "plain", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.unchanged(h.vmiPath("plain"), marked.ResourceVersion)
	h.release("plain")
	h.absent(h.vmiPath("plain"))
}
