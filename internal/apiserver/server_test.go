package apiserver_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// TestDiscovery checks the discovery documents generic clients read.
func TestDiscovery(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	var versions metav1.APIVersions
	h.do("GET", "/api", nil, "").expectCode(t, 200).into(t, &versions)
	if versions.Kind != "APIVersions" || !slices.Equal(versions.Versions, []string{"v1"}) {
		t.Errorf("/api = %+v", versions)
	}
	var groups metav1.APIGroupList
	h.do("GET", "/apis", nil, "").expectCode(t, 200).into(t, &groups)
	var gnames []string
	for _, g := range groups.Groups {
		gnames = append(gnames, g.Name)
		if g.PreferredVersion.GroupVersion != g.Name+"/v1" || len(g.Versions) != 1 {
			t.Errorf("group %s: %+v", g.Name, g)
		}
	}
	if !slices.Equal(gnames, []string{"coordination.k8s.io", "kubevirt.io", "subresources.kubevirt.io", "vigil.dev"}) {
		t.Errorf("/apis groups = %v", gnames)
	}
	var group metav1.APIGroup
	h.do("GET", "/apis/kubevirt.io", nil, "").expectCode(t, 200).into(t, &group)
	if group.Kind != "APIGroup" || group.Name != "kubevirt.io" {
		t.Errorf("/apis/kubevirt.io = %+v", group)
	}

	want := map[string]map[string]struct {
		kind       string
		namespaced bool
		verbs      []string
	}{
		"/apis/kubevirt.io/v1": {
			"virtualmachines":                {"VirtualMachine", true, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}},
			"virtualmachines/status":         {"VirtualMachine", true, []string{"get", "patch", "update"}},
			"virtualmachineinstances":        {"VirtualMachineInstance", true, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}},
			"virtualmachineinstances/status": {"VirtualMachineInstance", true, []string{"get", "patch", "update"}},
		},
		"/api/v1": {
			"nodes":        {"Node", false, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}},
			"nodes/status": {"Node", false, []string{"get", "patch", "update"}},
			"events":       {"Event", true, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}},
		},
		"/apis/coordination.k8s.io/v1": {
			"leases": {"Lease", true, []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}},
		},
		"/apis/vigil.dev/v1": {
			"heartbeatdigests": {"HeartbeatDigest", false, []string{"get", "list", "watch"}},
		},
		"/apis/subresources.kubevirt.io/v1": {
			"virtualmachines/start":              {"", true, []string{"update"}},
			"virtualmachines/stop":               {"", true, []string{"update"}},
			"virtualmachines/restart":            {"", true, []string{"update"}},
			"virtualmachineinstances/pause":      {"", true, []string{"update"}},
			"virtualmachineinstances/unpause":    {"", true, []string{"update"}},
			"virtualmachineinstances/softreboot": {"", true, []string{"update"}},
			"virtualmachineinstances/console":    {"", true, []string{"get"}},
			"virtualmachineinstances/consolelog": {"", true, []string{"get"}},
		},
	}
	for path, resources := range want {
		var list metav1.APIResourceList
		h.do("GET", path, nil, "").expectCode(t, 200).into(t, &list)
		if list.Kind != "APIResourceList" || list.GroupVersion != strings.TrimPrefix(strings.TrimPrefix(path, "/apis/"), "/api/") {
			t.Errorf("%s: kind %q groupVersion %q", path, list.Kind, list.GroupVersion)
		}
		got := map[string]metav1.APIResource{}
		for _, r := range list.APIResources {
			got[r.Name] = r
		}
		if len(got) != len(resources) {
			t.Errorf("%s lists %d resources, want %d", path, len(got), len(resources))
		}
		for name, w := range resources {
			r, ok := got[name]
			if !ok {
				t.Errorf("%s does not list %s", path, name)
				continue
			}
			verbs := slices.Clone([]string(r.Verbs))
			slices.Sort(verbs)
			if (w.kind != "" && r.Kind != w.kind) || r.Namespaced != w.namespaced || !slices.Equal(verbs, w.verbs) {
				t.Errorf("%s %s = kind %q namespaced %v verbs %v", path, name, r.Kind, r.Namespaced, verbs)
			}
		}
	}
	var list metav1.APIResourceList
	h.do("GET", "/apis/kubevirt.io/v1", nil, "").into(t, &list)
	for _, r := range list.APIResources {
		if r.Name == "virtualmachines" && (r.SingularName != "virtualmachine" || !slices.Contains(r.ShortNames, "vm")) {
			t.Errorf("virtualmachines: singular %q short names %v", r.SingularName, r.ShortNames)
		}
	}
}

