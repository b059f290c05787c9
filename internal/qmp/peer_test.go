package qmp_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// peer is a scripted fake QEMU on the far end of a net.Pipe. Its methods
// report problems with t.Errorf, so that scripts may run in goroutines.
type peer struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
}

// request is a command as the peer reads it.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
	// Keys are the member names of the command object.
	Keys []string `json:"-"`
}

// greeting is what QEMU 7.2 on Debian 12 says first.
var greeting = map[string]any{"QMP": map[string]any{
	"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b2"},
	"capabilities": []string{"oob"},
}}

// newPeer returns the client's end of a pipe and the peer on the other end.
func newPeer(t *testing.T) (net.Conn, *peer) {
	a, b := net.Pipe()
	return a, newPeerOn(t, b)
}

// newPeerOn returns a peer on conn, closed when the test ends.
func newPeerOn(t *testing.T, conn net.Conn) *peer {
	t.Cleanup(func() { conn.Close() })
	return &peer{t: t, conn: conn, dec: json.NewDecoder(conn)}
}

// connect returns a client that completed the handshake with a peer.
func connect(t *testing.T) (*qmp.Client, *peer) {
	t.Helper()
	a, p := newPeer(t)
	go func() {
		p.send(greeting)
		p.reply(p.expect("qmp_capabilities"), struct{}{})
	}()
	c, err := qmp.NewClient(context.Background(), a)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p
}

func (p *peer) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Errorf("peer: encoding %v: %v", v, err)
		return
	}
	p.raw(string(b) + "\n")
}

func (p *peer) raw(s string) {
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Errorf("peer: writing %.60q: %v", s, err)
	}
}

// next reads the next command; ok is false at the end of the stream.
func (p *peer) next() (r request, ok bool) {
	var raw json.RawMessage
	if err := p.dec.Decode(&raw); err != nil {
		return request{}, false
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		p.t.Errorf("peer: command %s: %v", raw, err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys)
	for k := range keys {
		r.Keys = append(r.Keys, k)
	}
	return r, true
}

// expect reads the next command and checks its name.
func (p *peer) expect(name string) request {
	p.t.Helper()
	r, ok := p.next()
	if !ok {
		p.t.Errorf("peer: connection ended, want command %s", name)
		return r
	}
	if r.Execute != name {
		p.t.Errorf("peer: got command %q, want %q", r.Execute, name)
	}
	return r
}

func (p *peer) reply(r request, ret any) {
	p.send(map[string]any{"return": ret, "id": r.ID})
}

func (p *peer) fail(r request, class, desc string) {
	p.send(map[string]any{"error": map[string]string{"class": class, "desc": desc}, "id": r.ID})
}

func (p *peer) event(name string, data any) {
	m := map[string]any{"event": name, "timestamp": map[string]int64{"seconds": 1764288000, "microseconds": 250}}
	if data != nil {
		m["data"] = data
	}
	p.send(m)
}

// async runs f in a goroutine and delivers its result.
func async[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}
