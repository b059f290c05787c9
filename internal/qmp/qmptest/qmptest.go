// Package qmptest is a fake QEMU QMP peer for tests of packages that drive
// QEMU through package qmp.
//
// A Monitor behaves as QEMU's monitor does on the wire: it greets each
// client, insists on capabilities negotiation (qmp_capabilities) first,
// answers every other command through a Handler, echoes command ids, and
// sends events (Emit) to every negotiated client. A quit that the Handler
// accepts is answered, followed by SHUTDOWN (guest false, reason
// host-qmp-quit), and then the Monitor goes away, as QEMU exits. Clients
// connect through a unix socket (Path, for qmp.Dial) or a net.Pipe (Conn,
// for qmp.NewClient; this one works inside testing/synctest bubbles).
//
//	m := qmptest.NewMonitor(t, func(cmd string, args json.RawMessage) (any, error) {
//		switch cmd {
//		case "query-status":
//			return qmp.StatusInfo{Running: true, Status: "running"}, nil
//		case "system_powerdown":
//			m.Emit(qmp.EventPowerdown, nil)
//			return nil, nil
//		}
//		return nil, &qmp.Error{Class: qmp.ClassCommandNotFound, Desc: "The command " + cmd + " has not been found"}
//	})
//	c, err := qmp.Dial(ctx, m.Path())
package qmptest

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// Handler answers one command (never qmp_capabilities, which the Monitor
// answers itself). It returns the reply's value (nil for {}), or an error:
// a *qmp.Error is sent with its class, any other error as a GenericError
// with the error's text. Handlers of several connections may run
// concurrently; one connection's commands are handled one at a time, in
// order. Events a Handler emits reach the client before the reply.
type Handler func(cmd string, args json.RawMessage) (any, error)

// Command is one command the Monitor received.
type Command struct {
	Name string
	// Args are the command's arguments, nil when it had none.
	Args json.RawMessage
}

// Greeting is the greeting a Monitor sends: QEMU 7.2.0 with the oob
// capability, like Debian 12's QEMU.
var Greeting = qmp.Greeting{
	Version:      qmp.VersionInfo{QEMU: qmp.Version{Major: 7, Minor: 2, Micro: 0}, Package: "qmptest"},
	Capabilities: []string{"oob"},
}

// Monitor is a fake QMP peer. Its methods are safe for concurrent use.
type Monitor struct {
	t       testing.TB
	handler Handler

	mu       sync.Mutex
	conns    map[*conn]struct{}
	commands []Command
	dir      string       // holds the socket, once Path was called
	ln       net.Listener // nil until Path is called
	closed   bool
	wg       sync.WaitGroup // the accept loop and one goroutine per connection
	quit     chan struct{}
	quitOnce sync.Once
}

// conn is one client connection.
type conn struct {
	c          net.Conn
	wsem       chan struct{} // one token, held while writing
	negotiated bool          // guarded by wsem
}

// NewMonitor returns a Monitor that answers commands with h; a nil h
// accepts every command with an empty reply. The Monitor is closed when
// the test ends.
func NewMonitor(t testing.TB, h Handler) *Monitor {
	t.Helper()
	if h == nil {
		h = func(string, json.RawMessage) (any, error) { return nil, nil }
	}
	m := &Monitor{t: t, handler: h, conns: map[*conn]struct{}{}, quit: make(chan struct{})}
	t.Cleanup(m.Close)
	return m
}

// Path returns the path of a unix socket the Monitor listens on, starting
// to listen on the first call. It lives in its own short temporary
// directory, since socket paths are limited to 108 bytes.
func (m *Monitor) Path() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dir != "" {
		return filepath.Join(m.dir, "qmp.sock")
	}
	dir, err := os.MkdirTemp("", "qmptest")
	if err != nil {
		m.t.Fatalf("qmptest: %v", err)
	}
	m.dir = dir
	path := filepath.Join(dir, "qmp.sock")
	if m.closed {
		return path // a QEMU that is gone: nothing listens
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		m.t.Fatalf("qmptest: %v", err)
	}
	m.ln = ln
	m.wg.Add(1)
	go m.accept(ln)
	return path
}

// accept serves every client of ln until ln is closed.
func (m *Monitor) accept(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		m.start(c)
	}
}

// Conn returns a client connection to the Monitor over net.Pipe. After
// Close or quit, the connection is already closed, as QEMU's socket would
// be.
func (m *Monitor) Conn() net.Conn {
	client, server := net.Pipe()
	m.start(server)
	return client
}

// start serves c in a goroutine, or closes it when the Monitor is closed.
func (m *Monitor) start(c net.Conn) {
	cn := &conn{c: c, wsem: make(chan struct{}, 1)}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return
	}
	m.conns[cn] = struct{}{}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer m.drop(cn)
		m.serve(cn)
	}()
}

// drop closes cn and forgets it.
func (m *Monitor) drop(cn *conn) {
	cn.c.Close()
	m.mu.Lock()
	delete(m.conns, cn)
	m.mu.Unlock()
}

