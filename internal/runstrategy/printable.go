package runstrategy

// Printable statuses (section 5), as Vigil produces them.
const (
	StatusTerminating       = "Terminating"
	StatusStopping          = "Stopping"
	StatusPaused            = "Paused"
	StatusRunning           = "Running"
	StatusErrorDiskNotFound = "ErrorDiskNotFound"
	StatusUnschedulable     = "ErrorUnschedulable"
	StatusStarting          = "Starting"
	StatusCrashLoopBackOff  = "CrashLoopBackOff"
	StatusStopped           = "Stopped"
	StatusUnknown           = "Unknown"
)

// PrintableInput is everything the printable status depends on.
type PrintableInput struct {
	VMDeleting      bool
	Instance        *Instance
	CreationPending bool
	DeletionPending bool
	Strategy        Strategy
	StartFailure    *StartFailure
}

// Printable returns the printable status: the first rule of section 5 that
// holds, in order, or Unknown. Rules about migration, DataVolumes, PVCs and
// image pulls do not apply to Vigil, which has none of them; rule 6 reports
// a missing disk image or kernel (ErrorDiskNotFound) instead of a missing PVC.
// A Once VM whose only run failed early is Stopped, not CrashLoopBackOff,
// because nothing will retry it.
func Printable(in PrintableInput) string {
	inst := in.Instance
	switch {
	case in.VMDeleting: // 1
		return StatusTerminating
	case inst != nil && !inst.Phase.Final() && (inst.Deleting || in.DeletionPending): // 2
		return StatusStopping
	case inst != nil && inst.Phase == PhaseRunning && hasCondition(inst.Conditions, CondPaused, ConditionTrue): // 4
		return StatusPaused
	case inst != nil && inst.Phase == PhaseRunning: // 5
		return StatusRunning
	case inst != nil && conditionWithReason(inst.Conditions, CondSynchronized, ConditionFalse, ReasonDiskNotFound): // 6
		return StatusErrorDiskNotFound
	case inst != nil && conditionWithReason(inst.Conditions, CondPodScheduled, ConditionFalse, ReasonUnschedulable): // 8
		return StatusUnschedulable
	case inst == nil && in.CreationPending, inst != nil && inst.Phase.starting(): // 13
		return StatusStarting
	case (inst == nil || inst.Phase.Final()) && !in.CreationPending && in.StartFailure != nil &&
		in.StartFailure.Count > 0 && (in.Strategy == Always || in.Strategy == RerunOnFailure): // 14
		return StatusCrashLoopBackOff
	case inst != nil && inst.Phase.Final(), inst == nil && !in.CreationPending: // 15
		return StatusStopped
	}
	return StatusUnknown
}

func conditionWithReason(conds []Condition, t string, s ConditionStatus, reason string) bool {
	c := condition(conds, t)
	return c != nil && c.Status == s && c.Reason == reason
}
