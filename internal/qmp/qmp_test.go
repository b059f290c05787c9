package qmp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// peer is a scripted fake QEMU on the other end of a net.Pipe.
type peer struct {
	t    *testing.T
	conn net.Conn
	in   *bufio.Scanner
}

type command struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        string          `json:"id"`
}

func (p *peer) send(v any) {
	b, _ := json.Marshal(v)
	if _, err := p.conn.Write(append(b, '\n')); err != nil {
		p.t.Errorf("peer: write: %v", err)
	}
}

func (p *peer) sendRaw(s string) { _, _ = p.conn.Write([]byte(s)) }

// next reads the next command and checks its name.
func (p *peer) next(want string) command {
	if !p.in.Scan() {
		p.t.Fatalf("peer: no command (want %s): %v", want, p.in.Err())
	}
	var c command
	if err := json.Unmarshal(p.in.Bytes(), &c); err != nil {
		p.t.Fatalf("peer: bad command %q: %v", p.in.Text(), err)
	}
	if c.Execute != want {
		p.t.Fatalf("peer: got command %s, want %s", c.Execute, want)
	}
	return c
}

func (p *peer) reply(c command, ret any) { p.send(map[string]any{"return": ret, "id": c.ID}) }

func (p *peer) event(name string, data any) {
	p.send(map[string]any{"event": name, "data": data, "timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 5}})
}

// connect returns a client and the peer after a normal handshake.
func connect(t *testing.T) (*qmp.Client, *peer) {
	t.Helper()
	a, b := net.Pipe()
	p := &peer{t: t, conn: b, in: bufio.NewScanner(b)}
	t.Cleanup(func() { b.Close() })
	go func() {
		p.send(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{"oob"}}})
		p.reply(p.next("qmp_capabilities"), map[string]any{})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := qmp.NewClient(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestRepliesByID: replies are matched by id, in any order, and error
// replies keep QEMU's class.
func TestRepliesByID(t *testing.T) {
	c, p := connect(t)
	go func() {
		first := p.next("query-status")
		second := p.next("stop")
		p.send(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "cannot stop"}, "id": second.ID})
		p.reply(first, map[string]any{"running": true, "status": "running"})
	}()
	type result struct {
		st  qmp.StatusInfo
		err error
	}
	statusDone := make(chan result, 1)
	go func() { st, err := c.Status(ctx(t)); statusDone <- result{st, err} }()
	time.Sleep(50 * time.Millisecond) // the status query goes first
	err := c.Stop(ctx(t))
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Desc != "cannot stop" {
		t.Errorf("stop: %v, want GenericError: cannot stop", err)
	}
	r := <-statusDone
	if r.err != nil || !r.st.Running || r.st.Status != "running" {
		t.Errorf("status: %+v %v", r.st, r.err)
	}
}

// TestArguments: typed commands send the arguments QEMU expects.
func TestArguments(t *testing.T) {
	c, p := connect(t)
	got := make(chan string, 1)
	go func() {
		cmd := p.next("send-key")
		got <- string(cmd.Arguments)
		p.reply(cmd, map[string]any{})
	}()
	if err := c.SendCtrlAltDel(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := `{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}`
	if a := <-got; a != want {
		t.Errorf("send-key arguments %s, want %s", a, want)
	}
}

// TestEventsInterleaved: events between replies are delivered, decoded,
// with their timestamps.
func TestEventsInterleaved(t *testing.T) {
	c, p := connect(t)
	go func() {
		cmd := p.next("system_powerdown")
		p.event("POWERDOWN", nil)
		p.reply(cmd, map[string]any{})
		p.event("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"})
	}()
	if err := c.SystemPowerdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POWERDOWN", "SHUTDOWN"} {
		select {
		case ev := <-c.Events():
			if ev.Name != want {
				t.Fatalf("event %s, want %s", ev.Name, want)
			}
			if ev.Timestamp.Unix() != 1700000000 {
				t.Errorf("timestamp %v", ev.Timestamp)
			}
			if want == "SHUTDOWN" {
				var s qmp.ShutdownEvent
				if err := ev.Decode(&s); err != nil || !s.Guest || s.Reason != "guest-shutdown" {
					t.Errorf("SHUTDOWN data %+v %v", s, err)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
}

// TestSlowEventReaderNeverBlocksCommands: with nobody reading events,
// more events than the buffer holds are dropped and counted, and commands
// still get their replies.
func TestSlowEventReaderNeverBlocksCommands(t *testing.T) {
	c, p := connect(t)
	const n = 1000
	go func() {
		for i := range n {
			p.event("RTC_CHANGE", map[string]int{"offset": i})
		}
		p.reply(p.next("cont"), map[string]any{})
	}()
	if err := c.Cont(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if c.Dropped() == 0 {
		t.Errorf("no event was dropped out of %d unread", n)
	}
	if got := uint64(len(c.Events())) + c.Dropped(); got != n {
		t.Errorf("%d buffered + dropped, want %d", got, n)
	}
}

// TestCancel: a caller whose context ends returns; the late reply does not
// disturb the next command.
func TestCancel(t *testing.T) {
	c, p := connect(t)
	replied := make(chan struct{})
	go func() {
		slow := p.next("query-status")
		<-replied
		p.reply(slow, map[string]any{"running": false, "status": "paused"})
		p.reply(p.next("cont"), map[string]any{})
	}()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Status(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("status: %v, want the deadline", err)
	}
	close(replied)
	if err := c.Cont(ctx(t)); err != nil {
		t.Errorf("the next command: %v", err)
	}
}

// TestDisconnect: when QEMU goes away, outstanding and later calls fail
// with ErrDisconnected, Done closes and Events ends; Quit counts a
// disconnect as success.
func TestDisconnect(t *testing.T) {
	c, p := connect(t)
	go func() {
		p.next("query-status")
		p.conn.Close()
	}()
	if _, err := c.Status(ctx(t)); !errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("outstanding call: %v, want ErrDisconnected", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if err := c.Stop(ctx(t)); !errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("later call: %v, want ErrDisconnected", err)
	}
	if _, ok := <-c.Events(); ok {
		t.Error("Events still open")
	}
	if !errors.Is(c.Err(), qmp.ErrDisconnected) {
		t.Errorf("Err() = %v", c.Err())
	}

	q, qp := connect(t)
	go func() {
		qp.next("quit")
		qp.conn.Close()
	}()
	if err := q.Quit(ctx(t)); err != nil {
		t.Errorf("quit with QEMU closing the socket: %v", err)
	}
}

// TestBadPeers: a peer that does not greet, greets with garbage, or sends
// malformed JSON later is refused with a clear error.
func TestBadPeers(t *testing.T) {
	cases := map[string]string{
		"no banner": `{"hello": 1}` + "\n",
		"garbage":   "not json\n",
	}
	for name, greeting := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			go func() { _, _ = b.Write([]byte(greeting)) }()
			if _, err := qmp.NewClient(ctx(t), a); err == nil {
				t.Error("accepted")
			}
		})
	}
	t.Run("silent", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := qmp.NewClient(short, a); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the deadline", err)
		}
	})
	t.Run("malformed later", func(t *testing.T) {
		c, p := connect(t)
		go func() {
			p.next("query-status")
			p.sendRaw("{broken\n")
		}()
		if _, err := c.Status(ctx(t)); !errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("got %v, want ErrDisconnected", err)
		}
	})
}

