package sim_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// TestRecoverReplays: a closed guest "runs" on; the script's end falls in
// the gap, and Recover (by the same Driver, or a new one on the same state:
// an agent restart) replays it at the time it was due.
func TestRecoverReplays(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "SameDriver", true: "NewDriver"}[restart], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				journal := filepath.Join(dir, "journal")
				j, err := sim.OpenJournal(journal)
				must(t, "OpenJournal", err)
				d := newDriver(t, filepath.Join(dir, "state"), j)
				t0 := time.Now()
				g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s", sim.AnnotationRunFor: "10s", sim.AnnotationThen: "crash"}, false)
				sleep(3 * time.Second)
				want(t, g, driver.Running, false, 0)
				must(t, "Close", g.Close())
				sleep(time.Hour)
				if restart {
					d = newDriver(t, filepath.Join(dir, "state"), j)
				}
				g2 := recoverGuest(t, d, "g")
				wantExit(t, g2, driver.ExitCrashed, t0.Add(11*time.Second))
				if !signalled(g2) {
					t.Error("the replayed exit did not signal Changed")
				}
				must(t, "Close journal", j.Close())
				entries, err := sim.ReadJournal(journal)
				must(t, "ReadJournal", err)
				if len(entries) != 2 || entries[1].Event != "stop" || !entries[1].Time.Equal(t0.Add(11*time.Second)) || entries[1].Reason != string(driver.ExitCrashed) {
					t.Errorf("journal: %+v, want the stop at %s", entries, t0.Add(11*time.Second))
				}
			})
		})
	}
}

// TestRecoverReplaysBoot: a guest closed while booting comes back Running,
// with its run counted from the end of the boot.
func TestRecoverReplaysBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		d := newDriver(t, dir, nil)
		t0 := time.Now()
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "5s", sim.AnnotationRunFor: "1h", sim.AnnotationThen: "shutdown"}, false)
		sleep(time.Second)
		must(t, "Close", g.Close())
		sleep(10 * time.Second)
		g2 := recoverGuest(t, newDriver(t, dir, nil), "g")
		want(t, g2, driver.Running, false, 0)
		sleep(time.Hour + 5*time.Second - 11*time.Second - 1) // to just before t0+5s+1h
		want(t, g2, driver.Running, false, 0)
		sleep(1)
		wantExit(t, g2, driver.ExitShutdown, t0.Add(5*time.Second+time.Hour))
	})
}

// TestRecoverLongRebootLoop: hours of one-second reboot runs replay at once.
func TestRecoverLongRebootLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		d := newDriver(t, dir, nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationRunFor: "1ms", sim.AnnotationThen: "reboot"}, false)
		must(t, "Close", g.Close())
		sleep(24*time.Hour + 500*time.Microsecond)
		g2 := recoverGuest(t, newDriver(t, dir, nil), "g")
		want(t, g2, driver.Running, false, 24*3600*1000)
		sleep(500 * time.Microsecond)
		want(t, g2, driver.Running, false, 24*3600*1000+1)
		must(t, "Kill", g2.Kill(context.Background()))
	})
}

// TestRecoverKeepsState: an agent restart keeps pauses, reboots, hangs and
// the actions already done.
func TestRecoverKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		d := newDriver(t, dir, nil)
		paused := start(t, d, "paused", map[string]string{sim.AnnotationRunFor: "10s", sim.AnnotationThen: "shutdown"}, false)
		sleep(4 * time.Second)
		must(t, "Pause", paused.Pause(ctx))
		hung := start(t, d, "hung", nil, false)
		act(t, hung, "hang")
		act(t, hung, "reboot")
		exited := start(t, d, "exited", nil, false)
		must(t, "Kill", exited.Kill(ctx))
		exitAt := time.Now()
		for _, g := range []driver.Guest{paused, hung, exited} {
			must(t, "Close", g.Close())
		}
		sleep(time.Hour)

		d2 := newDriver(t, dir, nil)
		ids, err := d2.Guests(ctx)
		must(t, "Guests", err)
		if len(ids) != 3 || ids[0] != "exited" || ids[1] != "hung" || ids[2] != "paused" {
			t.Fatalf("Guests after a restart = %v", ids)
		}
		p2 := recoverGuest(t, d2, "paused")
		want(t, p2, driver.Running, true, 0)
		must(t, "Resume", p2.Resume(ctx))
		resumed := time.Now()
		h2 := recoverGuest(t, d2, "hung")
		want(t, h2, driver.Running, false, 1)
		act(t, h2, "reboot") // done before the restart
		must(t, "Shutdown", h2.Shutdown(ctx))
		want(t, h2, driver.Running, false, 1)
		wantExit(t, recoverGuest(t, d2, "exited"), driver.ExitKilled, exitAt)
		sleep(6 * time.Second)
		wantExit(t, p2, driver.ExitShutdown, resumed.Add(6*time.Second))
	})
}

