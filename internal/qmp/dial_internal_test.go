package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// serveHandshake plays QEMU's side of the handshake on conn.
func serveHandshake(t *testing.T, conn net.Conn) {
	enc, dec := json.NewEncoder(conn), json.NewDecoder(conn)
	if err := enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}}); err != nil {
		t.Errorf("greeting: %v", err)
		return
	}
	var r request
	if err := dec.Decode(&r); err != nil || r.Execute != "qmp_capabilities" {
		t.Errorf("want qmp_capabilities, got %+v, %v", r, err)
		return
	}
	if err := enc.Encode(map[string]any{"return": map[string]any{}, "id": r.ID}); err != nil {
		t.Errorf("reply: %v", err)
	}
}

// connectErr is what dialing a unix socket returns for errno.
func connectErr(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
}

// TestDialRetry: while the socket is missing or refuses, Dial tries again
// every dialRetry; other errors end it at once; so does its context.
func TestDialRetry(t *testing.T) {
	t.Run("socket appears", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			failures := []syscall.Errno{syscall.ENOENT, syscall.ENOENT, syscall.ENOENT, syscall.ECONNREFUSED, syscall.EAGAIN}
			attempts := 0
			start := time.Now()
			c, err := dial(t.Context(), "q.sock", func(context.Context) (net.Conn, error) {
				attempts++
				if attempts <= len(failures) {
					return nil, connectErr(failures[attempts-1])
				}
				a, b := net.Pipe()
				go func() { serveHandshake(t, b); <-t.Context().Done(); b.Close() }()
				return a, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if want := len(failures) + 1; attempts != want {
				t.Errorf("%d attempts, want %d", attempts, want)
			}
			if got, want := time.Since(start), time.Duration(len(failures))*dialRetry; got != want { // the bubble's clock
				t.Errorf("connected after %v, want %v", got, want)
			}
		})
	})
	t.Run("other errors end it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EINVAL, syscall.ENOTSOCK} {
				attempts := 0
				_, err := dial(t.Context(), "q.sock", func(context.Context) (net.Conn, error) {
					attempts++
					return nil, connectErr(errno)
				})
				if !errors.Is(err, errno) || attempts != 1 {
					t.Errorf("%v: got %v after %d attempts, want it at once", errno, err, attempts)
				}
			}
		})
	})
	t.Run("context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			attempts := 0
			_, err := dial(ctx, "q.sock", func(context.Context) (net.Conn, error) {
				attempts++
				return nil, connectErr(syscall.ENOENT)
			})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want the deadline", err)
			}
			if min := int(time.Second / dialRetry); attempts < min || attempts > min+1 {
				t.Errorf("%d attempts in 1s, want about %d", attempts, min)
			}
		})
	})
}
