package runstrategy

import "fmt"

// Messages of the lifecycle subresources (section 4), which clients match on.
const (
	MsgAlreadyRunning       = "VM is already running"
	MsgNotRunning           = "VM is not running"
	MsgVMINotRunning        = "VMI is not running"
	MsgAlreadyUnderway      = "unable to complete request: stop/start already underway"
	MsgRerunFromFailed      = "RerunOnFailure does not support starting VM from failed state"
	MsgHaltedShorterGrace   = "Halted only supports manual stop requests with a shorter graceperiod"
	MsgRestartGraceZeroOnly = "For force restart, only gracePeriod=0 is supported for now"
	MsgRestartGraceNegative = "gracePeriod has to be greater or equal to 0"
	MsgAlreadyPaused        = "VMI is already paused"
	MsgNotPaused            = "VMI is not paused"
	MsgPaused               = "VMI is paused"
	MsgNoAgentNoACPI        = "VMI neither have the agent connected nor the ACPI feature enabled"
	msgNoManualStartFmt     = "%s does not support manual start requests"
	msgNoManualRestartFmt   = "RunStrategy %s does not support manual restart requests"
	forceRestartGracePeriod = int64(1)
	httpBadRequest          = 400
	httpConflict            = 409
	httpInternalServerError = 500
)

