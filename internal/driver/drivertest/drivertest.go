// Package drivertest is the conformance suite of the driver contract: Run
// checks that a driver.Driver and its Guests behave as the node agent relies
// on. Every runtime runs it: the simulated one in its package tests, QEMU
// with real guests in make test.
//
// The suite waits for a guest by reading State on every Guest.Changed
// signal, with a deadline (Harness.Timeout), and never sleeps a fixed time,
// so it holds for a slow runtime (QEMU under TCG boots in seconds) as for
// an instant one. A driver that changes state without signalling Changed
// therefore fails it. Like the agent, it repeats ACPI requests (Shutdown,
// Reboot) every second until the guest acts on them, since a booting guest
// may not answer them yet.
//
// Usage, in a runtime's tests:
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Harness{
//			NewDriver: func(t *testing.T) driver.Driver { ... },
//			VMI:       func(t *testing.T) *v1.VirtualMachineInstance { ... },
//		})
//	}
package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
)

// Harness is what Run needs from a runtime.
type Harness struct {
	// NewDriver returns a Driver with no guests, on node state of its own,
	// for one test. It registers whatever clean-up the Driver needs with
	// t.Cleanup; the suite kills and removes the guests it started before
	// that runs.
	NewDriver func(t *testing.T) driver.Driver
	// Reopen returns a new Driver on the same node state as d, as a
	// restarted agent gets. Optional: without it the agent-restart case is
	// skipped.
	Reopen func(t *testing.T, d driver.Driver) driver.Driver
	// VMI returns a VMI whose guest boots and answers ACPI (power button
	// and reboot). The suite sets its namespace, name and UID.
	VMI func(t *testing.T) *v1.VirtualMachineInstance
	// Timeout bounds each wait for a guest (to boot, to power off, to
	// reboot) and each operation. Default 30s.
	Timeout time.Duration
}

// acpiRepeat is how often the suite repeats an ACPI request, as the agent
// does during a graceful stop.
const acpiRepeat = time.Second

// Run runs the conformance suite, one subtest per property.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.NewDriver == nil || h.VMI == nil {
		t.Fatal("drivertest: the Harness needs NewDriver and VMI")
	}
	if h.Timeout <= 0 {
		h.Timeout = 30 * time.Second
	}
	cases := []struct {
		name string
		f    func(e *env)
	}{
		{"StartReachesRunning", testStartReachesRunning},
		{"ShutdownExitsShutdown", testShutdown},
		{"KillExitsAtOnce", testKill},
		{"PauseResume", testPauseResume},
		{"RebootKeepsRunning", testReboot},
		{"StartPaused", testStartPaused},
		{"CloseRecover", testCloseRecover},
		{"AgentRestart", testAgentRestart},
		{"GuestsAndRemove", testGuests},
		{"RemoveRunningFails", testRemoveRunning},
		{"RecoverUnknown", testRecoverUnknown},
		{"StartIdempotent", testStartIdempotent},
		{"ChangedOnEveryChange", testChanged},
		{"ChangedNeverBlocks", testChangedNeverBlocks},
		{"ExitedGuest", testExitedGuest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &env{t: t, h: h}
			e.d = h.NewDriver(t)
			t.Cleanup(e.cleanup)
			c.f(e)
		})
	}
}

// env is one test's driver and the guests it started.
type env struct {
	t *testing.T
	h Harness
	d driver.Driver // the Driver the test uses now (Reopen replaces it)
	// ids are the guests started, handles every Guest obtained: cleanup
	// kills and removes them.
	ids     []string
	handles []driver.Guest
}

// result is what a driver call returned, or how it panicked.
type result[T any] struct {
	v        T
	err      error
	panicked any
	stack    []byte
}

// try makes one driver call with a context bounded by Timeout. It gives up
// (ok false) when the call has not returned a second after that: the suite
// never hangs on a driver that blocks.
func try[T any](e *env, f func(context.Context) (T, error)) (r result[T], ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	done := make(chan result[T], 1) // so that an abandoned call can still report and exit
	go func() {
		var r result[T]
		defer func() {
			if r.panicked = recover(); r.panicked != nil {
				r.stack = debug.Stack()
			}
			done <- r
		}()
		r.v, r.err = f(ctx)
	}()
	timer := time.NewTimer(e.h.Timeout + time.Second)
	defer timer.Stop()
	select {
	case r := <-done:
		return r, true
	case <-timer.C:
		return r, false
	}
}

