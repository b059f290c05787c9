package apiserver_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// kindCase describes one resource for the verb tests, as raw JSON.
type kindCase struct {
	name       string
	collection string // the namespace's (or cluster's) collection path
	apiVersion string
	kind       string
	listKind   string
	hasStatus  bool
	hasSpec    bool
	// doc returns a valid document for an object called name.
	doc func(name string) map[string]any
	// change changes the document's spec (or body) in a valid way.
	change func(doc map[string]any)
}

func kindCases(ns string) []kindCase {
	vmiSpecDoc := func() map[string]any {
		return map[string]any{"domain": map[string]any{"resources": map[string]any{"requests": map[string]any{"memory": "64Mi"}}, "devices": map[string]any{}}}
	}
	return []kindCase{
		{
			name: "VirtualMachine", collection: kvBase + "/namespaces/" + ns + "/virtualmachines", apiVersion: v1.KubeVirtAPIVersion,
			kind: "VirtualMachine", listKind: "VirtualMachineList", hasStatus: true, hasSpec: true,
			doc: func(name string) map[string]any {
				return map[string]any{"apiVersion": v1.KubeVirtAPIVersion, "kind": "VirtualMachine", "metadata": map[string]any{"name": name},
					"spec": map[string]any{"runStrategy": "Halted", "template": map[string]any{"spec": vmiSpecDoc()}}}
			},
			change: func(doc map[string]any) { doc["spec"].(map[string]any)["runStrategy"] = "Manual" },
		},
		{
			name: "VirtualMachineInstance", collection: kvBase + "/namespaces/" + ns + "/virtualmachineinstances", apiVersion: v1.KubeVirtAPIVersion,
			kind: "VirtualMachineInstance", listKind: "VirtualMachineInstanceList", hasStatus: true, hasSpec: true,
			doc: func(name string) map[string]any {
				return map[string]any{"apiVersion": v1.KubeVirtAPIVersion, "kind": "VirtualMachineInstance", "metadata": map[string]any{"name": name}, "spec": vmiSpecDoc()}
			},
			// Only the grace period of a VMI's spec may change.
			change: func(doc map[string]any) { doc["spec"].(map[string]any)["terminationGracePeriodSeconds"] = 7 },
		},
		{
			name: "Node", collection: "/api/v1/nodes", apiVersion: "v1", kind: "Node", listKind: "NodeList", hasStatus: true, hasSpec: true,
			doc: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name}, "spec": map[string]any{}}
			},
			change: func(doc map[string]any) { doc["spec"] = map[string]any{"unschedulable": true} },
		},
		{
			name: "Lease", collection: "/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases", apiVersion: v1.CoordinationAPIVersion,
			kind: "Lease", listKind: "LeaseList", hasSpec: true,
			doc: func(name string) map[string]any {
				return map[string]any{"apiVersion": v1.CoordinationAPIVersion, "kind": "Lease", "metadata": map[string]any{"name": name},
					"spec": map[string]any{"holderIdentity": "node-1", "leaseDurationSeconds": 10}}
			},
			change: func(doc map[string]any) { doc["spec"].(map[string]any)["holderIdentity"] = "node-2" },
		},
		{
			name: "Event", collection: "/api/v1/namespaces/" + ns + "/events", apiVersion: "v1", kind: "Event", listKind: "EventList",
			doc: func(name string) map[string]any {
				return map[string]any{"apiVersion": "v1", "kind": "Event", "metadata": map[string]any{"name": name},
					"involvedObject": map[string]any{"kind": "VirtualMachine", "name": "vm1", "namespace": ns}, "reason": "Tested", "message": "one", "type": "Normal",
					"reportingComponent": "test", "reportingInstance": "test-1"}
			},
			change: func(doc map[string]any) { doc["message"] = "two"; doc["count"] = 2 },
		},
	}
}

