package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vigil-vm/vigil/internal/driver"
)

// guest is one simulated guest, held by one Driver.
//
// Its scripted transitions are applied lazily: settleLocked applies every
// one that is due, at the time it was due, and arms a timer for the next;
// the timer only calls settleLocked again. Every operation settles first,
// so it sees the guest as it is now, and then re-arms. Close and Remove
// stop the timer and mark the guest released, after which the timer's
// function (which may already be waiting for mu) does nothing: a released
// guest's state is frozen here and moves on only in a Driver that recovers
// it.
type guest struct {
	d  *Driver
	id string // immutable

	mu  sync.Mutex // guards rec, timer, released, removed
	rec record
	// timer fires when the next scripted transition is due; nil if none is.
	timer *time.Timer
	// released is set by Close and Remove: the guest is no longer held.
	released bool
	// removed is set by Remove: its state is gone from the node.
	removed bool

	// changed is signalled on every state change; size 1 so that signals
	// coalesce and the guest never blocks on a slow reader.
	changed chan struct{}
}

var (
	errExited   = errors.New("sim runtime: the guest has exited")
	errReleased = errors.New("sim runtime: the guest was closed or removed")
)

func (g *guest) ID() string { return g.id }

func (g *guest) Changed() <-chan struct{} { return g.changed }

func (g *guest) State() driver.State {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := driver.State{Phase: g.rec.Phase, Paused: g.rec.Paused, Reboots: g.rec.Reboots, Accelerator: "sim"}
	if g.rec.Exit != nil {
		e := *g.rec.Exit
		st.Exit = &e
	}
	return st
}

func (g *guest) notify() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// settleLocked applies every scripted transition due by now, at the time it
// was due, then arms the timer for the next one.
func (g *guest) settleLocked(now time.Time) {
	changed := false
	for {
		at, ok := g.nextLocked()
		if !ok || at.After(now) {
			break
		}
		g.transitionLocked(at, now)
		changed = true
	}
	if changed {
		// A failed save only costs re-adoption precision: the next change
		// saves again, and the guest runs on.
		_ = g.d.store.save(&g.rec)
		g.notify()
	}
	g.armLocked(now)
}

// nextLocked returns when the next scripted transition is due: the end of
// the current stage, if its clock runs and it has an end.
func (g *guest) nextLocked() (time.Time, bool) {
	r := &g.rec
	if r.Paused || r.StageSince.IsZero() {
		return time.Time{}, false
	}
	switch {
	case r.Phase == driver.Booting:
		return r.StageSince.Add(r.Script.BootDelay - r.StageDone), true
	case r.Phase == driver.Running && r.Script.RunFor > 0:
		return r.StageSince.Add(r.Script.RunFor - r.StageDone), true
	}
	return time.Time{}, false
}

// transitionLocked ends the current stage at at (due, and not after now).
func (g *guest) transitionLocked(at, now time.Time) {
	r := &g.rec
	switch r.Phase {
	case driver.Booting:
		if r.Script.FailStart {
			g.exitLocked(at, driver.ExitStartFailed, "the guest failed to start (sim.vigil.dev/fail-start)")
			return
		}
		r.Phase, r.StageSince, r.StageDone = driver.Running, at, 0
	case driver.Running:
		switch r.Script.Then {
		case "shutdown":
			g.exitLocked(at, driver.ExitShutdown, "the guest powered off (sim.vigil.dev/then: shutdown)")
		case "crash":
			g.exitLocked(at, driver.ExitCrashed, "the hypervisor crashed (sim.vigil.dev/then: crash)")
		case "panic":
			g.exitLocked(at, driver.ExitPanicked, "the guest kernel panicked (sim.vigil.dev/then: panic)")
		case "reboot":
			// Every whole run that fits by now ended in a reboot. Count them
			// at once, so that recovering after a long gap costs no more
			// than after a short one.
			n := 1 + int64(now.Sub(at)/r.Script.RunFor)
			r.Reboots += int(n)
			r.StageSince, r.StageDone = at.Add(time.Duration(n-1)*r.Script.RunFor), 0
		}
	}
}

func (g *guest) exitLocked(at time.Time, reason driver.ExitReason, msg string) {
	r := &g.rec
	r.Phase, r.Exit = driver.Exited, &driver.Exit{Reason: reason, Message: msg, At: at}
	r.Paused, r.StageSince, r.StageDone = false, time.Time{}, 0
	g.d.cfg.Journal.record(at, "stop", r.Namespace+"/"+r.Name, r.ID, g.d.cfg.Node, string(reason))
}

func (g *guest) armLocked(now time.Time) {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if g.released {
		return
	}
	at, ok := g.nextLocked()
	if !ok {
		return
	}
	g.timer = time.AfterFunc(max(at.Sub(now), 0), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if !g.released {
			g.settleLocked(time.Now())
		}
	})
}

