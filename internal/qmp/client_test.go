package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// TestHandshake: the client reads the greeting, then sends
// qmp_capabilities, without arguments, before anything else.
func TestHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, p := newPeer(t)
		caps := async(func() request {
			p.send(greeting)
			r := p.expect("qmp_capabilities")
			p.reply(r, struct{}{})
			return r
		})
		c, err := qmp.NewClient(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := <-caps
		if r.Arguments != nil {
			t.Errorf("qmp_capabilities has arguments %s", r.Arguments)
		}
		slices.Sort(r.Keys)
		if diff := cmp.Diff([]string{"execute", "id"}, r.Keys); diff != "" {
			t.Errorf("qmp_capabilities members (-want +got):\n%s", diff)
		}
		want := qmp.Greeting{
			Version:      qmp.VersionInfo{QEMU: qmp.Version{Major: 7, Minor: 2, Micro: 22}, Package: "Debian 1:7.2+dfsg-7+deb12u18+b2"},
			Capabilities: []string{"oob"},
		}
		if diff := cmp.Diff(want, c.Greeting()); diff != "" {
			t.Errorf("greeting (-want +got):\n%s", diff)
		}
		if got := c.Greeting().Version.QEMU.String(); got != "7.2.22" {
			t.Errorf("version %q, want 7.2.22", got)
		}
		if c.Err() != nil {
			t.Errorf("Err() = %v on a live connection", c.Err())
		}
		select {
		case <-c.Done():
			t.Error("Done closed on a live connection")
		default:
		}
	})
}

// TestHandshakeFailures: every way the handshake can go wrong fails
// NewClient with an error that says which, and closes the connection.
func TestHandshakeFailures(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name       string
		ctx        context.Context // default: 5 seconds
		script     func(p *peer)
		peerCloses bool
		check      func(t *testing.T, err error)
	}{
		{
			name:   "a reply instead of the greeting",
			script: func(p *peer) { p.raw(`{"return": {}, "id": "1"}` + "\n") },
			check:  wantText("did not greet"),
		},
		{
			name:   "QMP member null",
			script: func(p *peer) { p.raw(`{"QMP": null}` + "\n") },
			check:  wantText("did not greet"),
		},
		{
			name:   "an array",
			script: func(p *peer) { p.raw("[1, 2]\n") },
			check:  wantText("did not greet"),
		},
		{
			name:   "not JSON",
			script: func(p *peer) { p.raw("SSH-2.0-OpenSSH_9.2\r\n") },
			check: func(t *testing.T, err error) {
				var syn *json.SyntaxError
				if !errors.As(err, &syn) {
					t.Errorf("got %v, want a JSON syntax error", err)
				}
			},
		},
		{
			name:       "closed before the greeting",
			script:     func(p *peer) { p.conn.Close() },
			peerCloses: true,
			check:      wantIs(io.EOF),
		},
		{
			name:   "silent",
			script: func(p *peer) {},
			check: func(t *testing.T, err error) {
				wantIs(context.DeadlineExceeded)(t, err)
				wantText("greeting")(t, err)
			},
		},
		{
			name:   "context already ended",
			ctx:    cancelled,
			script: func(p *peer) {},
			check:  wantIs(context.Canceled),
		},
		{
			name: "capabilities refused",
			script: func(p *peer) {
				p.send(greeting)
				p.fail(p.expect("qmp_capabilities"), "GenericError", "no")
			},
			check: wantClass("GenericError", "no"),
		},
		{
			name: "closed during negotiation",
			script: func(p *peer) {
				p.send(greeting)
				p.expect("qmp_capabilities")
				p.conn.Close()
			},
			peerCloses: true,
			check:      wantIs(qmp.ErrDisconnected),
		},
		{
			name: "no answer to qmp_capabilities",
			script: func(p *peer) {
				p.send(greeting)
				p.expect("qmp_capabilities")
			},
			check: func(t *testing.T, err error) {
				wantIs(context.DeadlineExceeded)(t, err)
				wantIs(qmp.ErrTimeout)(t, err)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := tc.ctx
				if ctx == nil {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
					defer cancel()
				}
				a, p := newPeer(t)
				scripted := async(func() struct{} { tc.script(p); return struct{}{} })
				c, err := qmp.NewClient(ctx, a)
				if err == nil {
					c.Close()
					t.Fatal("NewClient succeeded")
				}
				tc.check(t, err)
				<-scripted
				if !tc.peerCloses {
					if _, err := p.conn.Read(make([]byte, 1)); err != io.EOF {
						t.Errorf("after the failure the peer reads %v, want io.EOF (connection closed)", err)
					}
				}
			})
		})
	}
}

