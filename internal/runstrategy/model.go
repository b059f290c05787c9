package runstrategy

import "time"

// Strategy is a RunStrategy: when a VM should have a running instance.
type Strategy string

// The strategies. WaitAsReceiver is known so that it can be refused by name.
const (
	Always         Strategy = "Always"
	RerunOnFailure Strategy = "RerunOnFailure"
	Manual         Strategy = "Manual"
	Halted         Strategy = "Halted"
	Once           Strategy = "Once"
	WaitAsReceiver Strategy = "WaitAsReceiver"
	// Unknown is the strategy of a VM whose strategy cannot be determined.
	Unknown Strategy = ""
)

// Phase is the phase of an instance (a VMI).
type Phase string

// Instance phases (spec/lifecycle.md section 1.6).
const (
	PhaseUnset      Phase = ""
	PhasePending    Phase = "Pending"
	PhaseScheduling Phase = "Scheduling"
	PhaseScheduled  Phase = "Scheduled"
	PhaseRunning    Phase = "Running"
	PhaseSucceeded  Phase = "Succeeded"
	PhaseFailed     Phase = "Failed"
	PhaseUnknown    Phase = "Unknown"
)

// Final reports whether p is Succeeded or Failed.
func (p Phase) Final() bool { return p == PhaseSucceeded || p == PhaseFailed }

// starting reports whether p is one of the "starting phases" of section 1.6.
func (p Phase) starting() bool {
	switch p {
	case PhaseUnset, PhasePending, PhaseScheduling, PhaseScheduled:
		return true
	}
	return false
}

// ConditionStatus is True, False or Unknown.
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// Condition is a condition of a VM or of an instance.
type Condition struct {
	Type               string
	Status             ConditionStatus
	Reason             string
	Message            string
	LastProbeTime      time.Time
	LastTransitionTime time.Time
}

// Condition types and reasons the core writes or reads.
const (
	CondReady           = "Ready"
	CondFailure         = "Failure"
	CondPaused          = "Paused"
	CondRestartRequired = "RestartRequired"
	CondSynchronized    = "Synchronized"
	CondPodScheduled    = "PodScheduled"
	CondAgentConnected  = "AgentConnected"

	ReasonVMINotExists        = "VMINotExists"
	ReasonVMIConditionMissing = "VMIConditionMissing"
	ReasonUnschedulable       = "Unschedulable"
	ReasonDiskNotFound        = "DiskNotFound"
	ReasonFailedCreate        = "FailedCreate"
	ReasonFailedDelete        = "FailedDelete"
	ReasonRestartRequired     = "TemplateChanged"
)

// RequestAction is Start or Stop.
type RequestAction string

// Request actions.
const (
	StartRequest RequestAction = "Start"
	StopRequest  RequestAction = "Stop"
)

// Request is one entry of a VM's state-change request queue.
type Request struct {
	Action RequestAction
	// UID is the instance a Stop targets; empty when none was given.
	UID string
	// Data is the request's data map; "paused": "true" on a Start starts the
	// instance paused. Other keys are kept as they are.
	Data map[string]string
}

// Paused reports whether r is a Start that asks for a paused instance.
func (r Request) Paused() bool { return r.Action == StartRequest && r.Data["paused"] == "true" }

// StartFailure is the crash-loop record (section 6).
type StartFailure struct {
	// Count is the number of consecutive instances that ended before Running.
	Count int
	// LastFailedUID is the UID of the last instance counted.
	LastFailedUID string
	// RetryAfter is when the next instance may be created; zero means now.
	RetryAfter time.Time
}

// Status is the part of a VM's status the core owns.
type Status struct {
	Created         bool
	Ready           bool
	PrintableStatus string
	Conditions      []Condition
	Requests        []Request
	StartFailure    *StartFailure
	// RunStrategy is the last recorded effective strategy (section 2.5).
	RunStrategy Strategy
	// OnceStarted records that a Once VM has started its one run (Vigil's
	// status.onceStarted). It is cleared by a pass whose strategy is not
	// Once, so that setting Once again asks for one more run.
	OnceStarted        bool
	ObservedGeneration int64
	DesiredGeneration  int64
}

// VM is what the core needs to know about a VirtualMachine.
type VM struct {
	UID        string
	Generation int64
	// Deleting is true when the VM has a deletion timestamp.
	Deleting bool
	// HasFinalizer is true when the VM carries the controller finalizer.
	HasFinalizer bool
	// Running and RunStrategy are the two spec fields, as written.
	Running     *bool
	RunStrategy *Strategy
	Status      Status
}

// Instance is what the core needs to know about a VM's current VMI.
type Instance struct {
	UID   string
	Phase Phase
	// Deleting is true when the VMI has a deletion timestamp.
	Deleting bool
	// HasFinalizer is true when the VMI carries the VM controller's finalizer.
	HasFinalizer bool
	// EverRunning is true when the VMI has reached Running at some point.
	EverRunning bool
	Conditions  []Condition
	// GracePeriod is spec.terminationGracePeriodSeconds as written (nil: unset).
	GracePeriod *int64
	// TemplateCurrent is true when the VMI was created from the VM's current template.
	TemplateCurrent bool
	// Generation is the VM generation the VMI was created from.
	Generation int64
	// ACPIDisabled is true when the VMI's spec turns ACPI off.
	ACPIDisabled bool
	// PendingActions are accepted pause/unpause/soft-reboot requests the node
	// has not carried out yet, oldest first.
	PendingActions []InstanceAction
}

// InstanceAction is a pause, unpause or soft-reboot request on an instance.
type InstanceAction string

// Instance actions.
const (
	ActionPause      InstanceAction = "Pause"
	ActionUnpause    InstanceAction = "Unpause"
	ActionSoftReboot InstanceAction = "SoftReboot"
)

// condition returns the condition of type t, or nil.
func condition(conds []Condition, t string) *Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// hasCondition reports whether conds holds t with status s.
func hasCondition(conds []Condition, t string, s ConditionStatus) bool {
	c := condition(conds, t)
	return c != nil && c.Status == s
}

// paused reports whether the instance is, or has been asked to be, paused:
// its Paused condition, then every pending pause or unpause in order.
func (i *Instance) paused() bool {
	p := hasCondition(i.Conditions, CondPaused, ConditionTrue)
	for _, a := range i.PendingActions {
		switch a {
		case ActionPause:
			p = true
		case ActionUnpause:
			p = false
		}
	}
	return p
}