// TestClosedGuestIsFrozen: after Close, the guest's timers stop: its handle
// neither changes nor signals, and its state file stays as it was.
func TestClosedGuestIsFrozen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		d := newDriver(t, dir, nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s", sim.AnnotationRunFor: "1s", sim.AnnotationThen: "reboot"}, false)
		must(t, "Close", g.Close())
		before, err := os.ReadFile(filepath.Join(dir, "g.json"))
		must(t, "reading the state", err)
		sleep(time.Minute)
		want(t, g, driver.Booting, false, 0)
		if signalled(g) {
			t.Error("a closed guest signalled Changed")
		}
		after, err := os.ReadFile(filepath.Join(dir, "g.json"))
		must(t, "reading the state", err)
		if string(before) != string(after) {
			t.Errorf("a closed guest's state changed:\n%s\n%s", before, after)
		}
		for name, err := range map[string]error{"Shutdown": g.Shutdown(ctx), "Kill": g.Kill(ctx), "Pause": g.Pause(ctx), "Resume": g.Resume(ctx),
			"Reboot": g.Reboot(ctx), "Act": g.(driver.Scripter).Act(ctx, "crash"), "Remove": g.Remove()} {
			if err == nil {
				t.Errorf("%s on a closed guest succeeded", name)
			}
		}
		must(t, "Close again", g.Close())
		// The guest itself ran on.
		g2 := recoverGuest(t, d, "g")
		want(t, g2, driver.Running, false, 59)
		if g2 == g {
			t.Error("Recover after Close returned the closed handle")
		}
	})
}

// TestStartAfterClose: Start of a guest the node still has adopts it: no
// second instance, no second start in the journal.
func TestStartAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		journal := filepath.Join(dir, "journal")
		j, err := sim.OpenJournal(journal)
		must(t, "OpenJournal", err)
		d := newDriver(t, filepath.Join(dir, "state"), j)
		g := start(t, d, "g", nil, false)
		act(t, g, "reboot")
		must(t, "Close", g.Close())
		g2 := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1h"}, false)
		want(t, g2, driver.Running, false, 1)
		must(t, "Close", g2.Close())
		d2 := newDriver(t, filepath.Join(dir, "state"), j)
		g3 := start(t, d2, "g", nil, false)
		want(t, g3, driver.Running, false, 1)
		must(t, "Kill", g3.Kill(context.Background()))
		must(t, "Remove", g3.Remove())
		// Removed: the ID starts afresh.
		g4 := start(t, d2, "g", nil, false)
		want(t, g4, driver.Running, false, 0)
		must(t, "Close journal", j.Close())
		entries, err := sim.ReadJournal(journal)
		must(t, "ReadJournal", err)
		var events []string
		for _, e := range entries {
			events = append(events, e.Event)
		}
		if len(events) != 3 || events[0] != "start" || events[1] != "stop" || events[2] != "start" {
			t.Errorf("journal events %v, want start, stop, start", events)
		}
	})
}

// TestStateFileRemoved: a guest whose state file disappears runs on while
// held, can still be killed and removed, and is not found once released.
func TestStateFileRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDriver(t, dir, nil)
	g := start(t, d, "g", nil, false)
	must(t, "removing the state file", os.Remove(filepath.Join(dir, "g.json")))
	if ids, err := d.Guests(ctx); err != nil || len(ids) != 1 {
		t.Errorf("Guests = %v, %v: a held guest is listed", ids, err)
	}
	if _, err := newDriver(t, dir, nil).Recover(ctx, "g"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Recover by another Driver: %v, want ErrNotFound", err)
	}
	must(t, "Pause", g.Pause(ctx))
	must(t, "Kill", g.Kill(ctx))
	must(t, "Remove", g.Remove())
	if _, err := os.Stat(filepath.Join(dir, "g.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove the state file is back: %v", err)
	}

	g = start(t, d, "h", nil, false)
	must(t, "Close", g.Close())
	must(t, "removing the state file", os.Remove(filepath.Join(dir, "h.json")))
	if _, err := d.Recover(ctx, "h"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Recover after the state file was removed: %v, want ErrNotFound", err)
	}
	if ids, err := d.Guests(ctx); err != nil || len(ids) != 0 {
		t.Errorf("Guests = %v, %v, want none", ids, err)
	}
}

