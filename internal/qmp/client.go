package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// EventBuffer is how many events wait in Events for a reader before new
// ones are dropped (and counted by Dropped).
const EventBuffer = 1024

// dialRetry is how long Dial waits between two attempts.
const dialRetry = 10 * time.Millisecond

// errClosed is the cause recorded by Close.
var errClosed = errors.New("closed by the client")

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// Greeting is what QEMU announces when a client connects.
type Greeting struct {
	Version VersionInfo `json:"version"`
	// Capabilities QEMU offers (e.g. oob); this client enables none.
	Capabilities []string `json:"capabilities"`
}

// VersionInfo is QEMU's version as its greeting states it.
type VersionInfo struct {
	QEMU Version `json:"qemu"`
	// Package is the distribution's package version, e.g.
	// "Debian 1:7.2+dfsg-7+deb12u7".
	Package string `json:"package"`
}

// Version is a QEMU release number.
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// Client is one QMP connection. Its methods are safe for concurrent use.
// Close it to release the connection and its reading goroutine.
type Client struct {
	conn     net.Conn
	greeting Greeting

	wsem   chan struct{} // one token, held while a command is written
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan<- reply // sent and unanswered commands, by id; nil once disconnected
	err     error                   // why the connection ended; set before done closes

	events  chan Event
	dropped atomic.Uint64

	done       chan struct{} // closed when the connection has ended
	readerDone chan struct{} // closed when readLoop has returned
}

// reply is QEMU's answer to one command.
type reply struct {
	ret json.RawMessage
	err *Error
}

// message is anything QEMU sends after its greeting.
type message struct {
	ID        json.RawMessage `json:"id"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *timestamp      `json:"timestamp"`
}

// request is a command as written to QEMU.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        string          `json:"id"`
}

// Dial connects to the QMP socket at path, reads the greeting and
// negotiates capabilities (qmp_capabilities). While the socket does not
// exist yet or refuses connections (QEMU creates it a few tens of
// milliseconds after it starts), Dial tries again every 10ms until ctx
// ends; any other error ends it at once.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	return dial(ctx, path, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	})
}

// dial is Dial with the connecting step as a parameter, for tests.
func dial(ctx context.Context, path string, connect func(context.Context) (net.Conn, error)) (*Client, error) {
	for {
		conn, err := connect(ctx)
		if err == nil {
			return NewClient(ctx, conn)
		}
		if !retryable(err) {
			return nil, fmt.Errorf("qmp: connecting to %s: %w", path, err)
		}
		t := time.NewTimer(dialRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("qmp: connecting to %s: %w (last attempt: %v)", path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// retryable tells the errors of a socket that is not there yet: no such
// file, or nobody listening (a stale socket file), or a full backlog.
func retryable(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EAGAIN)
}

// NewClient runs QMP over an already-open connection, which the Client
// then owns: it reads the greeting and negotiates capabilities before it
// returns. On error, conn is closed.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	dec := json.NewDecoder(conn)
	g, err := readGreeting(ctx, conn, dec)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{
		conn:       conn,
		greeting:   g,
		wsem:       make(chan struct{}, 1),
		pending:    map[string]chan<- reply{},
		events:     make(chan Event, EventBuffer),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop(dec)
	if err := c.Run(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readGreeting reads QEMU's first message, which must be its greeting,
// giving up when ctx ends.
func readGreeting(ctx context.Context, conn net.Conn, dec *json.Decoder) (Greeting, error) {
	if err := ctx.Err(); err != nil {
		return Greeting{}, fmt.Errorf("qmp: waiting for the greeting: %w", err)
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetReadDeadline(aLongTimeAgo)
		close(interrupted)
	})
	var raw json.RawMessage
	err := dec.Decode(&raw)
	if !stop() {
		<-interrupted
		return Greeting{}, fmt.Errorf("qmp: waiting for the greeting: %w", ctx.Err())
	}
	if err != nil {
		return Greeting{}, fmt.Errorf("qmp: reading the greeting: %w", err)
	}
	var m struct {
		QMP *Greeting `json:"QMP"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.QMP == nil {
		return Greeting{}, fmt.Errorf("qmp: the peer did not greet with a QMP banner; it sent %.80s", raw)
	}
	return *m.QMP, nil
}

// Greeting is what QEMU announced when the client connected.
func (c *Client) Greeting() Greeting { return c.greeting }

// readLoop owns the reading side of the connection until it ends.
func (c *Client) readLoop(dec *json.Decoder) {
	defer close(c.readerDone)
	defer close(c.events)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			c.fail(fmt.Errorf("reading from QEMU: %w", err))
			return
		}
		c.dispatch(&m)
	}
}

