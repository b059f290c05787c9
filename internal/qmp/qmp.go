// Package qmp is a client of the QEMU Machine Protocol: JSON commands and
// events over QEMU's monitor socket (-qmp unix:PATH,server=on,wait=off).
//
// Design. One goroutine (readLoop) owns the reading side of the
// connection. Commands carry an id; each waiting caller has a one-slot
// channel in the pending table, and the reader hands it the reply with the
// same id, so replies may come in any order. Writes are serialized by a
// mutex. Cancellation: a caller whose context ends returns at once; its
// command, already sent, stays in QEMU's queue, and the reply, when it
// comes, is dropped (its slot is buffered, so the reader never blocks on
// it). When the connection ends, every outstanding and later call fails
// with an error matching ErrDisconnected.
//
// Events go to a buffered channel (Events). The reader never blocks on
// it: when the buffer is full the event is dropped and counted (Dropped),
// so a slow or absent event reader can never stall command replies.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDisconnected matches (errors.Is) the error of every call made or
// outstanding after the connection to QEMU ended.
var ErrDisconnected = errors.New("qmp: disconnected")

// Error is an error reply from QEMU, with its class (GenericError,
// CommandNotFound, DeviceNotFound, ...).
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Event is an asynchronous message from QEMU.
type Event struct {
	Name      string
	Data      json.RawMessage
	Timestamp time.Time
}

// Decode decodes the event's data into v.
func (e Event) Decode(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("qmp: event %s: %w", e.Name, err)
	}
	return nil
}

// ShutdownEvent is the data of SHUTDOWN (and, in the same shape, RESET):
// Guest tells a guest-initiated event from a host-initiated one; Reason is
// guest-shutdown, guest-reset, guest-panic, host-qmp-quit, host-signal, ...
type ShutdownEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// ResetEvent is the data of RESET.
type ResetEvent = ShutdownEvent

// PanicEvent is the data of GUEST_PANICKED.
type PanicEvent struct {
	Action string `json:"action"`
}

// eventBuffer is how many events wait for a reader before new ones are
// dropped.
const eventBuffer = 256

// Client is one QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn net.Conn
	wmu  sync.Mutex // serializes writes

	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan reply
	err     error // why the connection ended; set before done is closed

	events  chan Event
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// message is anything QEMU sends.
type message struct {
	QMP       json.RawMessage `json:"QMP"`
	ID        json.RawMessage `json:"id"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Dial connects to the QMP socket at path, retrying while it does not
// exist yet or refuses (QEMU creates it a few tens of milliseconds after
// it starts), until ctx ends. It then negotiates capabilities.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return NewClient(ctx, conn)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connecting to %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// NewClient speaks QMP over conn: it reads the greeting and negotiates
// capabilities (qmp_capabilities) before returning. The Client owns conn.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, pending: map[string]chan reply{}, events: make(chan Event, eventBuffer), done: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	dec := json.NewDecoder(conn)
	var greeting message
	err := dec.Decode(&greeting)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("qmp: waiting for the greeting: %w", ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: reading the greeting: %w", err)
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, errors.New("qmp: the peer did not greet with a QMP banner")
	}
	go c.readLoop(dec)
	if err := c.Run(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp: negotiating capabilities: %w", err)
	}
	return c, nil
}

func (c *Client) readLoop(dec *json.Decoder) {
	defer close(c.events)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			c.fail(err)
			return
		}
		switch {
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data, Timestamp: time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)}
			select {
			case c.events <- ev:
			default:
				c.dropped.Add(1)
			}
		case m.ID != nil:
			var id string
			if json.Unmarshal(m.ID, &id) != nil {
				continue // not one of ours
			}
			c.mu.Lock()
			ch := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{ret: m.Return, err: m.Error}
			}
		}
	}
}

// fail ends the connection once, recording why.
func (c *Client) fail(cause error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = fmt.Errorf("%w: %v", ErrDisconnected, cause)
		c.pending = map[string]chan reply{}
		c.mu.Unlock()
		close(c.done)
		c.conn.Close()
	})
}

// Run sends a command with args (nil, or a value that encodes to a JSON
// object) and decodes its return value into out (nil to discard it). An
// error reply is a *Error.
func (c *Client) Run(ctx context.Context, command string, args, out any) error {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	b, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id})
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: encoding the arguments: %w", command, err)
	}
	if err := c.write(ctx, append(b, '\n')); err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if out != nil && len(r.ret) > 0 {
			if err := json.Unmarshal(r.ret, out); err != nil {
				return fmt.Errorf("qmp: %s: decoding the reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	case <-c.done:
		return fmt.Errorf("qmp: %s: %w", command, c.Err())
	}
}

func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
		defer c.conn.SetWriteDeadline(time.Time{})
	}
	_, err := c.conn.Write(b)
	if err != nil {
		select {
		case <-c.done:
			return c.Err()
		default:
		}
	}
	return err
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Events delivers QEMU's events; it is closed when the connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped counts the events dropped because Events was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended (nil while it is up).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection; outstanding calls fail with ErrDisconnected.
func (c *Client) Close() error {
	c.fail(errors.New("closed by the client"))
	return nil
}

// StatusInfo is the answer of query-status.
type StatusInfo struct {
	Running bool `json:"running"`
	// Status is running, paused, prelaunch, shutdown, guest-panicked,
	// internal-error, ...
	Status string `json:"status"`
}

// Status asks what the VM is doing (query-status).
func (c *Client) Status(ctx context.Context) (StatusInfo, error) {
	var s StatusInfo
	err := c.Run(ctx, "query-status", nil, &s)
	return s, err
}

// Stop pauses the vCPUs.
func (c *Client) Stop(ctx context.Context) error { return c.Run(ctx, "stop", nil, nil) }

// Cont resumes the vCPUs.
func (c *Client) Cont(ctx context.Context) error { return c.Run(ctx, "cont", nil, nil) }

// SystemPowerdown presses the ACPI power button.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Run(ctx, "system_powerdown", nil, nil)
}

// SystemReset resets the machine.
func (c *Client) SystemReset(ctx context.Context) error { return c.Run(ctx, "system_reset", nil, nil) }

type keyValue struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// SendCtrlAltDel presses ctrl-alt-delete on the guest's keyboard.
func (c *Client) SendCtrlAltDel(ctx context.Context) error {
	keys := []keyValue{{"qcode", "ctrl"}, {"qcode", "alt"}, {"qcode", "delete"}}
	return c.Run(ctx, "send-key", struct {
		Keys []keyValue `json:"keys"`
	}{keys}, nil)
}

// Quit ends QEMU. QEMU may close the connection before it answers; that
// counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Run(ctx, "quit", nil, nil)
	if errors.Is(err, ErrDisconnected) {
		return nil
	}
	return err
}