// TestRepliesMatchedByID: concurrent commands get their own replies, even
// when QEMU answers them in another order.
func TestRepliesMatchedByID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		names := []string{"query-a", "query-b", "query-c"}
		type result struct {
			Echo string `json:"echo"`
			err  error
		}
		var waits []<-chan result
		for _, name := range names {
			waits = append(waits, async(func() result {
				var r result
				r.err = c.Run(t.Context(), name, nil, &r)
				return r
			}))
		}
		var reqs []request
		ids := map[string]bool{}
		for range names {
			r, _ := p.next()
			reqs = append(reqs, r)
			ids[string(r.ID)] = true
		}
		if len(ids) != len(names) {
			t.Errorf("ids %v are not distinct", ids)
		}
		for _, r := range slices.Backward(reqs) {
			p.reply(r, map[string]string{"echo": r.Execute})
		}
		for i, w := range waits {
			r := <-w
			if r.err != nil || r.Echo != names[i] {
				t.Errorf("%s: got reply %q, %v; want its own", names[i], r.Echo, r.err)
			}
		}
	})
}

// TestErrorReplyKeepsClass: an error reply is a *qmp.Error with QEMU's
// class and description, and the connection goes on.
func TestErrorReplyKeepsClass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		go func() {
			p.fail(p.expect("device_del"), "DeviceNotFound", "Device 'nic9' not found")
			p.reply(p.expect("query-status"), map[string]any{"running": true, "status": "running"})
		}()
		err := c.Run(t.Context(), "device_del", map[string]string{"id": "nic9"}, nil)
		wantClass("DeviceNotFound", "Device 'nic9' not found")(t, err)
		if want := "qmp: device_del: DeviceNotFound: Device 'nic9' not found"; err == nil || err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
		if errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("an error reply matches ErrDisconnected: %v", err)
		}
		if st, err := c.Status(t.Context()); err != nil || st.Status != "running" {
			t.Errorf("next command: %+v, %v", st, err)
		}
	})
}

// TestCancelWhileWaiting: a caller whose context ends returns ctx's error
// at once; its command stays outstanding, and its late reply is dropped
// without reaching the caller's out or the next command.
func TestCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		type value struct {
			V string `json:"v"`
		}

		ctx, cancel := context.WithCancel(t.Context())
		var cancelledOut value
		cancelled := async(func() error { return c.Run(ctx, "slow", nil, &cancelledOut) })
		slow := p.expect("slow")
		synctest.Wait() // Run waits for the reply
		cancel()
		if err := <-cancelled; !errors.Is(err, context.Canceled) || errors.Is(err, qmp.ErrTimeout) {
			t.Errorf("cancelled: %v, want context.Canceled only", err)
		}

		start := time.Now()
		tctx, tcancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer tcancel()
		var timedOutOut value
		timedOut := async(func() error { return c.Run(tctx, "slower", nil, &timedOutOut) })
		slower := p.expect("slower")
		err := <-timedOut
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, qmp.ErrTimeout) {
			t.Errorf("timed out: %v, want DeadlineExceeded and ErrTimeout", err)
		}
		if d := time.Since(start); d != 3*time.Second { // the bubble's clock
			t.Errorf("gave up after %v, want the deadline, 3s", d)
		}

		p.reply(slow, value{"late 1"})
		p.reply(slower, value{"late 2"})
		next := async(func() error {
			var v value
			if err := c.Run(t.Context(), "next", nil, &v); err != nil {
				return err
			}
			if v.V != "next" {
				return fmt.Errorf("got %q", v.V)
			}
			return nil
		})
		p.reply(p.expect("next"), value{"next"})
		if err := <-next; err != nil {
			t.Errorf("the command after: %v", err)
		}
		synctest.Wait()
		if cancelledOut != (value{}) || timedOutOut != (value{}) {
			t.Errorf("a late reply reached a cancelled caller's out: %+v %+v", cancelledOut, timedOutOut)
		}
		if c.Err() != nil {
			t.Errorf("connection ended: %v", c.Err())
		}
	})
}