// TestVerbs runs every verb on every resource through raw HTTP, as a
// generic client would: create, get, list, watch, update, merge patch,
// JSON patch, strategic merge patch, delete and deletecollection.
func TestVerbs(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	for _, kc := range kindCases(h.ns) {
		t.Run(kc.name, func(t *testing.T) {
			item := kc.collection + "/obj-1"
			// A watch from now on sees every change below, in order.
			listed := h.do("GET", kc.collection, nil, "").expectCode(t, 200)
			var list struct {
				Kind, APIVersion string
				Metadata         metav1.ListMeta
				Items            []map[string]any
			}
			listed.into(t, &list)
			if list.Kind != kc.listKind || list.APIVersion != kc.apiVersion {
				t.Errorf("empty list is %s %s, want %s %s", list.APIVersion, list.Kind, kc.apiVersion, kc.listKind)
			}
			w := h.watchRaw(kc.collection + "?watch=true&resourceVersion=" + list.Metadata.ResourceVersion)
			defer w.close()

			// create
			created := h.do("POST", kc.collection, kc.doc("obj-1"), "").expectCode(t, http.StatusCreated)
			var obj map[string]any
			created.into(t, &obj)
			md := meta(t, obj)
			if md.UID == "" || md.ResourceVersion == "" || md.CreationTimestamp.IsZero() {
				t.Errorf("created object lacks uid, resourceVersion or creationTimestamp: %+v", md)
			}
			if obj["kind"] != kc.kind || obj["apiVersion"] != kc.apiVersion {
				t.Errorf("created object is %v %v", obj["apiVersion"], obj["kind"])
			}
			if kc.hasSpec && md.Generation != 1 {
				t.Errorf("generation after create = %d, want 1", md.Generation)
			}
			if w.next(t).Type != "ADDED" {
				t.Error("watch did not see ADDED first")
			}

			// get
			var got map[string]any
			h.do("GET", item, nil, "").expectCode(t, 200).into(t, &got)
			if meta(t, got).ResourceVersion != md.ResourceVersion {
				t.Errorf("get returned resourceVersion %s, want %s", meta(t, got).ResourceVersion, md.ResourceVersion)
			}
			if kc.hasStatus {
				h.do("GET", item+"/status", nil, "").expectCode(t, 200)
			}

			// list
			h.do("GET", kc.collection, nil, "").expectCode(t, 200).into(t, &list)
			if len(list.Items) != 1 || meta(t, list.Items[0]).Name != "obj-1" {
				t.Errorf("list = %v, want obj-1", list.Items)
			}

			// update (PUT) with the resourceVersion read
			kc.change(got)
			var updated map[string]any
			h.do("PUT", item, got, "").expectCode(t, 200).into(t, &updated)
			umd := meta(t, updated)
			if umd.ResourceVersion == md.ResourceVersion {
				t.Error("update did not change the resourceVersion")
			}
			if kc.hasSpec && umd.Generation != 2 {
				t.Errorf("generation after a spec change = %d, want 2", umd.Generation)
			}
			if ev := w.next(t); ev.Type != "MODIFIED" {
				t.Errorf("watch saw %s after update, want MODIFIED", ev.Type)
			}

			// merge patch
			var patched map[string]any
			h.do("PATCH", item, `{"metadata":{"labels":{"a":"1"}}}`, "application/merge-patch+json").expectCode(t, 200).into(t, &patched)
			if meta(t, patched).Labels["a"] != "1" {
				t.Error("merge patch did not set the label")
			}
			if kc.hasSpec && meta(t, patched).Generation != 2 {
				t.Errorf("a metadata change bumped the generation to %d", meta(t, patched).Generation)
			}
			// JSON patch
			h.do("PATCH", item, `[{"op":"add","path":"/metadata/labels/b","value":"2"}]`, "application/json-patch+json").expectCode(t, 200).into(t, &patched)
			if meta(t, patched).Labels["b"] != "2" || meta(t, patched).Labels["a"] != "1" {
				t.Errorf("JSON patch: labels = %v", meta(t, patched).Labels)
			}
			// strategic merge patch is treated as a merge patch
			h.do("PATCH", item, `{"metadata":{"labels":{"c":"3"}}}`, "application/strategic-merge-patch+json").expectCode(t, 200).into(t, &patched)
			if meta(t, patched).Labels["c"] != "3" {
				t.Error("strategic merge patch did not set the label")
			}
			for range 3 {
				if ev := w.next(t); ev.Type != "MODIFIED" {
					t.Errorf("watch saw %s after a patch, want MODIFIED", ev.Type)
				}
			}

			// delete
			var deleted map[string]any
			h.do("DELETE", item, nil, "").expectCode(t, 200).into(t, &deleted)
			if kc.kind == v1.KindVirtualMachineInstance {
				// A VMI waits for its node agent to let it go.
				if meta(t, deleted).DeletionTimestamp == nil {
					t.Error("deleting a VMI did not mark it")
				}
				if ev := w.next(t); ev.Type != "MODIFIED" {
					t.Errorf("watch saw %s after marking, want MODIFIED", ev.Type)
				}
				h.release("obj-1")
			}
			h.absent(item)
			if ev := w.next(t); ev.Type != "DELETED" {
				t.Errorf("watch saw %s after delete, want DELETED", ev.Type)
			}
			h.do("DELETE", item, nil, "").expectStatus(t, 404, "")

			// deletecollection with a label selector
			for _, n := range []string{"c-1", "c-2", "c-3"} {
				doc := kc.doc(n)
				if n != "c-3" {
					doc["metadata"].(map[string]any)["labels"] = map[string]any{"sweep": "yes"}
				}
				h.do("POST", kc.collection, doc, "").expectCode(t, http.StatusCreated)
			}
			h.do("DELETE", kc.collection+"?labelSelector=sweep%3Dyes", nil, "").expectCode(t, 200)
			if kc.kind == v1.KindVirtualMachineInstance {
				h.release("c-1")
				h.release("c-2")
			}
			h.absent(kc.collection + "/c-1")
			h.absent(kc.collection + "/c-2")
			h.do("GET", kc.collection+"/c-3", nil, "").expectCode(t, 200)
			h.do("DELETE", kc.collection+"/c-3", nil, "").expectCode(t, 200)
		})
	}
}

