package qmp_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// TestDial: on a real unix socket, Dial waits through a stale socket file
// (refused) and then connects when QEMU's listener appears; it fails at
// once on a path that cannot be a socket, and when its context ends.
func TestDial(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp") // socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "q.sock")

	// A stale socket: the file exists, nobody listens.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dialed := async(func() error {
		c, err := qmp.Dial(ctx, path)
		if err == nil {
			c.Close()
		}
		return err
	})
	time.Sleep(30 * time.Millisecond) // let Dial meet the refusal; not an assertion
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := newPeerOn(t, conn)
	p.send(greeting)
	p.reply(p.expect("qmp_capabilities"), struct{}{})
	if err := <-dialed; err != nil {
		t.Fatalf("Dial: %v", err)
	}

	long := filepath.Join(dir, strings.Repeat("x", 200))
	if _, err := qmp.Dial(ctx, long); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a path too long for a socket: %v, want an error at once", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := qmp.Dial(short, filepath.Join(dir, "none.sock")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to nothing: %v, want the deadline", err)
	}
}