// TestCancelBeforeSent: a command whose context ends before any byte of
// it is written is not sent, whether its context had already ended, it
// waited for another command's write, or its own write was blocked.
func TestCancelBeforeSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)

		ended, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Run(ended, "never-1", nil, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("ended context: %v", err)
		}

		// The peer does not read: the first write blocks, the second
		// waits for the first.
		ctxA, cancelA := context.WithCancel(t.Context())
		ctxB, cancelB := context.WithCancel(t.Context())
		a := async(func() error { return c.Run(ctxA, "never-2", nil, nil) })
		synctest.Wait()
		b := async(func() error { return c.Run(ctxB, "never-3", nil, nil) })
		synctest.Wait()
		cancelB()
		if err := <-b; !errors.Is(err, context.Canceled) {
			t.Errorf("waiting to write: %v", err)
		}
		cancelA()
		if err := <-a; !errors.Is(err, context.Canceled) {
			t.Errorf("blocked writing: %v", err)
		}

		after := async(func() error { return c.Run(t.Context(), "after", nil, nil) })
		p.reply(p.expect("after"), struct{}{})
		if err := <-after; err != nil {
			t.Errorf("after: %v", err)
		}
		if c.Err() != nil {
			t.Errorf("connection ended: %v", c.Err())
		}
	})
}

// TestCancelCutsWrite: a write cut in the middle by its context ends the
// connection, since the stream is broken.
func TestCancelCutsWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		ctx, cancel := context.WithCancel(t.Context())
		run := async(func() error { return c.Run(ctx, "query-status", nil, nil) })
		if _, err := p.conn.Read(make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cancel()
		err := <-run
		if !errors.Is(err, qmp.ErrDisconnected) || !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want ErrDisconnected caused by the cancellation", err)
		}
		<-c.Done()
		wantText("cut after 5 of")(t, c.Err())
	})
}

// TestDisconnectFailsOutstanding: when QEMU goes away, every outstanding
// command fails with ErrDisconnected, except one whose reply came first;
// later calls fail at once, Done and Events close.
func TestDisconnectFailsOutstanding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		var waits []<-chan error
		for i := range 3 {
			waits = append(waits, async(func() error { return c.Run(t.Context(), fmt.Sprintf("cmd-%d", i), nil, nil) }))
		}
		var answered string
		for i := range 3 {
			r, _ := p.next()
			if i == 0 {
				answered = r.Execute
				p.reply(r, struct{}{})
			}
		}
		p.conn.Close()
		for i, w := range waits {
			err := <-w
			if name := fmt.Sprintf("cmd-%d", i); name == answered {
				if err != nil {
					t.Errorf("%s, answered before the end: %v", name, err)
				}
			} else if !errors.Is(err, qmp.ErrDisconnected) || !errors.Is(err, io.EOF) {
				t.Errorf("%s: %v, want ErrDisconnected after EOF", name, err)
			}
		}
		<-c.Done()
		if err := c.Err(); !errors.Is(err, qmp.ErrDisconnected) || !errors.Is(err, io.EOF) {
			t.Errorf("Err() = %v", err)
		}
		if err := c.Stop(t.Context()); !errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("a later call: %v", err)
		}
		if _, ok := <-c.Events(); ok {
			t.Error("Events is still open")
		}
	})
}