func meta(t *testing.T, obj map[string]any) metav1.ObjectMeta {
	t.Helper()
	var m metav1.ObjectMeta
	b, _ := json.Marshal(obj["metadata"])
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// rawWatch reads a watch stream line by line.
type rawWatch struct {
	resp   *http.Response
	events chan rawEvent
	done   chan struct{}
}

type rawEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func (e rawEvent) meta(t *testing.T) metav1.ObjectMeta {
	t.Helper()
	var m struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(e.Object, &m); err != nil {
		t.Fatal(err)
	}
	return m.Metadata
}

// watchRaw opens a watch; path includes the query (watch=true).
func (h *harness) watchRaw(path string) *rawWatch {
	h.t.Helper()
	resp, err := http.Get(h.s.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		h.t.Fatalf("watch %s: %d: %s", path, resp.StatusCode, b[:n])
	}
	w := &rawWatch{resp: resp, events: make(chan rawEvent, 1000), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var ev rawEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = rawEvent{Type: "UNDECODABLE: " + sc.Text()}
			}
			w.events <- ev
		}
	}()
	h.t.Cleanup(w.close)
	return w
}

// next returns the next event that is not a BOOKMARK, or fails after 10s.
func (w *rawWatch) next(t *testing.T) rawEvent {
	t.Helper()
	for {
		ev := w.nextAny(t)
		if ev.Type != "BOOKMARK" {
			return ev
		}
	}
}

// nextAny returns the next event, bookmarks included.
func (w *rawWatch) nextAny(t *testing.T) rawEvent {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatal("the watch stream ended")
		}
		return ev
	case <-timeAfter(10):
		t.Fatal("no watch event within 10s")
	}
	panic("unreachable")
}

func (w *rawWatch) close() {
	w.resp.Body.Close()
	<-w.done
}

