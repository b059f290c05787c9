package sim_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// sleep lets d of fake time pass and every timer due by then fire.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestBootDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDriver(t, t.TempDir(), nil)
		t0 := time.Now()
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "300ms"}, false)
		want(t, g, driver.Booting, false, 0)
		if signalled(g) {
			t.Error("Changed signalled with nothing changed")
		}
		sleep(300*time.Millisecond - 1)
		want(t, g, driver.Booting, false, 0)
		sleep(1)
		want(t, g, driver.Running, false, 0)
		if !signalled(g) {
			t.Error("booting to Running did not signal Changed")
		}
		if time.Since(t0) != 300*time.Millisecond {
			t.Errorf("fake time: %s", time.Since(t0))
		}

		// Default: no delay, Running as Start returns, with the signal pending.
		g2 := start(t, d, "g2", nil, false)
		want(t, g2, driver.Running, false, 0)
		if !signalled(g2) {
			t.Error("an instant boot did not signal Changed")
		}
	})
}

func TestFailStart(t *testing.T) {
	for _, paused := range []bool{false, true} {
		t.Run(map[bool]string{false: "Running", true: "Paused"}[paused], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDriver(t, t.TempDir(), nil)
				t0 := time.Now()
				g := start(t, d, "g", map[string]string{sim.AnnotationFailStart: "true", sim.AnnotationBootDelay: "2s"}, paused)
				// A start scripted to fail ignores the paused start: it boots.
				want(t, g, driver.Booting, false, 0)
				sleep(2*time.Second - 1)
				want(t, g, driver.Booting, false, 0)
				sleep(1)
				wantExit(t, g, driver.ExitStartFailed, t0.Add(2*time.Second))
				if !signalled(g) {
					t.Error("the failed start did not signal Changed")
				}
				if msg := g.State().Exit.Message; !strings.Contains(msg, sim.AnnotationFailStart) {
					t.Errorf("exit message %q does not name %s", msg, sim.AnnotationFailStart)
				}
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		// No boot delay: fails at once, without ever being Running.
		d := newDriver(t, t.TempDir(), nil)
		t0 := time.Now()
		g := start(t, d, "g", map[string]string{sim.AnnotationFailStart: "true"}, false)
		wantExit(t, g, driver.ExitStartFailed, t0)
		// fail-start: "false" is a normal start.
		g2 := start(t, d, "g2", map[string]string{sim.AnnotationFailStart: "false"}, false)
		want(t, g2, driver.Running, false, 0)
	})
}

func TestRunForThen(t *testing.T) {
	for _, tc := range []struct {
		then string
		want driver.ExitReason
	}{
		{"shutdown", driver.ExitShutdown},
		{"crash", driver.ExitCrashed},
		{"panic", driver.ExitPanicked},
	} {
		t.Run(tc.then, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDriver(t, t.TempDir(), nil)
				t0 := time.Now()
				g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s", sim.AnnotationRunFor: "5s", sim.AnnotationThen: tc.then}, false)
				sleep(time.Second)
				want(t, g, driver.Running, false, 0)
				signalled(g)
				sleep(5*time.Second - 1)
				want(t, g, driver.Running, false, 0)
				if signalled(g) {
					t.Error("Changed signalled with nothing changed")
				}
				sleep(1)
				wantExit(t, g, tc.want, t0.Add(6*time.Second))
				if !signalled(g) {
					t.Error("the scripted end did not signal Changed")
				}
				if msg := g.State().Exit.Message; !strings.Contains(msg, sim.AnnotationThen) {
					t.Errorf("exit message %q does not name %s", msg, sim.AnnotationThen)
				}
			})
		})
	}
	t.Run("reboot", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := newDriver(t, t.TempDir(), nil)
			g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s", sim.AnnotationRunFor: "5s", sim.AnnotationThen: "reboot"}, false)
			sleep(time.Second)
			for i := 1; i <= 4; i++ {
				signalled(g)
				sleep(5*time.Second - 1)
				want(t, g, driver.Running, false, i-1)
				sleep(1)
				want(t, g, driver.Running, false, i)
				if !signalled(g) {
					t.Fatalf("reboot %d did not signal Changed", i)
				}
			}
			must(t, "Shutdown", g.Shutdown(context.Background()))
			wantExit(t, g, driver.ExitShutdown, time.Now())
		})
	})
}

