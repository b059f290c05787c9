package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// consoleSubprotocol is KubeVirt's console subprotocol: binary websocket
// messages of raw serial bytes.
const consoleSubprotocol = "plain.kubevirt.io"

// Console attaches to the serial console of VMI name and returns it as a
// connection of raw bytes: what is written goes to the guest's serial
// port, what is read is the guest's output. Closing it detaches; the guest
// runs on. A VMI that is not Running, or a console already attached, is a
// Kubernetes Status error as for any request.
func (r *VMIs) Console(ctx context.Context, name string) (net.Conn, error) {
	req, err := r.c.newHTTPRequest(ctx, request{method: http.MethodGet, path: r.ConsolePath(name)})
	if err != nil {
		return nil, err
	}
	u := *req.URL
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	ws, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient:   r.c.streams,
		HTTPHeader:   req.Header,
		Subprotocols: []string{consoleSubprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			return nil, statusError(resp.StatusCode, http.MethodGet, b)
		}
		return nil, fmt.Errorf("console of VMI %s/%s: %w", r.ns, name, err)
	}
	ws.SetReadLimit(-1)
	// The connection lives until closed, not until ctx ends.
	return websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary), nil
}

// ConsoleLog returns the console output of VMI name's guest, as its node
// keeps it.
func (r *VMIs) ConsoleLog(ctx context.Context, name string) ([]byte, error) {
	path := subBase + "/namespaces/" + r.ns + "/virtualmachineinstances/" + name + "/consolelog"
	req, err := r.c.newHTTPRequest(ctx, request{method: http.MethodGet, path: path})
	if err != nil {
		return nil, err
	}
	resp, err := r.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp.StatusCode, http.MethodGet, b)
	}
	return b, nil
}
