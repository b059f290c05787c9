package apiserver_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// TestBadRequests sends every kind of bad request and checks the code, that
// the answer is a Status, and that stored state did not change (the
// object's resourceVersion is the same, and nothing new exists).
func TestBadRequests(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	vm := h.createVM("vm", v1.RunStrategyHalted)
	path := h.vmPath("vm")
	rv := vm.ResourceVersion
	good := func() map[string]any {
		return map[string]any{"apiVersion": v1.KubeVirtAPIVersion, "kind": "VirtualMachine",
			"metadata": map[string]any{"name": "vm", "namespace": h.ns},
			"spec": map[string]any{"runStrategy": "Manual", "template": map[string]any{"spec": map[string]any{
				"domain": map[string]any{"resources": map[string]any{"requests": map[string]any{"memory": "64Mi"}}, "devices": map[string]any{}}}}}}
	}
	with := func(f func(map[string]any)) map[string]any { d := good(); f(d); return d }
	md := func(d map[string]any) map[string]any { return d["metadata"].(map[string]any) }
	big := []byte(`{"metadata":{"name":"big","annotations":{"a":"` + strings.Repeat("x", 3<<20) + `"}}}`)

	cases := []struct {
		name   string
		method string
		path   string
		body   any
		ct     string
		code   int
		reason metav1.StatusReason
		// field, for 422s: the field path the first cause must name
		field string
		msg   string // a substring of the message
	}{
		{name: "create malformed JSON", method: "POST", path: h.vmsPath(), body: `{"metadata":`, code: 400, reason: metav1.StatusReasonBadRequest, msg: "malformed JSON"},
		{name: "create not an object", method: "POST", path: h.vmsPath(), body: `[1,2]`, code: 400},
		{name: "create empty body", method: "POST", path: h.vmsPath(), body: ``, code: 400},
		{name: "update malformed JSON", method: "PUT", path: path, body: `{"spec":`, code: 400},
		{name: "update YAML malformed", method: "PUT", path: path, body: "a: [", ct: "application/yaml", code: 400},
		{name: "create wrong apiVersion", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { d["apiVersion"] = "kubevirt.io/v2"; md(d)["name"] = "new" }), code: 400, msg: "apiVersion"},
		{name: "create wrong kind", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { d["kind"] = "VirtualMachineInstance"; md(d)["name"] = "new" }), code: 400, msg: "kind"},
		{name: "update wrong kind", method: "PUT", path: path, body: with(func(d map[string]any) { d["kind"] = "Node" }), code: 400, msg: "kind"},
		{name: "update name mismatch", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["name"] = "other" }), code: 400, msg: "name"},
		{name: "update namespace mismatch", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["namespace"] = "elsewhere" }), code: 400, msg: "namespace"},
		{name: "create namespace mismatch", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; md(d)["namespace"] = "elsewhere" }), code: 400, msg: "namespace"},
		{name: "create with resourceVersion", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; md(d)["resourceVersion"] = "5" }), code: 400, msg: "resourceVersion"},
		{name: "update stale resourceVersion", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["resourceVersion"] = "1" }), code: 409, reason: metav1.StatusReasonConflict},
		{name: "update future resourceVersion", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["resourceVersion"] = "999999" }), code: 409},
		{name: "update malformed resourceVersion", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["resourceVersion"] = "abc" }), code: 409},
		{name: "update other uid", method: "PUT", path: path, body: with(func(d map[string]any) { md(d)["uid"] = "6f1f4f5e-0000-0000-0000-000000000000" }), code: 409},
		{name: "create unknown field", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; d["spec"].(map[string]any)["colour"] = "blue" }), code: 422, reason: metav1.StatusReasonInvalid, field: "spec.colour"},
		{name: "update unknown field", method: "PUT", path: path, body: with(func(d map[string]any) {
			d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["gpus"] = 1
		}), code: 422, field: "spec.template.spec.gpus"},
		{name: "status unknown field", method: "PUT", path: path + "/status", body: with(func(d map[string]any) { d["status"] = map[string]any{"mood": "good"} }), code: 422, field: "status.mood"},
		{name: "create wrong value type", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; d["spec"].(map[string]any)["runStrategy"] = 5 }), code: 422, field: "spec.runStrategy"},
		{name: "create duplicate field", method: "POST", path: h.vmsPath(), body: `{"metadata":{"name":"new","name":"new"},"spec":{"runStrategy":"Halted","template":{"spec":{"domain":{"resources":{"requests":{"memory":"64Mi"}},"devices":{}}}}}}`, code: 422, field: "metadata.name"},
		{name: "create invalid strategy", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; d["spec"].(map[string]any)["runStrategy"] = "Sometimes" }), code: 422, field: "spec.runStrategy", msg: "Invalid RunStrategy (Sometimes)"},
		{name: "create WaitAsReceiver", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) {
			md(d)["name"] = "new"
			d["spec"].(map[string]any)["runStrategy"] = "WaitAsReceiver"
		}), code: 422, field: "spec.runStrategy", msg: "live migration is not supported yet"},
		{name: "create no template", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; delete(d["spec"].(map[string]any), "template") }), code: 422, field: "spec.template", msg: v1.MsgMissingTemplate},
		{name: "create no strategy", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new"; delete(d["spec"].(map[string]any), "runStrategy") }), code: 422, field: "spec.running", msg: v1.MsgRunStrategyRequired},
		{name: "create invalid name", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "Not_Valid" }), code: 422, field: "metadata.name"},
		{name: "create no name", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { delete(md(d), "name") }), code: 422, field: "metadata.name"},
		{name: "owner without uid", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) {
			md(d)["name"] = "new"
			md(d)["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "Node", "name": "n"}}
		}), code: 422, field: "metadata.ownerReferences[0].uid"},
		{name: "two controllers", method: "PUT", path: path, body: with(func(d map[string]any) {
			md(d)["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u1", "controller": true},
				map[string]any{"apiVersion": "v1", "kind": "Node", "name": "m", "uid": "u2", "controller": true}}
		}), code: 422, field: "metadata.ownerReferences[1].controller"},
		{name: "bad finalizer", method: "PATCH", path: path, body: `{"metadata":{"finalizers":["not a name"]}}`, ct: "application/merge-patch+json", code: 422, field: "metadata.finalizers[0]"},
		{name: "create too large", method: "POST", path: h.vmsPath(), body: big, code: 413, reason: metav1.StatusReasonRequestEntityTooLarge},
		{name: "update too large", method: "PUT", path: path, body: big, code: 413},
		{name: "patch too large", method: "PATCH", path: path, body: big, ct: "application/merge-patch+json", code: 413},
		{name: "status too large", method: "PUT", path: path + "/status", body: big, code: 413},
		{name: "create unsupported content type", method: "POST", path: h.vmsPath(), body: with(func(d map[string]any) { md(d)["name"] = "new" }), ct: "application/vnd.kubernetes.protobuf", code: 415},
		{name: "update missing object", method: "PUT", path: h.vmPath("nothing"), body: with(func(d map[string]any) { md(d)["name"] = "nothing" }), code: 404, reason: metav1.StatusReasonNotFound},
		{name: "list bad labelSelector", method: "GET", path: h.vmsPath() + "?labelSelector=a%3D%3D%3Db", code: 400},
		{name: "list bad fieldSelector", method: "GET", path: h.vmsPath() + "?fieldSelector=spec.colour%3Dblue", code: 400, msg: "field label not supported"},
		{name: "list malformed fieldSelector", method: "GET", path: h.vmsPath() + "?fieldSelector=metadata.name", code: 400},
		{name: "list bad limit", method: "GET", path: h.vmsPath() + "?limit=ten", code: 400},
		{name: "list negative limit", method: "GET", path: h.vmsPath() + "?limit=-1", code: 400},
		{name: "list bad continue", method: "GET", path: h.vmsPath() + "?limit=1&continue=garbage", code: 400},
		{name: "watch bad resourceVersion", method: "GET", path: h.vmsPath() + "?watch=true&resourceVersion=abc", code: 400},
		{name: "watch bad labelSelector", method: "GET", path: h.vmsPath() + "?watch=true&labelSelector=a%3D%3D%3Db", code: 400},
		{name: "watch bad timeout", method: "GET", path: h.vmsPath() + "?watch=true&timeoutSeconds=x", code: 400},
		{name: "delete negative grace", method: "DELETE", path: path + "?gracePeriodSeconds=-1", code: 400},
		{name: "delete bad propagation", method: "DELETE", path: path + "?propagationPolicy=Sideways", code: 400},
		{name: "delete malformed options", method: "DELETE", path: path, body: `{"gracePeriodSeconds":`, code: 400},
		{name: "delete stale precondition", method: "DELETE", path: path, body: `{"preconditions":{"resourceVersion":"1"}}`, code: 409},
		{name: "delete other uid precondition", method: "DELETE", path: path, body: `{"preconditions":{"uid":"nope"}}`, code: 409},
		{name: "deletecollection bad selector", method: "DELETE", path: h.vmsPath() + "?labelSelector=a%3D%3D%3Db", code: 400},
		{name: "unknown resource", method: "GET", path: kvBase + "/namespaces/" + h.ns + "/widgets", code: 404},
		{name: "unknown path", method: "GET", path: "/nothing/here", code: 404},
		{name: "method not allowed", method: "POST", path: path, body: `{}`, code: 405, reason: metav1.StatusReasonMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.body, tc.ct)
			st := r.expectStatus(t, tc.code, "")
			if tc.reason != "" && st.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", st.Reason, tc.reason)
			}
			if tc.msg != "" && !strings.Contains(st.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", st.Message, tc.msg)
			}
			if tc.field != "" {
				if st.Details == nil || len(st.Details.Causes) == 0 {
					t.Fatalf("422 without causes: %s", r.body)
				}
				if st.Details.Causes[0].Field != tc.field {
					t.Errorf("causes = %+v, want field %s first", st.Details.Causes, tc.field)
				}
			}
			h.unchanged(path, rv)
			h.absent(h.vmPath("new"))
			h.absent(h.vmPath("big"))
		})
	}
	if t.Failed() {
		return
	}
	// After all that, the VM is exactly as created.
	var list struct{ Items []v1.VirtualMachine }
	h.do("GET", h.vmsPath(), nil, "").expectCode(t, 200).into(t, &list)
	if len(list.Items) != 1 {
		t.Errorf("%d VMs exist, want 1", len(list.Items))
	}
}

// TestBodyLimit: a body of exactly the limit is read (and judged on its
// content); one byte more is 413, even without a Content-Length.
func TestBodyLimit(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	const limit = 3 << 20
	body := bytes.Repeat([]byte(" "), limit-2)
	body = append([]byte("{"), append(body, '}')...)
	h.do("POST", h.vmsPath(), body, "").expectCode(t, 422) // an empty object: no name, no spec
	over := append(append([]byte{}, body...), ' ')
	req, err := http.NewRequest("POST", h.s.URL+h.vmsPath(), struct{ *bytes.Reader }{bytes.NewReader(over)}) // unknown length: chunked
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("a body over the limit got %d, want 413", resp.StatusCode)
	}
}
