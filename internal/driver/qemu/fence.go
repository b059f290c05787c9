package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-vm/vigil/internal/driver"
)

// FenceAll kills every guest still running under stateDir (a Config's
// StateDir), from outside the agent: the node's watchdog calls it when the
// agent stopped renewing the node's lease. Each guest's exit is recorded
// first, as ExitFenced with why, so that the agent, when it comes back,
// reports the guest as fenced rather than crashed. It returns how many
// guests it killed.
func FenceAll(stateDir, why string) (int, error) {
	dir := filepath.Join(stateDir, "guests")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("qemu: fencing: %w", err)
	}
	killed := 0
	var errs []error
	for _, e := range entries {
		gdir := filepath.Join(dir, e.Name())
		rec, err := readRecord(gdir)
		if err != nil {
			continue // not a guest, or one still being set up
		}
		if exit, _ := readExit(gdir); exit != nil {
			continue
		}
		// Hold the process by a pidfd before checking that it is the
		// guest's, so that a reused PID cannot be killed by mistake.
		fd, err := unix.PidfdOpen(rec.PID, 0)
		if err != nil {
			continue // already gone
		}
		start, zombie, err := procStart(rec.PID)
		if err != nil || zombie || start != rec.StartTime {
			unix.Close(fd)
			continue
		}
		if err := writeJSON(filepath.Join(gdir, exitFile), driver.Exit{Reason: driver.ExitFenced, Message: why, At: time.Now().UTC()}); err != nil {
			errs = append(errs, fmt.Errorf("qemu: fencing guest %s: %w", rec.ID, err))
		}
		err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("qemu: fencing guest %s: %w", rec.ID, err))
			continue
		}
		killed++
	}
	return killed, errors.Join(errs...)
}
