package runstrategy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// world is a simulated Vigil around the core, for the scenario files and
// the property test: one VM, at most one VMI, the VM controller's cache and
// expectations, an API server that answers lifecycle requests through the
// admission functions, a node agent that changes VMI phases when told, and
// a fake clock.
//
// The controller sees the VMI through its cache. A normal pass first
// observes every change (which also satisfies the expectations of the
// controller's own creates and deletes); a stale pass runs on the cache as
// it was, so that expectations can still be pending.
type world struct {
	origin  time.Time
	now     time.Time
	backoff Backoff

	vm     VM
	vmGone bool // the VM's finalizer was removed after its deletion

	vmi   *Instance // the stored VMI, nil when there is none
	cache *Instance // the VMI as the controller last observed it

	createPending bool
	deletePending bool

	nextUID     int
	pausedStart string // UID of a VMI created with startStrategy Paused, until it runs
}

// step is one reconcile pass as the world ran it.
type step struct {
	p         Pass
	pCopy     Pass // a deep copy of p taken before the core saw it
	d         Decision
	o         Outcome
	st        Status
	storedVMI *Instance // the stored VMI before the pass
}

var errSkip = errors.New("not applicable in this state")

func newWorld(spec VM) *world {
	origin := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	spec.UID, spec.Generation = "vm-uid", 1
	return &world{origin: origin, now: origin, vm: spec}
}

func cloneInst(in *Instance) *Instance {
	if in == nil {
		return nil
	}
	out := *in
	out.Conditions = slices.Clone(in.Conditions)
	out.PendingActions = slices.Clone(in.PendingActions)
	if in.GracePeriod != nil {
		out.GracePeriod = ptr(*in.GracePeriod)
	}
	return &out
}

func cloneVM(vm VM) VM {
	out := vm
	out.Status = copyStatus(vm.Status)
	if vm.Running != nil {
		out.Running = ptr(*vm.Running)
	}
	if vm.RunStrategy != nil {
		out.RunStrategy = ptr(*vm.RunStrategy)
	}
	return out
}

// snapshot is a deep copy of everything a request could change.
type snapshot struct {
	VM    VM
	VMI   *Instance
	Cache *Instance
}

func (w *world) snapshot() snapshot {
	return snapshot{VM: cloneVM(w.vm), VMI: cloneInst(w.vmi), Cache: cloneInst(w.cache)}
}

// observe delivers every pending watch event to the controller's cache.
func (w *world) observe() {
	w.cache = cloneInst(w.vmi)
	w.createPending, w.deletePending = false, false
}

// pass runs one reconcile pass; fail makes the controller's create or
// delete fail at the API.
func (w *world) pass(stale, fail bool) (step, error) {
	if w.vmGone {
		return step{}, fmt.Errorf("the VM is gone: %w", errSkip)
	}
	if !stale {
		w.observe()
	}
	s := step{storedVMI: cloneInst(w.vmi)}
	s.p = Pass{VM: cloneVM(w.vm), Instance: cloneInst(w.cache), CreatePending: w.createPending, DeletePending: w.deletePending, Now: w.now, Backoff: w.backoff}
	s.pCopy = clonePass(s.p)
	s.d = Reconcile(s.p)
	if s.d.AddVMFinalizer {
		w.vm.HasFinalizer = true
	}
	switch s.d.Action {
	case CreateInstance:
		switch {
		case fail:
			s.o.Err = &Failure{Reason: ReasonFailedCreate, Message: "Failure while starting VMI: injected failure"}
		case w.vmi != nil:
			s.o.Err = &Failure{Reason: ReasonFailedCreate, Message: "Failure while starting VMI: the VMI already exists"}
		default:
			w.nextUID++
			w.vmi = &Instance{UID: fmt.Sprintf("vmi-%d", w.nextUID), Phase: PhaseUnset, HasFinalizer: true, TemplateCurrent: true, Generation: w.vm.Generation}
			if s.d.StartPaused {
				w.pausedStart = w.vmi.UID
			}
			w.createPending = true
		}
	case DeleteInstance:
		switch {
		case fail:
			s.o.Err = &Failure{Reason: ReasonFailedDelete, Message: "Failure attempting to delete VMI: injected failure"}
		case w.vmi == nil || s.p.Instance == nil || w.vmi.UID != s.p.Instance.UID:
			s.o.Err = &Failure{Reason: ReasonFailedDelete, Message: "Failure attempting to delete VMI: not found"}
		default:
			w.vmi.Deleting = true
			w.deletePending = true
		}
	case RemoveVMFinalizer:
		w.vm.HasFinalizer = false
		w.vmGone = true
	}
	s.st = NextStatus(s.p, s.d, s.o)
	w.vm.Status = copyStatus(s.st)
	if s.d.RemoveInstanceFinalizer && w.vmi != nil && s.p.Instance != nil && w.vmi.UID == s.p.Instance.UID {
		w.vmi.HasFinalizer = false
	}
	return s, nil
}

