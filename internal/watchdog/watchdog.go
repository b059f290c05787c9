// Package watchdog is the node's last line of defence for the HA
// guarantee: a process separate from the agent that kills the node's
// guests when the agent has not renewed the node's heartbeat for FenceAfter,
// whether the agent died, hung, or lost the network. The agent records
// each successful renewal in a heartbeat file, as a reading of the
// machine's monotonic clock (CLOCK_MONOTONIC is the same for every process
// on a machine, and never jumps with the time of day).
//
// With a hardware watchdog device (/dev/watchdog) it also feeds the device
// while the heartbeat is fresh, and stops feeding when it goes stale, so
// that a host too sick to kill its guests is reset by the hardware.
package watchdog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Now reads the machine's monotonic clock.
func Now() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// Beat records a renewal in the heartbeat file at path.
func Beat(path string) error { return BeatAt(path, time.Now()) }

// BeatAt records a heartbeat at at (a renewal sent then, acknowledged now),
// by the machine's monotonic clock.
func BeatAt(path string, at time.Time) error {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(Now()-time.Since(at)))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("watchdog: heartbeat: %w", err)
	}
	return os.Rename(tmp, path)
}

// LastBeatAge says how long ago the heartbeat file at path was last
// written, by the machine's monotonic clock; ok is false when there is none.
func LastBeatAge(path string) (age time.Duration, ok bool, err error) {
	last, ok, err := lastBeat(path)
	if !ok || err != nil {
		return 0, ok, err
	}
	return Now() - last, true, nil
}

// lastBeat reads the heartbeat file; ok is false when there is none.
func lastBeat(path string) (time.Duration, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(b) != 8 {
		return 0, false, fmt.Errorf("watchdog: heartbeat file %s holds %d bytes, want 8", path, len(b))
	}
	return time.Duration(binary.LittleEndian.Uint64(b)), true, nil
}

// Config configures a watchdog.
type Config struct {
	// Heartbeat is the agent's heartbeat file.
	Heartbeat string
	// FenceAfter is how stale the heartbeat may get before the guests are
	// killed; the agent's --fence-after.
	FenceAfter time.Duration
	// Fence kills the node's guests; it says how many it killed.
	Fence func(why string) (int, error)
	// Device, when set, is a watchdog device fed while the heartbeat is
	// fresh.
	Device string
	// Interval is how often the heartbeat is checked (default 250ms).
	Interval time.Duration
	Log      *slog.Logger
}

// Run watches the heartbeat until ctx ends. Before the first beat, the
// heartbeat counts from the watchdog's start.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Heartbeat == "" || cfg.FenceAfter <= 0 || cfg.Fence == nil {
		return errors.New("watchdog: a heartbeat file, a positive FenceAfter and a Fence function are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var dev *os.File
	if cfg.Device != "" {
		f, err := os.OpenFile(cfg.Device, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("watchdog: opening the device: %w", err)
		}
		dev = f
		defer func() {
			// The magic close: tell the driver the stop is deliberate.
			_, _ = dev.Write([]byte("V"))
			dev.Close()
		}()
	}
	start := Now()
	fenced := false
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		beat, ok, err := lastBeat(cfg.Heartbeat)
		if err != nil {
			cfg.Log.Error("reading the heartbeat", "err", err)
		}
		if !ok {
			beat = start
		}
		age := Now() - beat
		switch {
		case age < cfg.FenceAfter:
			if fenced {
				cfg.Log.Warn("the agent renews the lease again: guests may run")
			}
			fenced = false
			if dev != nil {
				if _, err := dev.Write([]byte{0}); err != nil {
					cfg.Log.Error("feeding the watchdog device", "err", err)
				}
			}
		case !fenced:
			why := fmt.Sprintf("killed by the node's watchdog: the agent had not renewed the node heartbeat for %s", age.Round(100*time.Millisecond))
			n, err := cfg.Fence(why)
			if err != nil {
				cfg.Log.Error("fencing the guests", "err", err)
				break // try again next time
			}
			fenced = true
			cfg.Log.Error("the agent stopped renewing the node lease: guests killed", "age", age.Round(time.Millisecond), "killed", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// HeartbeatPath is where an agent with state directory dir keeps its
// heartbeat.
func HeartbeatPath(dir string) string { return filepath.Join(dir, "heartbeat") }
