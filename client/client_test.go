package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
)

const ns = "test"

func newVM(name string, rs v1.RunStrategy) *v1.VirtualMachine {
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1.VirtualMachineSpec{RunStrategy: &rs, Template: &v1.VirtualMachineInstanceTemplateSpec{Spec: vmiSpec()}},
	}
}

func vmiSpec() v1.VirtualMachineInstanceSpec {
	return v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
		v1.ResourceMemory: resource.MustParse("64Mi"),
	}}}}
}

func newVMI(name string) *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: vmiSpec()}
}

func start(t *testing.T, cfg apiserver.Config, ccfg client.Config) (*apiservertest.Server, *client.Client) {
	t.Helper()
	s := apiservertest.Start(t, apiservertest.Config{API: cfg})
	return s, s.Client(t, ccfg)
}

var bg = context.Background()

// TestTypedErrors: every error answer becomes a *StatusError that
// apimachinery's predicates recognise, with the server's message.
func TestTypedErrors(t *testing.T) {
	_, c := start(t, apiserver.Config{}, client.Config{})
	vms := c.VirtualMachines(ns)
	if _, err := vms.Get(bg, "missing"); !apierrors.IsNotFound(err) {
		t.Errorf("get missing: %v", err)
	}
	vm, err := vms.Create(bg, newVM("vm", v1.RunStrategyHalted), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Create(bg, newVM("vm", v1.RunStrategyHalted), client.WriteOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	stale := vm.DeepCopy()
	vm.Labels = map[string]string{"a": "b"}
	if _, err := vms.Update(bg, vm, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	stale.Labels = map[string]string{"a": "c"}
	if _, err := vms.Update(bg, stale, client.WriteOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("stale update: %v", err)
	}
	_, err = vms.CreateRaw(bg, []byte(`{"metadata":{"name":"raw"},"spec":{"runStrategy":"Halted","colour":"blue"}}`), client.WriteOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("unknown field: %v", err)
	}
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil || se.ErrStatus.Details.Causes[0].Field != "spec.colour" {
		t.Errorf("422 causes lost: %+v", err)
	}
	if _, err := vms.List(bg, client.ListOptions{LabelSelector: "a==="}); !apierrors.IsBadRequest(err) {
		t.Errorf("bad selector: %v", err)
	}
	if _, err := vms.Patch(bg, "vm", "application/apply-patch+yaml", []byte("{}"), "", client.WriteOptions{}); !apierrors.IsUnsupportedMediaType(err) {
		t.Errorf("apply: %v", err)
	}
	// Lifecycle refusals keep the core's message.
	err = vms.Start(bg, "vm", v1.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = vms.Start(bg, "vm", v1.StartOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "Always does not support manual start requests") {
		t.Errorf("second start: %v", err)
	}
	if err := vms.Restart(bg, "vm", v1.RestartOptions{GracePeriodSeconds: ptr(int64(3))}); !apierrors.IsBadRequest(err) ||
		apierrors.ReasonForError(err) != metav1.StatusReasonBadRequest || err.Error() != "For force restart, only gracePeriod=0 is supported for now" {
		t.Errorf("restart with grace 3: %v", err)
	}
	// Raw requests answer the same way.
	if _, err := c.Raw(bg, "GET", "/apis/kubevirt.io/v1/namespaces/test/virtualmachines/none", nil, ""); !apierrors.IsNotFound(err) {
		t.Errorf("raw get missing: %v", err)
	}
	out, err := c.Raw(bg, "GET", "/version", nil, "")
	if err != nil || !strings.Contains(string(out), "goVersion") {
		t.Errorf("raw /version: %v %s", err, out)
	}

	// Authentication.
	_, anon := start(t, apiserver.Config{Token: "tok"}, client.Config{})
	if _, err := anon.VirtualMachines(ns).List(bg, client.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("no token: %v", err)
	}

	// An answer that is not a Status still becomes a StatusError with its code.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the proxy is unhappy", http.StatusBadGateway)
	}))
	defer plain.Close()
	pc, err := client.New(client.Config{Server: plain.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pc.VirtualMachines(ns).Get(bg, "x")
	if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusBadGateway || !strings.Contains(err.Error(), "the proxy is unhappy") {
		t.Errorf("non-Status answer: %#v", err)
	}
	// No server at all: a plain error, not a StatusError.
	gone, _ := client.New(client.Config{Server: "http://127.0.0.1:1", Timeout: 2 * time.Second})
	if _, err := gone.VirtualMachines(ns).Get(bg, "x"); err == nil || errors.As(err, &se) {
		t.Errorf("unreachable server: %v", err)
	}

	// Bad configuration.
	for _, s := range []string{"", "ftp://x", "not a url", "http://"} {
		if _, err := client.New(client.Config{Server: s}); err == nil {
			t.Errorf("client.New(%q) accepted", s)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestWarnings: the server's warnings reach OnWarning, unquoted.
func TestWarnings(t *testing.T) {
	var got []string
	_, c := start(t, apiserver.Config{}, client.Config{OnWarning: func(w string) { got = append(got, w) }})
	vm := newVM("legacy", "")
	vm.Spec.RunStrategy = nil
	vm.Spec.Running = ptr(false)
	out, err := c.VirtualMachines(ns).Create(bg, vm, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out.Labels = map[string]string{"x": "y"}
	if _, err := c.VirtualMachines(ns).Update(bg, out, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != v1.WarningRunningDeprecated || got[1] != v1.WarningRunningDeprecated {
		t.Errorf("warnings = %q", got)
	}
	got = nil
	if _, err := c.VirtualMachines(ns).Create(bg, newVM("modern", v1.RunStrategyHalted), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("warnings for a VM without spec.running: %q", got)
	}
}

// TestVerbsAndOptions: the client's verbs and their options reach the
// server as meant.
func TestVerbsAndOptions(t *testing.T) {
	_, c := start(t, apiserver.Config{}, client.Config{UserAgent: "client-test"})
	vms := c.VirtualMachines(ns)
	// Dry run.
	if _, err := vms.Create(bg, newVM("dry", v1.RunStrategyHalted), client.WriteOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Get(bg, "dry"); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run create stored the VM: %v", err)
	}
	// A discarded result: the write happens, the answer is not decoded,
	// and an error is still an error.
	if res, err := vms.Create(bg, newVM("discarded", v1.RunStrategyHalted), client.WriteOptions{DiscardResult: true}); err != nil || res != nil {
		t.Fatalf("create with DiscardResult = %v, %v; want nil, nil", res, err)
	}
	if stored, err := vms.Get(bg, "discarded"); err != nil || stored.Name != "discarded" {
		t.Fatalf("the discarded create was not stored: %v", err)
	}
	if _, err := vms.Create(bg, newVM("discarded", v1.RunStrategyHalted), client.WriteOptions{DiscardResult: true}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("a refused create with DiscardResult: %v, want AlreadyExists", err)
	}
	if _, err := vms.Delete(bg, "discarded", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		vm := newVM("vm-"+string(rune('a'+i)), v1.RunStrategyHalted)
		vm.Labels = map[string]string{"odd": map[bool]string{true: "yes", false: "no"}[i%2 == 1]}
		if _, err := vms.Create(bg, vm, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Paging and selectors.
	var names []string
	opts := client.ListOptions{Limit: 2}
	for {
		page, err := vms.List(bg, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			names = append(names, it.Name)
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	if strings.Join(names, ",") != "vm-a,vm-b,vm-c,vm-d,vm-e" {
		t.Errorf("paged list = %v", names)
	}
	odd, err := vms.List(bg, client.ListOptions{LabelSelector: "odd=yes", FieldSelector: "metadata.name!=vm-b"})
	if err != nil || len(odd.Items) != 1 || odd.Items[0].Name != "vm-d" {
		t.Errorf("selectors: %v %+v", err, odd)
	}
	if odd.Kind != "VirtualMachineList" || odd.ResourceVersion == "" {
		t.Errorf("list meta: %q %q", odd.Kind, odd.ResourceVersion)
	}
	// Patches, and status writes.
	p, err := vms.Patch(bg, "vm-a", client.JSONPatch, []byte(`[{"op":"replace","path":"/spec/runStrategy","value":"Manual"}]`), "", client.WriteOptions{})
	if err != nil || *p.Spec.RunStrategy != v1.RunStrategyManual {
		t.Fatalf("JSON patch: %v", err)
	}
	p, err = vms.Patch(bg, "vm-a", client.MergePatch, []byte(`{"status":{"printableStatus":"Stopped"}}`), "status", client.WriteOptions{})
	if err != nil || p.Status.PrintableStatus != v1.VirtualMachineStatusStopped {
		t.Fatalf("status patch: %v", err)
	}
	p.Status.Ready = true
	if p, err = vms.UpdateStatus(bg, p, client.WriteOptions{}); err != nil || !p.Status.Ready {
		t.Fatalf("update status: %v", err)
	}
	p, err = vms.UpdateRaw(bg, "vm-a", []byte(`{"metadata":{"name":"vm-a","labels":{"raw":"1"}},"spec":{"runStrategy":"Halted","template":{"spec":{"domain":{"resources":{"requests":{"memory":"64Mi"}},"devices":{}}}}}}`), client.WriteOptions{})
	if err != nil || p.Labels["raw"] != "1" || !p.Status.Ready {
		t.Fatalf("update raw: %v", err)
	}
	// Delete options: preconditions, dry run, grace period, orphan.
	if _, err := vms.Delete(bg, "vm-a", client.DeleteOptions{UID: "nope"}); !apierrors.IsConflict(err) {
		t.Errorf("delete with a wrong UID: %v", err)
	}
	if _, err := vms.Delete(bg, "vm-a", client.DeleteOptions{ResourceVersion: "1"}); !apierrors.IsConflict(err) {
		t.Errorf("delete with a stale resourceVersion: %v", err)
	}
	if _, err := vms.Delete(bg, "vm-a", client.DeleteOptions{DryRun: true}); err != nil {
		t.Errorf("dry-run delete: %v", err)
	}
	if _, err := vms.Get(bg, "vm-a"); err != nil {
		t.Errorf("dry-run delete deleted: %v", err)
	}
	owner, _ := vms.Get(bg, "vm-b")
	vmi := newVMI("vm-b")
	vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1.KubeVirtAPIVersion, Kind: "VirtualMachine", Name: "vm-b", UID: owner.UID}}
	vmi.Finalizers = []string{"test.vigil.dev/keep"}
	if _, err := c.VirtualMachineInstances(ns).Create(bg, vmi, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Delete(bg, "vm-b", client.DeleteOptions{Orphan: true, UID: string(owner.UID)}); err != nil {
		t.Fatal(err)
	}
	kept, err := c.VirtualMachineInstances(ns).Get(bg, "vm-b")
	if err != nil || len(kept.OwnerReferences) != 0 {
		t.Errorf("orphaned VMI: %v %v", err, kept)
	}
	marked, err := c.VirtualMachineInstances(ns).Delete(bg, "vm-b", client.DeleteOptions{GracePeriodSeconds: ptr(int64(4))})
	if err != nil || marked.DeletionGracePeriodSeconds == nil || *marked.DeletionGracePeriodSeconds != 4 {
		t.Errorf("delete with a grace period: %v %+v", err, marked)
	}

	// Lifecycle subresources.
	if err := vms.Start(bg, "vm-c", v1.StartOptions{Paused: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := vms.Get(bg, "vm-c"); *got.Spec.RunStrategy != v1.RunStrategyAlways || len(got.Status.StateChangeRequests) != 1 {
		t.Errorf("after start --paused: %+v", got.Spec)
	}
	if err := vms.Stop(bg, "vm-c", v1.StopOptions{DryRun: []string{"All"}}); err != nil {
		t.Fatal(err)
	}
	if err := vms.Stop(bg, "vm-c", v1.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := vms.Restart(bg, "vm-c", v1.RestartOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("restart of a Halted VM: %v", err)
	}
	vmis := c.VirtualMachineInstances(ns)
	run, err := vmis.Create(bg, newVMI("run"), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run.Status.Phase = v1.Running
	if _, err := vmis.UpdateStatus(bg, run, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := vmis.Pause(bg, "run", v1.PauseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := vmis.Unpause(bg, "run", v1.UnpauseOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := vmis.SoftReboot(bg, "run"); err != nil {
		t.Fatal(err)
	}
	if err := vmis.Unpause(bg, "run", v1.UnpauseOptions{}); !apierrors.IsConflict(err) || err.Error() != "VMI is not paused" {
		t.Errorf("unpause of an unpaused VMI: %v", err)
	}
	got, _ := vmis.Get(bg, "run")
	if len(got.Status.ActionRequests) != 3 {
		t.Errorf("actionRequests = %+v", got.Status.ActionRequests)
	}
	if p := vmis.ConsolePath("run"); p != "/apis/subresources.kubevirt.io/v1/namespaces/test/virtualmachineinstances/run/console" {
		t.Errorf("console path %q", p)
	}

	// Cluster-scoped and other resources.
	node, err := c.Nodes().Create(bg, &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, client.WriteOptions{})
	if err != nil || node.Namespace != "" {
		t.Fatalf("node: %v", err)
	}
	lease := &v1.Lease{TypeMeta: v1.TypeMetaFor(v1.KindLease), ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.LeaseSpec{HolderIdentity: ptr("n1")}}
	if _, err := c.Leases(v1.NodeLeaseNamespace).Create(bg, lease, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	all, err := c.VirtualMachines("").List(bg, client.ListOptions{})
	if err != nil || len(all.Items) != 4 {
		t.Errorf("cluster-wide list: %v %d", err, len(all.Items))
	}
}

// TestWatch: typed events, bookmarks, Stop, and the end of a stream.
func TestWatch(t *testing.T) {
	s, c := start(t, apiserver.Config{BookmarkInterval: 50 * time.Millisecond, WatchHistory: 3}, client.Config{})
	vms := c.VirtualMachines(ns)
	first, err := vms.Create(bg, newVM("a", v1.RunStrategyHalted), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := vms.Watch(bg, client.ListOptions{ResourceVersion: first.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := vms.Create(bg, newVM("b", v1.RunStrategyManual), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Delete(bg, "a", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	sawBookmark := false
	deadline := time.After(10 * time.Second)
	for len(got) < 2 || !sawBookmark {
		select {
		case ev := <-w.C:
			switch ev.Type {
			case client.Bookmark:
				sawBookmark = true
				if ev.ResourceVersion == "" {
					t.Error("bookmark without a resourceVersion")
				}
			default:
				got = append(got, string(ev.Type)+" "+ev.Object.Name+" "+string(*ev.Object.Spec.RunStrategy))
				if ev.ResourceVersion != ev.Object.ResourceVersion {
					t.Errorf("event rv %q, object rv %q", ev.ResourceVersion, ev.Object.ResourceVersion)
				}
			}
		case <-deadline:
			t.Fatalf("saw %v, bookmark %v", got, sawBookmark)
		}
	}
	if strings.Join(got, ";") != "ADDED b Manual;DELETED a Halted" {
		t.Errorf("events %v", got)
	}
	w.Stop()
	if _, ok := <-w.C; ok {
		t.Error("events after Stop")
	}
	if w.Err() != nil {
		t.Errorf("Err after Stop = %v", w.Err())
	}

	// A resourceVersion older than the history: 410, reported as expired.
	for i := range 5 {
		b.Labels = map[string]string{"i": string(rune('0' + i))}
		if b, err = vms.Update(bg, b, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The server's watch cache applies the updates a moment after they
	// are written: until then the old revision is still in its history.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w, err := vms.Watch(bg, client.ListOptions{ResourceVersion: first.ResourceVersion})
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			break
		}
		if err == nil {
			w.Stop()
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch from a gone resourceVersion: %v, want 410", err)
		}
	}

	// The server ending the stream (timeoutSeconds) closes C, with no error.
	w2, err := vms.Watch(bg, client.ListOptions{TimeoutSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range w2.C {
		n++ // the current objects
	}
	if n != 1 || w2.Err() != nil {
		t.Errorf("timed-out watch: %d events, Err %v", n, w2.Err())
	}
	// The caller's context ending closes C too.
	ctx, cancel := context.WithCancel(bg)
	w3, err := vms.Watch(ctx, client.ListOptions{ResourceVersion: b.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-w3.C:
		if ok {
			t.Error("an event after the context ended")
		}
	case <-time.After(10 * time.Second):
		t.Error("the watch did not end with its context")
	}
	w3.Stop()
	_ = s
}

// TestWatchDecode: ERROR events become errors, and a malformed line ends
// the watch with an error, from a scripted server.
func TestWatchDecode(t *testing.T) {
	lines := []string{
		`{"type":"ADDED","object":{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x","namespace":"test","resourceVersion":"7"},"spec":{"runStrategy":"Halted"}}}`,
		`{"type":"BOOKMARK","object":{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"resourceVersion":"9"}}}`,
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (9)","reason":"Expired","code":410}}`,
		`{"type":"ADDED","object":`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			http.Error(w, "not a watch", 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		for _, l := range lines {
			_, _ = w.Write([]byte(l + "\n"))
		}
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Server: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.VirtualMachines(ns).Watch(bg, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var evs []client.Event[*v1.VirtualMachine]
	for ev := range w.C {
		evs = append(evs, ev)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	if evs[0].Type != client.Added || evs[0].Object.Name != "x" || evs[0].ResourceVersion != "7" {
		t.Errorf("ADDED: %+v", evs[0])
	}
	if evs[1].Type != client.Bookmark || evs[1].ResourceVersion != "9" {
		t.Errorf("BOOKMARK: %+v", evs[1])
	}
	if evs[2].Type != client.Error || !apierrors.IsResourceExpired(evs[2].Err) {
		t.Errorf("ERROR: %+v", evs[2])
	}
	if w.Err() == nil || !strings.Contains(w.Err().Error(), "malformed") {
		t.Errorf("Err after a malformed line = %v", w.Err())
	}
}
