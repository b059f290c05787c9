package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/vigil-vm/vigil/internal/driver"
)

// The agent's console endpoint, which the API server proxies to:
//
//	GET /console/{uid}     websocket, binary messages of raw serial bytes
//	GET /consolelog/{uid}  the console output of the guest's run, as text
//
// It serves whatever guest the VMI's runner holds, through the runtime's
// driver.Consoler. It has no authentication of its own: it listens on
// loopback unless told otherwise (--console-listen), and the API server in
// front of it checks every request.

// ConsoleLogger is implemented by runtimes that keep a guest's console log
// after the guest is gone.
type ConsoleLogger interface {
	ConsoleLog(id string) (io.ReadCloser, error)
}

// consoleSubprotocol is KubeVirt's console subprotocol.
const consoleSubprotocol = "plain.kubevirt.io"

// serveConsoles listens on ln and serves the console endpoint until ctx
// ends.
func (a *Agent) serveConsoles(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{uid}", a.console)
	mux.HandleFunc("GET /consolelog/{uid}", a.consoleLog)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("the console endpoint failed", "err", err)
	}
	<-done
}

// guestOf returns the guest the runner of a VMI holds, or nil.
func (a *Agent) guestOf(uid string) driver.Guest {
	a.mu.Lock()
	r := a.runners[uid]
	a.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shown
}

func (a *Agent) console(w http.ResponseWriter, req *http.Request) {
	uid := req.PathValue("uid")
	g := a.guestOf(uid)
	if g == nil || g.State().Phase == driver.Exited {
		http.Error(w, fmt.Sprintf("node %s runs no guest for VMI %s", a.cfg.Node, uid), http.StatusNotFound)
		return
	}
	cons, ok := g.(driver.Consoler)
	if !ok {
		http.Error(w, fmt.Sprintf("the %s runtime has no serial console", a.cfg.Driver.Info().Name), http.StatusNotImplemented)
		return
	}
	serial, err := cons.Console(req.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	defer serial.Close()
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{consoleSubprotocol}})
	if err != nil {
		return // Accept wrote the answer
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	conn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	go func() {
		_, _ = io.Copy(serial, conn) // keyboard
		cancel()
	}()
	_, _ = io.Copy(conn, serial) // screen
	ws.Close(websocket.StatusNormalClosure, "the guest's console closed")
}

func (a *Agent) consoleLog(w http.ResponseWriter, req *http.Request) {
	uid := req.PathValue("uid")
	var (
		rc  io.ReadCloser
		err error
	)
	if g, ok := a.guestOf(uid).(driver.Consoler); ok {
		rc, err = g.ConsoleLog()
	} else if l, ok := a.cfg.Driver.(ConsoleLogger); ok {
		rc, err = l.ConsoleLog(uid)
	} else {
		http.Error(w, fmt.Sprintf("the %s runtime keeps no console log for VMI %s on node %s", a.cfg.Driver.Info().Name, uid, a.cfg.Node), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, rc)
}

// listenConsoles opens the console listener and returns the address and
// port to publish.
func listenConsoles(addr, published string) (net.Listener, string, int32, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", 0, fmt.Errorf("agent: console endpoint: %w", err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		published = host
	}
	return ln, published, int32(port), nil
}
