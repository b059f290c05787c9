package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
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

// harness is one API server on its own etcd, a typed client and a raw HTTP
// client, and a namespace for the test.
type harness struct {
	t  *testing.T
	s  *apiservertest.Server
	c  *client.Client
	hc *http.Client
	ns string
	// warnings collects the warnings the typed client received.
	warnings chan string
}

func newHarness(t *testing.T, cfg apiserver.Config) *harness {
	t.Helper()
	s := apiservertest.Start(t, apiservertest.Config{API: cfg})
	h := &harness{t: t, s: s, hc: &http.Client{Timeout: 30 * time.Second}, ns: "test", warnings: make(chan string, 100)}
	h.c = s.Client(t, client.Config{OnWarning: func(w string) {
		select {
		case h.warnings <- w:
		default:
		}
	}})
	return h
}

// Paths.
const (
	kvBase  = "/apis/kubevirt.io/v1"
	subBase = "/apis/subresources.kubevirt.io/v1"
)

func (h *harness) vmPath(name string) string {
	return kvBase + "/namespaces/" + h.ns + "/virtualmachines/" + name
}

func (h *harness) vmiPath(name string) string {
	return kvBase + "/namespaces/" + h.ns + "/virtualmachineinstances/" + name
}

func (h *harness) vmsPath() string { return kvBase + "/namespaces/" + h.ns + "/virtualmachines" }
func (h *harness) vmisPath() string {
	return kvBase + "/namespaces/" + h.ns + "/virtualmachineinstances"
}

// response is a raw HTTP answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// status decodes the answer as a Status.
func (r *response) status(t *testing.T) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(r.body, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("answer %d is not a Status: %v: %s", r.code, err, r.body)
	}
	return st
}

// into decodes the answer into out.
func (r *response) into(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("decoding the answer (%d): %v: %s", r.code, err, r.body)
	}
}

// do sends a raw request. body may be nil, a []byte, a string, or a value
// to encode as JSON.
func (h *harness) do(method, path string, body any, contentType string) *response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.s.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return &response{code: resp.StatusCode, header: resp.Header, body: b}
}

// expectCode fails unless the answer has code.
func (r *response) expectCode(t *testing.T, code int) *response {
	t.Helper()
	if r.code != code {
		t.Fatalf("got %d, want %d: %s", r.code, code, r.body)
	}
	return r
}

// expectStatus fails unless the answer is a Status with code, and with
// message when message is not empty (exactly), and returns it.
func (r *response) expectStatus(t *testing.T, code int, message string) metav1.Status {
	t.Helper()
	r.expectCode(t, code)
	st := r.status(t)
	if st.Code != int32(code) {
		t.Errorf("Status.code = %d, want %d", st.Code, code)
	}
	if st.Status != metav1.StatusFailure {
		t.Errorf("Status.status = %q, want Failure", st.Status)
	}
	if message != "" && st.Message != message {
		t.Errorf("message = %q, want %q", st.Message, message)
	}
	return st
}

// expectStatusContains is expectStatus with a message substring.
func (r *response) expectStatusContains(t *testing.T, code int, substr string) metav1.Status {
	t.Helper()
	st := r.expectStatus(t, code, "")
	if !strings.Contains(st.Message, substr) {
		t.Errorf("message = %q, want it to contain %q", st.Message, substr)
	}
	return st
}

func ctx() context.Context { return context.Background() }

func vmiSpec() v1.VirtualMachineInstanceSpec {
	return v1.VirtualMachineInstanceSpec{
		Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceMemory: resource.MustParse("64Mi"),
		}}},
	}
}

func newVM(ns, name string, rs v1.RunStrategy) *v1.VirtualMachine {
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template:    &v1.VirtualMachineInstanceTemplateSpec{Spec: vmiSpec()},
		},
	}
}

func newVMI(ns, name string) *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       vmiSpec(),
	}
}

func (h *harness) vms() *client.VMs   { return h.c.VirtualMachines(h.ns) }
func (h *harness) vmis() *client.VMIs { return h.c.VirtualMachineInstances(h.ns) }

// createVM creates a VM with strategy rs.
func (h *harness) createVM(name string, rs v1.RunStrategy) *v1.VirtualMachine {
	h.t.Helper()
	out, err := h.vms().Create(ctx(), newVM(h.ns, name, rs), client.WriteOptions{})
	if err != nil {
		h.t.Fatalf("creating VM %s: %v", name, err)
	}
	return out
}

// vmiOpt changes a VMI before it is created.
type vmiOpt func(*v1.VirtualMachineInstance)

func withGrace(g int64) vmiOpt {
	return func(vmi *v1.VirtualMachineInstance) { vmi.Spec.TerminationGracePeriodSeconds = &g }
}

func withFinalizer(f string) vmiOpt {
	return func(vmi *v1.VirtualMachineInstance) { vmi.Finalizers = append(vmi.Finalizers, f) }
}

