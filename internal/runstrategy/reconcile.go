package runstrategy

import (
	"fmt"
	"time"
)

// Pass is the input of one reconcile pass of one VM.
type Pass struct {
	VM VM
	// Instance is the VM's current VMI as the controller's cache shows it,
	// or nil when there is none.
	Instance *Instance
	// CreatePending and DeletePending are the controller's outstanding
	// expectations: a create or delete it issued and has not seen yet.
	CreatePending bool
	DeletePending bool
	// Now is the time of the pass.
	Now time.Time
	// Backoff holds the crash-loop parameters.
	Backoff Backoff
}

// Action is what a pass does to the world, besides writing the VM status.
type Action int

// Actions. The zero value, None, means "status only".
const (
	None Action = iota
	// CreateInstance creates the VM's VMI from its template.
	CreateInstance
	// DeleteInstance deletes the VM's VMI (gracefully, by its own grace period).
	DeleteInstance
	// RemoveVMFinalizer lets a deleted VM go.
	RemoveVMFinalizer
)

func (a Action) String() string {
	switch a {
	case None:
		return "None"
	case CreateInstance:
		return "CreateInstance"
	case DeleteInstance:
		return "DeleteInstance"
	case RemoveVMFinalizer:
		return "RemoveVMFinalizer"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Failure is a failed pass: the reason and message of the VM's Failure condition.
type Failure struct {
	Reason  string
	Message string
}

// Decision is the outcome of Reconcile: what the controller must do.
type Decision struct {
	// Action is at most one create or delete of the VMI, or the release of a
	// deleted VM.
	Action Action
	// StartPaused asks for the created VMI to start paused.
	StartPaused bool
	// AddVMFinalizer asks for the controller finalizer to be put on the VM.
	AddVMFinalizer bool
	// AppendRequests are queued on the VM status when the action succeeds
	// (RerunOnFailure: a Start after deleting a failed VMI).
	AppendRequests []Request
	// RemoveInstanceFinalizer asks for the controller finalizer to be taken
	// off the VMI, after the status is written: it is final and recorded.
	RemoveInstanceFinalizer bool
	// RequeueAfter asks for another pass after this long (crash-loop wait).
	RequeueAfter time.Duration
	// Err is a failure decided by the core itself (an invalid strategy). The
	// controller records it and retries with its rate limiter.
	Err *Failure
	// Why explains the decision in words, for logs and events.
	Why string
}

// Reconcile decides steps 1 to 8 of one pass (section 2.2): whether to
// create or delete the VMI, release a deleted VM, or wait. It never fails;
// an invalid spec yields a Decision with Err set.
func Reconcile(p Pass) Decision {
	var d Decision
	inst := p.Instance
	if inst != nil && inst.Phase.Final() && inst.HasFinalizer {
		d.RemoveInstanceFinalizer = true
	}
	if p.CreatePending || p.DeletePending {
		d.Why = "waiting for an earlier create or delete to be observed"
		return d
	}
	if p.VM.Deleting {
		switch {
		case inst == nil:
			if p.VM.HasFinalizer {
				d.Action, d.Why = RemoveVMFinalizer, "the VM is being deleted and has no VMI left"
			}
		case !inst.Deleting:
			d.Action, d.Why = DeleteInstance, "the VM is being deleted"
		}
		return d
	}
	if !p.VM.HasFinalizer {
		d.AddVMFinalizer = true
	}
	s, err := Effective(p.VM)
	if err != nil {
		d.Err = &Failure{Reason: ReasonFailedCreate, Message: "Error fetching RunStrategy: " + err.Error()}
		d.Why = d.Err.Message
		return d
	}
	head, hasHead := headOf(p.VM.Status.Requests)
	stopForInst := hasHead && inst != nil && head.Action == StopRequest && head.UID != "" && head.UID == inst.UID
	startHead := hasHead && head.Action == StartRequest

	create := func(why string) {
		if left := TimeLeft(p.VM.Status.StartFailure, p.Now); left > 0 && (s == Always || s == RerunOnFailure) {
			d.RequeueAfter = left
			d.Why = fmt.Sprintf("delaying the start for %s because earlier runs failed to start (runStrategy %s)", left, s)
			return
		}
		d.Action, d.Why = CreateInstance, why
		d.StartPaused = startHead && head.Paused()
	}
	del := func(why string) {
		if !inst.Deleting {
			d.Action, d.Why = DeleteInstance, why
		}
	}

	switch s {
	case Always:
		switch {
		case inst == nil:
			create("starting the VM because of runStrategy Always")
		case stopForInst:
			del("restarting the VM: a stop request targets its VMI")
		case inst.Phase.Final():
			del(fmt.Sprintf("the VMI ended (%s) and runStrategy Always replaces it", inst.Phase))
		}
	case RerunOnFailure:
		switch {
		case inst == nil:
			if startHead || p.VM.Status.RunStrategy != RerunOnFailure {
				create("starting the VM because of runStrategy RerunOnFailure")
			}
		case inst.Deleting:
		case stopForInst:
			del("stopping the VM: a stop request targets its VMI")
		case inst.Phase == PhaseFailed:
			del("the VMI failed and runStrategy RerunOnFailure restarts it")
			d.AppendRequests = []Request{{Action: StartRequest}}
		case inst.Phase == PhaseSucceeded:
			del("the VMI succeeded and runStrategy RerunOnFailure does not restart it")
		}
	case Manual:
		switch {
		case inst == nil:
			if startHead {
				create("starting the VM: a start request is queued")
			}
		case stopForInst:
			del("stopping the VM: a stop request targets its VMI")
		}
	case Halted:
		if inst != nil {
			del("stopping the VM because of runStrategy Halted")
		}
	case Once:
		if inst == nil && !p.VM.Status.OnceStarted {
			create("starting the VM's one run because of runStrategy Once")
		}
	}
	return d
}

func headOf(q []Request) (Request, bool) {
	if len(q) == 0 {
		return Request{}, false
	}
	return q[0], true
}