// call makes one driver call (see try), and fails the test if it blocks or
// panics.
func call[T any](e *env, what string, f func(context.Context) (T, error)) (T, error) {
	e.t.Helper()
	r, ok := try(e, f)
	switch {
	case !ok:
		e.t.Fatalf("%s did not return within %s: the driver blocks", what, e.h.Timeout+time.Second)
	case r.panicked != nil:
		e.t.Fatalf("%s panicked: %v\n%s", what, r.panicked, r.stack)
	}
	return r.v, r.err
}

// op makes a call that returns only an error.
func (e *env) op(what string, f func(context.Context) error) error {
	e.t.Helper()
	_, err := call(e, what, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// must makes a call that must succeed.
func (e *env) must(what string, f func(context.Context) error) {
	e.t.Helper()
	if err := e.op(what, f); err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// noCtx adapts Close and Remove to op and must.
func noCtx(f func() error) func(context.Context) error {
	return func(context.Context) error { return f() }
}

// cleanup kills and removes whatever the test left, through the handles it
// holds and then through Recover. It gives up on calls that block.
func (e *env) cleanup() {
	quiet := func(f func(context.Context) error) {
		try(e, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	}
	release := func(g driver.Guest) {
		quiet(g.Kill)
		quiet(noCtx(g.Remove))
		quiet(noCtx(g.Close))
	}
	for _, g := range slices.Backward(e.handles) {
		release(g)
	}
	for _, id := range e.ids {
		if r, ok := try(e, func(ctx context.Context) (driver.Guest, error) { return e.d.Recover(ctx, id) }); ok && r.err == nil && r.v != nil {
			release(r.v)
		}
	}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "dt" + hex.EncodeToString(b) // short: a QEMU driver may put it in socket paths
}

// spec returns a fresh guest's spec.
func (e *env) spec(paused bool) driver.Spec {
	id := newID()
	vmi := e.h.VMI(e.t).DeepCopy()
	vmi.Namespace, vmi.Name, vmi.UID = "drivertest", "vm-"+id, types.UID(id)
	return driver.Spec{ID: id, Namespace: vmi.Namespace, Name: vmi.Name, VMI: vmi, Paused: paused}
}

// start starts a guest from spec.
func (e *env) start(spec driver.Spec) driver.Guest {
	e.t.Helper()
	if !slices.Contains(e.ids, spec.ID) {
		e.ids = append(e.ids, spec.ID)
	}
	g, err := call(e, "Start", func(ctx context.Context) (driver.Guest, error) { return e.d.Start(ctx, spec) })
	if err != nil {
		e.t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	e.handles = append(e.handles, g)
	if g.ID() != spec.ID {
		e.t.Fatalf("Start(%s) returned guest %q", spec.ID, g.ID())
	}
	return g
}

// running starts a guest and waits until it runs.
func (e *env) running() driver.Guest {
	e.t.Helper()
	g := e.start(e.spec(false))
	e.waitFor(g, "Running", isRunning)
	return g
}

func (e *env) recover(d driver.Driver, id string) driver.Guest {
	e.t.Helper()
	g, err := call(e, "Recover", func(ctx context.Context) (driver.Guest, error) { return d.Recover(ctx, id) })
	if err != nil {
		e.t.Fatalf("Recover(%s): %v", id, err)
	}
	e.handles = append(e.handles, g)
	if g.ID() != id {
		e.t.Fatalf("Recover(%s) returned guest %q", id, g.ID())
	}
	return g
}

// recoverErr returns the error of a Recover that should fail.
func (e *env) recoverErr(id string) error {
	e.t.Helper()
	g, err := call(e, "Recover", func(ctx context.Context) (driver.Guest, error) { return e.d.Recover(ctx, id) })
	if err == nil {
		e.handles = append(e.handles, g)
	}
	return err
}

func (e *env) guests(d driver.Driver) []string {
	e.t.Helper()
	ids, err := call(e, "Guests", d.Guests)
	if err != nil {
		e.t.Fatalf("Guests: %v", err)
	}
	return ids
}

func isRunning(st driver.State) bool { return st.Phase == driver.Running && !st.Paused }
func isPaused(st driver.State) bool  { return st.Phase == driver.Running && st.Paused }
func isExited(st driver.State) bool  { return st.Phase == driver.Exited }
func exitedWith(r driver.ExitReason) func(driver.State) bool {
	return func(st driver.State) bool { return st.Phase == driver.Exited && st.Exit != nil && st.Exit.Reason == r }
}

func fmtState(st driver.State) string {
	s := st.Phase.String()
	if st.Paused {
		s += " (paused)"
	}
	if st.Reboots > 0 {
		s += fmt.Sprintf(" after %d reboots", st.Reboots)
	}
	if st.Exit != nil {
		s += fmt.Sprintf(": %s at %s (%s)", st.Exit.Reason, st.Exit.At.Format(time.RFC3339Nano), st.Exit.Message)
	}
	return s
}

// waitFor waits until cond holds for g's state, reading it on each Changed
// signal. It fails at once if the guest has exited without cond holding
// (an exit is final).
func (e *env) waitFor(g driver.Guest, what string, cond func(driver.State) bool) driver.State {
	e.t.Helper()
	deadline := time.NewTimer(e.h.Timeout)
	defer deadline.Stop()
	for {
		st := g.State()
		if cond(st) {
			return st
		}
		if st.Phase == driver.Exited {
			e.t.Fatalf("guest %s: waiting for %s, it exited: %s", g.ID(), what, fmtState(st))
		}
		select {
		case <-g.Changed():
		case <-deadline.C:
			e.t.Fatalf("guest %s: not %s within %s (Changed not signalled, or never): %s", g.ID(), what, e.h.Timeout, fmtState(g.State()))
		}
	}
}

// drain consumes a pending Changed signal.
func drain(g driver.Guest) {
	select {
	case <-g.Changed():
	default:
	}
}

// expectChange does op and waits until cond holds, requiring a Changed
// signal after op. With repeat, op is an ACPI request that a guest may not
// answer yet: it is repeated every acpiRepeat until cond holds.
func (e *env) expectChange(g driver.Guest, what string, op func(context.Context) error, repeat bool, cond func(driver.State) bool) driver.State {
	e.t.Helper()
	drain(g)
	e.must(what, op)
	deadline := time.NewTimer(e.h.Timeout)
	defer deadline.Stop()
	var again <-chan time.Time
	if repeat {
		tick := time.NewTicker(acpiRepeat)
		defer tick.Stop()
		again = tick.C
	}
	signalled := false
	for {
		st := g.State()
		if cond(st) && signalled {
			return st
		}
		if !cond(st) && st.Phase == driver.Exited {
			e.t.Fatalf("guest %s: after %s, it exited: %s", g.ID(), what, fmtState(st))
		}
		if cond(st) {
			again = nil // done; only the signal is missing
		}
		select {
		case <-g.Changed():
			signalled = true
		case <-again:
			e.must(what, op)
		case <-deadline.C:
			if cond(g.State()) {
				e.t.Fatalf("guest %s: after %s its state changed (%s) but Changed was not signalled", g.ID(), what, fmtState(g.State()))
			}
			e.t.Fatalf("guest %s: %s had no effect within %s: %s", g.ID(), what, e.h.Timeout, fmtState(g.State()))
		}
	}
}

// checkExitAt checks that an exit is dated between since and now.
func (e *env) checkExitAt(st driver.State, since time.Time) {
	e.t.Helper()
	const slack = time.Second // clocks: wall vs monotonic, coarse timestamps
	at := st.Exit.At
	if at.IsZero() || at.Before(since.Add(-slack)) || at.After(time.Now().Add(slack)) {
		e.t.Errorf("exit at %s, want between %s and now", at.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
	}
}

func testStartReachesRunning(e *env) {
	info := e.d.Info()
	if info.Name == "" || info.Accelerator == "" {
		e.t.Errorf("Info() = %+v: Name and Accelerator must be set", info)
	}
	g := e.start(e.spec(false))
	if st := g.State(); st.Phase != driver.Booting && st.Phase != driver.Running {
		e.t.Fatalf("right after Start: %s, want Booting or Running", fmtState(st))
	}
	st := e.waitFor(g, "Running", isRunning)
	if st.Exit != nil || st.Reboots != 0 {
		e.t.Errorf("a freshly started guest: %s", fmtState(st))
	}
	if st.Accelerator == "" {
		e.t.Errorf("State().Accelerator is empty")
	}
}

func testShutdown(e *env) {
	g := e.running()
	since := time.Now()
	st := e.expectChange(g, "Shutdown", g.Shutdown, true, isExited)
	if !exitedWith(driver.ExitShutdown)(st) {
		e.t.Fatalf("after an ACPI shutdown: %s, want exit %s", fmtState(st), driver.ExitShutdown)
	}
	e.checkExitAt(st, since)
}

func testKill(e *env) {
	g := e.running()
	since := time.Now()
	drain(g)
	e.must("Kill", g.Kill)
	st := g.State() // at once: no waiting
	if !exitedWith(driver.ExitKilled)(st) {
		e.t.Fatalf("right after Kill: %s, want exit %s", fmtState(st), driver.ExitKilled)
	}
	e.checkExitAt(st, since)
	select {
	case <-g.Changed():
	case <-time.After(e.h.Timeout):
		e.t.Errorf("Kill changed the state without signalling Changed")
	}
}

func testPauseResume(e *env) {
	g := e.running()
	for range 2 {
		e.expectChange(g, "Pause", g.Pause, false, isPaused)
		e.expectChange(g, "Resume", g.Resume, false, isRunning)
	}
	if st := g.State(); st.Exit != nil || st.Reboots != 0 {
		e.t.Errorf("after pause and resume: %s", fmtState(st))
	}
}

func testReboot(e *env) {
	g := e.running()
	r0 := g.State().Reboots
	st := e.expectChange(g, "Reboot", g.Reboot, true, func(st driver.State) bool { return st.Reboots > r0 })
	if !isRunning(st) {
		e.t.Fatalf("after a reboot: %s, want Running", fmtState(st))
	}
	// Still the same, controllable guest.
	e.must("Kill", g.Kill)
	if st := g.State(); !exitedWith(driver.ExitKilled)(st) || st.Reboots < r0+1 {
		e.t.Errorf("killed after a reboot: %s", fmtState(st))
	}
}

func testStartPaused(e *env) {
	g := e.start(e.spec(true))
	e.waitFor(g, "Running and paused", isPaused)
	e.expectChange(g, "Resume", g.Resume, false, isRunning)
	e.expectChange(g, "Shutdown", g.Shutdown, true, exitedWith(driver.ExitShutdown))
}

func testCloseRecover(e *env) {
	g := e.running()
	id := g.ID()
	e.must("Close", noCtx(g.Close))
	e.must("second Close", noCtx(g.Close))
	if err := e.op("Pause through a closed Guest", g.Pause); err == nil {
		e.t.Errorf("Pause through a closed Guest succeeded; want an error")
	}
	if !slices.Contains(e.guests(e.d), id) {
		e.t.Fatalf("Guests after Close does not list %s", id)
	}
	g2 := e.recover(e.d, id)
	e.waitFor(g2, "Running after Recover", isRunning)
	e.expectChange(g2, "Pause", g2.Pause, false, isPaused)
	e.expectChange(g2, "Resume", g2.Resume, false, isRunning)
	e.must("Kill", g2.Kill)
	if st := g2.State(); !exitedWith(driver.ExitKilled)(st) {
		e.t.Fatalf("killed after Recover: %s", fmtState(st))
	}
	e.must("Remove", noCtx(g2.Remove))
	if slices.Contains(e.guests(e.d), id) {
		e.t.Errorf("Guests still lists %s after Remove", id)
	}
}

func testAgentRestart(e *env) {
	if e.h.Reopen == nil {
		e.t.Skip("the Harness has no Reopen")
	}
	g := e.running()
	other := e.running()
	e.must("Kill", other.Kill)
	e.must("Close", noCtx(g.Close))
	e.must("Close", noCtx(other.Close))
	e.d = e.h.Reopen(e.t, e.d)
	ids := e.guests(e.d)
	if !slices.Contains(ids, g.ID()) || !slices.Contains(ids, other.ID()) {
		e.t.Fatalf("Guests after a restart = %v, want %s and %s", ids, g.ID(), other.ID())
	}
	g2 := e.recover(e.d, g.ID())
	e.waitFor(g2, "Running after the restart", isRunning)
	e.expectChange(g2, "Pause", g2.Pause, false, isPaused)
	e.expectChange(g2, "Resume", g2.Resume, false, isRunning)
	o2 := e.recover(e.d, other.ID())
	if st := o2.State(); !exitedWith(driver.ExitKilled)(st) {
		e.t.Errorf("a guest killed before the restart, recovered: %s", fmtState(st))
	}
	e.must("Remove", noCtx(o2.Remove))
	e.expectChange(g2, "Shutdown", g2.Shutdown, true, exitedWith(driver.ExitShutdown))
	e.must("Remove", noCtx(g2.Remove))
	if ids := e.guests(e.d); slices.Contains(ids, g.ID()) || slices.Contains(ids, other.ID()) {
		e.t.Errorf("Guests after Remove = %v", ids)
	}
}

func testGuests(e *env) {
	if ids := e.guests(e.d); len(ids) != 0 {
		e.t.Fatalf("a new Driver has guests: %v", ids)
	}
	a := e.start(e.spec(false))
	b := e.start(e.spec(false))
	if ids := e.guests(e.d); !slices.Contains(ids, a.ID()) || !slices.Contains(ids, b.ID()) {
		e.t.Fatalf("Guests = %v, want %s and %s", ids, a.ID(), b.ID())
	}
	e.waitFor(a, "Running", isRunning)
	e.waitFor(b, "Running", isRunning)
	e.must("Kill", a.Kill)
	if ids := e.guests(e.d); !slices.Contains(ids, a.ID()) {
		e.t.Errorf("Guests = %v: an exited guest is listed until removed", ids)
	}
	e.must("Remove", noCtx(a.Remove))
	ids := e.guests(e.d)
	if slices.Contains(ids, a.ID()) || !slices.Contains(ids, b.ID()) {
		e.t.Fatalf("Guests after removing %s = %v, want only %s", a.ID(), ids, b.ID())
	}
	if err := e.recoverErr(a.ID()); !errors.Is(err, driver.ErrNotFound) {
		e.t.Errorf("Recover of a removed guest: %v, want ErrNotFound", err)
	}
	if st := b.State(); !isRunning(st) {
		e.t.Errorf("the other guest: %s", fmtState(st))
	}
}

func testRemoveRunning(e *env) {
	g := e.running()
	if err := e.op("Remove", noCtx(g.Remove)); err == nil {
		e.t.Fatal("Remove of a running guest succeeded")
	}
	if st := g.State(); !isRunning(st) {
		e.t.Fatalf("after a refused Remove: %s, want Running", fmtState(st))
	}
	if !slices.Contains(e.guests(e.d), g.ID()) {
		e.t.Fatalf("after a refused Remove, Guests does not list %s", g.ID())
	}
	e.expectChange(g, "Pause", g.Pause, false, isPaused)
	e.must("Kill", g.Kill)
	e.must("Remove", noCtx(g.Remove))
}

func testRecoverUnknown(e *env) {
	if err := e.recoverErr(newID()); !errors.Is(err, driver.ErrNotFound) {
		e.t.Fatalf("Recover of an unknown id: %v, want ErrNotFound", err)
	}
}

func testStartIdempotent(e *env) {
	spec := e.spec(false)
	g1 := e.start(spec)
	g2 := e.start(spec) // at once, while it may still boot
	n := 0
	for _, id := range e.guests(e.d) {
		if id == spec.ID {
			n++
		}
	}
	if n != 1 {
		e.t.Fatalf("after two Starts of one ID, Guests lists it %d times", n)
	}
	e.waitFor(g2, "Running", isRunning)
	if st := g1.State(); st.Phase == driver.Exited {
		e.t.Fatalf("the second Start ended the first guest: %s", fmtState(st))
	}
	// Pause it, and Start it once more: the guest must be the same, paused.
	e.expectChange(g2, "Pause", g2.Pause, false, isPaused)
	g3 := e.start(spec)
	if st := g3.State(); !isPaused(st) || st.Reboots != 0 {
		e.t.Fatalf("a third Start of a paused guest gave: %s, want the same paused guest", fmtState(st))
	}
	e.waitFor(g1, "paused (through another handle)", isPaused)
	e.must("Kill", g3.Kill)
	e.waitFor(g1, "Exited (killed through another handle)", exitedWith(driver.ExitKilled))
	e.waitFor(g2, "Exited (killed through another handle)", exitedWith(driver.ExitKilled))
}

func testChanged(e *env) {
	g := e.running()
	e.expectChange(g, "Pause", g.Pause, false, isPaused)
	e.expectChange(g, "Resume", g.Resume, false, isRunning)
	r0 := g.State().Reboots
	e.expectChange(g, "Reboot", g.Reboot, true, func(st driver.State) bool { return st.Reboots > r0 })
	e.waitFor(g, "Running after the reboot", isRunning)
	e.expectChange(g, "Kill", g.Kill, false, exitedWith(driver.ExitKilled))
}

func testChangedNeverBlocks(e *env) {
	g := e.running()
	if c := cap(g.Changed()); c != 1 {
		e.t.Errorf("cap(Changed()) = %d, want 1 (a coalescing signal)", c)
	}
	// Nobody reads Changed while the guest changes state many times: the
	// driver must not block on it.
	const cycles = 20
	e.must(fmt.Sprintf("%d pauses and resumes with nobody reading Changed", cycles), func(ctx context.Context) error {
		for range cycles {
			if err := errors.Join(g.Pause(ctx), g.Resume(ctx)); err != nil {
				return err
			}
		}
		return nil
	})
	e.waitFor(g, "Running and resumed", isRunning)
	// The changes left a signal behind.
	select {
	case <-g.Changed():
	case <-time.After(e.h.Timeout):
		e.t.Fatal("no Changed signal pending after many unread changes")
	}
}

func testExitedGuest(e *env) {
	g := e.running()
	e.must("Kill", g.Kill)
	want := g.State()
	if !exitedWith(driver.ExitKilled)(want) {
		e.t.Fatalf("after Kill: %s", fmtState(want))
	}
	same := func(when string) {
		e.t.Helper()
		st := g.State()
		if st.Phase != want.Phase || st.Paused || st.Exit == nil || st.Exit.Reason != want.Exit.Reason || !st.Exit.At.Equal(want.Exit.At) {
			e.t.Errorf("%s the exit changed: %s, was %s", when, fmtState(st), fmtState(want))
		}
	}
	ops := lifecycleOps(g)
	for _, op := range ops {
		_ = e.op(op.name+" on an exited guest", op.f)
		same("after " + op.name + ",")
	}
	e.must("Remove", noCtx(g.Remove))
	e.must("Remove again", noCtx(g.Remove))
	e.must("Close after Remove", noCtx(g.Close))
	for _, op := range ops {
		if err := e.op(op.name+" on a removed guest", op.f); err == nil {
			e.t.Errorf("%s on a removed guest succeeded; want an error", op.name)
		}
	}
	same("after Remove,")
	if slices.Contains(e.guests(e.d), g.ID()) {
		e.t.Errorf("Guests lists %s after its removal and later operations", g.ID())
	}
	if err := e.recoverErr(g.ID()); !errors.Is(err, driver.ErrNotFound) {
		e.t.Errorf("Recover after Remove: %v, want ErrNotFound", err)
	}
}

type namedOp struct {
	name string
	f    func(context.Context) error
}

// lifecycleOps are the guest's lifecycle operations, Act included when the
// guest is a Scripter.
func lifecycleOps(g driver.Guest) []namedOp {
	ops := []namedOp{{"Shutdown", g.Shutdown}, {"Kill", g.Kill}, {"Pause", g.Pause}, {"Resume", g.Resume}, {"Reboot", g.Reboot}}
	if s, ok := g.(driver.Scripter); ok {
		for _, a := range []string{"shutdown", "crash", "panic", "reboot", "hang"} {
			ops = append(ops, namedOp{"Act(" + a + ")", func(ctx context.Context) error { return s.Act(ctx, a) }})
		}
	}
	return ops
}