// TestClose: Close fails outstanding commands, stops the reader, closes
// Events and Done, and can be called twice.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		out := async(func() error { return c.Run(t.Context(), "query-status", nil, nil) })
		p.expect("query-status")
		synctest.Wait()
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-out; !errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("outstanding: %v", err)
		}
		wantText("closed by the client")(t, c.Err())
		if _, ok := <-c.Events(); ok {
			t.Error("Events is still open")
		}
		<-c.Done()
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := c.Cont(t.Context()); !errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("after Close: %v", err)
		}
		if _, err := p.conn.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("the peer reads %v, want io.EOF", err)
		}
	})
}

// eventView is an Event with its data as a string, for comparisons.
type eventView struct {
	Name, Data string
	Timestamp  time.Time
}

func view(ev qmp.Event) eventView { return eventView{ev.Name, string(ev.Data), ev.Timestamp} }

// TestEventsInterleaved: events around replies are delivered in order,
// with their data and timestamps; those sent before a reply are buffered
// before Run returns.
func TestEventsInterleaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		run := async(func() error { return c.Stop(t.Context()) })
		r := p.expect("stop")
		p.event("STOP", nil)
		p.reply(r, struct{}{})
		if err := <-run; err != nil {
			t.Fatal(err)
		}
		if n := len(c.Events()); n < 1 {
			t.Errorf("%d events buffered when Run returned, want STOP", n)
		}
		p.event("RESUME", nil)
		p.raw(`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": -1, "microseconds": -1}}` + "\n")
		p.raw(`{"event": "POWERDOWN", "data": null}` + "\n")
		synctest.Wait()
		stamp := time.Unix(1764288000, 250_000)
		want := []eventView{
			{"STOP", "", stamp},
			{"RESUME", "", stamp},
			{"SHUTDOWN", `{"guest": true, "reason": "guest-shutdown"}`, time.Time{}},
			{"POWERDOWN", "", time.Time{}},
		}
		var got []eventView
		for range len(c.Events()) {
			got = append(got, view(<-c.Events()))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if c.Dropped() != 0 {
			t.Errorf("Dropped() = %d", c.Dropped())
		}
	})
}

