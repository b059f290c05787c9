package apiserver_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// TestConsoleProxy: the console subresources are proxied to the agent of
// the VMI's node; what cannot be proxied gets a clear Status.
func TestConsoleProxy(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	var gotPath, gotAuth string
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		_, _ = w.Write([]byte("VIGIL-GUEST-READY\n"))
	}))
	defer agent.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(agent.URL, "http://"))
	p, _ := strconv.Atoi(port)
	node := func(name, addr string, port int) {
		n, err := h.c.Nodes().Create(ctx(), &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: name}}, client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []v1.NodeAddress{{Type: "InternalIP", Address: addr}}
		n.Status.DaemonEndpoints.AgentEndpoint.Port = int32(port)
		if _, err := h.c.Nodes().UpdateStatus(ctx(), n, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node("node-1", host, p) // createVMI binds to node-1
	vmi := h.createVMI("run", v1.Running)

	path := func(name, sub string) string {
		return "/apis/subresources.kubevirt.io/v1/namespaces/" + h.ns + "/virtualmachineinstances/" + name + "/" + sub
	}
	r := h.do("GET", path("run", "consolelog"), nil, "").expectCode(t, 200)
	if string(r.body) != "VIGIL-GUEST-READY\n" || gotPath != "/consolelog/"+string(vmi.UID) {
		t.Errorf("consolelog: %q from %s", r.body, gotPath)
	}
	if gotAuth != "" {
		t.Error("the client's credentials were passed on to the agent")
	}

	h.do("GET", path("none", "console"), nil, "").expectStatus(t, 404, "")
	h.createVMI("pending", "")
	h.do("GET", path("pending", "console"), nil, "").expectStatusContains(t, 409, "instead of Running")
	h.createVMI("done", v1.Succeeded)
	h.do("GET", path("done", "console"), nil, "").expectStatusContains(t, 409, "phase is Succeeded")

	// The node publishes no endpoint; then one nobody listens on.
	n, _ := h.c.Nodes().Get(ctx(), "node-1")
	n.Status.DaemonEndpoints.AgentEndpoint.Port = 0
	if _, err := h.c.Nodes().UpdateStatus(ctx(), n, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.do("GET", path("run", "console"), nil, "").expectStatusContains(t, 503, "publishes no agent endpoint")
	agent.Close()
	n, _ = h.c.Nodes().Get(ctx(), "node-1")
	n.Status.DaemonEndpoints.AgentEndpoint.Port = int32(p)
	if _, err := h.c.Nodes().UpdateStatus(ctx(), n, client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.do("GET", path("run", "consolelog"), nil, "").expectStatusContains(t, 503, "cannot reach the agent of node node-1")
}
