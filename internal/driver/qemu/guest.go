package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/qmp"
)

// Timeouts of the driver's own steps.
const (
	// connectTimeout bounds reaching QMP after QEMU starts (it answers in
	// tens of milliseconds) or after an agent restart.
	connectTimeout = 20 * time.Second
	// quitTimeout bounds a QMP quit before the driver kills QEMU instead.
	quitTimeout = 5 * time.Second
)

var errReleased = errors.New("qemu: the guest was closed or removed; Recover it to control it again")

// guest is one QEMU process and the driver's hold on it.
//
// Goroutines: watch (the process: its end decides the exit), events (QMP
// events) and the serial reader. All three are owned by the guest and
// stop on Close, Remove, or once the guest has exited.
type guest struct {
	d   *Driver
	id  string
	dir string
	rec record

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	changed chan struct{}
	// gone is closed once the process has ended and State says Exited.
	gone chan struct{}

	mon    *qmp.Client
	pidfd  int
	serial *serialMux

	mu       sync.Mutex
	st       driver.State
	pending  *driver.Exit // the outcome, known before the process has ended
	released bool
}

func newGuest(d *Driver, dir string, rec record) *guest {
	ctx, cancel := context.WithCancel(context.Background())
	return &guest{
		d: d, id: rec.ID, dir: dir, rec: rec, ctx: ctx, cancel: cancel,
		changed: make(chan struct{}, 1), gone: make(chan struct{}), pidfd: -1,
		st: driver.State{Phase: driver.Booting, Interfaces: rec.Interfaces, Ports: rec.Ports, Accelerator: rec.Accel},
	}
}

// start launches QEMU for a new guest. On failure nothing is left behind.
func (d *Driver) start(ctx context.Context, spec driver.Spec, dir string) (_ *guest, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := prepareVolumes(spec, dir); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		plan, err := BuildPlan(spec, Env{
			Images: fsImages{d.cfg.ImageDir}, Accel: d.accel, SeedFile: filepath.Join(dir, seedFile),
			ForwardAddress: d.cfg.ForwardAddress, PickPort: d.pickPort,
		})
		if err != nil {
			return nil, err
		}
		args, err := plan.Args()
		if err != nil {
			return nil, &driver.StartError{Reason: ReasonUnsupported, Message: err.Error()}
		}
		g, err := d.launch(ctx, spec, dir, plan, args)
		var se *driver.StartError
		if errors.As(err, &se) && se.Reason == ReasonPortsFailed && attempt < 3 {
			// Another process took a picked port first: pick again.
			continue
		}
		return g, err
	}
}

