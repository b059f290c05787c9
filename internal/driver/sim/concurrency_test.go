package sim_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// TestConcurrentUse hammers one Driver from many goroutines, with guests
// whose timers fire all the time, to let the race detector and the lock
// order (Driver.mu before a guest's mu) prove themselves: it must finish,
// and the journal must be consistent.
func TestConcurrentUse(t *testing.T) {
	for _, persist := range []bool{true, false} {
		t.Run(fmt.Sprint("persist=", persist), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "journal")
			j, err := sim.OpenJournal(path)
			must(t, "OpenJournal", err)
			d, err := sim.New(sim.Config{StateDir: filepath.Join(dir, "state"), Node: "n", Journal: j, Persist: persist})
			must(t, "New", err)
			ann := map[string]string{sim.AnnotationBootDelay: "1ms", sim.AnnotationRunFor: "2ms", sim.AnnotationThen: "reboot"}
			ids := []string{"a", "b", "c", "d"}
			const workers, ops = 8, 300
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					ctx := context.Background()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for range ops {
						id := ids[rng.IntN(len(ids))]
						var g driver.Guest
						var err error
						if rng.IntN(2) == 0 {
							g, err = d.Start(ctx, driver.Spec{ID: id, Namespace: "default", Name: id, VMI: newVMI(ann)})
						} else {
							g, err = d.Recover(ctx, id)
						}
						if errors.Is(err, driver.ErrNotFound) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						switch rng.IntN(10) {
						case 0:
							_ = g.Kill(ctx)
						case 1:
							_ = g.Remove()
						case 2:
							_ = g.Close()
						case 3:
							_ = g.Pause(ctx)
						case 4:
							_ = g.Resume(ctx)
						case 5:
							_ = g.Reboot(ctx)
						case 6:
							_ = g.(driver.Scripter).Act(ctx, "reboot")
						case 7:
							_, _ = d.Guests(ctx)
						case 8:
							_ = g.Shutdown(ctx)
						case 9:
							_ = g.State()
							select {
							case <-g.Changed():
							case <-time.After(time.Millisecond):
							}
						}
					}
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("concurrent use did not finish: a deadlock?")
			}
			// Stop everything, then check the journal: one start and at most
			// one stop per guest instance.
			ctx := context.Background()
			gids, err := d.Guests(ctx)
			must(t, "Guests", err)
			for _, id := range gids {
				g := recoverGuest(t, d, id)
				must(t, "Kill", g.Kill(ctx))
				must(t, "Remove", g.Remove())
			}
			must(t, "Close journal", j.Close())
			entries, err := sim.ReadJournal(path)
			must(t, "ReadJournal", err)
			starts, stops := 0, 0
			for _, e := range entries {
				switch e.Event {
				case "start":
					starts++
				case "stop":
					stops++
				}
			}
			if starts == 0 || starts != stops {
				t.Errorf("journal: %d starts, %d stops", starts, stops)
			}
			for _, iv := range sim.Intervals(entries) {
				if iv.Stop.IsZero() {
					t.Errorf("instance %s never stopped", iv.UID)
				}
			}
		})
	}
}
