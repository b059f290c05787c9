package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/driver"
)

// acpiRepeat is how often a graceful stop presses the power button again.
const acpiRepeat = time.Second

// runner owns one VMI's guest on this node. Its goroutine (run) is the only
// one that touches the guest and the fields below "owned by run".
type runner struct {
	a   *Agent
	id  string
	log *slog.Logger

	mu     sync.Mutex // guards latest, gone and shown
	latest *v1.VirtualMachineInstance
	gone   bool
	// shown is the guest as others (the console endpoint) may see it: a
	// copy of guest, refreshed after every step.
	shown driver.Guest
	// notify wakes run when latest changes; size 1, so updates coalesce and
	// the informer never blocks on a busy runner.
	notify chan struct{}

	// Owned by run.
	guest     driver.Guest
	timer     *time.Timer
	acted     map[string]bool // scripted sim actions already handed over
	done      map[string]bool // action request ids carried out, to remove from the VMI
	stopped   bool            // a graceful stop has been started (ACPI sent at least once)
	stopSince time.Time       // when this runner first saw the VMI being deleted
	killed    bool            // this runner killed the guest
	fenced    bool            // the guest was killed because the node fenced itself
}

func newRunner(a *Agent, id string, adopted driver.Guest) *runner {
	return &runner{a: a, id: id, log: a.log.With("vmi", id), notify: make(chan struct{}, 1),
		guest: adopted, acted: map[string]bool{}, done: map[string]bool{}}
}

// update hands the runner the latest VMI (nil: it left this node).
func (r *runner) update(vmi *v1.VirtualMachineInstance) {
	r.mu.Lock()
	if vmi == nil {
		r.gone = true
	} else if r.latest == nil || newer(vmi, r.latest) {
		r.latest = vmi
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// newer reports whether a is at least as new as b (true when their order
// is unknown).
func newer(a, b *v1.VirtualMachineInstance) bool {
	cmp, ok := v1.CompareResourceVersions(a.ResourceVersion, b.ResourceVersion)
	return !ok || cmp >= 0
}

func (r *runner) run(ctx context.Context) {
	defer func() {
		if r.timer != nil {
			r.timer.Stop()
		}
	}()
	for {
		r.mu.Lock()
		vmi, gone := r.latest, r.gone
		r.mu.Unlock()
		done := r.step(ctx, vmi, gone)
		r.mu.Lock()
		r.shown = r.guest
		r.mu.Unlock()
		if done {
			return
		}
		var guestCh <-chan struct{}
		if r.guest != nil {
			guestCh = r.guest.Changed()
		}
		var timerCh <-chan time.Time
		if r.timer != nil {
			timerCh = r.timer.C
		}
		select {
		case <-ctx.Done():
			if r.guest != nil {
				_ = r.guest.Close() // the guest outlives the agent
			}
			return
		case <-r.notify:
		case <-guestCh:
		case <-timerCh:
			r.timer = nil
		}
	}
}

// wakeIn arms the runner's timer to fire within d.
func (r *runner) wakeIn(d time.Duration) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer = time.NewTimer(max(d, 0))
}

// step converges once; it returns true when the runner has nothing left to do.
func (r *runner) step(ctx context.Context, vmi *v1.VirtualMachineInstance, gone bool) bool {
	if vmi == nil && !gone {
		return false // not handed its VMI yet
	}
	if gone {
		if r.guest != nil {
			if r.guest.State().Phase != driver.Exited {
				r.log.Warn("the VMI left this node while its guest ran: killing the guest")
			}
			r.discardGuest(ctx)
		}
		return true
	}
	if vmi.Status.NodeName != r.a.cfg.Node {
		r.log.Debug("the VMI is bound elsewhere now", "node", vmi.Status.NodeName)
		r.discardGuest(ctx)
		return true
	}
	if vmi.Status.Phase.IsFinal() {
		if r.guest != nil {
			if r.guest.State().Phase != driver.Exited {
				r.log.Warn("the VMI is final while its guest runs: killing the guest", "phase", vmi.Status.Phase, "reason", vmi.Status.Reason)
			}
			r.discardGuest(ctx)
		}
		if err := r.removeFinalizer(ctx, vmi); err != nil {
			r.retry(err)
			return false
		}
		return true
	}
	if r.a.fenced() {
		// The node may be declared lost at any moment: no guest runs and
		// none starts until the lease is renewed (fence.go).
		if r.guest != nil && r.guest.State().Phase != driver.Exited {
			r.log.Warn("the node is fenced: killing the guest")
			r.fenced = true
			if err := r.guest.Kill(ctx); err != nil {
				r.log.Error("fencing: killing the guest failed", "err", err)
			}
		}
		if r.guest == nil {
			return false
		}
	}
	now := r.a.cfg.Now()
	deleting := vmi.DeletionTimestamp != nil
	if r.guest == nil {
		switch {
		case deleting:
			return r.finish(ctx, vmi, v1.Failed, v1.ReasonDeletedBeforeStart, "the VMI was deleted before its guest started", nil)
		case vmi.Status.Phase == v1.Running || vmi.Status.Phase == v1.Scheduled:
			return r.finish(ctx, vmi, v1.Failed, v1.ReasonVanished,
				"the guest of this VMI is gone: the node agent found no trace of it (was the node restarted?)", nil)
		}
		g, err := r.a.cfg.Driver.Start(ctx, driver.Spec{ID: r.id, Namespace: vmi.Namespace, Name: vmi.Name, VMI: vmi,
			Paused: vmi.Spec.StartStrategy != nil && *vmi.Spec.StartStrategy == v1.StartStrategyPaused})
		if err != nil {
			reason, msg := v1.ReasonStartFailed, err.Error()
			var se *driver.StartError
			if errors.As(err, &se) {
				reason, msg = se.Reason, se.Message
			}
			var cond *v1.VirtualMachineInstanceCondition
			if reason == v1.ReasonDiskNotFound {
				cond = &v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstanceSynchronized, Status: metav1.ConditionFalse, Reason: v1.DiskNotFoundReason, Message: msg}
			}
			r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, reason, "%s", msg)
			return r.finish(ctx, vmi, v1.Failed, reason, msg, cond)
		}
		r.guest = g
		r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, "Created", "the guest was started on node %s", r.a.cfg.Node)
	}
	gs := r.guest.State()
	if deleting && gs.Phase != driver.Exited {
		gs = r.stop(ctx, vmi, now)
	}
	if !deleting && gs.Phase == driver.Running {
		gs = r.act(ctx, vmi)
	}
	desired := r.desiredStatus(vmi, gs, now)
	if !equality.Semantic.DeepEqual(desired, &vmi.Status) {
		next := vmi.DeepCopy()
		next.Status = *desired
		updated, err := r.a.cfg.Client.VirtualMachineInstances(vmi.Namespace).UpdateStatus(ctx, next, client.WriteOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return false // the DELETED event follows
			}
			r.retry(err)
			return false
		}
		r.update(updated)
		if desired.Phase != vmi.Status.Phase {
			r.phaseEvent(updated)
		}
	}
	return false
}