// TestRunForCountsRunningTime: run-for counts unpaused running time only,
// and a reboot starts the count again.
func TestRunForCountsRunningTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s", sim.AnnotationRunFor: "10s", sim.AnnotationThen: "shutdown"}, false)
		sleep(time.Second + 4*time.Second) // 4s of the run
		must(t, "Pause", g.Pause(ctx))
		want(t, g, driver.Running, true, 0)
		sleep(time.Hour)
		want(t, g, driver.Running, true, 0)
		must(t, "Resume", g.Resume(ctx))
		sleep(3 * time.Second) // 7s
		must(t, "Pause", g.Pause(ctx))
		must(t, "Pause again", g.Pause(ctx))
		sleep(time.Minute)
		must(t, "Resume", g.Resume(ctx))
		must(t, "Resume again", g.Resume(ctx))
		resumed := time.Now()
		sleep(3*time.Second - 1)
		want(t, g, driver.Running, false, 0)
		sleep(1)
		wantExit(t, g, driver.ExitShutdown, resumed.Add(3*time.Second))
	})
	synctest.Test(t, func(t *testing.T) {
		// A reboot, asked for or scripted, starts a new run; one asked for
		// while paused counts from the resume.
		ctx := context.Background()
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationRunFor: "10s", sim.AnnotationThen: "crash"}, false)
		sleep(6 * time.Second)
		must(t, "Reboot", g.Reboot(ctx))
		want(t, g, driver.Running, false, 1)
		sleep(6 * time.Second)
		act(t, g, "reboot")
		want(t, g, driver.Running, false, 2)
		sleep(6 * time.Second)
		must(t, "Pause", g.Pause(ctx))
		must(t, "Reboot", g.Reboot(ctx))
		want(t, g, driver.Running, true, 3)
		sleep(time.Hour)
		must(t, "Resume", g.Resume(ctx))
		resumed := time.Now()
		sleep(10*time.Second - 1)
		want(t, g, driver.Running, false, 3)
		sleep(1)
		wantExit(t, g, driver.ExitCrashed, resumed.Add(10*time.Second))
	})
}

// TestPauseWhileBooting: the boot clock stops while paused too.
func TestPauseWhileBooting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "10s"}, false)
		sleep(4 * time.Second)
		must(t, "Pause", g.Pause(ctx))
		want(t, g, driver.Booting, true, 0)
		sleep(time.Hour)
		want(t, g, driver.Booting, true, 0)
		must(t, "Resume", g.Resume(ctx))
		sleep(6*time.Second - 1)
		want(t, g, driver.Booting, false, 0)
		sleep(1)
		want(t, g, driver.Running, false, 0)
	})
}

// TestStartPaused: a guest started paused is Running and paused at once,
// and its run (and script) begins only when it is resumed.
func TestStartPaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "2s", sim.AnnotationRunFor: "5s", sim.AnnotationThen: "panic"}, true)
		want(t, g, driver.Running, true, 0)
		sleep(time.Hour)
		want(t, g, driver.Running, true, 0)
		must(t, "Resume", g.Resume(context.Background()))
		resumed := time.Now()
		want(t, g, driver.Running, false, 0)
		sleep(5*time.Second - 1)
		want(t, g, driver.Running, false, 0)
		sleep(1)
		wantExit(t, g, driver.ExitPanicked, resumed.Add(5*time.Second))
	})
}

func TestIgnoreACPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationIgnoreACPI: "true"}, false)
		signalled(g)
		for range 30 {
			must(t, "Shutdown", g.Shutdown(ctx))
			sleep(time.Second)
		}
		want(t, g, driver.Running, false, 0)
		if signalled(g) {
			t.Error("an ignored Shutdown signalled Changed")
		}
		must(t, "Kill", g.Kill(ctx))
		wantExit(t, g, driver.ExitKilled, time.Now())

		g2 := start(t, d, "g2", map[string]string{sim.AnnotationIgnoreACPI: "false"}, false)
		must(t, "Shutdown", g2.Shutdown(ctx))
		wantExit(t, g2, driver.ExitShutdown, time.Now())
	})
}

