package sim_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/drivertest"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// TestConformance runs the driver conformance suite against the sim
// runtime, with its state on disk (an agent restart is a new Driver on the
// same directory) and in memory, and checks the journal it wrote.
func TestConformance(t *testing.T) {
	for _, persist := range []bool{true, false} {
		name := "Memory"
		if persist {
			name = "Persist"
		}
		t.Run(name, func(t *testing.T) {
			journal := filepath.Join(t.TempDir(), "journal")
			j, err := sim.OpenJournal(journal)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			dirs := map[driver.Driver]string{}
			open := func(t *testing.T, dir string) driver.Driver {
				d, err := sim.New(sim.Config{StateDir: dir, Node: "node-1", Journal: j, Persist: persist})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				dirs[d] = dir
				mu.Unlock()
				return d
			}
			h := drivertest.Harness{
				NewDriver: func(t *testing.T) driver.Driver { return open(t, t.TempDir()) },
				VMI:       func(t *testing.T) *v1.VirtualMachineInstance { return newVMI(nil) },
				Timeout:   10 * time.Second,
			}
			if persist {
				h.Reopen = func(t *testing.T, d driver.Driver) driver.Driver {
					mu.Lock()
					dir := dirs[d]
					mu.Unlock()
					return open(t, dir)
				}
			}
			drivertest.Run(t, h)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			entries, err := sim.ReadJournal(journal)
			if err != nil {
				t.Fatal(err)
			}
			for _, iv := range sim.Intervals(entries) {
				if iv.Start.IsZero() || iv.Stop.IsZero() {
					t.Errorf("journal: guest %s has start %s and stop %s; the suite stops every guest it starts", iv.UID, iv.Start, iv.Stop)
				}
			}
			for _, o := range sim.Overlaps(sim.Intervals(entries)) {
				t.Errorf("journal: %s", o)
			}
		})
	}
}

// newVMI returns a VMI with annotations.
func newVMI(ann map[string]string) *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "vm", Annotations: ann},
	}
}

// newDriver returns a persisting sim Driver on dir.
func newDriver(t *testing.T, dir string, j *sim.Journal) *sim.Driver {
	t.Helper()
	d, err := sim.New(sim.Config{StateDir: dir, Node: "node-1", Journal: j, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// start starts guest id of VM default/<id> with annotations.
func start(t *testing.T, d *sim.Driver, id string, ann map[string]string, paused bool) driver.Guest {
	t.Helper()
	vmi := newVMI(ann)
	vmi.Name = id
	g, err := d.Start(context.Background(), driver.Spec{ID: id, Namespace: "default", Name: id, VMI: vmi, Paused: paused})
	if err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	return g
}

func recoverGuest(t *testing.T, d *sim.Driver, id string) driver.Guest {
	t.Helper()
	g, err := d.Recover(context.Background(), id)
	if err != nil {
		t.Fatalf("Recover(%s): %v", id, err)
	}
	return g
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func act(t *testing.T, g driver.Guest, action string) {
	t.Helper()
	must(t, "Act("+action+")", g.(driver.Scripter).Act(context.Background(), action))
}

// want checks a guest's phase, pause and reboots.
func want(t *testing.T, g driver.Guest, phase driver.Phase, paused bool, reboots int) driver.State {
	t.Helper()
	st := g.State()
	if st.Phase != phase || st.Paused != paused || st.Reboots != reboots {
		t.Fatalf("guest %s: %s paused=%v reboots=%d, want %s paused=%v reboots=%d (exit %+v)",
			g.ID(), st.Phase, st.Paused, st.Reboots, phase, paused, reboots, st.Exit)
	}
	return st
}

// wantExit checks that a guest exited for reason at at.
func wantExit(t *testing.T, g driver.Guest, reason driver.ExitReason, at time.Time) {
	t.Helper()
	st := g.State()
	if st.Phase != driver.Exited || st.Exit == nil || st.Exit.Reason != reason || !st.Exit.At.Equal(at) || st.Paused {
		t.Fatalf("guest %s: %s %+v, want Exited %s at %s", g.ID(), st.Phase, st.Exit, reason, at)
	}
}

// signalled reports whether a Changed signal is pending, consuming it.
func signalled(g driver.Guest) bool {
	select {
	case <-g.Changed():
		return true
	default:
		return false
	}
}