// dispatch hands one message to its reader without ever blocking.
func (c *Client) dispatch(m *message) {
	if m.Event != "" {
		ev := Event{Name: m.Event, Data: m.Data, Timestamp: m.Timestamp.time()}
		if bytes.Equal(ev.Data, []byte("null")) {
			ev.Data = nil
		}
		select {
		case c.events <- ev:
		default:
			c.dropped.Add(1)
		}
		return
	}
	if m.ID == nil {
		return // not a reply to a command of ours (see the design comment)
	}
	var id string
	if json.Unmarshal(m.ID, &id) != nil {
		return
	}
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- reply{ret: m.Return, err: m.Error} // one-slot buffer, used once
	}
}

// fail ends the connection, the first time it is called, recording why.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = fmt.Errorf("%w: %w", ErrDisconnected, cause)
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
	_ = c.conn.Close()
}

// Run sends command with args and decodes the value of QEMU's reply
// ("return") into out. args is nil or a value that encodes to a JSON
// object (a struct with json tags); out is nil to discard the reply, or a
// pointer. A QMP error reply is returned as a *Error (errors.As), wrapped
// with the command's name. For what ctx cancellation does to a command,
// see the package's design comment: in short, the caller gets ctx.Err()
// (and ErrTimeout for a deadline) at once, while a command already sent
// stays outstanding until QEMU answers it.
func (c *Client) Run(ctx context.Context, command string, args, out any) error {
	_, err := c.run(ctx, command, args, out)
	return err
}

// run is Run, also telling whether the command was written whole.
func (c *Client) run(ctx context.Context, command string, args, out any) (sent bool, err error) {
	if command == "" {
		return false, errors.New("qmp: empty command name")
	}
	req := request{Execute: command, ID: strconv.FormatUint(c.nextID.Add(1), 10)}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return false, fmt.Errorf("qmp: %s: encoding the arguments: %w", command, err)
		}
		switch {
		case bytes.Equal(b, []byte("null")):
		case b[0] != '{':
			return false, fmt.Errorf("qmp: %s: the arguments must encode to a JSON object, not %.40s", command, b)
		default:
			req.Arguments = b
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return false, fmt.Errorf("qmp: %s: encoding the command: %w", command, err)
	}
	b = append(b, '\n')

	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return false, fmt.Errorf("qmp: %s: %w", command, err)
	}
	c.pending[req.ID] = ch
	c.mu.Unlock()
	if err := c.write(ctx, command, b); err != nil {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		return false, err
	}

	select {
	case r := <-ch:
		return true, r.decode(command, out)
	case <-ctx.Done():
		select {
		case r := <-ch:
			return true, r.decode(command, out)
		default:
			return true, ctxError(ctx, command)
		}
	case <-c.done:
		select {
		case r := <-ch:
			return true, r.decode(command, out)
		default:
			return true, fmt.Errorf("qmp: %s: %w", command, c.Err())
		}
	}
}

// write writes one whole command, or nothing when ctx ends first. A write
// cut in the middle ends the connection.
func (c *Client) write(ctx context.Context, command string, b []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctxError(ctx, command)
	case <-c.done:
		return fmt.Errorf("qmp: %s: %w", command, c.Err())
	}
	defer func() { <-c.wsem }()
	if ctx.Err() != nil {
		return ctxError(ctx, command)
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.conn.SetWriteDeadline(aLongTimeAgo)
		close(interrupted)
	})
	n, err := c.conn.Write(b)
	if !stop() {
		<-interrupted
		_ = c.conn.SetWriteDeadline(time.Time{})
	}
	switch {
	case err == nil:
		return nil
	case n == 0 && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return ctxError(ctx, command) // nothing sent: the stream is intact
	case ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		c.fail(fmt.Errorf("writing %s: cut after %d of %d bytes: %w", command, n, len(b), ctx.Err()))
	default:
		c.fail(fmt.Errorf("writing %s: %w", command, err))
	}
	return fmt.Errorf("qmp: %s: %w", command, c.Err())
}

// ctxError is the error of a command whose context ended.
func ctxError(ctx context.Context, command string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("qmp: %s: %w (%w)", command, ErrTimeout, err)
	}
	return fmt.Errorf("qmp: %s: %w", command, err)
}

// decode turns a reply into Run's result.
func (r reply) decode(command string, out any) error {
	if r.err != nil {
		return fmt.Errorf("qmp: %s: %w", command, r.err)
	}
	if out == nil || len(r.ret) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.ret, out); err != nil {
		return fmt.Errorf("qmp: %s: decoding the reply: %w", command, err)
	}
	return nil
}

// Events delivers QEMU's events, in the order QEMU sent them, through a
// buffer of EventBuffer events: when it is full, new events are dropped
// and counted (Dropped), never waited for. It is closed when the
// connection ends, after the events received before the end. All callers
// share the one channel.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped counts the events dropped because the Events buffer was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended: an error matching ErrDisconnected and
// wrapping the cause (the read error, e.g. io.EOF, or a JSON syntax error).
// It is nil while the connection is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection: outstanding and later calls fail with
// ErrDisconnected. It returns once the reading goroutine has stopped and
// Events is closed. Closing twice is harmless.
func (c *Client) Close() error {
	c.fail(errClosed)
	<-c.readerDone
	return nil
}