// change settles the guest, runs f on it, and when f reports a change saves
// and signals it. f changes nothing when it returns an error.
func (g *guest) change(f func(r *record, now time.Time) (bool, error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return errReleased
	}
	now := time.Now()
	g.settleLocked(now)
	changed, err := f(&g.rec, now)
	if err != nil || !changed {
		return err
	}
	// The change has happened whether or not it can be saved: signal it,
	// and report a failed save (the agent retries, which saves again).
	err = g.d.store.save(&g.rec)
	g.notify()
	g.armLocked(now)
	if err != nil {
		return fmt.Errorf("sim runtime: saving guest state: %w", err)
	}
	return nil
}

func (g *guest) Shutdown(ctx context.Context) error {
	return g.change(func(r *record, now time.Time) (bool, error) {
		if r.Phase == driver.Exited || r.Script.IgnoreACPI || r.Hung {
			return false, nil // nothing to do, or delivered and ignored
		}
		g.exitLocked(now, driver.ExitShutdown, "the guest powered off after an ACPI shutdown request")
		return true, nil
	})
}

func (g *guest) Kill(ctx context.Context) error {
	return g.change(func(r *record, now time.Time) (bool, error) {
		if r.Phase == driver.Exited {
			return false, nil
		}
		g.exitLocked(now, driver.ExitKilled, "the guest was killed")
		return true, nil
	})
}

func (g *guest) Pause(ctx context.Context) error {
	return g.change(func(r *record, now time.Time) (bool, error) {
		switch {
		case r.Phase == driver.Exited:
			return false, errExited
		case r.Paused:
			return false, nil
		}
		if !r.StageSince.IsZero() {
			r.StageDone += now.Sub(r.StageSince)
		}
		r.Paused, r.StageSince = true, time.Time{}
		return true, nil
	})
}

func (g *guest) Resume(ctx context.Context) error {
	return g.change(func(r *record, now time.Time) (bool, error) {
		switch {
		case r.Phase == driver.Exited:
			return false, errExited
		case !r.Paused:
			return false, nil
		}
		r.Paused, r.StageSince = false, now
		return true, nil
	})
}

func (g *guest) Reboot(ctx context.Context) error {
	return g.change(func(r *record, now time.Time) (bool, error) {
		switch {
		case r.Phase == driver.Exited:
			return false, errExited
		case r.Hung || r.Phase != driver.Running:
			return false, nil // ignored, like an ACPI request the guest cannot answer yet
		}
		rebootLocked(r, now)
		return true, nil
	})
}

// rebootLocked starts a new run: the run-for clock starts again (when the
// guest is resumed, if it is paused).
func rebootLocked(r *record, now time.Time) {
	r.Reboots++
	r.StageDone = 0
	if !r.Paused {
		r.StageSince = now
	}
}

// Act performs a scripted fault once per distinct action value, on a
// running guest (on any other, it does nothing).
func (g *guest) Act(ctx context.Context, action string) error {
	switch action {
	case "shutdown", "crash", "panic", "reboot", "hang":
	default:
		return fmt.Errorf("sim runtime: unknown action %q (shutdown, crash, panic, reboot or hang)", action)
	}
	return g.change(func(r *record, now time.Time) (bool, error) {
		if slices.Contains(r.ActionsDone, action) || r.Phase != driver.Running {
			return false, nil
		}
		r.ActionsDone = append(r.ActionsDone, action)
		switch action {
		case "shutdown":
			g.exitLocked(now, driver.ExitShutdown, "the guest powered off (sim.vigil.dev/action: shutdown)")
		case "crash":
			g.exitLocked(now, driver.ExitCrashed, "the hypervisor crashed (sim.vigil.dev/action: crash)")
		case "panic":
			g.exitLocked(now, driver.ExitPanicked, "the guest kernel panicked (sim.vigil.dev/action: panic)")
		case "reboot":
			rebootLocked(r, now)
		case "hang":
			r.Hung = true
		}
		return true, nil
	})
}

// Close releases the guest; it "runs" on, and the node keeps its state for
// Recover.
func (g *guest) Close() error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
	return nil
}

// Remove deletes an exited guest's state and releases it.
func (g *guest) Remove() error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.removed:
		return nil
	case g.released:
		return errReleased
	}
	// Settle first: a guest whose script has ended by now has exited.
	g.settleLocked(time.Now())
	if g.rec.Phase != driver.Exited {
		return fmt.Errorf("sim runtime: cannot remove guest %s: it still runs", g.id)
	}
	if err := g.d.store.remove(g.id); err != nil {
		return fmt.Errorf("sim runtime: removing guest %s: %w", g.id, err)
	}
	g.removed = true
	g.releaseLocked()
	return nil
}

// releaseLocked stops the timer and makes the Driver forget the guest.
// d.mu and g.mu are held.
func (g *guest) releaseLocked() {
	g.released = true
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.d.releaseLocked(g)
}