// request is a command as QMP clients send it.
type request struct {
	Execute   string          `json:"execute"`
	ExecOOB   string          `json:"exec-oob"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// response is a reply as QEMU sends it.
type response struct {
	Return any             `json:"return,omitempty"`
	Error  *qmp.Error      `json:"error,omitempty"`
	ID     json.RawMessage `json:"id,omitempty"`
}

// serve speaks QMP on one connection until it ends.
func (m *Monitor) serve(cn *conn) {
	if cn.send(map[string]qmp.Greeting{"QMP": Greeting}, nil) != nil {
		return
	}
	dec := json.NewDecoder(cn.c)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			var syn *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if errors.As(err, &syn) || errors.As(err, &typ) {
				// QEMU answers without an id; this Monitor then hangs up,
				// since it cannot find the next message.
				_ = cn.send(response{Error: &qmp.Error{Class: qmp.ClassGenericError, Desc: "JSON parse error, " + err.Error()}}, nil)
			}
			return
		}
		m.mu.Lock()
		m.commands = append(m.commands, Command{Name: req.Execute, Args: req.Arguments})
		m.mu.Unlock()
		if m.answer(cn, req) {
			m.exit()
			return
		}
	}
}

// answer replies to one command, and tells whether it was an accepted
// quit.
func (m *Monitor) answer(cn *conn, req request) (quit bool) {
	resp := response{ID: req.ID}
	switch {
	case req.ExecOOB != "":
		resp.Error = &qmp.Error{Class: qmp.ClassGenericError, Desc: "QMP input member 'exec-oob' is unexpected"}
	case req.Execute == "":
		resp.Error = &qmp.Error{Class: qmp.ClassGenericError, Desc: "QMP input lacks member 'execute'"}
	case req.Execute == "qmp_capabilities":
		// Negotiation flips under the write token, together with the
		// reply, so that an Emit racing with it comes after the reply.
		_ = cn.send(&resp, func() {
			if cn.negotiated {
				resp.Error = &qmp.Error{Class: qmp.ClassCommandNotFound, Desc: "Capabilities negotiation is already complete, command ignored"}
			} else {
				resp.Return = struct{}{}
				cn.negotiated = true
			}
		})
		return false
	default:
		var negotiated bool
		cn.lock()
		negotiated = cn.negotiated
		cn.unlock()
		if !negotiated {
			resp.Error = &qmp.Error{Class: qmp.ClassCommandNotFound, Desc: "Expecting capabilities negotiation with 'qmp_capabilities'"}
			break
		}
		v, err := m.handler(req.Execute, req.Arguments)
		if err != nil {
			var qe *qmp.Error
			if !errors.As(err, &qe) {
				qe = &qmp.Error{Class: qmp.ClassGenericError, Desc: err.Error()}
			}
			resp.Error = qe
			break
		}
		if v == nil {
			v = struct{}{}
		}
		if _, err := json.Marshal(v); err != nil {
			m.t.Errorf("qmptest: the handler's reply to %s does not encode: %v", req.Execute, err)
			resp.Error = &qmp.Error{Class: qmp.ClassGenericError, Desc: "qmptest: unencodable reply"}
			break
		}
		resp.Return = v
		quit = req.Execute == "quit"
	}
	if cn.send(resp, nil) != nil {
		return false
	}
	return quit
}

// exit does what QEMU does after quit: SHUTDOWN to every client, then it
// goes away.
func (m *Monitor) exit() {
	m.Emit(qmp.EventShutdown, qmp.ShutdownEvent{Guest: false, Reason: qmp.ReasonHostQMPQuit})
	m.shutdown()
	m.quitOnce.Do(func() { close(m.quit) })
}

// Emit sends the event name with data (nil for none) to every client that
// has negotiated capabilities, stamped with time.Now. It returns once each
// of them has been written to (a qmp.Client always reads).
func (m *Monitor) Emit(name string, data any) {
	msg := struct {
		Event     string `json:"event"`
		Data      any    `json:"data,omitempty"`
		Timestamp struct {
			Seconds      int64 `json:"seconds"`
			Microseconds int64 `json:"microseconds"`
		} `json:"timestamp"`
	}{Event: name, Data: data}
	now := time.Now()
	msg.Timestamp.Seconds, msg.Timestamp.Microseconds = now.Unix(), int64(now.Nanosecond()/1000)
	if _, err := json.Marshal(msg); err != nil {
		m.t.Errorf("qmptest: event %s does not encode: %v", name, err)
		return
	}
	for _, cn := range m.connections() {
		cn.lock()
		if cn.negotiated {
			_ = cn.write(msg) // a client that is gone misses it, as with QEMU
		}
		cn.unlock()
	}
}

// connections lists the current connections.
func (m *Monitor) connections() []*conn {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := make([]*conn, 0, len(m.conns))
	for cn := range m.conns {
		cs = append(cs, cn)
	}
	return cs
}

// Commands returns the commands received so far, qmp_capabilities
// included, in the order they were read (per connection).
func (m *Monitor) Commands() []Command {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Command(nil), m.commands...)
}

// Quit is closed when the Monitor has accepted a quit and gone away.
func (m *Monitor) Quit() <-chan struct{} { return m.quit }

// Disconnect closes every current connection, as if QEMU's monitor broke;
// the socket at Path keeps accepting new ones.
func (m *Monitor) Disconnect() {
	for _, cn := range m.connections() {
		cn.c.Close()
	}
}

// shutdown stops listening and closes every connection, without waiting.
func (m *Monitor) shutdown() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	ln := m.ln
	m.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	m.Disconnect()
}

// Close stops the Monitor as if QEMU was killed: it stops listening,
// closes every connection and waits for its goroutines. It is called when
// the test ends; calling it twice is harmless.
func (m *Monitor) Close() {
	m.shutdown()
	m.wg.Wait()
	m.mu.Lock()
	dir := m.dir
	m.mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

func (cn *conn) lock()   { cn.wsem <- struct{}{} }
func (cn *conn) unlock() { <-cn.wsem }

// send writes v under the write token, first calling prepare (if not
// nil) under the token; prepare may change what v points to.
func (cn *conn) send(v any, prepare func()) error {
	cn.lock()
	defer cn.unlock()
	if prepare != nil {
		prepare()
	}
	return cn.write(v)
}

// write encodes v as one line; the caller holds the write token.
func (cn *conn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = cn.c.Write(append(b, '\n'))
	return err
}