// TestHealthVersionMetrics covers /healthz, /livez, /readyz, /version and
// /metrics.
func TestHealthVersionMetrics(t *testing.T) {
	h := newHarness(t, apiserver.Config{Version: "v9.9.9-test"})
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if r := h.do("GET", p, nil, "").expectCode(t, 200); string(r.body) != "ok" {
			t.Errorf("%s = %q", p, r.body)
		}
	}
	var v version.Info
	h.do("GET", "/version", nil, "").expectCode(t, 200).into(t, &v)
	if v.GitVersion != "v9.9.9-test" || v.GoVersion == "" || v.Platform == "" {
		t.Errorf("/version = %+v", v)
	}
	h.createVM("vm", v1.RunStrategyHalted)
	w, err := h.vms().Watch(ctx(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	nextEvent(t, w)
	r := h.do("GET", "/metrics", nil, "").expectCode(t, 200)
	for _, want := range []string{`vigil_apiserver_requests_total{code="201",method="POST"} 1`, "vigil_apiserver_request_duration_seconds_bucket", "vigil_apiserver_watchers 1"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAuthentication: without a token only loopback clients are served
// (health endpoints answer everyone); with one, every request needs it.
func TestAuthentication(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	tok := newHarness(t, apiserver.Config{Token: "s3cret"})
	serve := func(handler http.Handler, remote, path, auth string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = remote
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code
	}
	noToken, withToken := h.s.API.Handler(), tok.s.API.Handler()
	vms := h.vmsPath()
	cases := []struct {
		name    string
		handler http.Handler
		remote  string
		path    string
		auth    string
		want    int
	}{
		{"no token, loopback v4", noToken, "127.0.0.1:5000", vms, "", 200},
		{"no token, loopback v6", noToken, "[::1]:5000", vms, "", 200},
		{"no token, unix socket", noToken, "@", vms, "", 200},
		{"no token, remote", noToken, "10.1.2.3:5000", vms, "", 403},
		{"no token, remote with a token", noToken, "10.1.2.3:5000", vms, "Bearer x", 403},
		{"no token, remote healthz", noToken, "10.1.2.3:5000", "/healthz", "", 200},
		{"no token, remote readyz", noToken, "10.1.2.3:5000", "/readyz", "", 200},
		{"no token, remote version", noToken, "10.1.2.3:5000", "/version", "", 200},
		{"no token, remote metrics", noToken, "10.1.2.3:5000", "/metrics", "", 403},
		{"token, remote, none", withToken, "10.1.2.3:5000", vms, "", 401},
		{"token, remote, wrong", withToken, "10.1.2.3:5000", vms, "Bearer nope", 401},
		{"token, remote, basic", withToken, "10.1.2.3:5000", vms, "Basic czNjcmV0", 401},
		{"token, remote, right", withToken, "10.1.2.3:5000", vms, "Bearer s3cret", 200},
		{"token, loopback, none", withToken, "127.0.0.1:5000", vms, "", 401},
		{"token, remote healthz", withToken, "10.1.2.3:5000", "/healthz", "", 200},
	}
	for _, c := range cases {
		if got := serve(c.handler, c.remote, c.path, c.auth); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// Refusals are Status objects.
	req := httptest.NewRequest("GET", vms, nil)
	req.RemoteAddr = "10.1.2.3:5000"
	rec := httptest.NewRecorder()
	withToken.ServeHTTP(rec, req)
	(&response{code: rec.Code, body: rec.Body.Bytes()}).expectStatus(t, 401, "")
	// The typed client sends its token.
	c := tok.s.Client(t, client.Config{Token: "s3cret"})
	if _, err := c.VirtualMachines("x").List(ctx(), client.ListOptions{}); err != nil {
		t.Errorf("client with the token: %v", err)
	}
}

// TestEventTTL: Events expire on their own.
func TestEventTTL(t *testing.T) {
	h := newHarness(t, apiserver.Config{EventTTL: time.Second})
	ev := &v1.Event{TypeMeta: v1.TypeMetaFor(v1.KindEvent), ObjectMeta: metav1.ObjectMeta{Name: "short"},
		InvolvedObject: v1.ObjectReference{Kind: "VirtualMachine", Name: "vm"}, Reason: "Tested"}
	if _, err := h.c.Events(h.ns).Create(ctx(), ev, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// An update keeps the TTL.
	if _, err := h.c.Events(h.ns).Patch(ctx(), "short", client.MergePatch, []byte(`{"count":2}`), "", client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Other kinds do not expire.
	h.createVM("vm", v1.RunStrategyHalted)
	eventually(t, "the event to expire", func() bool {
		_, err := h.c.Events(h.ns).Get(ctx(), "short")
		return isNotFound(err)
	})
	h.getVM("vm")
}
