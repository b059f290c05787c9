package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// BenchmarkQEMUNodeLoss is BenchmarkNodeLoss with real guests: a qemu
// node hosting 3 QEMU guests dies (crash: its agent, watchdog and QEMU
// processes killed at once) or is cut off from the control plane
// (partition: the agent and the watchdog fence the guests), and the guests
// come back on a second qemu node. With the default HA timings it prints
// the time to detection (Ready=Unknown), to fencing (the last old QEMU
// process dead) and to every VM Running elsewhere (p50, p99, max), all
// from the moment of the failure. Run it with:
// go test ./e2e -run '^$' -bench QEMUNodeLoss -benchtime 1x
func BenchmarkQEMUNodeLoss(b *testing.B) {
	for _, mode := range []string{"crash", "partition"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				qemuNodeLoss(b, mode, 3)
			}
		})
	}
}

func qemuNodeLoss(b *testing.B, mode string, vms int) {
	images := qemuImages(b)
	cl := newCluster(b, clusterOptions{fsync: true})
	watchQEMU(b, cl.dir)
	p := newBlackhole(b, cl.url())
	agent := cl.startQEMUNode("qemu-1", p.url, images)
	names := make([]string, vms)
	for i := range names {
		names[i] = fmt.Sprintf("guest-%d", i)
		cl.create(guestVM(names[i], v1.RunStrategyAlways, 5, "echo UP\n", ""))
	}
	old := map[string]string{}
	var pids []int
	for _, name := range names {
		vmi := cl.waitVMIPhase(name, v1.Running, "", guestWait)
		if vmi.Status.NodeName != "qemu-1" {
			b.Fatalf("%s runs on %s, want qemu-1", name, vmi.Status.NodeName)
		}
		cl.waitConsole(vmi, "UP")
		old[name] = string(vmi.UID)
		pids = append(pids, cl.qemuPID(vmi))
	}
	cl.startQEMUNode("qemu-2", cl.url(), images)

	lastExit := watchExits(b, pids)
	var failed time.Time
	switch mode {
	case "crash":
		failed = cl.powerOff("qemu-1", agent)
	case "partition":
		p.cut()
		failed = time.Now()
	}
	detected, back := watchLoss(b, cl, "qemu-1", old, failed)
	fenced, err := lastExit(guestWait)
	if err != nil {
		b.Fatal(err)
	}
	reportLoss(b, detected, fenced.Sub(failed), back)
	// The guests really run again: each boots on its new node. A table
	// per guest, with the time to its boot marker (polled from when all
	// run, so exact unless it came before that).
	booted := map[string]time.Duration{}
	cl.waitFor("every recovered guest to boot", guestWait, func() (bool, error) {
		for _, name := range names {
			if _, ok := booted[name]; !ok && strings.Contains(cl.consoleLog(cl.vmi(name)), "UP") {
				booted[name] = time.Since(failed)
			}
		}
		return len(booted) == len(names), nil
	})
	b.Logf("%s of qemu-1, from the failure: detected %.2fs, last old QEMU dead %.3fs", mode, detected.Seconds(), fenced.Sub(failed).Seconds())
	for _, name := range names {
		vmi := cl.vmi(name)
		if vmi.Status.NodeName != "qemu-2" {
			b.Errorf("%s recovered on %s, want qemu-2", name, vmi.Status.NodeName)
		}
		b.Logf("%s: Running on %s %.2fs, booted (UP on its console) %.2fs", name, vmi.Status.NodeName, back[name].Seconds(), booted[name].Seconds())
	}
}

// watchExits notes when each process in pids ends, by a pidfd (so the
// moment is exact, and a reused PID cannot mislead it), from now until the
// test ends. The function it returns waits up to timeout for all of them
// to end and returns when the last one did.
func watchExits(tb testing.TB, pids []int) func(timeout time.Duration) (time.Time, error) {
	tb.Helper()
	fds := make([]unix.PollFd, 0, len(pids))
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			tb.Fatalf("pidfd of %d: %v", pid, err)
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	stop := make(chan struct{}) // closed at the end of the test
	// last receives the moment the last process ended, once; buffered so
	// that the goroutine never blocks on a test that stopped listening.
	last := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var at time.Time
		for left := len(fds); left > 0; {
			select {
			case <-stop:
				return
			default:
			}
			// A pidfd polls readable once its process has ended. The
			// timeout only bounds how long a stop waits.
			if _, err := unix.Poll(fds, 50); err != nil && !errors.Is(err, unix.EINTR) {
				tb.Errorf("polling pidfds: %v", err)
				return
			}
			now := time.Now()
			for i := range fds {
				if fds[i].Fd >= 0 && fds[i].Revents != 0 {
					unix.Close(int(fds[i].Fd))
					fds[i].Fd = -1 // poll skips it from now on
					left--
					at = now
				}
			}
		}
		last <- at
	}()
	tb.Cleanup(func() {
		close(stop)
		<-done
		for _, f := range fds {
			if f.Fd >= 0 {
				unix.Close(int(f.Fd))
			}
		}
	})
	return func(timeout time.Duration) (time.Time, error) {
		select {
		case at := <-last:
			return at, nil
		case <-time.After(timeout):
			return time.Time{}, fmt.Errorf("processes %v still run after %s", pids, timeout)
		}
	}
}