// TestDialRetries: Dial waits for a socket that appears later.
func TestDialRetries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.sock")
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Error(err)
			return
		}
		defer l.Close()
		conn, err := l.Accept()
		if err != nil {
			return
		}
		p := &peer{t: t, conn: conn, in: bufio.NewScanner(conn)}
		p.send(map[string]any{"QMP": map[string]any{}})
		p.reply(p.next("qmp_capabilities"), map[string]any{})
		<-time.After(time.Second)
		conn.Close()
	}()
	c, err := qmp.Dial(ctx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := qmp.Dial(short, filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to nothing: %v", err)
	}
}

// TestRealQEMU talks to a real qemu-system-x86_64 without a guest.
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatal("qemu-system-x86_64 is not installed (make qemu)")
		}
		t.Skip("qemu-system-x86_64 is not installed (make qemu)")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "-M", "q35", "-accel", "tcg", "-nodefaults", "-nographic", "-S", "-qmp", "unix:q.sock,server=on,wait=off")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	c, err := qmp.Dial(ctx(t), filepath.Join(dir, "q.sock"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx(t))
	if err != nil || st.Running || st.Status != "prelaunch" {
		t.Errorf("status %+v %v, want prelaunch", st, err)
	}
	var qe *qmp.Error
	if err := c.Run(ctx(t), "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.Quit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var sawShutdown bool
	for ev := range c.Events() {
		if ev.Name == "SHUTDOWN" {
			var s qmp.ShutdownEvent
			_ = ev.Decode(&s)
			sawShutdown = s.Reason == "host-qmp-quit" && !s.Guest
		}
	}
	if !sawShutdown {
		t.Error("no SHUTDOWN host-qmp-quit event")
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("QEMU did not exit")
	}
}

// BenchmarkRoundTrip measures one command and its reply over a pipe.
func BenchmarkRoundTrip(b *testing.B) {
	a, s := net.Pipe()
	defer s.Close()
	go func() {
		in := bufio.NewScanner(s)
		w := func(v any) { bb, _ := json.Marshal(v); _, _ = s.Write(append(bb, '\n')) }
		w(map[string]any{"QMP": map[string]any{}})
		for in.Scan() {
			var c command
			_ = json.Unmarshal(in.Bytes(), &c)
			w(map[string]any{"return": map[string]any{"running": true, "status": "running"}, "id": c.ID})
		}
	}()
	c, err := qmp.NewClient(context.Background(), a)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Status(context.Background()); err != nil {
			b.Fatal(fmt.Errorf("status: %w", err))
		}
	}
}