// launch runs QEMU, connects to it and lets the guest run.
func (d *Driver) launch(ctx context.Context, spec driver.Spec, dir string, plan Plan, args []string) (*guest, error) {
	logf, err := os.OpenFile(filepath.Join(dir, qemuLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	cmd := newCommand(d.binary, dir, args, logf)
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, &driver.StartError{Reason: ReasonQEMUNotFound, Message: fmt.Sprintf("starting %s: %v", d.binary, err)}
	}
	// The reaper: QEMU is this process's child until this process ends,
	// so something must wait for it. It ends when QEMU does.
	reaped := make(chan struct{})
	go func() { _ = cmd.Wait(); close(reaped) }()

	pid := cmd.Process.Pid
	startTime, _, err := procStart(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		<-reaped
		return nil, &driver.StartError{Reason: ReasonQEMURefused, Message: "QEMU exited at once: " + logTail(dir)}
	}
	rec := record{
		ID: spec.ID, Namespace: spec.Namespace, Name: spec.Name, PID: pid, StartTime: startTime,
		Paused: spec.Paused, Accel: plan.Accel, Args: args, Started: time.Now().UTC(),
	}
	for _, n := range plan.NICs {
		rec.Interfaces = append(rec.Interfaces, interfaceStatus(n))
		rec.Ports = append(rec.Ports, portStatus(n)...)
	}
	g := newGuest(d, dir, rec)
	fail := func(reason, msg string) (*guest, error) {
		g.teardown()
		_ = cmd.Process.Kill()
		<-reaped
		if reason == ReasonQEMURefused && isPortClash(dir) {
			reason = ReasonPortsFailed
		}
		return nil, &driver.StartError{Reason: reason, Message: msg}
	}
	// The record goes to disk before anything else can fail, so that an
	// agent that dies now still finds (and ends) this QEMU.
	if err := writeJSON(filepath.Join(dir, recordFile), rec); err != nil {
		return fail(ReasonQEMURefused, fmt.Sprintf("writing the guest record: %v", err))
	}
	if g.pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
		return fail(ReasonQEMURefused, "QEMU exited at once: "+logTail(dir))
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	go func() {
		select {
		case <-reaped:
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := g.connect(cctx); err != nil {
		select {
		case <-reaped:
			return fail(ReasonQEMURefused, "QEMU refused to start the guest: "+logTail(dir))
		default:
		}
		return fail(ReasonQEMURefused, fmt.Sprintf("connecting to QEMU: %v", err))
	}
	if !spec.Paused {
		if err := g.mon.Cont(cctx); err != nil {
			return fail(ReasonQEMURefused, fmt.Sprintf("starting the vCPUs: %v", err))
		}
	}
	g.mu.Lock()
	g.st.Phase, g.st.Paused = driver.Running, spec.Paused
	g.mu.Unlock()
	g.run()
	d.hold(g)
	d.cfg.Log.Info("guest started", "guest", g.id, "vmi", spec.Namespace+"/"+spec.Name, "pid", pid, "accel", plan.Accel)
	return g, nil
}

// recover takes back a guest from its record.
func (d *Driver) recover(ctx context.Context, dir string, rec record) (*guest, error) {
	g := newGuest(d, dir, rec)
	exit, err := readExit(dir)
	if err != nil {
		return nil, err
	}
	if exit != nil {
		g.exited(exit)
		d.hold(g)
		return g, nil
	}
	gone := &driver.Exit{Reason: driver.ExitCrashed, Message: "QEMU ended while the node agent was away; how the guest ended is unknown"}
	start, zombie, err := procStart(rec.PID)
	if err != nil || zombie || start != rec.StartTime {
		g.pending = gone
		g.finish()
		d.hold(g)
		return g, nil
	}
	if g.pidfd, err = unix.PidfdOpen(rec.PID, 0); err != nil {
		g.pending = gone
		g.finish()
		d.hold(g)
		return g, nil
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := g.connect(cctx); err != nil {
		// A guest the node cannot control must not run on.
		g.setPending(driver.ExitCrashed, fmt.Sprintf("the node agent could not reconnect to QEMU: %v", err))
		_ = unix.PidfdSendSignal(g.pidfd, unix.SIGKILL, nil, 0)
		g.st.Phase = driver.Running
		g.watchOnly()
		d.hold(g)
		return g, nil
	}
	status, err := g.mon.Status(cctx)
	if err != nil {
		g.teardown()
		return nil, fmt.Errorf("querying QEMU: %w", err)
	}
	g.st.Phase = driver.Running
	switch status.Status {
	case "shutdown":
		g.setPending(driver.ExitShutdown, "the guest powered off")
	case "guest-panicked":
		g.setPending(driver.ExitPanicked, "the guest kernel panicked")
	case "prelaunch":
		// The agent died between starting QEMU and letting the guest run.
		if !rec.Paused {
			if err := g.mon.Cont(cctx); err != nil {
				g.teardown()
				return nil, fmt.Errorf("starting the vCPUs: %w", err)
			}
		} else {
			g.st.Paused = true
		}
	case "running":
	case "paused", "suspended":
		g.st.Paused = true
	default:
		g.setPending(driver.ExitCrashed, "QEMU is in state "+status.Status)
	}
	g.run()
	if g.pending != nil {
		g.endProcess()
	}
	d.hold(g)
	return g, nil
}

// connect dials QMP and the serial console.
func (g *guest) connect(ctx context.Context) error {
	mon, err := dialIn(ctx, g.dir, qmpSocket, qmp.Dial)
	if err != nil {
		return fmt.Errorf("QMP: %w", err)
	}
	g.mon = mon
	conn, err := dialIn(ctx, g.dir, serialSocket, func(ctx context.Context, path string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", path)
	})
	if err != nil {
		return fmt.Errorf("serial console: %w", err)
	}
	s, err := newSerialMux(conn, filepath.Join(g.dir, consoleLog))
	if err != nil {
		conn.Close()
		return err
	}
	g.serial = s
	return nil
}

// run starts the guest's goroutines.
func (g *guest) run() {
	g.watchOnly()
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.events() }()
	if g.serial != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.serial.run(g.ctx) }()
	}
}

// watchOnly starts the process watcher alone.
func (g *guest) watchOnly() {
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.watch() }()
}