// Refusal is a lifecycle request the core refuses: the HTTP code and the
// message to answer with. A refused request changes nothing.
type Refusal struct {
	Code    int
	Message string
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d: %s", r.Code, r.Message) }

func conflict(msg string) *Refusal { return &Refusal{Code: httpConflict, Message: msg} }

// Change is an accepted lifecycle request: what the API server writes. Every
// field is optional; the zero Change writes nothing.
type Change struct {
	// Strategy rewrites the VM's desired strategy.
	Strategy *StrategyWrite
	// SetRequests replaces the VM's request queue with Requests.
	SetRequests bool
	Requests    []Request
	// ClearStartFailure removes the crash-loop record (any queued user action resets it).
	ClearStartFailure bool
	// InstanceGracePeriod sets the VMI's spec.terminationGracePeriodSeconds.
	InstanceGracePeriod *int64
	// InstanceAction is queued on the VMI for its node agent.
	InstanceAction InstanceAction
}

// queue returns the Change that puts reqs on vm's queue (section 4.1): onto
// an empty queue; a lone Stop replaces any queue (a stop overrides a pending
// start or restart); anything else on a non-empty queue is refused with 409
// (KubeVirt answers 500; Vigil answers 409 with the same message).
func queue(vm VM, reqs ...Request) (Change, *Refusal) {
	q := vm.Status.Requests
	if len(q) > 0 && !(len(reqs) == 1 && reqs[0].Action == StopRequest) {
		return Change{}, conflict(MsgAlreadyUnderway)
	}
	return Change{SetRequests: true, Requests: reqs, ClearStartFailure: vm.Status.StartFailure != nil}, nil
}

func strategyOf(vm VM) (Strategy, *Refusal) {
	s, err := Effective(vm)
	if err != nil {
		return Unknown, &Refusal{Code: httpInternalServerError, Message: err.Error()}
	}
	return s, nil
}

// StartOptions are the options of a start request.
type StartOptions struct{ Paused bool }

// Start decides a start request (section 4.2) for vm and its VMI (nil: none).
func Start(vm VM, inst *Instance, opts StartOptions) (Change, *Refusal) {
	if inst != nil && !inst.Phase.Final() && inst.Phase != PhaseUnknown && inst.Phase != PhaseUnset {
		return Change{}, conflict(MsgAlreadyRunning)
	}
	s, ref := strategyOf(vm)
	if ref != nil {
		return Change{}, ref
	}
	start := Request{Action: StartRequest}
	if opts.Paused {
		start.Data = map[string]string{"paused": "true"}
	}
	final := inst != nil && inst.Phase.Final()
	switch s {
	case Halted:
		if !opts.Paused {
			return Change{Strategy: writeStrategy(vm, Always)}, nil
		}
		// One atomic write of the strategy and the paused Start request.
		c, ref := queue(vm, start)
		if ref != nil {
			return Change{}, ref
		}
		c.Strategy = writeStrategy(vm, Always)
		return c, nil
	case Manual:
		if final {
			return queue(vm, Request{Action: StopRequest, UID: inst.UID}, start)
		}
		return queue(vm, start)
	case RerunOnFailure:
		switch {
		case final && inst.Phase == PhaseFailed:
			return Change{}, conflict(MsgRerunFromFailed)
		case final:
			return queue(vm, Request{Action: StopRequest, UID: inst.UID}, start)
		}
		return queue(vm, start)
	default: // Always, Once
		return Change{}, conflict(fmt.Sprintf(msgNoManualStartFmt, s))
	}
}

// StopOptions are the options of a stop request.
type StopOptions struct {
	// GracePeriod, when set, replaces the VMI's grace period (0: force stop).
	GracePeriod *int64
}

// Stop decides a stop request (section 4.3). Unlike KubeVirt, a refused
// request never changes the VMI's grace period: the core decides first.
func Stop(vm VM, inst *Instance, opts StopOptions) (Change, *Refusal) {
	s, ref := strategyOf(vm)
	if ref != nil {
		return Change{}, ref
	}
	alive := inst != nil && !inst.Phase.Final()
	var grace *int64
	if alive && opts.GracePeriod != nil {
		g := *opts.GracePeriod
		grace = &g
	}
	var c Change
	switch s {
	case Always, Once:
		c = Change{Strategy: writeStrategy(vm, Halted)}
	case Manual, RerunOnFailure:
		if !alive {
			return Change{}, conflict(MsgNotRunning)
		}
		c, ref = queue(vm, Request{Action: StopRequest, UID: inst.UID})
	case Halted:
		if !alive {
			return Change{}, conflict(MsgNotRunning)
		}
		if opts.GracePeriod == nil || (inst.GracePeriod != nil && *opts.GracePeriod >= *inst.GracePeriod) {
			return Change{}, conflict(MsgHaltedShorterGrace)
		}
		c, ref = queue(vm, Request{Action: StopRequest, UID: inst.UID})
	}
	if ref != nil {
		return Change{}, ref
	}
	c.InstanceGracePeriod = grace
	return c, nil
}

// RestartOptions are the options of a restart request.
type RestartOptions struct {
	// GracePeriodSeconds may only be 0 (force restart).
	GracePeriodSeconds *int64
}

// Restart decides a restart request (section 4.4). A force restart lowers the
// VMI's grace period to one second.
func Restart(vm VM, inst *Instance, opts RestartOptions) (Change, *Refusal) {
	if g := opts.GracePeriodSeconds; g != nil {
		if *g > 0 {
			return Change{}, &Refusal{Code: httpBadRequest, Message: MsgRestartGraceZeroOnly}
		}
		if *g < 0 {
			return Change{}, &Refusal{Code: httpBadRequest, Message: MsgRestartGraceNegative}
		}
	}
	s, ref := strategyOf(vm)
	if ref != nil {
		return Change{}, ref
	}
	if s == Halted || s == Once {
		return Change{}, conflict(fmt.Sprintf(msgNoManualRestartFmt, s))
	}
	if inst == nil {
		return Change{}, conflict(MsgNotRunning)
	}
	c, ref := queue(vm, Request{Action: StopRequest, UID: inst.UID}, Request{Action: StartRequest})
	if ref != nil {
		return Change{}, ref
	}
	if opts.GracePeriodSeconds != nil {
		g := forceRestartGracePeriod
		c.InstanceGracePeriod = &g
	}
	return c, nil
}

// Pause decides a pause request on a VMI (section 4.5). Vigil has no
// liveness probes, so the 403 for a non-guest-agent probe cannot arise.
func Pause(inst Instance) (Change, *Refusal) {
	if inst.Phase != PhaseRunning {
		return Change{}, conflict(MsgNotRunning)
	}
	if inst.paused() {
		return Change{}, conflict(MsgAlreadyPaused)
	}
	return Change{InstanceAction: ActionPause}, nil
}

// Unpause decides an unpause request on a VMI (section 4.6). Vigil has no
// snapshots, so "VM snapshot is in progress" cannot arise.
func Unpause(inst Instance) (Change, *Refusal) {
	if inst.Phase != PhaseRunning {
		return Change{}, conflict(MsgVMINotRunning)
	}
	if !inst.paused() {
		return Change{}, conflict(MsgNotPaused)
	}
	return Change{InstanceAction: ActionUnpause}, nil
}

// SoftReboot decides a soft-reboot request on a VMI (section 4.7).
func SoftReboot(inst Instance) (Change, *Refusal) {
	if inst.Phase != PhaseRunning {
		return Change{}, conflict(MsgNotRunning)
	}
	if inst.paused() {
		return Change{}, conflict(MsgPaused)
	}
	if !hasCondition(inst.Conditions, CondAgentConnected, ConditionTrue) && inst.ACPIDisabled {
		return Change{}, conflict(MsgNoAgentNoACPI)
	}
	return Change{InstanceAction: ActionSoftReboot}, nil
}
