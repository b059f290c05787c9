package drivertest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/drivertest"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// The suite's own test: drivers that each break one rule of the contract
// (mutants of the sim runtime) must fail the case of the suite that checks
// that rule. Each mutant runs that case in a child process (a failing
// suite fails its test), whose outcome the parent checks.

const mutantEnv = "DRIVERTEST_MUTANT"

// mutants maps a mutant to the case of the suite that must catch it.
var mutants = map[string]string{
	"silent":             "PauseResume",           // never signals Changed
	"blocking":           "ChangedNeverBlocks",    // blocks until Changed is read
	"asyncKill":          "KillExitsAtOnce",       // Kill returns before the guest exits
	"removeKills":        "RemoveRunningFails",    // Remove kills a running guest
	"recoverPlainError":  "RecoverUnknown",        // no ErrNotFound
	"startNotIdempotent": "StartIdempotent",       // a second Start restarts
	"forgetsClosed":      "CloseRecover",          // Close loses the guest
	"rebootStops":        "RebootKeepsRunning",    // a reboot ends the guest
	"startsUnpaused":     "StartPaused",           // ignores Spec.Paused
	"shutdownCrashes":    "ShutdownExitsShutdown", // wrong exit reason
	"exitedRemoveFails":  "ExitedGuest",           // Remove of an exited guest fails
}

func TestSuiteCatchesMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for name, wantCase := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutant$/^"+wantCase+"$", "-test.v", "-test.timeout=60s")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("the suite passed the %s mutant (err %v):\n%s", name, err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutant/"+wantCase+" ") {
				t.Errorf("the %s mutant did not fail case %s:\n%s", name, wantCase, out)
			}
		})
	}
}

// TestMutant runs the suite against the mutant named in the environment.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestSuiteCatchesMutants")
	}
	drivertest.Run(t, mutantHarness(name, 300*time.Millisecond))
}

// TestWrapperPasses runs the suite against the mutants' wrapper with no
// mutation: what fails a mutant is its mutation.
func TestWrapperPasses(t *testing.T) {
	drivertest.Run(t, mutantHarness("none", 5*time.Second))
}

func mutantHarness(mutant string, timeout time.Duration) drivertest.Harness {
	open := func(t *testing.T, dir string) driver.Driver {
		d, err := sim.New(sim.Config{StateDir: dir, Persist: true})
		if err != nil {
			t.Fatal(err)
		}
		return &mutantDriver{Driver: d, mutant: mutant, dir: dir}
	}
	return drivertest.Harness{
		NewDriver: func(t *testing.T) driver.Driver { return open(t, t.TempDir()) },
		Reopen:    func(t *testing.T, d driver.Driver) driver.Driver { return open(t, d.(*mutantDriver).dir) },
		VMI: func(t *testing.T) *v1.VirtualMachineInstance {
			return &v1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm"}}
		},
		Timeout: timeout,
	}
}

type mutantDriver struct {
	*sim.Driver
	mutant string
	dir    string // the state directory, for Reopen
}

func (d *mutantDriver) wrap(g driver.Guest) driver.Guest {
	m := &mutantGuest{Guest: g, mutant: d.mutant}
	if d.mutant == "blocking" {
		m.ch = make(chan struct{})
	}
	return m
}

func (d *mutantDriver) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	if d.mutant == "startsUnpaused" {
		spec.Paused = false
	}
	if d.mutant == "startNotIdempotent" {
		if old, err := d.Driver.Recover(ctx, spec.ID); err == nil {
			_ = old.Kill(ctx)
			_ = old.Remove()
		}
	}
	g, err := d.Driver.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return d.wrap(g), nil
}

func (d *mutantDriver) Recover(ctx context.Context, id string) (driver.Guest, error) {
	g, err := d.Driver.Recover(ctx, id)
	if err != nil {
		if d.mutant == "recoverPlainError" {
			return nil, errors.New("no such guest")
		}
		return nil, err
	}
	return d.wrap(g), nil
}

type mutantGuest struct {
	driver.Guest
	mutant string
	ch     chan struct{} // "blocking": unbuffered, sent to after each change

	once  sync.Once
	quiet chan struct{} // "silent": never signalled
}

func (g *mutantGuest) Changed() <-chan struct{} {
	switch g.mutant {
	case "silent":
		g.once.Do(func() { g.quiet = make(chan struct{}, 1) })
		return g.quiet
	case "blocking":
		return g.ch
	}
	return g.Guest.Changed()
}

func (g *mutantGuest) changed(err error) error {
	if g.mutant == "blocking" {
		g.ch <- struct{}{}
	}
	return err
}

func (g *mutantGuest) Pause(ctx context.Context) error  { return g.changed(g.Guest.Pause(ctx)) }
func (g *mutantGuest) Resume(ctx context.Context) error { return g.changed(g.Guest.Resume(ctx)) }

func (g *mutantGuest) Kill(ctx context.Context) error {
	if g.mutant == "asyncKill" {
		if g.Guest.State().Phase == driver.Exited {
			return nil
		}
		time.AfterFunc(100*time.Millisecond, func() { _ = g.Guest.Kill(context.Background()) })
		return nil
	}
	return g.Guest.Kill(ctx)
}

func (g *mutantGuest) Shutdown(ctx context.Context) error {
	if g.mutant == "shutdownCrashes" {
		return g.Guest.(driver.Scripter).Act(ctx, "crash")
	}
	return g.Guest.Shutdown(ctx)
}

func (g *mutantGuest) Reboot(ctx context.Context) error {
	if g.mutant == "rebootStops" {
		return g.Guest.Kill(ctx)
	}
	return g.Guest.Reboot(ctx)
}

func (g *mutantGuest) Remove() error {
	switch g.mutant {
	case "removeKills":
		_ = g.Guest.Kill(context.Background())
	case "exitedRemoveFails":
		return errors.New("cannot remove")
	}
	return g.Guest.Remove()
}

func (g *mutantGuest) Close() error {
	if g.mutant == "forgetsClosed" {
		_ = g.Guest.Kill(context.Background())
		_ = g.Guest.Remove()
	}
	return g.Guest.Close()
}
