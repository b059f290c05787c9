package watchdog_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/watchdog"
)

type fencer struct {
	mu   sync.Mutex
	whys []string
}

func (f *fencer) fence(why string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.whys = append(f.whys, why)
	return 1, nil
}

func (f *fencer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.whys)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestFencesOnceWhenStale: while the heartbeat is fresh nothing is killed
// and the device is fed; once it is stale the guests are killed once and
// feeding stops; a fresh beat re-arms the watchdog.
func TestFencesOnceWhenStale(t *testing.T) {
	dir := t.TempDir()
	hb := watchdog.HeartbeatPath(dir)
	dev := filepath.Join(dir, "device")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fencer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watchdog.Run(ctx, watchdog.Config{Heartbeat: hb, FenceAfter: 300 * time.Millisecond, Fence: f.fence, Device: dev, Interval: 20 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()

	// Beat for a while: no fence, the device is fed.
	for range 30 {
		if err := watchdog.Beat(hb); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f.count() != 0 {
		t.Fatalf("fenced %d times while the heartbeat was fresh", f.count())
	}
	fed := func() int { b, _ := os.ReadFile(dev); return len(b) }
	if fed() == 0 {
		t.Error("the device was not fed while the heartbeat was fresh")
	}
	// Stop beating: one fence, and feeding stops.
	eventually(t, "the fence", func() bool { return f.count() == 1 })
	before := fed()
	time.Sleep(200 * time.Millisecond)
	if f.count() != 1 || fed() != before {
		t.Errorf("after the fence: %d fences, device fed %d more times", f.count(), fed()-before)
	}
	if !strings.Contains(f.whys[0], "had not renewed the node heartbeat") {
		t.Errorf("fence reason %q", f.whys[0])
	}
	// The agent comes back, then goes again: a second fence.
	if err := watchdog.Beat(hb); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second fence", func() bool { return f.count() == 2 })
}

// TestNoHeartbeatCountsFromStart: with no heartbeat file the watchdog
// waits a full FenceAfter from its own start.
func TestNoHeartbeatCountsFromStart(t *testing.T) {
	f := &fencer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go func() {
		_ = watchdog.Run(ctx, watchdog.Config{Heartbeat: filepath.Join(t.TempDir(), "hb"), FenceAfter: 300 * time.Millisecond, Fence: f.fence, Interval: 10 * time.Millisecond})
	}()
	eventually(t, "the fence", func() bool { return f.count() == 1 })
	if time.Since(start) < 300*time.Millisecond {
		t.Error("fenced before FenceAfter had passed")
	}
}

// TestBadConfig: a watchdog without what it needs, or with a bad
// heartbeat file or device, says so.
func TestBadConfig(t *testing.T) {
	f := &fencer{}
	if err := watchdog.Run(context.Background(), watchdog.Config{FenceAfter: time.Second, Fence: f.fence}); err == nil {
		t.Error("accepted no heartbeat file")
	}
	if err := watchdog.Run(context.Background(), watchdog.Config{Heartbeat: "x", Fence: f.fence}); err == nil {
		t.Error("accepted no FenceAfter")
	}
	if err := watchdog.Run(context.Background(), watchdog.Config{Heartbeat: "x", FenceAfter: time.Second, Fence: f.fence, Device: "/nonexistent/watchdog"}); err == nil {
		t.Error("accepted a missing device")
	}
	// A corrupt heartbeat file is not a fresh beat.
	dir := t.TempDir()
	hb := watchdog.HeartbeatPath(dir)
	if err := os.WriteFile(hb, []byte("xyz"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = watchdog.Run(ctx, watchdog.Config{Heartbeat: hb, FenceAfter: 100 * time.Millisecond, Fence: f.fence, Interval: 10 * time.Millisecond})
	}()
	eventually(t, "a fence despite the corrupt heartbeat", func() bool { return f.count() == 1 })
}
