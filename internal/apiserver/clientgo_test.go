package apiserver_test

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

var (
	vmGVR  = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
	vmiGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}
)

func unstructuredVM(ns, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": "demo"}},
		"spec": map[string]any{"runStrategy": "Halted", "template": map[string]any{"spec": map[string]any{
			"domain": map[string]any{"resources": map[string]any{"requests": map[string]any{"memory": "64Mi"}}, "devices": map[string]any{}}}}},
	}}
}

// TestClientGo drives the server with k8s.io/client-go's discovery,
// REST mapper, dynamic client and dynamic informer, as kubectl and
// controllers written for Kubernetes do.
func TestClientGo(t *testing.T) {
	h := newHarness(t, apiserver.Config{BookmarkInterval: 100 * time.Millisecond})
	cfg := &rest.Config{Host: h.s.URL, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Discovery.
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := dc.ServerVersion()
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	if ver.GoVersion == "" {
		t.Errorf("ServerVersion = %+v", ver)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("ServerGroupsAndResources: %v", err)
	}
	found := map[string]bool{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			found[l.GroupVersion+"/"+r.Name] = true
		}
	}
	for _, want := range []string{"kubevirt.io/v1/virtualmachines", "kubevirt.io/v1/virtualmachineinstances", "kubevirt.io/v1/virtualmachines/status",
		"v1/nodes", "v1/events", "coordination.k8s.io/v1/leases", "subresources.kubevirt.io/v1/virtualmachines/start"} {
		if !found[want] {
			t.Errorf("discovery lacks %s", want)
		}
	}
	pref, err := dc.ServerPreferredResources()
	if err != nil || len(pref) == 0 {
		t.Errorf("ServerPreferredResources: %v (%d lists)", err, len(pref))
	}

	// REST mapping, as kubectl resolves kinds and short names.
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	m, err := mapper.RESTMapping(schema.GroupKind{Group: "kubevirt.io", Kind: "VirtualMachine"}, "v1")
	if err != nil || m.Resource != vmGVR || m.Scope.Name() != "namespace" {
		t.Errorf("RESTMapping(VirtualMachine) = %+v, %v", m, err)
	}
	expander := restmapper.NewShortcutExpander(mapper, dc, nil)
	if gvr, err := expander.ResourceFor(schema.GroupVersionResource{Resource: "vm"}); err != nil || gvr != vmGVR {
		t.Errorf("short name vm = %v, %v", gvr, err)
	}

	// The dynamic client: every verb.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vms := dyn.Resource(vmGVR).Namespace(h.ns)
	list, err := vms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	w, err := vms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion(), AllowWatchBookmarks: true})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()

	created, err := vms.Create(ctx, unstructuredVM(h.ns, "vm1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.GetUID() == "" || created.GetGeneration() != 1 {
		t.Errorf("created: uid %q generation %d", created.GetUID(), created.GetGeneration())
	}
	if _, err := vms.Create(ctx, unstructuredVM(h.ns, "vm1"), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("duplicate create: %v", err)
	}
	if _, err := vms.Create(ctx, unstructuredVM(h.ns, "dry"), metav1.CreateOptions{DryRun: []string{"All"}}); err != nil {
		t.Errorf("dry-run create: %v", err)
	}
	if _, err := vms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get of a dry-run object: %v", err)
	}
	got, err := vms.Get(ctx, "vm1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if err := unstructured.SetNestedField(got.Object, "Manual", "spec", "runStrategy"); err != nil {
		t.Fatal(err)
	}
	updated, err := vms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.GetGeneration() != 2 {
		t.Errorf("generation after update = %d", updated.GetGeneration())
	}
	if _, err := vms.Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("stale update: %v, want Conflict", err)
	}
	patched, err := vms.Patch(ctx, "vm1", types.MergePatchType, []byte(`{"metadata":{"labels":{"patched":"yes"}}}`), metav1.PatchOptions{})
	if err != nil || patched.GetLabels()["patched"] != "yes" {
		t.Fatalf("merge patch: %v", err)
	}
	if _, err := vms.Patch(ctx, "vm1", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/runStrategy","value":"Always"}]`), metav1.PatchOptions{}); err != nil {
		t.Errorf("JSON patch: %v", err)
	}
	if _, err := vms.Patch(ctx, "vm1", types.StrategicMergePatchType, []byte(`{"metadata":{"annotations":{"a":"b"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("strategic merge patch: %v", err)
	}
	if _, err := vms.Patch(ctx, "vm1", types.ApplyPatchType, []byte(`{}`), metav1.PatchOptions{FieldManager: "test"}); !apierrors.IsUnsupportedMediaType(err) {
		t.Errorf("server-side apply: %v, want 415", err)
	}
	// Status through the dynamic client's status subresource.
	got, err = vms.Get(ctx, "vm1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(got.Object, "Stopped", "status", "printableStatus"); err != nil {
		t.Fatal(err)
	}
	st, err := vms.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update status: %v", err)
	}
	if ps, _, _ := unstructured.NestedString(st.Object, "status", "printableStatus"); ps != "Stopped" {
		t.Errorf("printableStatus = %q", ps)
	}
	sel, err := vms.List(ctx, metav1.ListOptions{LabelSelector: "patched=yes", FieldSelector: "metadata.name=vm1"})
	if err != nil || len(sel.Items) != 1 {
		t.Errorf("list with selectors: %v", err)
	}
	if err := vms.Delete(ctx, "vm1", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := vms.Get(ctx, "vm1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v", err)
	}

	var types_ []watch.EventType
	deadline := time.After(10 * time.Second)
	for len(types_) < 7 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch error: %v", apierrors.FromObject(ev.Object))
			}
			if ev.Type != watch.Bookmark {
				types_ = append(types_, ev.Type)
			}
		case <-deadline:
			t.Fatalf("watch saw only %v", types_)
		}
	}
	want := []watch.EventType{watch.Added, watch.Modified, watch.Modified, watch.Modified, watch.Modified, watch.Modified, watch.Deleted}
	for i := range want {
		if types_[i] != want[i] {
			t.Errorf("watch saw %v, want %v", types_, want)
			break
		}
	}

	// VMIs, across namespaces, with a dynamic informer (a reflector: list,
	// then watch with bookmarks, relisting as it needs).
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := factory.ForResource(vmiGVR).Informer()
	added := make(chan string, 10)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			added <- u.GetNamespace() + "/" + u.GetName()
		}
	}}); err != nil {
		t.Fatal(err)
	}
	h.createVMI("before", v1.Running)
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	syncCtx, syncCancel := context.WithTimeout(ctx, 20*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("the dynamic informer did not sync")
	}
	h.createVMI("after", "")
	seen := map[string]bool{}
	for !seen[h.ns+"/after"] {
		select {
		case k := <-added:
			seen[k] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("the informer saw only %v", seen)
		}
	}
	if !seen[h.ns+"/before"] {
		t.Errorf("the informer missed the VMI listed first: %v", seen)
	}
	vmis := dyn.Resource(vmiGVR).Namespace(h.ns)
	if err := vmis.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("deletecollection: %v", err)
	}

	// The typed core client (it prefers protobuf and falls back to JSON).
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("clientset nodes list: %v", err)
	}
}
