package qmptest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-vm/vigil/internal/qmp"
	"github.com/vigil-vm/vigil/internal/qmp/qmptest"
)

// TestMonitorWithClient: a qmp.Client over Conn gets the handler's
// replies, its errors with their class, the Monitor's events, and the end
// of the connection on Disconnect; the Monitor logs every command.
func TestMonitorWithClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m *qmptest.Monitor
		m = qmptest.NewMonitor(t, func(cmd string, args json.RawMessage) (any, error) {
			switch cmd {
			case "query-status":
				return qmp.StatusInfo{Running: true, Status: "running"}, nil
			case "system_powerdown":
				m.Emit(qmp.EventPowerdown, nil)
				return nil, nil
			case "device_del":
				return nil, &qmp.Error{Class: qmp.ClassDeviceNotFound, Desc: "Device 'x' not found"}
			case "boom":
				return nil, errors.New("it broke")
			}
			return nil, fmt.Errorf("unexpected %s", cmd)
		})
		c, err := qmp.NewClient(t.Context(), m.Conn())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if diff := cmp.Diff(qmptest.Greeting, c.Greeting()); diff != "" {
			t.Errorf("greeting (-want +got):\n%s", diff)
		}
		if st, err := c.Status(t.Context()); err != nil || st != (qmp.StatusInfo{Running: true, Status: "running"}) {
			t.Errorf("status %+v, %v", st, err)
		}
		if err := c.SystemPowerdown(t.Context()); err != nil {
			t.Error(err)
		}
		if n := len(c.Events()); n != 1 {
			t.Fatalf("%d events after system_powerdown, want POWERDOWN, before the reply", n)
		}
		if ev := <-c.Events(); ev.Name != qmp.EventPowerdown || ev.Data != nil || ev.Timestamp.IsZero() {
			t.Errorf("event %+v", ev)
		}
		var qe *qmp.Error
		err = c.Run(t.Context(), "device_del", map[string]string{"id": "x"}, nil)
		if !errors.As(err, &qe) || qe.Class != qmp.ClassDeviceNotFound || qe.Desc != "Device 'x' not found" {
			t.Errorf("device_del: %v", err)
		}
		if err := c.Run(t.Context(), "boom", nil, nil); !errors.As(err, &qe) || qe.Class != qmp.ClassGenericError || qe.Desc != "it broke" {
			t.Errorf("boom: %v", err)
		}

		m.Emit(qmp.EventReset, qmp.ResetEvent{Guest: true, Reason: qmp.ReasonGuestReset})
		synctest.Wait()
		var r qmp.ResetEvent
		if ev := <-c.Events(); ev.Name != qmp.EventReset || ev.Decode(&r) != nil || r != (qmp.ResetEvent{Guest: true, Reason: qmp.ReasonGuestReset}) {
			t.Errorf("event %+v, data %+v", ev, r)
		}

		want := []qmptest.Command{
			{Name: "qmp_capabilities"},
			{Name: "query-status"},
			{Name: "system_powerdown"},
			{Name: "device_del", Args: json.RawMessage(`{"id":"x"}`)},
			{Name: "boom"},
		}
		if diff := cmp.Diff(want, m.Commands()); diff != "" {
			t.Errorf("commands (-want +got):\n%s", diff)
		}

		m.Disconnect()
		<-c.Done()
		if !errors.Is(c.Err(), qmp.ErrDisconnected) {
			t.Errorf("Err() = %v", c.Err())
		}
	})
}

// rawConn speaks to a Monitor line by line, as a misbehaving client might.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	in   *bufio.Scanner
}

func (r *rawConn) send(s string) {
	if _, err := r.conn.Write([]byte(s + "\n")); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// recv reads one message and returns it compacted.
func (r *rawConn) recv() string {
	r.t.Helper()
	if !r.in.Scan() {
		r.t.Fatalf("connection ended: %v", r.in.Err())
	}
	return r.in.Text()
}

// recvReply reads messages until one that is not an event.
func (r *rawConn) recvReply() string {
	r.t.Helper()
	for {
		if got := r.recv(); !strings.HasPrefix(got, `{"event"`) {
			return got
		}
	}
}

// TestMonitorProtocol: before negotiation commands are refused and events
// held back, as QEMU does; ids are echoed whatever their type; malformed
// commands get QEMU's errors; unparsable input ends the connection.
func TestMonitorProtocol(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := qmptest.NewMonitor(t, nil)
		r := &rawConn{t: t, conn: m.Conn()}
		r.in = bufio.NewScanner(r.conn)
		defer r.conn.Close()
		if got := r.recv(); !strings.HasPrefix(got, `{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":0}`) {
			t.Errorf("greeting %s", got)
		}
		steps := []struct{ send, want string }{
			{`{"execute": "query-status", "id": 1}`, `{"error":{"class":"CommandNotFound","desc":"Expecting capabilities negotiation with 'qmp_capabilities'"},"id":1}`},
			{`{"execute": "qmp_capabilities", "id": {"n": [1]}}`, `{"return":{},"id":{"n":[1]}}`},
			{`{"execute": "qmp_capabilities"}`, `{"error":{"class":"CommandNotFound","desc":"Capabilities negotiation is already complete, command ignored"}}`},
			{`{"execute": "stop", "id": "a"}`, `{"return":{},"id":"a"}`},
			{`{"arguments": {}, "id": 7}`, `{"error":{"class":"GenericError","desc":"QMP input lacks member 'execute'"},"id":7}`},
			{`{"exec-oob": "stop", "id": 8}`, `{"error":{"class":"GenericError","desc":"QMP input member 'exec-oob' is unexpected"},"id":8}`},
		}
		for _, s := range steps {
			// An event emitted now goes out only after negotiation.
			go m.Emit("RTC_CHANGE", map[string]int{"offset": 1})
			r.send(s.send)
			if got := r.recvReply(); got != s.want {
				t.Errorf("%s:\n got %s\nwant %s", s.send, got, s.want)
			}
		}
		r.send(`{"execute": }`)
		if got := r.recvReply(); !strings.HasPrefix(got, `{"error":{"class":"GenericError","desc":"JSON parse error`) {
			t.Errorf("after garbage: %s", got)
		}
		for r.in.Scan() { // events emitted before it hung up
			if !strings.HasPrefix(r.in.Text(), `{"event"`) {
				t.Errorf("after the parse error: %s", r.in.Text())
			}
		}
	})
}

