package apiserver_test

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

func names[T metav1.Object](items []T) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.GetName()
	}
	return out
}

// TestListSelectors: labelSelector and fieldSelector (metadata.name,
// metadata.namespace, status.phase, status.nodeName and the rest) select as
// in Kubernetes; lists are sorted by name and span namespaces at the
// cluster-wide path.
func TestListSelectors(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	mk := func(name string, phase v1.VirtualMachineInstancePhase, node string, labels map[string]string) {
		vmi := newVMI(h.ns, name)
		vmi.Labels = labels
		out, err := h.vmis().Create(ctx(), vmi, client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if phase != "" {
			out.Status.Phase, out.Status.NodeName = phase, node
			if _, err := h.vmis().UpdateStatus(ctx(), out, client.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("d", "", "", nil)
	mk("c", v1.Running, "node-2", map[string]string{"app": "db"})
	mk("b", v1.Succeeded, "node-2", map[string]string{"app": "web"})
	mk("a", v1.Running, "node-1", map[string]string{"app": "web", "tier": "fe"})
	other := h.c.VirtualMachineInstances("other")
	if _, err := other.Create(ctx(), newVMI("other", "z"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		label, field string
		want         []string
	}{
		{want: []string{"a", "b", "c", "d"}},
		{label: "app=web", want: []string{"a", "b"}},
		{label: "app in (web,db)", want: []string{"a", "b", "c"}},
		{label: "app!=web", want: []string{"c", "d"}},
		{label: "tier", want: []string{"a"}},
		{label: "!tier", want: []string{"b", "c", "d"}},
		{label: "app=web,tier=fe", want: []string{"a"}},
		{label: "app notin (web)", want: []string{"c", "d"}},
		{field: "metadata.name=b", want: []string{"b"}},
		{field: "metadata.name!=b", want: []string{"a", "c", "d"}},
		{field: "metadata.namespace=test", want: []string{"a", "b", "c", "d"}},
		{field: "status.phase=Running", want: []string{"a", "c"}},
		{field: "status.phase!=Running", want: []string{"b", "d"}},
		{field: "status.phase=", want: []string{"d"}},
		{field: "status.nodeName=node-2", want: []string{"b", "c"}},
		{field: "status.phase=Running,status.nodeName=node-2", want: []string{"c"}},
		{label: "app=web", field: "status.phase=Running", want: []string{"a"}},
		{label: "app=nothing", want: []string{}},
	}
	for _, tc := range cases {
		list, err := h.vmis().List(ctx(), client.ListOptions{LabelSelector: tc.label, FieldSelector: tc.field})
		if err != nil {
			t.Errorf("label %q field %q: %v", tc.label, tc.field, err)
			continue
		}
		if got := names(list.Items); !slices.Equal(got, tc.want) {
			t.Errorf("label %q field %q: got %v, want %v", tc.label, tc.field, got, tc.want)
		}
		// The same selection, paged one by one.
		paged := h.listAllPaged(h.vmisPath(), tc.label, tc.field, 1)
		if !slices.Equal(paged, tc.want) {
			t.Errorf("paged: label %q field %q: got %v, want %v", tc.label, tc.field, paged, tc.want)
		}
	}

	// Across namespaces.
	all, err := h.c.VirtualMachineInstances("").List(ctx(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(all.Items); !slices.Equal(got, []string{"z", "a", "b", "c", "d"}) {
		t.Errorf("cluster-wide list = %v (sorted by namespace, then name)", got)
	}
	sel, err := h.c.VirtualMachineInstances("").List(ctx(), client.ListOptions{FieldSelector: "metadata.namespace=other"})
	if err != nil || !slices.Equal(names(sel.Items), []string{"z"}) {
		t.Errorf("cluster-wide list by namespace: %v %v", err, names(sel.Items))
	}

	// Other resources' selectable fields.
	vm := h.createVM("vm", v1.RunStrategyHalted)
	vm.Status.PrintableStatus = v1.VirtualMachineStatusStopped
	if _, err := h.vms().UpdateStatus(ctx(), vm, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.createVM("vm2", v1.RunStrategyHalted)
	vms, err := h.vms().List(ctx(), client.ListOptions{FieldSelector: "status.printableStatus=Stopped"})
	if err != nil || !slices.Equal(names(vms.Items), []string{"vm"}) {
		t.Errorf("VMs by printableStatus: %v %v", err, names(vms.Items))
	}
	for _, n := range []*v1.Node{
		{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{Unschedulable: true}},
		{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
	} {
		if _, err := h.c.Nodes().Create(ctx(), n, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := h.c.Nodes().List(ctx(), client.ListOptions{FieldSelector: "spec.unschedulable=false"})
	if err != nil || !slices.Equal(names(nodes.Items), []string{"n2"}) {
		t.Errorf("nodes by spec.unschedulable: %v %v", err, names(nodes.Items))
	}
	for i, reason := range []string{"Started", "Stopped"} {
		ev := &v1.Event{TypeMeta: v1.TypeMetaFor(v1.KindEvent), ObjectMeta: metav1.ObjectMeta{Name: "ev" + strconv.Itoa(i)},
			InvolvedObject: v1.ObjectReference{Kind: "VirtualMachine", Name: "vm", Namespace: h.ns, UID: vm.UID}, Reason: reason, Type: v1.EventTypeNormal}
		if _, err := h.c.Events(h.ns).Create(ctx(), ev, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := h.c.Events(h.ns).List(ctx(), client.ListOptions{FieldSelector: "involvedObject.name=vm,involvedObject.kind=VirtualMachine,reason=Stopped,involvedObject.uid=" + string(vm.UID)})
	if err != nil || !slices.Equal(names(evs.Items), []string{"ev1"}) {
		t.Errorf("events by involvedObject and reason: %v %v", err, names(evs.Items))
	}
}

// listAllPaged lists a collection page by page and returns the names.
func (h *harness) listAllPaged(path, label, field string, limit int) []string {
	h.t.Helper()
	out := []string{}
	cont := ""
	listRV := ""
	for page := 0; ; page++ {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if label != "" {
			q.Set("labelSelector", label)
		}
		if field != "" {
			q.Set("fieldSelector", field)
		}
		if cont != "" {
			q.Set("continue", cont)
		}
		var list struct {
			Metadata metav1.ListMeta
			Items    []metav1.PartialObjectMetadata
		}
		h.do("GET", path+"?"+q.Encode(), nil, "").expectCode(h.t, 200).into(h.t, &list)
		if page == 0 {
			listRV = list.Metadata.ResourceVersion
		} else if list.Metadata.ResourceVersion != listRV {
			h.t.Errorf("page %d has resourceVersion %s, the first page %s: pages must be one snapshot", page, list.Metadata.ResourceVersion, listRV)
		}
		if len(list.Items) > limit {
			h.t.Errorf("page of %d items with limit %d", len(list.Items), limit)
		}
		for _, it := range list.Items {
			out = append(out, it.Name)
		}
		cont = list.Metadata.Continue
		if cont == "" {
			return out
		}
		if page > 100 {
			h.t.Fatal("paging does not end")
		}
	}
}

// TestListPaging: limit/continue pages are one snapshot; a token from
// another list is refused; a token older than the compacted history is 410.
func TestListPaging(t *testing.T) {
	h := newHarness(t, apiserver.Config{CompactionInterval: -1})
	for i := range 7 {
		h.createVM("vm-"+strconv.Itoa(i), v1.RunStrategyHalted)
	}
	first, err := h.vms().List(ctx(), client.ListOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(first.Items); !slices.Equal(got, []string{"vm-0", "vm-1", "vm-2"}) || first.Continue == "" {
		t.Fatalf("first page = %v, continue %q", got, first.Continue)
	}
	if first.RemainingItemCount != nil && *first.RemainingItemCount != 4 {
		t.Errorf("remainingItemCount = %d, want 4", *first.RemainingItemCount)
	}
	// Changes after the first page do not show in later pages.
	h.createVM("vm-9", v1.RunStrategyHalted)
	if _, err := h.vms().Delete(ctx(), "vm-4", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := h.vms().List(ctx(), client.ListOptions{Limit: 3, Continue: first.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(second.Items); !slices.Equal(got, []string{"vm-3", "vm-4", "vm-5"}) || second.Continue == "" {
		t.Errorf("second page = %v, continue %q", got, second.Continue)
	}
	if second.ResourceVersion != first.ResourceVersion {
		t.Errorf("second page rv %s, first %s", second.ResourceVersion, first.ResourceVersion)
	}
	third, err := h.vms().List(ctx(), client.ListOptions{Limit: 3, Continue: second.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(third.Items); !slices.Equal(got, []string{"vm-6"}) || third.Continue != "" {
		t.Errorf("third page = %v, continue %q", got, third.Continue)
	}
	// A limit above the count: one page, no token; no limit: everything.
	if l, err := h.vms().List(ctx(), client.ListOptions{Limit: 100}); err != nil || len(l.Items) != 7 || l.Continue != "" {
		t.Errorf("limit 100: %v, %d items, continue %q", err, len(l.Items), l.Continue)
	}
	if l, err := h.vms().List(ctx(), client.ListOptions{}); err != nil || len(l.Items) != 7 {
		t.Errorf("no limit: %v, %d items", err, len(l.Items))
	}
	// resourceVersion=0 may be served from the cache as it is.
	if l, err := h.vms().List(ctx(), client.ListOptions{ResourceVersion: "0"}); err != nil || len(l.Items) != 7 {
		t.Errorf("resourceVersion 0: %v, %d items", err, len(l.Items))
	}

	// A token belongs to its list.
	h.do("GET", kvBase+"/namespaces/other/virtualmachines?limit=3&continue="+url.QueryEscape(first.Continue), nil, "").expectStatus(t, 400, "")
	h.do("GET", "/api/v1/nodes?limit=3&continue="+url.QueryEscape(first.Continue), nil, "").expectStatus(t, 400, "")

	// After compaction the snapshot is gone: 410 Expired.
	h.createVM("vm-10", v1.RunStrategyHalted)
	h.s.Compact(t)
	_, err = h.vms().List(ctx(), client.ListOptions{Limit: 3, Continue: first.Continue})
	if !isExpired(err) {
		t.Fatalf("continue after compaction: %v, want 410 Expired", err)
	}
	r := h.do("GET", h.vmsPath()+"?limit=3&continue="+url.QueryEscape(first.Continue), nil, "")
	if st := r.expectStatus(t, 410, ""); st.Reason != metav1.StatusReasonExpired {
		t.Errorf("reason = %q, want Expired", st.Reason)
	}
	// A fresh list works.
	if l, err := h.vms().List(ctx(), client.ListOptions{Limit: 3}); err != nil || len(l.Items) != 3 {
		t.Errorf("fresh paged list after compaction: %v", err)
	}
}

// TestListConsistency: a list right after a write includes it (lists are
// served from the watch cache, which waits until it has caught up).
func TestListConsistency(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	for i := range 30 {
		vm := h.createVM("vm-"+strconv.Itoa(i), v1.RunStrategyHalted)
		list, err := h.vms().List(ctx(), client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != i+1 {
			t.Fatalf("list after create %d has %d items", i, len(list.Items))
		}
		lrv, _ := strconv.ParseInt(list.ResourceVersion, 10, 64)
		orv, _ := strconv.ParseInt(vm.ResourceVersion, 10, 64)
		if lrv < orv {
			t.Fatalf("list resourceVersion %d is older than the write's %d", lrv, orv)
		}
	}
}