func (r *runner) retry(err error) {
	if !apierrors.IsConflict(err) {
		r.log.Warn("updating the VMI failed; retrying", "err", err)
	}
	r.wakeIn(200 * time.Millisecond)
}

// discardGuest kills the guest if it still runs and forgets it.
func (r *runner) discardGuest(ctx context.Context) {
	if r.guest == nil {
		return
	}
	if r.guest.State().Phase != driver.Exited {
		_ = r.guest.Kill(ctx)
	}
	if err := r.guest.Remove(); err != nil {
		r.log.Warn("removing the guest's state failed", "err", err)
	}
	_ = r.guest.Close()
	r.guest = nil
}

// gracePeriod is the time the guest gets to power off: the shorter of the
// deletion's grace period and the VMI's own (default 30s).
func gracePeriod(vmi *v1.VirtualMachineInstance) time.Duration {
	g := vmi.GracePeriodSeconds()
	if d := vmi.DeletionGracePeriodSeconds; d != nil && *d < g {
		g = *d
	}
	return time.Duration(max(g, 0)) * time.Second
}

// stopDeadline is when a deleted VMI's guest is killed: a full grace
// period after this runner first saw the deletion. (An agent restart during
// a stop therefore starts the grace period again; the deletion timestamp,
// stored to the second, would cut it short by up to a second.)
func (r *runner) stopDeadline(vmi *v1.VirtualMachineInstance) time.Time {
	if r.stopSince.IsZero() {
		return vmi.DeletionTimestamp.Add(gracePeriod(vmi) + time.Second)
	}
	return r.stopSince.Add(gracePeriod(vmi))
}