// watch waits for the QEMU process to end, and then settles the exit.
func (g *guest) watch() {
	fds := []unix.PollFd{{Fd: int32(g.pidfd), Events: unix.POLLIN}}
	for g.ctx.Err() == nil {
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			g.d.cfg.Log.Error("watching QEMU", "guest", g.id, "err", err)
			return
		}
		if n > 0 {
			g.finish()
			return
		}
	}
}

// events applies QMP events to the state.
func (g *guest) events() {
	evs := g.mon.Events()
	for {
		select {
		case <-g.ctx.Done():
			return
		case ev, ok := <-evs:
			if !ok {
				return
			}
			g.event(ev)
		}
	}
}

func (g *guest) event(ev qmp.Event) {
	switch ev.Name {
	case "SHUTDOWN":
		var s qmp.ShutdownEvent
		_ = ev.Decode(&s)
		switch {
		case s.Reason == "host-qmp-quit":
			return // the driver's own quit
		case s.Reason == "guest-panic":
			g.setPending(driver.ExitPanicked, "the guest kernel panicked")
		case s.Guest:
			g.setPending(driver.ExitShutdown, "the guest powered off")
		default:
			g.setPending(driver.ExitCrashed, "QEMU was stopped on the host ("+s.Reason+")")
		}
		g.endProcess()
	case "GUEST_PANICKED":
		g.setPending(driver.ExitPanicked, "the guest kernel panicked")
		g.endProcess()
	case "RESET":
		var r qmp.ResetEvent
		_ = ev.Decode(&r)
		if r.Guest {
			g.update(func(st *driver.State) { st.Reboots++ })
		}
	case "STOP", "RESUME":
		// STOP also comes with a power-off or a panic (QEMU pauses then):
		// ask QEMU what it is doing rather than trusting the event.
		ctx, cancel := context.WithTimeout(g.ctx, quitTimeout)
		st, err := g.mon.Status(ctx)
		cancel()
		if err == nil {
			paused := st.Status == "paused"
			g.update(func(s *driver.State) { s.Paused = paused })
		}
	}
}

// setPending records the outcome, first one wins.
func (g *guest) setPending(reason driver.ExitReason, msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = &driver.Exit{Reason: reason, Message: msg, At: time.Now().UTC()}
	}
}

// endProcess asks QEMU to quit, and kills it if it does not.
func (g *guest) endProcess() {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ctx, cancel := context.WithTimeout(g.ctx, quitTimeout)
		defer cancel()
		if err := g.mon.Quit(ctx); err == nil {
			select {
			case <-g.gone:
				return
			case <-ctx.Done():
			}
		}
		if g.ctx.Err() == nil {
			_ = unix.PidfdSendSignal(g.pidfd, unix.SIGKILL, nil, 0)
		}
	}()
}

// finish settles the exit once the process has ended.
func (g *guest) finish() {
	g.mu.Lock()
	exit := g.pending
	if exit == nil {
		// The watchdog records its kill before it kills (FenceAll).
		if e, err := readExit(g.dir); err == nil && e != nil {
			exit = e
		}
	}
	if exit == nil {
		exit = &driver.Exit{Reason: driver.ExitCrashed, Message: "QEMU exited unexpectedly: " + logTail(g.dir)}
	}
	if exit.At.IsZero() {
		exit.At = time.Now().UTC()
	}
	g.mu.Unlock()
	if err := writeJSON(filepath.Join(g.dir, exitFile), exit); err != nil {
		g.d.cfg.Log.Error("recording a guest's exit", "guest", g.id, "err", err)
	}
	g.exited(exit)
}

// exited moves the state to Exited and lets the goroutines go.
func (g *guest) exited(exit *driver.Exit) {
	g.update(func(st *driver.State) {
		st.Phase, st.Paused, st.Exit = driver.Exited, false, exit
	})
	g.mu.Lock()
	select {
	case <-g.gone:
	default:
		close(g.gone)
	}
	g.mu.Unlock()
	g.cancel()
}