// TestEventDecode: the typed structs decode QEMU's event data; bad data
// is an error naming the event.
func TestEventDecode(t *testing.T) {
	cases := []struct {
		name    string
		ev      qmp.Event
		into    func() any
		want    any
		wantErr bool
	}{
		{"SHUTDOWN", qmp.Event{Name: qmp.EventShutdown, Data: json.RawMessage(`{"guest":true,"reason":"guest-panic"}`)},
			func() any { return &qmp.ShutdownEvent{} }, &qmp.ShutdownEvent{Guest: true, Reason: qmp.ReasonGuestPanic}, false},
		{"SHUTDOWN host", qmp.Event{Name: qmp.EventShutdown, Data: json.RawMessage(`{"guest":false,"reason":"host-qmp-quit"}`)},
			func() any { return &qmp.ShutdownEvent{} }, &qmp.ShutdownEvent{Reason: qmp.ReasonHostQMPQuit}, false},
		{"RESET", qmp.Event{Name: qmp.EventReset, Data: json.RawMessage(`{"guest":true,"reason":"guest-reset"}`)},
			func() any { return &qmp.ResetEvent{} }, &qmp.ResetEvent{Guest: true, Reason: qmp.ReasonGuestReset}, false},
		{"GUEST_PANICKED", qmp.Event{Name: qmp.EventGuestPanicked, Data: json.RawMessage(`{"action":"pause"}`)},
			func() any { return &qmp.GuestPanickedEvent{} }, &qmp.GuestPanickedEvent{Action: "pause"}, false},
		{"GUEST_PANICKED with info", qmp.Event{Name: qmp.EventGuestPanicked, Data: json.RawMessage(`{"action":"poweroff","info":{"type":"hyper-v","arg1":1}}`)},
			func() any { return &qmp.GuestPanickedEvent{} }, &qmp.GuestPanickedEvent{Action: "poweroff", Info: json.RawMessage(`{"type":"hyper-v","arg1":1}`)}, false},
		{"STOP without data", qmp.Event{Name: qmp.EventStop},
			func() any { return &qmp.ShutdownEvent{Reason: "untouched"} }, &qmp.ShutdownEvent{Reason: "untouched"}, false},
		{"wrong type", qmp.Event{Name: qmp.EventShutdown, Data: json.RawMessage(`{"guest":"yes"}`)},
			func() any { return &qmp.ShutdownEvent{} }, nil, true},
		{"not JSON", qmp.Event{Name: qmp.EventReset, Data: json.RawMessage(`{guest`)},
			func() any { return &qmp.ResetEvent{} }, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.into()
			err := tc.ev.Decode(v)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.ev.Name) {
					t.Errorf("got %v, want an error naming %s", err, tc.ev.Name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, v); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSlowEventReaderNeverBlocksCommands: with nobody reading events,
// more than the buffer holds arrive; the newest are dropped and counted,
// the oldest kept in order, and commands are still answered.
func TestSlowEventReaderNeverBlocksCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		const n = 3 * qmp.EventBuffer
		run := async(func() error { return c.Cont(t.Context()) })
		r := p.expect("cont")
		for i := range n {
			p.event("RTC_CHANGE", map[string]int{"offset": i})
		}
		p.reply(r, struct{}{})
		if err := <-run; err != nil {
			t.Fatal(err)
		}
		if got, want := c.Dropped(), uint64(n-qmp.EventBuffer); got != want {
			t.Errorf("Dropped() = %d, want %d", got, want)
		}
		if got := len(c.Events()); got != qmp.EventBuffer {
			t.Errorf("%d events buffered, want %d", got, qmp.EventBuffer)
		}
		for i := range qmp.EventBuffer {
			var d struct{ Offset int }
			if err := (<-c.Events()).Decode(&d); err != nil || d.Offset != i {
				t.Fatalf("buffered event %d has offset %d (%v)", i, d.Offset, err)
			}
		}
	})
}

// TestMalformedFromPeer: anything from QEMU that is not a JSON object of
// the protocol's shape ends the connection, failing outstanding commands
// with ErrDisconnected and saying why in Err.
func TestMalformedFromPeer(t *testing.T) {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	cases := []struct {
		name  string
		input string
		close bool
		cause func(error) bool
	}{
		{"not JSON", "{broken\n", false, func(err error) bool { return errors.As(err, &syn) }},
		{"an array", "[1, 2, 3]\n", false, func(err error) bool { return errors.As(err, &typ) }},
		{"a number", "42\n", false, func(err error) bool { return errors.As(err, &typ) }},
		{"error is a string", `{"error": "bad", "id": "2"}` + "\n", false, func(err error) bool { return errors.As(err, &typ) }},
		{"event name is a number", `{"event": 5}` + "\n", false, func(err error) bool { return errors.As(err, &typ) }},
		{"cut short", `{"return": {"running": tr`, true, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, p := connect(t)
				run := async(func() error { _, err := c.Status(t.Context()); return err })
				p.expect("query-status")
				p.raw(tc.input)
				if tc.close {
					p.conn.Close()
				}
				if err := <-run; !errors.Is(err, qmp.ErrDisconnected) {
					t.Errorf("outstanding: %v, want ErrDisconnected", err)
				}
				<-c.Done()
				if err := c.Err(); !errors.Is(err, qmp.ErrDisconnected) || !tc.cause(err) {
					t.Errorf("Err() = %v (%T), want ErrDisconnected with the decoding error", err, errors.Unwrap(err))
				}
			})
		})
	}
}