// stop drives a graceful stop: ACPI every second until the guest powers
// off or the grace period ends, then a kill. Grace 0 kills at once.
func (r *runner) stop(ctx context.Context, vmi *v1.VirtualMachineInstance, now time.Time) driver.State {
	if r.stopSince.IsZero() {
		r.stopSince = now
	}
	grace := gracePeriod(vmi)
	deadline := r.stopDeadline(vmi)
	switch {
	case grace == 0 || !now.Before(deadline):
		r.log.Info("killing the guest", "grace", grace)
		if err := r.guest.Kill(ctx); err != nil {
			r.log.Error("killing the guest failed", "err", err)
			r.wakeIn(acpiRepeat)
		}
		r.killed = true
	default:
		if !r.stopped {
			r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, "ShuttingDown", "asking the guest to power off (grace period %s)", grace)
		}
		r.stopped = true
		if r.guest.State().Paused {
			// A paused guest cannot see the power button: let it run so
			// that it can power off within its grace period.
			if err := r.guest.Resume(ctx); err != nil {
				r.log.Warn("resuming the paused guest for its shutdown failed", "err", err)
			}
		}
		if err := r.guest.Shutdown(ctx); err != nil {
			r.log.Warn("the ACPI shutdown request failed", "err", err)
		}
		r.wakeIn(min(acpiRepeat, deadline.Sub(now)))
	}
	return r.guest.State()
}

// act carries out the head of the VMI's action requests and a scripted
// sim action.
func (r *runner) act(ctx context.Context, vmi *v1.VirtualMachineInstance) driver.State {
	for _, req := range vmi.Status.ActionRequests {
		if r.done[req.ID] {
			continue
		}
		var err error
		switch req.Action {
		case v1.VMIActionPause:
			err = r.guest.Pause(ctx)
		case v1.VMIActionUnpause:
			err = r.guest.Resume(ctx)
		case v1.VMIActionSoftReboot:
			err = r.guest.Reboot(ctx)
		default:
			err = fmt.Errorf("unknown action %q", req.Action)
		}
		r.done[req.ID] = true
		if err != nil {
			r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, "Failed"+string(req.Action), "%s failed: %v", req.Action, err)
		} else {
			r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, string(req.Action), "%s done", req.Action)
		}
	}
	if action := vmi.Annotations[driver.ActionAnnotation]; action != "" && !r.acted[action] {
		if s, ok := r.guest.(driver.Scripter); ok {
			r.acted[action] = true
			if err := s.Act(ctx, action); err != nil {
				r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, "ScriptedActionFailed", "%v", err)
			}
		}
	}
	return r.guest.State()
}

// finish writes a final phase (the guest never ran, or is gone).
func (r *runner) finish(ctx context.Context, vmi *v1.VirtualMachineInstance, phase v1.VirtualMachineInstancePhase, reason, msg string, cond *v1.VirtualMachineInstanceCondition) bool {
	next := vmi.DeepCopy()
	now := metav1.NewTime(r.a.cfg.Now()).Rfc3339Copy()
	next.Status.SetPhase(phase, now)
	next.Status.Reason, next.Status.Message = reason, msg
	next.Status.SetCondition(v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionFalse, Reason: v1.GuestNotRunningReason, Message: "the guest is not running"}, now)
	if cond != nil {
		next.Status.SetCondition(*cond, now)
	}
	updated, err := r.a.cfg.Client.VirtualMachineInstances(vmi.Namespace).UpdateStatus(ctx, next, client.WriteOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			r.retry(err)
		}
		return false
	}
	r.update(updated)
	r.phaseEvent(updated)
	return false
}