func TestCorruptState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDriver(t, dir, nil)
	must(t, "writing", os.WriteFile(filepath.Join(dir, "g.json"), []byte("{not json"), 0o600))
	must(t, "writing", os.WriteFile(filepath.Join(dir, "h.json"), []byte(`{"id":"other"}`), 0o600))
	for _, id := range []string{"g", "h"} {
		if _, err := d.Recover(ctx, id); err == nil || errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Recover of a corrupt state: %v, want an error other than ErrNotFound", err)
		}
		var se *driver.StartError
		if _, err := d.Start(ctx, driver.Spec{ID: id, VMI: newVMI(nil)}); !errors.As(err, &se) {
			t.Errorf("Start over a corrupt state: %v, want a StartError", err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := d.Recover(ctx, id); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Recover(%q): %v, want ErrNotFound", id, err)
		}
		var se *driver.StartError
		if _, err := d.Start(ctx, driver.Spec{ID: id, VMI: newVMI(nil)}); !errors.As(err, &se) {
			t.Errorf("Start(%q): %v, want a StartError", id, err)
		}
	}
}

// TestRemovedGuestStaysRemoved: operations through a removed guest fail and
// never bring its state back.
func TestRemovedGuestStaysRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDriver(t, dir, nil)
	g := start(t, d, "g", nil, false)
	must(t, "Kill", g.Kill(ctx))
	must(t, "Remove", g.Remove())
	for _, err := range []error{g.Shutdown(ctx), g.Kill(ctx), g.Pause(ctx), g.Resume(ctx), g.Reboot(ctx), g.(driver.Scripter).Act(ctx, "crash")} {
		if err == nil {
			t.Error("an operation on a removed guest succeeded")
		}
	}
	must(t, "Remove again", g.Remove())
	must(t, "Close", g.Close())
	if ids, err := d.Guests(ctx); err != nil || len(ids) != 0 {
		t.Errorf("Guests = %v, %v, want none", ids, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the state directory still has %v", entries)
	}
}

// TestWithoutPersist: without Persist, guest state lives in the Driver:
// Close and Recover work on it, nothing is written, and a new Driver starts
// empty.
func TestWithoutPersist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		d, err := sim.New(sim.Config{StateDir: dir})
		must(t, "New", err)
		t0 := time.Now()
		vmi := newVMI(map[string]string{sim.AnnotationRunFor: "10s", sim.AnnotationThen: "panic"})
		g, err := d.Start(ctx, driver.Spec{ID: "g", Namespace: "default", Name: "vm", VMI: vmi})
		must(t, "Start", err)
		must(t, "Close", g.Close())
		sleep(time.Minute)
		if ids, err := d.Guests(ctx); err != nil || len(ids) != 1 || ids[0] != "g" {
			t.Errorf("Guests = %v, %v", ids, err)
		}
		g2 := recoverGuest(t, d, "g")
		wantExit(t, g2, driver.ExitPanicked, t0.Add(10*time.Second))
		must(t, "Remove", g2.Remove())
		if _, err := d.Recover(ctx, "g"); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Recover after Remove: %v", err)
		}
		g3, err := d.Start(ctx, driver.Spec{ID: "h", VMI: vmi})
		must(t, "Start", err)
		must(t, "Close", g3.Close())
		d2, err := sim.New(sim.Config{StateDir: dir})
		must(t, "New", err)
		if _, err := d2.Recover(ctx, "h"); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Recover by a new Driver without Persist: %v, want ErrNotFound", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("without Persist, the state directory has %v", entries)
		}
	})
	if _, err := sim.New(sim.Config{Persist: true}); err == nil {
		t.Error("New with Persist and no StateDir succeeded")
	}
}