// TestCreateRules covers what create sets and refuses: server-set fields,
// status dropped (except Nodes, which agents register with their status),
// generateName, duplicates, and the deprecation warning of spec.running.
func TestCreateRules(t *testing.T) {
	h := newHarness(t, apiserver.Config{})

	vm := newVM(h.ns, "vm1", v1.RunStrategyHalted)
	vm.UID = "client-chosen"
	vm.Generation = 9
	vm.Status = v1.VirtualMachineStatus{Created: true, PrintableStatus: v1.VirtualMachineStatusRunning}
	now := metav1.Now()
	vm.DeletionTimestamp = &now
	out, err := h.vms().Create(ctx(), vm, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.UID == "client-chosen" || out.Generation != 1 || out.DeletionTimestamp != nil {
		t.Errorf("create kept client-set uid/generation/deletionTimestamp: %+v", out.ObjectMeta)
	}
	if out.Status.Created || out.Status.PrintableStatus != "" {
		t.Errorf("create kept the status: %+v", out.Status)
	}
	if got := h.getVM("vm1"); got.Status.Created {
		t.Errorf("stored status is not empty: %+v", got.Status)
	}

	// A VMI's status is dropped too.
	vmi := newVMI(h.ns, "vmi1")
	vmi.Status.Phase = v1.Running
	outVMI, err := h.vmis().Create(ctx(), vmi, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if outVMI.Status.Phase != "" {
		t.Errorf("create kept the VMI phase %q", outVMI.Status.Phase)
	}

	// A Node keeps its status: agents register with it.
	node := &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "node-create"},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: "Ready", Status: "True"}}}}
	outNode, err := h.c.Nodes().Create(ctx(), node, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(outNode.Status.Conditions) != 1 {
		t.Errorf("node status dropped on create: %+v", outNode.Status)
	}

	// YAML bodies are accepted.
	yamlVM := "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: from-yaml\nspec:\n  runStrategy: Halted\n  template:\n    spec:\n      domain:\n        resources:\n          requests:\n            memory: 64Mi\n        devices: {}\n"
	h.do("POST", h.vmsPath(), yamlVM, "application/yaml").expectCode(t, 201)
	h.do("POST", h.vmsPath(), strings.Replace(yamlVM, "from-yaml", "bad-yaml", 1)+"  colour: blue\n", "application/yaml").expectStatus(t, 422, "")
	h.absent(h.vmPath("bad-yaml"))

	// Duplicate names.
	_, err = h.vms().Create(ctx(), newVM(h.ns, "vm1", v1.RunStrategyHalted), client.WriteOptions{})
	if !isAlreadyExists(err) {
		t.Errorf("creating a duplicate: %v, want AlreadyExists", err)
	}

	// generateName.
	gen := newVM(h.ns, "", v1.RunStrategyHalted)
	gen.GenerateName = "gen-"
	g1, err := h.vms().Create(ctx(), gen, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g2, err := h.vms().Create(ctx(), gen, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(g1.Name, "gen-") || g1.Name == g2.Name || len(g1.Name) != len("gen-")+5 {
		t.Errorf("generated names %q, %q", g1.Name, g2.Name)
	}

	// The object's namespace defaults to the request's.
	noNS := newVM("", "vm-no-ns", v1.RunStrategyHalted)
	outNoNS, err := h.vms().Create(ctx(), noNS, client.WriteOptions{})
	if err != nil || outNoNS.Namespace != h.ns {
		t.Errorf("create without a namespace: %v, namespace %q", err, outNoNS.GetNamespace())
	}

	// spec.running is accepted with the deprecation warning (section 3).
	drain(h.warnings)
	legacy := newVM(h.ns, "legacy", "")
	legacy.Spec.RunStrategy = nil
	legacy.Spec.Running = ptr(false)
	if _, err := h.vms().Create(ctx(), legacy, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := drain(h.warnings); len(w) != 1 || w[0] != v1.WarningRunningDeprecated {
		t.Errorf("warnings = %q, want [%q]", w, v1.WarningRunningDeprecated)
	}
	r := h.do("POST", h.vmsPath(), mustJSON(func() *v1.VirtualMachine {
		v := newVM(h.ns, "legacy2", "")
		v.Spec.RunStrategy = nil
		v.Spec.Running = ptr(true)
		return v
	}()), "")
	r.expectCode(t, 201)
	if got := r.header.Get("Warning"); got != `299 - "`+v1.WarningRunningDeprecated+`"` {
		t.Errorf("Warning header = %q", got)
	}
	// A status write on such a VM does not repeat the warning: it is about
	// the spec, which a status writer does not own.
	st := h.getVM("legacy")
	st.Status.PrintableStatus = v1.VirtualMachineStatusStopped
	drain(h.warnings)
	if _, err := h.vms().UpdateStatus(ctx(), st, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := drain(h.warnings); len(w) != 0 {
		t.Errorf("a status write got warnings %q", w)
	}

	// Both running and runStrategy: 422 with the admission message.
	both := newVM(h.ns, "both", v1.RunStrategyAlways)
	both.Spec.Running = ptr(true)
	r = h.do("POST", h.vmsPath(), both, "")
	st422 := r.expectStatusContains(t, 422, v1.MsgRunningAndRunStrategy)
	if st422.Details == nil || len(st422.Details.Causes) == 0 || st422.Details.Causes[0].Field != "spec.running" {
		t.Errorf("causes = %+v, want spec.running", st422.Details)
	}
	h.absent(h.vmPath("both"))
}

func drain(ch chan string) []string {
	var out []string
	for {
		select {
		case w := <-ch:
			out = append(out, w)
		default:
			return out
		}
	}
}

// TestSpecStatusSplit: a write to the main resource never changes status, a
// write to /status never changes spec or metadata, and metadata.generation
// counts spec changes only.
func TestSpecStatusSplit(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	vm := h.createVM("vm", v1.RunStrategyHalted)

	// A status write changes status only.
	w := vm.DeepCopy()
	w.Status.PrintableStatus = v1.VirtualMachineStatusStopped
	w.Spec.RunStrategy = ptr(v1.RunStrategyAlways) // ignored
	w.Labels = map[string]string{"ignored": "yes"} // ignored
	out, err := h.vms().UpdateStatus(ctx(), w, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status.PrintableStatus != v1.VirtualMachineStatusStopped {
		t.Errorf("status write did not write status: %+v", out.Status)
	}
	if *out.Spec.RunStrategy != v1.RunStrategyHalted || out.Labels["ignored"] != "" {
		t.Errorf("status write changed spec or labels: %v %v", *out.Spec.RunStrategy, out.Labels)
	}
	if out.Generation != 1 {
		t.Errorf("status write changed the generation to %d", out.Generation)
	}

	// A main-resource write changes spec and metadata, not status.
	w = out.DeepCopy()
	w.Spec.RunStrategy = ptr(v1.RunStrategyManual)
	w.Labels = map[string]string{"l": "1"}
	w.Status.PrintableStatus = v1.VirtualMachineStatusRunning // ignored
	out, err = h.vms().Update(ctx(), w, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *out.Spec.RunStrategy != v1.RunStrategyManual || out.Labels["l"] != "1" {
		t.Errorf("update did not write spec and labels")
	}
	if out.Status.PrintableStatus != v1.VirtualMachineStatusStopped {
		t.Errorf("update changed status to %q", out.Status.PrintableStatus)
	}
	if out.Generation != 2 {
		t.Errorf("generation after a spec change = %d, want 2", out.Generation)
	}

	// A metadata-only change keeps the generation.
	out, err = h.vms().Patch(ctx(), "vm", client.MergePatch, []byte(`{"metadata":{"annotations":{"a":"b"}}}`), "", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Generation != 2 {
		t.Errorf("generation after a metadata change = %d, want 2", out.Generation)
	}

	// Patching status through the main resource changes nothing there.
	rv := out.ResourceVersion
	out, err = h.vms().Patch(ctx(), "vm", client.MergePatch, []byte(`{"status":{"printableStatus":"Running"}}`), "", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status.PrintableStatus != v1.VirtualMachineStatusStopped || out.ResourceVersion != rv {
		t.Errorf("a status patch on the main resource wrote: status %q, rv %s -> %s", out.Status.PrintableStatus, rv, out.ResourceVersion)
	}

	// Patching spec through /status changes nothing there.
	out, err = h.vms().Patch(ctx(), "vm", client.MergePatch, []byte(`{"spec":{"runStrategy":"Always"}}`), "status", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *out.Spec.RunStrategy != v1.RunStrategyManual || out.ResourceVersion != rv {
		t.Errorf("a spec patch on /status wrote: %v, rv %s -> %s", *out.Spec.RunStrategy, rv, out.ResourceVersion)
	}

	// An update that changes nothing writes nothing.
	same, err := h.vms().Update(ctx(), out, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if same.ResourceVersion != rv {
		t.Errorf("a no-op update wrote: rv %s -> %s", rv, same.ResourceVersion)
	}

	// Status patches work on VMIs (agents report phases this way).
	h.createVMI("vmi", "")
	vmi, err := h.vmis().Patch(ctx(), "vmi", client.MergePatch, []byte(`{"status":{"phase":"Running","nodeName":"n1"}}`), "status", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if vmi.Status.Phase != v1.Running || vmi.Status.NodeName != "n1" || vmi.Generation != 1 {
		t.Errorf("VMI status patch: %+v generation %d", vmi.Status, vmi.Generation)
	}
	// A VMI's spec is immutable but for its grace period.
	r := h.do("PATCH", h.vmiPath("vmi"), `{"spec":{"hostname":"other"}}`, "application/merge-patch+json")
	r.expectStatus(t, 422, "")
	out2, err := h.vmis().Patch(ctx(), "vmi", client.MergePatch, []byte(`{"spec":{"terminationGracePeriodSeconds":3}}`), "", client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out2.Generation != 2 || out2.Status.Phase != v1.Running {
		t.Errorf("grace period change: generation %d, phase %q", out2.Generation, out2.Status.Phase)
	}
	// An invalid status is refused with 422.
	h.do("PATCH", h.vmiPath("vmi")+"/status", `{"status":{"phase":"Exploded"}}`, "application/merge-patch+json").expectStatus(t, 422, "")
}

// TestDryRun: ?dryRun=All on every write validates and answers as the write
// would, and stores nothing.
func TestDryRun(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	h.createVM("vm", v1.RunStrategyHalted)
	rv := h.rv(h.vmPath("vm"))

	// create
	r := h.do("POST", h.vmsPath()+"?dryRun=All", newVM(h.ns, "dry", v1.RunStrategyHalted), "").expectCode(t, 201)
	var created v1.VirtualMachine
	r.into(t, &created)
	if created.Name != "dry" || created.UID == "" {
		t.Errorf("dry-run create answered %+v", created.ObjectMeta)
	}
	h.absent(h.vmPath("dry"))
	// A dry-run create of a taken name is refused as the create would be.
	h.do("POST", h.vmsPath()+"?dryRun=All", newVM(h.ns, "vm", v1.RunStrategyHalted), "").expectStatus(t, 409, "")
	// A dry-run create still validates.
	bad := newVM(h.ns, "dry-bad", "Sometimes")
	h.do("POST", h.vmsPath()+"?dryRun=All", bad, "").expectStatus(t, 422, "")

	// update
	vm := h.getVM("vm")
	vm.Spec.RunStrategy = ptr(v1.RunStrategyManual)
	var upd v1.VirtualMachine
	h.do("PUT", h.vmPath("vm")+"?dryRun=All", vm, "").expectCode(t, 200).into(t, &upd)
	if *upd.Spec.RunStrategy != v1.RunStrategyManual || upd.Generation != 2 {
		t.Errorf("dry-run update answered %v generation %d", *upd.Spec.RunStrategy, upd.Generation)
	}
	h.unchanged(h.vmPath("vm"), rv)
	// status update
	vm = h.getVM("vm")
	vm.Status.PrintableStatus = v1.VirtualMachineStatusStopped
	h.do("PUT", h.vmPath("vm")+"/status?dryRun=All", vm, "").expectCode(t, 200)
	h.unchanged(h.vmPath("vm"), rv)
	// patches
	h.do("PATCH", h.vmPath("vm")+"?dryRun=All", `{"metadata":{"labels":{"x":"y"}}}`, "application/merge-patch+json").expectCode(t, 200)
	h.do("PATCH", h.vmPath("vm")+"?dryRun=All", `[{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]`, "application/json-patch+json").expectCode(t, 200)
	h.do("PATCH", h.vmPath("vm")+"/status?dryRun=All", `{"status":{"ready":true}}`, "application/merge-patch+json").expectCode(t, 200)
	h.unchanged(h.vmPath("vm"), rv)
	// delete, by query and by DeleteOptions body
	h.do("DELETE", h.vmPath("vm")+"?dryRun=All", nil, "").expectCode(t, 200)
	h.do("DELETE", h.vmPath("vm"), `{"dryRun":["All"]}`, "").expectCode(t, 200)
	h.unchanged(h.vmPath("vm"), rv)
	// delete of an object with finalizers (it would only be marked)
	fin := h.createVMI("fin", "", withFinalizer("test/keep"))
	var marked v1.VirtualMachineInstance
	h.do("DELETE", h.vmiPath("fin")+"?dryRun=All", nil, "").expectCode(t, 200).into(t, &marked)
	if marked.DeletionTimestamp == nil {
		t.Error("dry-run delete of an object with finalizers did not answer with a deletionTimestamp")
	}
	h.unchanged(h.vmiPath("fin"), fin.ResourceVersion)
	// deletecollection
	h.do("DELETE", h.vmsPath()+"?dryRun=All", nil, "").expectCode(t, 200)
	h.unchanged(h.vmPath("vm"), rv)
	// Only All is a valid value.
	h.do("POST", h.vmsPath()+"?dryRun=Some", newVM(h.ns, "dry2", v1.RunStrategyHalted), "").expectStatus(t, 400, "")
	h.absent(h.vmPath("dry2"))
}

// TestPatchTypes covers the patch content types and their failures.
func TestPatchTypes(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	vm := h.createVM("vm", v1.RunStrategyHalted)
	path := h.vmPath("vm")
	rv := vm.ResourceVersion

	// A JSON patch test that fails is a 409 and writes nothing.
	h.do("PATCH", path, `[{"op":"test","path":"/spec/runStrategy","value":"Always"},{"op":"replace","path":"/spec/runStrategy","value":"Manual"}]`,
		"application/json-patch+json").expectStatus(t, 409, "")
	h.unchanged(path, rv)
	// One that holds applies.
	var out v1.VirtualMachine
	h.do("PATCH", path, `[{"op":"test","path":"/spec/runStrategy","value":"Halted"},{"op":"replace","path":"/spec/runStrategy","value":"Manual"}]`,
		"application/json-patch+json").expectCode(t, 200).into(t, &out)
	if *out.Spec.RunStrategy != v1.RunStrategyManual {
		t.Errorf("JSON patch gave %v", *out.Spec.RunStrategy)
	}
	rv = out.ResourceVersion

	// Server-side apply and unknown content types are 415.
	st := h.do("PATCH", path, "metadata: {}", "application/apply-patch+yaml").expectStatus(t, 415, "")
	if st.Reason != metav1.StatusReasonUnsupportedMediaType {
		t.Errorf("apply reason = %q", st.Reason)
	}
	h.do("PATCH", path, `{}`, "application/json").expectStatus(t, 415, "")
	h.do("PATCH", path, `{}`, "text/plain").expectStatus(t, 415, "")
	h.do("PUT", path, mustJSON(out), "text/plain").expectStatus(t, 415, "")
	h.do("POST", h.vmsPath(), mustJSON(newVM(h.ns, "x", v1.RunStrategyHalted)), "application/xml").expectStatus(t, 415, "")
	h.do("PATCH", path, `{}`, "this is not a media type").expectStatus(t, 415, "")
	// Malformed patches are 400.
	h.do("PATCH", path, `{"spec":`, "application/merge-patch+json").expectStatus(t, 400, "")
	h.do("PATCH", path, `{"op":"add"}`, "application/json-patch+json").expectStatus(t, 400, "")
	h.do("PATCH", path, `[{"op":"frobnicate","path":"/spec"}]`, "application/json-patch+json").expectCode(t, 422)
	// A JSON patch on a missing path cannot apply: 422.
	h.do("PATCH", path, `[{"op":"replace","path":"/spec/nothing/here","value":1}]`, "application/json-patch+json").expectCode(t, 422)
	// A patch that makes the object invalid is 422 naming the field.
	st = h.do("PATCH", path, `{"spec":{"runStrategy":"Sometimes"}}`, "application/merge-patch+json").expectStatus(t, 422, "")
	if st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "spec.runStrategy" {
		t.Errorf("causes = %+v", st.Details)
	}
	// A patch that adds an unknown field is 422 naming it.
	st = h.do("PATCH", path, `{"spec":{"colour":"blue"}}`, "application/merge-patch+json").expectStatus(t, 422, "")
	if st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Field != "spec.colour" {
		t.Errorf("causes = %+v", st.Details)
	}
	// A patch that renames the object is refused.
	h.do("PATCH", path, `{"metadata":{"name":"other"}}`, "application/merge-patch+json").expectStatus(t, 400, "")
	// A patch with a stale resourceVersion is a conflict.
	h.do("PATCH", path, `{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}`, "application/merge-patch+json").expectStatus(t, 409, "")
	// A patch of a missing object is 404.
	h.do("PATCH", h.vmPath("missing"), `{}`, "application/merge-patch+json").expectStatus(t, 404, "")
	h.unchanged(path, rv)

	// Merge patch semantics: null deletes a key.
	h.do("PATCH", path, `{"metadata":{"labels":{"a":"1","b":"2"}}}`, "application/merge-patch+json").expectCode(t, 200)
	h.do("PATCH", path, `{"metadata":{"labels":{"a":null}}}`, "application/merge-patch+json").expectCode(t, 200).into(t, &out)
	if _, ok := out.Labels["a"]; ok || out.Labels["b"] != "2" {
		t.Errorf("labels after null = %v", out.Labels)
	}
}

// TestConcurrentWriters: writers that retry on 409 never lose an update,
// whether they use PUT with the resourceVersion they read, or merge patches
// carrying it; and concurrent unconditional patches all land.
func TestConcurrentWriters(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	h.createVM("counter", v1.RunStrategyHalted)
	const writers, each = 8, 10

	var wg sync.WaitGroup
	errs := make(chan error, writers*3)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := h.incrementCounter("counter", i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Unconditional merge patches of distinct labels, concurrently.
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			patch := sprintf(`{"metadata":{"labels":{"w%d":"x"}}}`, i)
			if _, err := h.vms().Patch(ctx(), "counter", client.MergePatch, []byte(patch), "", client.WriteOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	// Unconditional updates (no resourceVersion) of another VM never
	// conflict: each applies to whatever is current.
	h.createVM("free", v1.RunStrategyHalted)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				vm, err := h.vms().Get(ctx(), "free")
				if err != nil {
					errs <- err
					return
				}
				vm.ResourceVersion = ""
				vm.Annotations = map[string]string{"last-writer": sprintf("%d", i)}
				if _, err := h.vms().Update(ctx(), vm, client.WriteOptions{}); err != nil {
					errs <- sprintfErr("unconditional update: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	vm := h.getVM("counter")
	if got := label(vm, "count"); got != sprintf("%d", writers*each) {
		t.Errorf("counter = %s, want %d: an update was lost", got, writers*each)
	}
	for i := range writers {
		if label(vm, sprintf("w%d", i)) != "x" {
			t.Errorf("label w%d lost", i)
		}
	}
}

// incrementCounter increments the "count" label GuaranteedUpdate-style:
// read, change, write with the resourceVersion read, and retry on 409.
func (h *harness) incrementCounter(name string, usePut bool) error {
	for {
		vm, err := h.vms().Get(ctx(), name)
		if err != nil {
			return err
		}
		n := 0
		if s := label(vm, "count"); s != "" {
			if err := json.Unmarshal([]byte(s), &n); err != nil {
				return err
			}
		}
		next := sprintf("%d", n+1)
		if usePut {
			if vm.Labels == nil {
				vm.Labels = map[string]string{}
			}
			vm.Labels["count"] = next
			_, err = h.vms().Update(ctx(), vm, client.WriteOptions{})
		} else {
			patch := sprintf(`{"metadata":{"resourceVersion":%q,"labels":{"count":%q}}}`, vm.ResourceVersion, next)
			_, err = h.vms().Patch(ctx(), name, client.MergePatch, []byte(patch), "", client.WriteOptions{})
		}
		if isConflict(err) {
			continue
		}
		return err
	}
}
