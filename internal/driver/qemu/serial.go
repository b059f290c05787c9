package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// serialMux is the driver's one connection to a guest's serial console
// (QEMU serves a socket chardev to one client at a time). It copies all
// output to the run's console log, and to the one attached console, if
// any. A console that cannot keep up is detached rather than allowed to
// stall the guest's output.
type serialMux struct {
	conn net.Conn
	log  *os.File

	wmu sync.Mutex // serializes writes to conn

	mu       sync.Mutex
	attached *consoleConn
}

// consoleBacklog is how much output an attached console may fall behind
// by before it is detached.
const consoleBacklog = 4 << 20

func newSerialMux(conn net.Conn, logPath string) (*serialMux, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the console log: %w", err)
	}
	return &serialMux{conn: conn, log: f}, nil
}

// run copies the guest's output until the connection ends.
func (s *serialMux) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			_, _ = s.log.Write(chunk)
			s.mu.Lock()
			if c := s.attached; c != nil && !c.push(chunk) {
				c.detach(errors.New("the console reader fell too far behind"))
				s.attached = nil
			}
			s.mu.Unlock()
		}
		if err != nil {
			s.mu.Lock()
			if c := s.attached; c != nil {
				c.detach(io.EOF)
				s.attached = nil
			}
			s.mu.Unlock()
			return
		}
	}
}

// close ends the connection; closeLog, once run has returned, the log.
func (s *serialMux) close()    { s.conn.Close() }
func (s *serialMux) closeLog() { s.log.Close() }

// attach connects a console; only one at a time.
func (s *serialMux) attach() (*consoleConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached != nil {
		return nil, errors.New("another console is attached to this guest")
	}
	c := &consoleConn{mux: s, ready: make(chan struct{}, 1), done: make(chan struct{})}
	s.attached = c
	return c, nil
}

func (s *serialMux) detach(c *consoleConn) {
	s.mu.Lock()
	if s.attached == c {
		s.attached = nil
	}
	s.mu.Unlock()
	c.detach(io.EOF)
}

// consoleConn is one attached console.
type consoleConn struct {
	mux *serialMux

	bmu     sync.Mutex
	pending []byte        // output not read yet
	ready   chan struct{} // size 1: pending grew

	once sync.Once
	done chan struct{}
	err  error
}

// push queues output for the reader; false when the backlog is full.
func (c *consoleConn) push(b []byte) bool {
	c.bmu.Lock()
	if len(c.pending)+len(b) > consoleBacklog {
		c.bmu.Unlock()
		return false
	}
	c.pending = append(c.pending, b...)
	c.bmu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return true
}

func (c *consoleConn) detach(err error) {
	c.once.Do(func() { c.err = err; close(c.done) })
}

// Read returns the guest's output; after a detach, what was queued first.
func (c *consoleConn) Read(p []byte) (int, error) {
	for {
		c.bmu.Lock()
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			c.bmu.Unlock()
			return n, nil
		}
		c.bmu.Unlock()
		select {
		case <-c.ready:
		case <-c.done:
			c.bmu.Lock()
			empty := len(c.pending) == 0
			c.bmu.Unlock()
			if empty {
				return 0, c.err
			}
		}
	}
}

// Write types into the guest's console.
func (c *consoleConn) Write(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, fmt.Errorf("console detached: %w", c.err)
	default:
	}
	c.mux.wmu.Lock()
	defer c.mux.wmu.Unlock()
	return c.mux.conn.Write(p)
}

// Close detaches the console; the guest runs on.
func (c *consoleConn) Close() error {
	c.mux.detach(c)
	return nil
}

// Console attaches to the guest's serial console.
func (g *guest) Console(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := g.live(); err != nil {
		return nil, err
	}
	if g.serial == nil {
		return nil, fmt.Errorf("qemu: guest %s has no serial console", g.id)
	}
	return g.serial.attach()
}

// ConsoleLog returns what the guest printed on its console this run.
func (g *guest) ConsoleLog() (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(g.dir, consoleLog))
	if errors.Is(err, os.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f, err
}

// keptLogs is how many console logs of removed guests a node keeps.
const keptLogs = 200

// keepLog moves the console log of a removed guest to
// <state-dir>/console-logs/<id>.log, and prunes the oldest beyond keptLogs.
func (d *Driver) keepLog(id, path string) {
	dir := filepath.Join(d.cfg.StateDir, "console-logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if err := os.Rename(path, filepath.Join(dir, id+".log")); err != nil {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= keptLogs {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var logs []aged
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			logs = append(logs, aged{e.Name(), fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].mod < logs[j].mod })
	for _, l := range logs[:len(logs)-keptLogs] {
		os.Remove(filepath.Join(dir, l.name))
	}
}

// ConsoleLog returns the console log of a guest, running or removed.
func (d *Driver) ConsoleLog(id string) (io.ReadCloser, error) {
	dir, err := d.guestDir(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, consoleLog))
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(filepath.Join(d.cfg.StateDir, "console-logs", id+".log"))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("qemu: no console log of guest %s on this node", id)
	}
	return f, err
}