// setPhase is the node agent reporting a new phase for the VMI.
func (w *world) setPhase(ph Phase) error {
	switch {
	case w.vmi == nil:
		return fmt.Errorf("no VMI: %w", errSkip)
	case w.vmi.Phase.Final():
		return fmt.Errorf("VMI %s is already %s: %w", w.vmi.UID, w.vmi.Phase, errSkip)
	}
	in := w.vmi
	in.Phase = ph
	drop := func(t string) {
		in.Conditions = slices.DeleteFunc(in.Conditions, func(c Condition) bool { return c.Type == t })
	}
	switch {
	case ph == PhaseRunning:
		in.EverRunning = true
		if condition(in.Conditions, CondReady) == nil {
			in.Conditions = append(in.Conditions, Condition{Type: CondReady, Status: ConditionTrue})
		}
		if w.pausedStart == in.UID {
			w.pausedStart = ""
			in.Conditions = append(in.Conditions, Condition{Type: CondPaused, Status: ConditionTrue, Reason: "PausedByStartStrategy"})
		}
	case ph.Final():
		drop(CondReady)
		drop(CondPaused)
	default:
		drop(CondReady)
	}
	return nil
}

// deleteVMI is a user deleting the VMI directly (section 2.4.7).
func (w *world) deleteVMI() error {
	if w.vmi == nil || w.vmi.Deleting {
		return fmt.Errorf("no VMI to delete: %w", errSkip)
	}
	w.vmi.Deleting = true
	return nil
}

// vmiGone is the end of a VMI's deletion: it must be final and released by
// the VM controller, whose finalizer guarantees it saw the final phase.
func (w *world) vmiGone() error {
	switch {
	case w.vmi == nil:
		return fmt.Errorf("no VMI: %w", errSkip)
	case !w.vmi.Deleting:
		return fmt.Errorf("VMI %s is not being deleted: %w", w.vmi.UID, errSkip)
	case !w.vmi.Phase.Final():
		return fmt.Errorf("VMI %s is %s, not final yet: %w", w.vmi.UID, phaseName(w.vmi.Phase), errSkip)
	case w.vmi.HasFinalizer:
		return fmt.Errorf("VMI %s still has the VM controller's finalizer: %w", w.vmi.UID, errSkip)
	}
	w.vmi = nil
	return nil
}

// lifecycle is one request through the API server: the admission function
// decides on the stored VM and VMI, and an accepted change is written.
func (w *world) lifecycle(verb string, grace *int64, paused bool) (Change, *Refusal) {
	return w.lifecycleOn(w.vmi, verb, grace, paused)
}

// lifecycleOn is lifecycle deciding on the VMI as the API server read it,
// which may be older than the stored one when the request raced with the
// controller. A grace-period write only lands on the VMI that was read.
func (w *world) lifecycleOn(read *Instance, verb string, grace *int64, paused bool) (Change, *Refusal) {
	var c Change
	var r *Refusal
	inst := cloneInst(read)
	switch verb {
	case "start":
		c, r = Start(cloneVM(w.vm), inst, StartOptions{Paused: paused})
	case "stop":
		c, r = Stop(cloneVM(w.vm), inst, StopOptions{GracePeriod: grace})
	case "restart":
		c, r = Restart(cloneVM(w.vm), inst, RestartOptions{GracePeriodSeconds: grace})
	case "pause", "unpause", "soft-reboot":
		if inst == nil {
			return Change{}, &Refusal{Code: 404, Message: "virtualmachineinstance not found"}
		}
		c, r = map[string]func(Instance) (Change, *Refusal){"pause": Pause, "unpause": Unpause, "soft-reboot": SoftReboot}[verb](*inst)
	default:
		panic("unknown verb " + verb)
	}
	if r != nil {
		return c, r
	}
	if s := c.Strategy; s != nil {
		if s.UseRunning {
			w.vm.Running = ptr(s.Strategy == Always)
		} else {
			w.vm.RunStrategy = ptr(s.Strategy)
		}
	}
	if c.SetRequests {
		w.vm.Status.Requests = copyRequests(c.Requests)
	}
	if c.ClearStartFailure {
		w.vm.Status.StartFailure = nil
	}
	if w.vmi == nil || inst == nil || w.vmi.UID != inst.UID {
		return c, nil // the VMI that was read is gone: its writes miss
	}
	if c.InstanceGracePeriod != nil {
		w.vmi.GracePeriod = ptr(*c.InstanceGracePeriod)
	}
	switch c.InstanceAction {
	case ActionPause:
		w.vmi.Conditions = append(w.vmi.Conditions, Condition{Type: CondPaused, Status: ConditionTrue, Reason: "PausedByUser"})
	case ActionUnpause:
		w.vmi.Conditions = slices.DeleteFunc(w.vmi.Conditions, func(c Condition) bool { return c.Type == CondPaused })
	}
	return c, nil
}

