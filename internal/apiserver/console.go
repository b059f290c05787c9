package apiserver

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// The console subresources are served by the node agent of the VMI's node
// (internal/agent/console.go): the API server checks the request, finds
// the agent from the Node's status (its InternalIP address and daemon
// endpoint port) and proxies the request, websocket upgrade included.

// console proxies GET .../virtualmachineinstances/{name}/console, a
// websocket carrying the serial console's bytes in binary messages
// (subprotocol plain.kubevirt.io, as KubeVirt's), to the VMI's agent.
func (s *Server) console(w http.ResponseWriter, req *http.Request) error {
	return s.proxyToAgent(w, req, "/console/", true)
}

// consoleLog proxies GET .../virtualmachineinstances/{name}/consolelog: the
// console output of the VMI's guest, as kept on its node.
func (s *Server) consoleLog(w http.ResponseWriter, req *http.Request) error {
	return s.proxyToAgent(w, req, "/consolelog/", false)
}

func (s *Server) proxyToAgent(w http.ResponseWriter, req *http.Request, path string, mustRun bool) error {
	ns, name := req.PathValue("namespace"), req.PathValue("name")
	obj, _, err := s.read(req.Context(), s.vmiRes(), ns, name)
	if err != nil {
		return err
	}
	vmi := obj.(*v1.VirtualMachineInstance)
	if mustRun && vmi.Status.Phase != v1.Running {
		phase := string(vmi.Status.Phase)
		if phase == "" {
			phase = "Pending"
		}
		return conflict(s.vmiRes(), name, fmt.Sprintf("Unable to connect to VM because phase is %s instead of Running", phase))
	}
	if vmi.Status.NodeName == "" {
		return conflict(s.vmiRes(), name, "the VMI has not been scheduled to a node")
	}
	nodeObj, _, err := s.read(req.Context(), s.resource("", "nodes"), "", vmi.Status.NodeName)
	if err != nil {
		return fmt.Errorf("reading node %s of VMI %s/%s: %w", vmi.Status.NodeName, ns, name, err)
	}
	node := nodeObj.(*v1.Node)
	addr := agentAddress(node)
	if addr == "" {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("node %s publishes no agent endpoint for consoles", node.Name))
	}
	target := &url.URL{Scheme: "http", Host: addr, Path: path + string(vmi.UID)}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = addr
			pr.Out.Header.Del("Authorization")
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			st, _ := toStatus(apierrors.NewServiceUnavailable(fmt.Sprintf("cannot reach the agent of node %s at %s: %v", node.Name, addr, err)))
			writeStatus(w, st)
		},
	}
	proxy.ServeHTTP(w, req)
	return nil
}

// agentAddress is host:port of a node's agent, or "".
func agentAddress(n *v1.Node) string {
	port := n.Status.DaemonEndpoints.AgentEndpoint.Port
	if port <= 0 {
		return ""
	}
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" && a.Address != "" {
			return net.JoinHostPort(a.Address, strconv.Itoa(int(port)))
		}
	}
	return ""
}