func withCondition(t v1.VirtualMachineInstanceConditionType, s metav1.ConditionStatus) vmiOpt {
	return func(vmi *v1.VirtualMachineInstance) {
		vmi.Status.Conditions = append(vmi.Status.Conditions, v1.VirtualMachineInstanceCondition{Type: t, Status: s})
	}
}

func withACPI(enabled bool) vmiOpt {
	return func(vmi *v1.VirtualMachineInstance) {
		vmi.Spec.Domain.Features = &v1.Features{ACPI: v1.FeatureState{Enabled: &enabled}}
	}
}

func withOwner(vm *v1.VirtualMachine) vmiOpt {
	return func(vmi *v1.VirtualMachineInstance) {
		// The first owner is the controller.
		controller := len(vmi.OwnerReferences) == 0
		vmi.OwnerReferences = append(vmi.OwnerReferences, metav1.OwnerReference{
			APIVersion: v1.KubeVirtAPIVersion, Kind: v1.KindVirtualMachine, Name: vm.Name, UID: vm.UID, Controller: &controller,
		})
	}
}

// createVMI creates a VMI and, when phase is not empty, writes its status
// (phase and conditions) through /status, as a node agent would.
func (h *harness) createVMI(name string, phase v1.VirtualMachineInstancePhase, opts ...vmiOpt) *v1.VirtualMachineInstance {
	h.t.Helper()
	vmi := newVMI(h.ns, name)
	for _, o := range opts {
		o(vmi)
	}
	st := vmi.Status
	out, err := h.vmis().Create(ctx(), vmi, client.WriteOptions{})
	if err != nil {
		h.t.Fatalf("creating VMI %s: %v", name, err)
	}
	if phase == "" && len(st.Conditions) == 0 {
		return out
	}
	st.Phase = phase
	if phase != "" {
		st.NodeName = "node-1"
	}
	out.Status = st
	out, err = h.vmis().UpdateStatus(ctx(), out, client.WriteOptions{})
	if err != nil {
		h.t.Fatalf("writing the status of VMI %s: %v", name, err)
	}
	return out
}

func (h *harness) getVM(name string) *v1.VirtualMachine {
	h.t.Helper()
	vm, err := h.vms().Get(ctx(), name)
	if err != nil {
		h.t.Fatalf("getting VM %s: %v", name, err)
	}
	return vm
}

func (h *harness) getVMI(name string) *v1.VirtualMachineInstance {
	h.t.Helper()
	vmi, err := h.vmis().Get(ctx(), name)
	if err != nil {
		h.t.Fatalf("getting VMI %s: %v", name, err)
	}
	return vmi
}

// rv returns the resourceVersion of the object at path.
func (h *harness) rv(path string) string {
	h.t.Helper()
	r := h.do(http.MethodGet, path, nil, "")
	r.expectCode(h.t, http.StatusOK)
	var m metav1.PartialObjectMetadata
	r.into(h.t, &m)
	return m.ResourceVersion
}

// unchanged fails if the object at path does not have resourceVersion rv.
func (h *harness) unchanged(path, rv string) {
	h.t.Helper()
	if got := h.rv(path); got != rv {
		h.t.Errorf("%s: resourceVersion %s, want %s unchanged: a refused request changed stored state", path, got, rv)
	}
}

// absent fails unless the object at path does not exist.
func (h *harness) absent(path string) {
	h.t.Helper()
	if r := h.do(http.MethodGet, path, nil, ""); r.code != http.StatusNotFound {
		h.t.Errorf("%s: got %d, want 404 (the object should not exist): %s", path, r.code, r.body)
	}
}

// eventually polls cond until it holds or 20s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isNotFound(err error) bool      { return apierrors.IsNotFound(err) }
func isConflict(err error) bool      { return apierrors.IsConflict(err) }
func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
func isExpired(err error) bool       { return apierrors.IsResourceExpired(err) }

func timeAfter(seconds int) <-chan time.Time { return time.After(time.Duration(seconds) * time.Second) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func label(obj metav1.Object, k string) string { return obj.GetLabels()[k] }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func sprintfErr(format string, args ...any) error { return fmt.Errorf(format, args...) }

// release removes the node agent's finalizer from VMI name, as the agent does
// once the guest is gone, and fails the test if the VMI does not carry it.
func (h *harness) release(name string) {
	h.t.Helper()
	vmi := h.getVMI(name)
	i := slices.Index(vmi.Finalizers, v1.AgentFinalizer)
	if i < 0 {
		h.t.Fatalf("VMI %s has no %s finalizer: %v", name, v1.AgentFinalizer, vmi.Finalizers)
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
		i, v1.AgentFinalizer, i)
	if _, err := h.vmis().Patch(ctx(), name, client.JSONPatch, []byte(patch), "", client.WriteOptions{}); err != nil && !isNotFound(err) {
		h.t.Fatalf("removing the agent finalizer of VMI %s: %v", name, err)
	}
}