// TestMonitorEventsOnlyAfterNegotiation: a connection that has not
// negotiated receives no events.
func TestMonitorEventsOnlyAfterNegotiation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := qmptest.NewMonitor(t, nil)
		r := &rawConn{t: t, conn: m.Conn()}
		r.in = bufio.NewScanner(r.conn)
		defer r.conn.Close()
		r.recv() // greeting
		m.Emit("EARLY", nil)
		r.send(`{"execute": "qmp_capabilities", "id": 1}`)
		if got := r.recv(); got != `{"return":{},"id":1}` {
			t.Errorf("first message after the greeting: %s, want the reply", got)
		}
		go m.Emit("LATE", nil)
		if got := r.recv(); !strings.HasPrefix(got, `{"event":"LATE","timestamp":{"seconds":`) {
			t.Errorf("got %s, want LATE", got)
		}
	})
}

// TestMonitorQuit: quit is answered, then SHUTDOWN host-qmp-quit, then the
// Monitor goes away like QEMU: the client sees the end and new
// connections fail.
func TestMonitorQuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := qmptest.NewMonitor(t, nil)
		c, err := qmp.NewClient(t.Context(), m.Conn())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Quit(t.Context()); err != nil {
			t.Fatalf("quit: %v", err)
		}
		<-m.Quit()
		var names []string
		var s qmp.ShutdownEvent
		for ev := range c.Events() {
			names = append(names, ev.Name)
			_ = ev.Decode(&s)
		}
		if diff := cmp.Diff([]string{qmp.EventShutdown}, names); diff != "" || s != (qmp.ShutdownEvent{Reason: qmp.ReasonHostQMPQuit}) {
			t.Errorf("events %v (data %+v), want SHUTDOWN host-qmp-quit", names, s)
		}
		if _, err := qmp.NewClient(t.Context(), m.Conn()); err == nil {
			t.Error("a new connection after quit succeeded")
		}
	})
}

// TestMonitorQuitRefused: a handler that refuses quit keeps the Monitor
// up.
func TestMonitorQuitRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := qmptest.NewMonitor(t, func(cmd string, _ json.RawMessage) (any, error) {
			return nil, &qmp.Error{Class: qmp.ClassGenericError, Desc: "not now"}
		})
		c, err := qmp.NewClient(t.Context(), m.Conn())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var qe *qmp.Error
		if err := c.Quit(t.Context()); !errors.As(err, &qe) {
			t.Errorf("quit: %v, want the refusal", err)
		}
		select {
		case <-m.Quit():
			t.Error("Quit closed after a refused quit")
		default:
		}
		if c.Err() != nil {
			t.Errorf("connection ended: %v", c.Err())
		}
	})
}

// TestMonitorPath: clients Dial the socket, several at once; events reach
// all of them; after Disconnect they can dial again; after Close nothing
// listens.
func TestMonitorPath(t *testing.T) {
	m := qmptest.NewMonitor(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() *qmp.Client {
		t.Helper()
		c, err := qmp.Dial(ctx, m.Path())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := dial(), dial()
	m.Emit(qmp.EventStop, nil)
	for i, c := range []*qmp.Client{c1, c2} {
		select {
		case ev := <-c.Events():
			if ev.Name != qmp.EventStop {
				t.Errorf("client %d: event %s", i, ev.Name)
			}
		case <-ctx.Done():
			t.Fatalf("client %d: no event", i)
		}
	}
	m.Disconnect()
	<-c1.Done()
	<-c2.Done()
	c3 := dial()
	if err := c3.Cont(ctx); err != nil {
		t.Errorf("after a redial: %v", err)
	}
	m.Close()
	<-c3.Done()
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := qmp.Dial(short, m.Path()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial after Close: %v, want the deadline", err)
	}
}

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestMonitorUnencodable: a handler reply or an event that does not encode
// is reported to the test; the client gets a GenericError and no event.
func TestMonitorUnencodable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{TB: t}
		m := qmptest.NewMonitor(rec, func(string, json.RawMessage) (any, error) { return make(chan int), nil })
		c, err := qmp.NewClient(t.Context(), m.Conn())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var qe *qmp.Error
		if err := c.Stop(t.Context()); !errors.As(err, &qe) || qe.Class != qmp.ClassGenericError {
			t.Errorf("stop: %v, want a GenericError", err)
		}
		m.Emit("BAD", func() {})
		synctest.Wait()
		if n := len(c.Events()); n != 0 {
			t.Errorf("%d events delivered", n)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.errs) != 2 {
			t.Errorf("reported %q, want the reply and the event", rec.errs)
		}
	})
}
