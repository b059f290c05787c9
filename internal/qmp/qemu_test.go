package qmp_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/qmp"
)

const qemuBinary = "/usr/bin/qemu-system-x86_64"

// startQEMU starts a QEMU without a guest, paused before it starts (-S),
// and returns the path of its QMP socket and a channel closed when it has
// exited, after which waitErr is how. It skips the test when QEMU is not
// installed.
func startQEMU(tb testing.TB) (sock string, exited <-chan struct{}, waitErr func() error) {
	tb.Helper()
	if _, err := os.Stat(qemuBinary); err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			tb.Fatalf("%s is not installed (scripts/ensure-qemu.sh installs it)", qemuBinary)
		}
		tb.Skipf("%s is not installed (scripts/ensure-qemu.sh installs it)", qemuBinary)
	}
	dir, err := os.MkdirTemp("", "qmp") // socket paths are limited to 108 bytes
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "q.sock")
	cmd := exec.Command(qemuBinary, "-M", "q35", "-accel", "tcg", "-nodefaults", "-nographic", "-S",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return sock, done, func() error { <-done; return exitErr }
}

// TestRealQEMU talks to a real qemu-system-x86_64 without a guest: the
// handshake, query-status through prelaunch, running and paused, the
// events of stop and cont, an error class, and quit ending QEMU with
// SHUTDOWN host-qmp-quit.
func TestRealQEMU(t *testing.T) {
	sock, exited, waitErr := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.Greeting().Version.QEMU; v.Major < 7 {
		t.Errorf("QEMU version %v from the greeting", v)
	}
	status := func(want string) {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil || st.Status != want || st.Running != (want == "running") {
			t.Errorf("status %+v, %v; want %s", st, err, want)
		}
	}
	status("prelaunch")
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	status("running")
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	status("paused")
	var qe *qmp.Error
	if err := c.Run(ctx, "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != qmp.ClassCommandNotFound {
		t.Errorf("an unknown command: %v, want CommandNotFound", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("quit: %v", err)
	}
	var names []string
	var shutdown *qmp.ShutdownEvent
	for ev := range c.Events() { // until QEMU closes the socket
		names = append(names, ev.Name)
		if ev.Name == qmp.EventShutdown {
			shutdown = new(qmp.ShutdownEvent)
			if err := ev.Decode(shutdown); err != nil {
				t.Error(err)
			}
		}
		if ev.Timestamp.IsZero() {
			t.Errorf("%s has no timestamp", ev.Name)
		}
	}
	if want := []string{"RESUME", "STOP", "SHUTDOWN"}; !equal(names, want) {
		t.Errorf("events %v, want %v", names, want)
	}
	if shutdown == nil || shutdown.Guest || shutdown.Reason != qmp.ReasonHostQMPQuit {
		t.Errorf("SHUTDOWN %+v, want guest false, reason host-qmp-quit", shutdown)
	}
	if !errors.Is(c.Err(), qmp.ErrDisconnected) {
		t.Errorf("Err() = %v", c.Err())
	}
	select {
	case <-exited:
		if err := waitErr(); err != nil {
			t.Errorf("QEMU exited with %v", err)
		}
	case <-ctx.Done():
		t.Error("QEMU did not exit after quit")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