// outcome maps how the guest ended to the VMI's final phase and reason.
func (r *runner) outcome(vmi *v1.VirtualMachineInstance, exit *driver.Exit) (v1.VirtualMachineInstancePhase, string, string) {
	deleting := vmi.DeletionTimestamp != nil
	switch exit.Reason {
	case driver.ExitShutdown:
		if deleting {
			return v1.Succeeded, v1.ReasonStopped, "the guest powered off within its grace period"
		}
		return v1.Succeeded, v1.ReasonGuestShutdown, "the guest powered off"
	case driver.ExitKilled:
		switch {
		case deleting && gracePeriod(vmi) == 0:
			return v1.Succeeded, v1.ReasonStopped, "the guest was stopped at once (grace period 0)"
		case deleting && (r.killed || !r.a.cfg.Now().Before(r.stopDeadline(vmi))):
			return v1.Failed, v1.ReasonGracePeriodExpired, fmt.Sprintf("the guest did not power off within its grace period of %s and was killed", gracePeriod(vmi))
		}
		if r.fenced {
			return v1.Failed, v1.ReasonNodeLost, fmt.Sprintf("the node agent had no heartbeat acknowledged for %s and killed the guest (self-fencing)", r.a.cfg.FenceAfter)
		}
		return v1.Failed, v1.ReasonCrashed, "the guest's hypervisor was killed"
	case driver.ExitPanicked:
		return v1.Failed, v1.ReasonGuestPanicked, orDefault(exit.Message, "the guest kernel panicked")
	case driver.ExitFenced:
		return v1.Failed, v1.ReasonNodeLost, orDefault(exit.Message, "the node's watchdog killed the guest")
	case driver.ExitStartFailed:
		return v1.Failed, v1.ReasonStartFailed, orDefault(exit.Message, "the guest failed to start")
	default:
		return v1.Failed, v1.ReasonCrashed, orDefault(exit.Message, "the guest's hypervisor crashed")
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// desiredStatus is the VMI status that reports the guest's state.
func (r *runner) desiredStatus(vmi *v1.VirtualMachineInstance, gs driver.State, nowT time.Time) *v1.VirtualMachineInstanceStatus {
	st := vmi.Status.DeepCopy()
	now := metav1.NewTime(nowT).Rfc3339Copy()
	switch gs.Phase {
	case driver.Booting:
		st.SetPhase(v1.Scheduled, now)
		st.SetCondition(v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionFalse, Reason: v1.GuestNotRunningReason, Message: "the guest is booting"}, now)
	case driver.Running:
		if st.Phase != v1.Scheduled && !hasPhase(st, v1.Scheduled) {
			st.SetPhase(v1.Scheduled, now)
		}
		st.SetPhase(v1.Running, now)
		st.SetCondition(v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue}, now)
		st.Reason, st.Message = "", ""
	case driver.Exited:
		phase, reason, msg := r.outcome(vmi, gs.Exit)
		st.SetPhase(phase, now)
		st.Reason, st.Message = reason, msg
		st.SetCondition(v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionFalse, Reason: v1.GuestNotRunningReason, Message: "the guest is not running"}, now)
	}
	if gs.Phase == driver.Running && gs.Paused {
		st.SetCondition(v1.VirtualMachineInstanceCondition{Type: v1.VirtualMachineInstancePaused, Status: metav1.ConditionTrue, Reason: v1.PausedByUserReason, Message: "VMI was paused by user"}, now)
	} else {
		removeCondition(st, v1.VirtualMachineInstancePaused)
	}
	if len(gs.Interfaces) > 0 {
		st.Interfaces = gs.Interfaces
	}
	if len(gs.Ports) > 0 {
		st.PortForwards = gs.Ports
	}
	if gs.Accelerator != "" {
		st.Accelerator = gs.Accelerator
	}
	if len(r.done) > 0 {
		st.ActionRequests = slices.DeleteFunc(st.ActionRequests, func(a v1.VirtualMachineInstanceActionRequest) bool { return r.done[a.ID] })
		if len(st.ActionRequests) == 0 {
			st.ActionRequests = nil
		}
	}
	return st
}

func hasPhase(st *v1.VirtualMachineInstanceStatus, p v1.VirtualMachineInstancePhase) bool {
	for _, t := range st.PhaseTransitionTimestamps {
		if t.Phase == p {
			return true
		}
	}
	return false
}

func removeCondition(st *v1.VirtualMachineInstanceStatus, t v1.VirtualMachineInstanceConditionType) {
	st.Conditions = slices.DeleteFunc(st.Conditions, func(c v1.VirtualMachineInstanceCondition) bool { return c.Type == t })
	if len(st.Conditions) == 0 {
		st.Conditions = nil
	}
}

// removeFinalizer lets a final VMI go, once its guest is gone.
func (r *runner) removeFinalizer(ctx context.Context, vmi *v1.VirtualMachineInstance) error {
	if !slices.Contains(vmi.Finalizers, v1.AgentFinalizer) {
		return nil
	}
	fins := slices.DeleteFunc(slices.Clone(vmi.Finalizers), func(f string) bool { return f == v1.AgentFinalizer })
	patch := finalizerPatch(vmi.ResourceVersion, fins)
	_, err := r.a.cfg.Client.VirtualMachineInstances(vmi.Namespace).Patch(ctx, vmi.Name, client.MergePatch, patch, "", client.WriteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (r *runner) phaseEvent(vmi *v1.VirtualMachineInstance) {
	switch vmi.Status.Phase {
	case v1.Running:
		r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, "Started", "VirtualMachineInstance started on node %s", r.a.cfg.Node)
	case v1.Succeeded:
		r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, vmi.Status.Reason, "VirtualMachineInstance stopped: %s", vmi.Status.Message)
	case v1.Failed:
		r.a.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, vmi.Status.Reason, "VirtualMachineInstance failed: %s", vmi.Status.Message)
	}
}