func TestActions(t *testing.T) {
	for _, tc := range []struct {
		action string
		want   driver.ExitReason
	}{
		{"shutdown", driver.ExitShutdown},
		{"crash", driver.ExitCrashed},
		{"panic", driver.ExitPanicked},
	} {
		t.Run(tc.action, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDriver(t, t.TempDir(), nil)
				g := start(t, d, "g", nil, false)
				sleep(time.Minute)
				signalled(g)
				act(t, g, tc.action)
				wantExit(t, g, tc.want, time.Now())
				if !signalled(g) {
					t.Error("the action did not signal Changed")
				}
				if msg := g.State().Exit.Message; !strings.Contains(msg, sim.AnnotationAction) {
					t.Errorf("exit message %q does not name %s", msg, sim.AnnotationAction)
				}
			})
		})
	}
	t.Run("reboot", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := newDriver(t, t.TempDir(), nil)
			g := start(t, d, "g", nil, false)
			act(t, g, "reboot")
			want(t, g, driver.Running, false, 1)
			act(t, g, "reboot") // once per value
			want(t, g, driver.Running, false, 1)
			must(t, "Reboot", g.Reboot(context.Background())) // asked for: any number of times
			want(t, g, driver.Running, false, 2)
		})
	})
	t.Run("hang", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx := context.Background()
			d := newDriver(t, t.TempDir(), nil)
			g := start(t, d, "g", nil, false)
			act(t, g, "hang")
			act(t, g, "hang")
			must(t, "Shutdown", g.Shutdown(ctx))
			must(t, "Reboot", g.Reboot(ctx))
			want(t, g, driver.Running, false, 0)
			act(t, g, "reboot") // the guest's own doing: still possible
			want(t, g, driver.Running, false, 1)
			must(t, "Shutdown", g.Shutdown(ctx)) // and it still hangs
			want(t, g, driver.Running, false, 1)
			act(t, g, "crash")
			wantExit(t, g, driver.ExitCrashed, time.Now())
		})
	})
	t.Run("whileBooting", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// An action on a guest that does not run does nothing and is not
			// used up.
			d := newDriver(t, t.TempDir(), nil)
			g := start(t, d, "g", map[string]string{sim.AnnotationBootDelay: "1s"}, false)
			act(t, g, "shutdown")
			want(t, g, driver.Booting, false, 0)
			sleep(time.Second)
			act(t, g, "shutdown")
			wantExit(t, g, driver.ExitShutdown, time.Now())
			act(t, g, "crash") // exited: nothing
			wantExit(t, g, driver.ExitShutdown, time.Now())
		})
	})
	t.Run("unknown", func(t *testing.T) {
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", nil, false)
		if err := g.(driver.Scripter).Act(context.Background(), "explode"); err == nil || !strings.Contains(err.Error(), "explode") {
			t.Errorf("Act(explode): %v", err)
		}
		want(t, g, driver.Running, false, 0)
	})
}

// TestBadAnnotations: a value that does not parse fails Start with a
// StartError naming the annotation, and leaves nothing behind.
func TestBadAnnotations(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		name string // the annotation the message must name
	}{
		{map[string]string{sim.AnnotationBootDelay: "soon"}, sim.AnnotationBootDelay},
		{map[string]string{sim.AnnotationBootDelay: "-1s"}, sim.AnnotationBootDelay},
		{map[string]string{sim.AnnotationFailStart: "maybe"}, sim.AnnotationFailStart},
		{map[string]string{sim.AnnotationRunFor: "long", sim.AnnotationThen: "crash"}, sim.AnnotationRunFor},
		{map[string]string{sim.AnnotationRunFor: "0s", sim.AnnotationThen: "crash"}, sim.AnnotationRunFor},
		{map[string]string{sim.AnnotationRunFor: "5s", sim.AnnotationThen: "explode"}, sim.AnnotationThen},
		{map[string]string{sim.AnnotationRunFor: "5s"}, sim.AnnotationThen},
		{map[string]string{sim.AnnotationThen: "crash"}, sim.AnnotationRunFor},
		{map[string]string{sim.AnnotationIgnoreACPI: "please"}, sim.AnnotationIgnoreACPI},
	} {
		dir := t.TempDir()
		journal := dir + "/journal"
		j, err := sim.OpenJournal(journal)
		must(t, "OpenJournal", err)
		d := newDriver(t, dir+"/state", j)
		_, err = d.Start(context.Background(), driver.Spec{ID: "g", Namespace: "default", Name: "vm", VMI: newVMI(tc.ann)})
		var se *driver.StartError
		if !errors.As(err, &se) {
			t.Errorf("%v: Start: %v, want a *driver.StartError", tc.ann, err)
			continue
		}
		if se.Reason != v1.ReasonStartFailed || !strings.Contains(se.Message, tc.name) {
			t.Errorf("%v: StartError %q %q, want reason %s naming %s", tc.ann, se.Reason, se.Message, v1.ReasonStartFailed, tc.name)
		}
		if ids, err := d.Guests(context.Background()); err != nil || len(ids) != 0 {
			t.Errorf("%v: after a failed Start, Guests = %v, %v", tc.ann, ids, err)
		}
		must(t, "Close journal", j.Close())
		if entries, err := sim.ReadJournal(journal); err != nil || len(entries) != 0 {
			t.Errorf("%v: after a failed Start, the journal has %v, %v", tc.ann, entries, err)
		}
	}
}

// TestChangedNeverBlocks: with nobody reading Changed, scripted
// transitions (timers) and operations go on.
func TestChangedNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDriver(t, t.TempDir(), nil)
		g := start(t, d, "g", map[string]string{sim.AnnotationRunFor: "1s", sim.AnnotationThen: "reboot"}, false)
		for i := range 100 {
			sleep(time.Second)
			must(t, "Pause", g.Pause(context.Background()))
			must(t, "Resume", g.Resume(context.Background()))
			want(t, g, driver.Running, false, i+1)
		}
		if !signalled(g) || signalled(g) {
			t.Error("want exactly one pending signal")
		}
	})
}