// setStrategy edits spec.runStrategy ("" unsets it).
func (w *world) setStrategy(s Strategy, set bool) {
	w.vm.RunStrategy = nil
	if set {
		w.vm.RunStrategy = ptr(s)
	}
}

// setRunning edits the deprecated spec.running (nil unsets it).
func (w *world) setRunning(b *bool) { w.vm.Running = b }

func (w *world) rel(t time.Time) string { return "+" + t.Sub(w.origin).String() }

// dump prints the state of the world, one aspect per line.
func (w *world) dump() []string {
	var spec []string
	if w.vm.RunStrategy != nil {
		spec = append(spec, "runStrategy="+string(*w.vm.RunStrategy))
	}
	if w.vm.Running != nil {
		spec = append(spec, fmt.Sprintf("running=%v", *w.vm.Running))
	}
	if w.vm.Deleting {
		spec = append(spec, "deleting")
	}
	if !w.vm.HasFinalizer {
		spec = append(spec, "no-finalizer")
	}
	if w.vmGone {
		spec = append(spec, "gone")
	}
	lines := []string{fmt.Sprintf("clock: %s  vm: %s", w.rel(w.now), strings.Join(spec, " "))}

	vmi := "vmi: none"
	if in := w.vmi; in != nil {
		vmi = fmt.Sprintf("vmi: %s %s", in.UID, phaseName(in.Phase))
		if in.Deleting {
			vmi += " deleting"
		}
		if in.HasFinalizer {
			vmi += " finalizer"
		}
		if in.GracePeriod != nil {
			vmi += fmt.Sprintf(" grace=%d", *in.GracePeriod)
		}
		if len(in.Conditions) > 0 {
			vmi += " [" + fmtConds(in.Conditions) + "]"
		}
	}
	if w.createPending {
		vmi += "  (create pending)"
	}
	if w.deletePending {
		vmi += "  (delete pending)"
	}
	lines = append(lines, vmi)

	st := w.vm.Status
	status := fmt.Sprintf("status: %s created=%v ready=%v runStrategy=%s", orDash(st.PrintableStatus), st.Created, st.Ready, orDash(string(st.RunStrategy)))
	if st.OnceStarted {
		status += " onceStarted"
	}
	lines = append(lines, status)
	sf := "none"
	if f := st.StartFailure; f != nil {
		sf = fmt.Sprintf("count=%d last=%s retryAfter=%s", f.Count, f.LastFailedUID, w.rel(f.RetryAfter))
	}
	lines = append(lines, fmt.Sprintf("queue: %s  startFailure: %s", fmtQueue(st.Requests), sf))
	lines = append(lines, "conditions: "+orDash(fmtConds(st.Conditions)))
	return lines
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describe prints a pass's decision.
func (s step) describe() []string {
	d := s.d
	line := "decision: " + d.Action.String()
	if d.StartPaused {
		line += " paused"
	}
	if len(d.AppendRequests) > 0 {
		line += " append=" + fmtQueue(d.AppendRequests)
	}
	if d.AddVMFinalizer {
		line += " +vm-finalizer"
	}
	if d.RemoveInstanceFinalizer {
		line += " -vmi-finalizer"
	}
	if d.RequeueAfter > 0 {
		line += " requeue=" + d.RequeueAfter.String()
	}
	if d.Err != nil {
		line += " err=" + d.Err.Reason
	}
	if s.o.Err != nil {
		line += " failed=" + s.o.Err.Reason
	}
	out := []string{line}
	if d.Why != "" {
		out = append(out, "why: "+d.Why)
	}
	return out
}

// describeAnswer prints a lifecycle answer the way the API would.
func describeAnswer(okCode int, c Change, r *Refusal) string {
	if r != nil {
		return fmt.Sprintf("answer: %d %s", r.Code, r.Message)
	}
	return "answer: " + strconv.Itoa(okCode)
}
