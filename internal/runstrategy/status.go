package runstrategy

import (
	"slices"
	"time"
)

// Outcome is what happened when the controller applied a Decision.
type Outcome struct {
	// Err is set when the action failed; it becomes the Failure condition.
	Err *Failure
}

// NextStatus computes step 9 of a pass (section 2.2): the VM status to write
// after the controller applied d with outcome o. It is evaluated against the
// VMI as it was at the start of the pass, as KubeVirt does.
func NextStatus(p Pass, d Decision, o Outcome) Status {
	st := copyStatus(p.VM.Status)
	inst := p.Instance
	applied := o.Err == nil && d.Err == nil
	creationPending := p.CreatePending || (d.Action == CreateInstance && applied)
	deletionPending := p.DeletePending || (d.Action == DeleteInstance && applied)

	st.Created = inst != nil
	st.Ready = inst != nil && hasCondition(inst.Conditions, CondReady, ConditionTrue)

	s, _ := Effective(p.VM)
	if st.RunStrategy != "" || st.Created {
		st.RunStrategy = s
	}
	if applied && len(d.AppendRequests) > 0 {
		st.Requests = append(st.Requests, copyRequests(d.AppendRequests)...)
	}
	st.Requests = trimHead(st.Requests, inst, s)

	st.OnceStarted = s == Once && (st.OnceStarted || inst != nil || creationPending)
	st.StartFailure = nextStartFailure(st.StartFailure, inst, s, p.Now, p.Backoff)

	var failure *Failure
	switch {
	case d.Err != nil:
		failure = d.Err
	case o.Err != nil:
		failure = o.Err
	}
	restartRequired := inst != nil && !inst.Deleting && !inst.Phase.Final() && !inst.TemplateCurrent &&
		!(applied && (d.Action == CreateInstance || d.Action == DeleteInstance))
	st.Conditions = nextConditions(st.Conditions, inst, failure, restartRequired, p.Now)

	if inst != nil {
		st.DesiredGeneration = p.VM.Generation
		st.ObservedGeneration = inst.Generation
		if inst.TemplateCurrent {
			st.ObservedGeneration = p.VM.Generation
		}
	}
	st.PrintableStatus = Printable(PrintableInput{
		VMDeleting:      p.VM.Deleting,
		Instance:        inst,
		CreationPending: creationPending,
		DeletionPending: deletionPending,
		Strategy:        s,
		StartFailure:    st.StartFailure,
	})
	return st
}

// trimHead removes at most one request from the head of the queue
// (section 2.3), judged against the VMI seen at the start of the pass. Under
// Halted a Start left at the head is discarded (a project decision: only the
// start handler turns Halted into a run, and it writes the strategy itself).
func trimHead(q []Request, inst *Instance, s Strategy) []Request {
	if len(q) == 0 {
		return q
	}
	head := q[0]
	drop := false
	switch head.Action {
	case StopRequest:
		drop = inst == nil || head.UID == "" || head.UID != inst.UID
	case StartRequest:
		drop = (inst != nil && !inst.Deleting && !inst.Phase.Final()) || s == Halted
	default:
		drop = true // an unknown action can never be carried out
	}
	if !drop {
		return q
	}
	if len(q) == 1 {
		return nil
	}
	return slices.Clone(q[1:])
}

// nextStartFailure does the crash-loop bookkeeping of section 6.
func nextStartFailure(sf *StartFailure, inst *Instance, s Strategy, now time.Time, b Backoff) *StartFailure {
	if (inst != nil && inst.EverRunning) || (s != Always && s != RerunOnFailure && s != Once) {
		return nil
	}
	if inst == nil || !inst.Phase.Final() {
		return sf
	}
	if sf != nil && sf.LastFailedUID == inst.UID {
		return sf
	}
	count := 1
	if sf != nil {
		count = sf.Count + 1
	}
	retry := now.Add(b.Delay(count))
	if t := retry.Truncate(time.Second); t.Before(retry) {
		retry = t.Add(time.Second) // stored with whole-second precision: round up, never early
	}
	return &StartFailure{Count: count, LastFailedUID: inst.UID, RetryAfter: retry}
}

// VM conditions the VM controller owns; every other VM condition mirrors the VMI.
func ownCondition(t string) bool {
	return t == CondReady || t == CondFailure || t == CondRestartRequired
}

// nextConditions computes the VM conditions (section 1.5).
func nextConditions(conds []Condition, inst *Instance, failure *Failure, restartRequired bool, now time.Time) []Condition {
	out := make([]Condition, 0, len(conds)+2)
	withTransition := func(c Condition) Condition {
		if old := condition(conds, c.Type); old != nil && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = now
		}
		return c
	}
	// Ready is always present: the VMI's own, or why there is none.
	var ready Condition
	switch {
	case inst == nil:
		ready = withTransition(Condition{Type: CondReady, Status: ConditionFalse, Reason: ReasonVMINotExists, Message: "VMI does not exist"})
	case condition(inst.Conditions, CondReady) != nil:
		ready = *condition(inst.Conditions, CondReady)
	default:
		ready = withTransition(Condition{Type: CondReady, Status: ConditionFalse, Reason: ReasonVMIConditionMissing, Message: "VMI is missing the Ready condition"})
	}
	var mirrored []Condition
	if inst != nil {
		for _, c := range inst.Conditions {
			if !ownCondition(c.Type) {
				mirrored = append(mirrored, c)
			}
		}
	}
	for _, c := range conds {
		switch {
		case c.Type == CondReady, c.Type == CondFailure, c.Type == CondRestartRequired:
			// rebuilt below
		case inst == nil:
			out = append(out, c) // no VMI: mirrored conditions stay as they were
		case condition(mirrored, c.Type) == nil:
			// the VMI no longer has it: drop
		default:
			out = append(out, *condition(mirrored, c.Type))
		}
	}
	for _, c := range mirrored {
		if condition(out, c.Type) == nil {
			out = append(out, c)
		}
	}
	own := []Condition{ready}
	if failure != nil {
		own = append(own, withTransition(Condition{Type: CondFailure, Status: ConditionTrue, Reason: failure.Reason, Message: failure.Message}))
	}
	if restartRequired {
		own = append(own, withTransition(Condition{Type: CondRestartRequired, Status: ConditionTrue, Reason: ReasonRestartRequired,
			Message: "the VM template changed; the changes apply when the VM restarts"}))
	}
	return append(own, out...)
}

func copyStatus(s Status) Status {
	out := s
	out.Conditions = slices.Clone(s.Conditions)
	out.Requests = copyRequests(s.Requests)
	if s.StartFailure != nil {
		sf := *s.StartFailure
		out.StartFailure = &sf
	}
	return out
}

func copyRequests(q []Request) []Request {
	if q == nil {
		return nil
	}
	out := make([]Request, len(q))
	for i, r := range q {
		out[i] = r
		if r.Data != nil {
			out[i].Data = make(map[string]string, len(r.Data))
			for k, v := range r.Data {
				out[i].Data[k] = v
			}
		}
	}
	return out
}