func (g *guest) update(f func(*driver.State)) {
	g.mu.Lock()
	if g.st.Phase == driver.Exited {
		g.mu.Unlock()
		return
	}
	f(&g.st)
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// ID is the VMI's UID.
func (g *guest) ID() string { return g.id }

// State returns the current state.
func (g *guest) State() driver.State {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.st
	if st.Exit != nil {
		e := *st.Exit
		st.Exit = &e
	}
	return st
}

// Changed is signalled on every state change.
func (g *guest) Changed() <-chan struct{} { return g.changed }

// live fails unless the guest is held and has not exited.
func (g *guest) live() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.released:
		return errReleased
	case g.st.Phase == driver.Exited:
		return fmt.Errorf("qemu: guest %s has exited (%s)", g.id, g.st.Exit.Reason)
	case g.mon == nil:
		return fmt.Errorf("qemu: guest %s is not connected", g.id)
	}
	return nil
}

// Shutdown presses the ACPI power button.
func (g *guest) Shutdown(ctx context.Context) error {
	if err := g.live(); err != nil {
		return err
	}
	return g.mon.SystemPowerdown(ctx)
}

// Kill ends QEMU at once and returns when the guest has exited.
func (g *guest) Kill(ctx context.Context) error {
	g.mu.Lock()
	released, exited := g.released, g.st.Phase == driver.Exited
	g.mu.Unlock()
	if released {
		return errReleased
	}
	if exited {
		return nil
	}
	g.setPending(driver.ExitKilled, "the guest was killed")
	if err := unix.PidfdSendSignal(g.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("qemu: killing guest %s: %w", g.id, err)
	}
	select {
	case <-g.gone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: waiting for guest %s to end: %w", g.id, ctx.Err())
	}
}

// Pause stops the vCPUs.
func (g *guest) Pause(ctx context.Context) error {
	if err := g.live(); err != nil {
		return err
	}
	if err := g.mon.Stop(ctx); err != nil {
		return fmt.Errorf("qemu: pausing guest %s: %w", g.id, err)
	}
	g.update(func(st *driver.State) { st.Paused = true })
	return nil
}

// Resume restarts the vCPUs.
func (g *guest) Resume(ctx context.Context) error {
	if err := g.live(); err != nil {
		return err
	}
	if err := g.mon.Cont(ctx); err != nil {
		return fmt.Errorf("qemu: resuming guest %s: %w", g.id, err)
	}
	g.update(func(st *driver.State) { st.Paused = false })
	return nil
}

// Reboot presses ctrl-alt-delete, which the guest's init takes as a
// request to reboot.
func (g *guest) Reboot(ctx context.Context) error {
	if err := g.live(); err != nil {
		return err
	}
	return g.mon.SendCtrlAltDel(ctx)
}

// Close lets go of the guest without stopping it.
func (g *guest) Close() error {
	g.mu.Lock()
	if g.released {
		g.mu.Unlock()
		return nil
	}
	g.released = true
	g.mu.Unlock()
	g.teardown()
	g.d.release(g)
	return nil
}

// Remove deletes an exited guest's state.
func (g *guest) Remove() error {
	g.mu.Lock()
	released, exited := g.released, g.st.Phase == driver.Exited
	g.mu.Unlock()
	if released {
		if _, err := os.Stat(g.dir); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return errReleased
	}
	if !exited {
		return fmt.Errorf("qemu: guest %s still runs: kill it before removing it", g.id)
	}
	g.mu.Lock()
	g.released = true
	g.mu.Unlock()
	g.teardown()
	g.d.release(g)
	g.d.keepLog(g.id, filepath.Join(g.dir, consoleLog))
	if err := os.RemoveAll(g.dir); err != nil {
		return fmt.Errorf("qemu: removing guest %s: %w", g.id, err)
	}
	return nil
}

// teardown stops the goroutines and closes the connections.
func (g *guest) teardown() {
	g.cancel()
	if g.mon != nil {
		g.mon.Close()
	}
	if g.serial != nil {
		g.serial.close()
	}
	g.wg.Wait()
	if g.serial != nil {
		g.serial.closeLog()
	}
	if g.pidfd >= 0 {
		unix.Close(g.pidfd)
		g.pidfd = -1
	}
}

// logTail returns the end of QEMU's own log, for error messages.
func logTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, qemuLog))
	if err != nil || len(b) == 0 {
		return "(QEMU printed nothing)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}