// TestIgnoredMessages: replies that match no outstanding command and
// members the client does not know are ignored; the connection goes on.
func TestIgnoredMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		run := async(func() error {
			st, err := c.Status(t.Context())
			if err == nil && st.Status != "paused" {
				err = fmt.Errorf("status %q", st.Status)
			}
			return err
		})
		r := p.expect("query-status")
		p.raw(`{"return": {"running": true, "status": "running"}, "id": "999"}` + "\n")
		p.raw(`{"return": {"running": true, "status": "running"}, "id": 2}` + "\n")
		p.raw(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}` + "\n")
		p.send(greeting)
		p.raw(`{"something": "new"}` + "\n")
		p.raw(`{"return": {"running": false, "status": "paused", "singlestep": false}, "id": ` + string(r.ID) + `, "extra": 1}` + "\n")
		if err := <-run; err != nil {
			t.Errorf("status: %v", err)
		}
		if c.Err() != nil || len(c.Events()) != 0 || c.Dropped() != 0 {
			t.Errorf("Err() = %v, %d events, %d dropped; want a live connection and no events", c.Err(), len(c.Events()), c.Dropped())
		}
	})
}

// TestArguments: Run sends args as the command's "arguments" object, and
// leaves the member out when there are none.
func TestArguments(t *testing.T) {
	type devArgs struct {
		ID    string `json:"id"`
		Force bool   `json:"force,omitempty"`
	}
	cases := []struct {
		name string
		args any
		want string // "" for no arguments member
	}{
		{"nil", nil, ""},
		{"struct", devArgs{ID: "disk0"}, `{"id":"disk0"}`},
		{"pointer", &devArgs{ID: "nic0", Force: true}, `{"id":"nic0","force":true}`},
		{"nil pointer", (*devArgs)(nil), ""},
		{"raw object", json.RawMessage(`{"keys": []}`), `{"keys":[]}`},
		{"empty struct", struct{}{}, `{}`},
	}
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		for _, tc := range cases {
			run := async(func() error { return c.Run(t.Context(), "cmd", tc.args, nil) })
			r := p.expect("cmd")
			p.reply(r, struct{}{})
			if err := <-run; err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			if got := string(r.Arguments); got != tc.want {
				t.Errorf("%s: arguments %s, want %s", tc.name, got, tc.want)
			}
			if tc.want == "" && slices.Contains(r.Keys, "arguments") {
				t.Errorf("%s: an arguments member was sent", tc.name)
			}
		}
	})
}

// TestBadRequests: arguments that are not a JSON object, that do not
// encode, and an empty command name are refused before anything is sent;
// a reply that does not fit out is an error that leaves the connection up.
func TestBadRequests(t *testing.T) {
	cases := []struct {
		name, command string
		args          any
		want          string
	}{
		{"string arguments", "cmd", "disk0", "must encode to a JSON object"},
		{"array arguments", "cmd", []string{"a"}, "must encode to a JSON object"},
		{"number arguments", "cmd", 42, "must encode to a JSON object"},
		{"raw array arguments", "cmd", json.RawMessage(`[1]`), "must encode to a JSON object"},
		{"unencodable arguments", "cmd", struct{ C chan int }{make(chan int)}, "encoding the arguments"},
		{"no command", "", nil, "empty command name"},
	}
	synctest.Test(t, func(t *testing.T) {
		c, p := connect(t)
		for _, tc := range cases {
			err := c.Run(t.Context(), tc.command, tc.args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
			}
		}
		run := async(func() error { _, err := c.Status(t.Context()); return err })
		p.reply(p.expect("query-status"), map[string]any{"running": "yes"}) // the first command the peer sees
		err := <-run
		wantText("query-status: decoding the reply")(t, err)
		if errors.Is(err, qmp.ErrDisconnected) {
			t.Errorf("a bad reply ended the connection: %v", err)
		}
		run = async(func() error { return c.Run(t.Context(), "query-status", nil, nil) })
		p.reply(p.expect("query-status"), map[string]any{"running": "yes"})
		if err := <-run; err != nil {
			t.Errorf("with a nil out, the reply is discarded: %v", err)
		}
	})
}

// TestTypedCommands: each typed method sends its QMP command with the
// arguments QEMU expects and decodes the reply.
func TestTypedCommands(t *testing.T) {
	cases := []struct {
		name    string
		call    func(ctx context.Context, c *qmp.Client) (any, error)
		command string
		args    string
		reply   any
		want    any
	}{
		{"Status", func(ctx context.Context, c *qmp.Client) (any, error) { return c.Status(ctx) },
			"query-status", "", map[string]any{"running": false, "singlestep": false, "status": "prelaunch"},
			qmp.StatusInfo{Running: false, Status: "prelaunch"}},
		{"Stop", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.Stop(ctx) }, "stop", "", struct{}{}, nil},
		{"Cont", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.Cont(ctx) }, "cont", "", struct{}{}, nil},
		{"SystemPowerdown", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.SystemPowerdown(ctx) },
			"system_powerdown", "", struct{}{}, nil},
		{"SystemReset", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.SystemReset(ctx) },
			"system_reset", "", struct{}{}, nil},
		{"SendCtrlAltDel", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.SendCtrlAltDel(ctx) },
			"send-key", `{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}`,
			struct{}{}, nil},
		{"Quit", func(ctx context.Context, c *qmp.Client) (any, error) { return nil, c.Quit(ctx) }, "quit", "", struct{}{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, p := connect(t)
				type result struct {
					v   any
					err error
				}
				run := async(func() result { v, err := tc.call(t.Context(), c); return result{v, err} })
				r := p.expect(tc.command)
				p.reply(r, tc.reply)
				res := <-run
				if res.err != nil {
					t.Fatal(res.err)
				}
				if got := string(r.Arguments); got != tc.args {
					t.Errorf("arguments %s, want %s", got, tc.args)
				}
				if diff := cmp.Diff(tc.want, res.v); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
				// The same command answered with an error reports it.
				run = async(func() result { v, err := tc.call(t.Context(), c); return result{v, err} })
				p.fail(p.expect(tc.command), "GenericError", "refused")
				wantClass("GenericError", "refused")(t, (<-run).err)
			})
		})
	}
}

// TestQuit: once quit is sent, QEMU closing the socket, before or after
// its reply, is success; an error reply, a connection already gone, or a
// context that ends are not.
func TestQuit(t *testing.T) {
	cases := []struct {
		name string
		// goneFirst: the script runs, and the client sees the end, before
		// Quit is called.
		goneFirst bool
		script    func(p *peer)
		check     func(t *testing.T, err error)
	}{
		{"reply, SHUTDOWN, then close", false, func(p *peer) {
			p.reply(p.expect("quit"), struct{}{})
			p.event("SHUTDOWN", map[string]any{"guest": false, "reason": "host-qmp-quit"})
			p.conn.Close()
		}, wantNil},
		{"close without a reply", false, func(p *peer) {
			p.expect("quit")
			p.conn.Close()
		}, wantNil},
		{"error reply", false, func(p *peer) { p.fail(p.expect("quit"), "GenericError", "no") }, wantClass("GenericError", "no")},
		{"gone before quit", true, func(p *peer) { p.conn.Close() }, wantIs(qmp.ErrDisconnected)},
		{"no answer", false, func(p *peer) { p.expect("quit") }, wantIs(qmp.ErrTimeout)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, p := connect(t)
				if tc.goneFirst {
					tc.script(p)
					<-c.Done()
				}
				scripted := async(func() struct{} {
					if !tc.goneFirst {
						tc.script(p)
					}
					return struct{}{}
				})
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				tc.check(t, c.Quit(ctx))
				<-scripted
			})
		})
	}
}

func wantNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("got %v, want success", err)
	}
}

func wantIs(target error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("got %v, want an error matching %v", err, target)
		}
	}
}

func wantText(s string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("got %v, want an error containing %q", err, s)
		}
	}
}

func wantClass(class, desc string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var qe *qmp.Error
		if !errors.As(err, &qe) || qe.Class != class || qe.Desc != desc {
			t.Errorf("got %v, want *qmp.Error %s: %s", err, class, desc)
		}
	}
}
