package runstrategy

import (
	"testing"
	"time"
)

// TestPrintable pins the rules of section 5 that apply to Vigil, one case
// per rule, then their order through cases where two rules hold.
func TestPrintable(t *testing.T) {
	sf := &StartFailure{Count: 1, LastFailedUID: "vmi-0"}
	in := func(ph Phase, opts ...instOpt) *Instance { return newInst("vmi-1", ph, opts...) }
	diskNotFound := cond("Synchronized=False/DiskNotFound")
	unschedulable := cond("PodScheduled=False/Unschedulable")
	paused := cond("Paused=True/PausedByUser")
	cases := []struct {
		name string
		in   PrintableInput
		want string
	}{
		// One rule at a time.
		{name: "5 rule 1 Terminating/VM deleted, no VMI", in: PrintableInput{VMDeleting: true, Strategy: Always}, want: StatusTerminating},
		{name: "5 rule 1 Terminating/VM deleted, Pending VMI", in: PrintableInput{VMDeleting: true, Instance: in(PhasePending), Strategy: Always}, want: StatusTerminating},
		{name: "5 rule 1 Terminating/VM deleted, paused VMI", in: PrintableInput{VMDeleting: true, Instance: in(PhaseRunning, paused), Strategy: Always}, want: StatusTerminating},
		{name: "5 rule 1 Terminating/VM deleted, final VMI", in: PrintableInput{VMDeleting: true, Instance: in(PhaseSucceeded), Strategy: Manual}, want: StatusTerminating},
		{name: "5 rule 2 Stopping/VMI being deleted", in: PrintableInput{Instance: in(PhaseRunning, deleting), Strategy: Halted}, want: StatusStopping},
		{name: "5 rule 2 Stopping/deletion pending", in: PrintableInput{Instance: in(PhaseRunning), DeletionPending: true, Strategy: Halted}, want: StatusStopping},
		{name: "5 rule 2 Stopping/Pending VMI being deleted", in: PrintableInput{Instance: in(PhasePending, deleting), Strategy: Halted}, want: StatusStopping},
		{name: "5 rule 4 Paused", in: PrintableInput{Instance: in(PhaseRunning, paused), Strategy: Always}, want: StatusPaused},
		{name: "5 rule 5 Running", in: PrintableInput{Instance: in(PhaseRunning), Strategy: Always}, want: StatusRunning},
		{name: "5 rule 5 Running/Paused=False is running", in: PrintableInput{Instance: in(PhaseRunning, cond("Paused=False")), Strategy: Always}, want: StatusRunning},
		{name: "5 rule 6 ErrorDiskNotFound (Vigil)", in: PrintableInput{Instance: in(PhaseScheduled, diskNotFound), Strategy: Always}, want: StatusErrorDiskNotFound},
		{name: "5 rule 6 ErrorDiskNotFound/on a Failed VMI", in: PrintableInput{Instance: in(PhaseFailed, diskNotFound), Strategy: Manual}, want: StatusErrorDiskNotFound},
		{name: "5 rule 6 not for another Synchronized reason", in: PrintableInput{Instance: in(PhaseScheduled, cond("Synchronized=False/Other")), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 6 not for Synchronized=True", in: PrintableInput{Instance: in(PhaseScheduled, cond("Synchronized=True/DiskNotFound")), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 8 ErrorUnschedulable", in: PrintableInput{Instance: in(PhasePending, unschedulable), Strategy: Always}, want: StatusUnschedulable},
		{name: "5 rule 8 not for another PodScheduled reason", in: PrintableInput{Instance: in(PhasePending, cond("PodScheduled=False/Other")), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 13 Starting/creation pending", in: PrintableInput{CreationPending: true, Strategy: Always}, want: StatusStarting},
		{name: "5 rule 13 Starting/phase unset", in: PrintableInput{Instance: in(PhaseUnset), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 13 Starting/Pending", in: PrintableInput{Instance: in(PhasePending), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 13 Starting/Scheduling", in: PrintableInput{Instance: in(PhaseScheduling), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 13 Starting/Scheduled", in: PrintableInput{Instance: in(PhaseScheduled), Strategy: Always}, want: StatusStarting},
		{name: "5 rule 14 CrashLoopBackOff/Always, no VMI", in: PrintableInput{StartFailure: sf, Strategy: Always}, want: StatusCrashLoopBackOff},
		{name: "5 rule 14 CrashLoopBackOff/RerunOnFailure, no VMI", in: PrintableInput{StartFailure: sf, Strategy: RerunOnFailure}, want: StatusCrashLoopBackOff},
		{name: "5 rule 14 CrashLoopBackOff/final VMI", in: PrintableInput{Instance: in(PhaseFailed), StartFailure: sf, Strategy: Always}, want: StatusCrashLoopBackOff},
		{name: "5 rule 14 CrashLoopBackOff/final VMI being deleted", in: PrintableInput{Instance: in(PhaseFailed, deleting), StartFailure: sf, Strategy: Always}, want: StatusCrashLoopBackOff},
		{name: "5 rule 14 not for Once (Vigil)", in: PrintableInput{Instance: in(PhaseFailed), StartFailure: sf, Strategy: Once}, want: StatusStopped},
		{name: "5 rule 14 not for Once without VMI (Vigil)", in: PrintableInput{StartFailure: sf, Strategy: Once}, want: StatusStopped},
		{name: "5 rule 14 not for Manual", in: PrintableInput{StartFailure: sf, Strategy: Manual}, want: StatusStopped},
		{name: "5 rule 14 not for Halted", in: PrintableInput{StartFailure: sf, Strategy: Halted}, want: StatusStopped},
		{name: "5 rule 14 not for a zero count", in: PrintableInput{StartFailure: &StartFailure{}, Strategy: Always}, want: StatusStopped},
		{name: "5 rule 15 Stopped/no VMI", in: PrintableInput{Strategy: Always}, want: StatusStopped},
		{name: "5 rule 15 Stopped/Succeeded", in: PrintableInput{Instance: in(PhaseSucceeded), Strategy: Manual}, want: StatusStopped},
		{name: "5 rule 15 Stopped/Failed", in: PrintableInput{Instance: in(PhaseFailed), Strategy: Manual}, want: StatusStopped},
		{name: "5 fallback Unknown/VMI phase Unknown", in: PrintableInput{Instance: in(PhaseUnknown), Strategy: Always}, want: StatusUnknown},
		{name: "5 fallback Unknown/unknown phase word", in: PrintableInput{Instance: in(Phase("WaitingForSync")), Strategy: Always}, want: StatusUnknown},

		// The order: two rules hold, the earlier wins.
		{name: "5 order/Terminating over Stopping", in: PrintableInput{VMDeleting: true, Instance: in(PhaseRunning, deleting), Strategy: Always}, want: StatusTerminating},
		{name: "5 order/Stopping over Paused", in: PrintableInput{Instance: in(PhaseRunning, paused, deleting), Strategy: Always}, want: StatusStopping},
		{name: "5 order/Stopping over Running", in: PrintableInput{Instance: in(PhaseRunning), DeletionPending: true, Strategy: Always}, want: StatusStopping},
		{name: "5 order/Stopping over Unknown phase", in: PrintableInput{Instance: in(PhaseUnknown, deleting), Strategy: Halted}, want: StatusStopping},
		{name: "5 order/Paused over Running", in: PrintableInput{Instance: in(PhaseRunning, paused), Strategy: Always}, want: StatusPaused},
		{name: "5 order/Running over ErrorDiskNotFound", in: PrintableInput{Instance: in(PhaseRunning, diskNotFound), Strategy: Always}, want: StatusRunning},
		{name: "5 order/ErrorDiskNotFound over ErrorUnschedulable", in: PrintableInput{Instance: in(PhasePending, diskNotFound, unschedulable), Strategy: Always}, want: StatusErrorDiskNotFound},
		{name: "5 order/ErrorDiskNotFound over CrashLoopBackOff", in: PrintableInput{Instance: in(PhaseFailed, diskNotFound), StartFailure: sf, Strategy: Always}, want: StatusErrorDiskNotFound},
		{name: "5 order/ErrorUnschedulable over Starting", in: PrintableInput{Instance: in(PhaseScheduling, unschedulable), Strategy: Always}, want: StatusUnschedulable},
		{name: "5 order/Starting over CrashLoopBackOff", in: PrintableInput{CreationPending: true, StartFailure: sf, Strategy: Always}, want: StatusStarting},
		{name: "5 order/CrashLoopBackOff over Stopped", in: PrintableInput{Instance: in(PhaseSucceeded), StartFailure: sf, Strategy: RerunOnFailure}, want: StatusCrashLoopBackOff},

		// Observable consequences (section 5's bullets).
		{name: "5 consequence/final VMI being deleted is Stopped, not Stopping", in: PrintableInput{Instance: in(PhaseSucceeded, deleting), Strategy: Halted}, want: StatusStopped},
		{name: "5 consequence/final VMI with deletion pending is Stopped", in: PrintableInput{Instance: in(PhaseFailed), DeletionPending: true, Strategy: Always}, want: StatusStopped},
		{name: "5 consequence/paused VMI being deleted is Stopping", in: PrintableInput{Instance: in(PhaseRunning, paused), DeletionPending: true, Strategy: Manual}, want: StatusStopping},
		{name: "5 consequence/Manual guest shutdown is Stopped", in: PrintableInput{Instance: in(PhaseSucceeded, everRunning), Strategy: Manual}, want: StatusStopped},
		{name: "5 consequence/ErrorDiskNotFound does not depend on the strategy (Halted)", in: PrintableInput{Instance: in(PhaseFailed, diskNotFound, deleting), Strategy: Halted}, want: StatusErrorDiskNotFound},
		{name: "5 consequence/ErrorDiskNotFound does not depend on the strategy (Once)", in: PrintableInput{Instance: in(PhaseFailed, diskNotFound), StartFailure: sf, Strategy: Once}, want: StatusErrorDiskNotFound},
		{name: "5 consequence/Halted VM is Stopped whatever the record", in: PrintableInput{StartFailure: sf, Strategy: Halted}, want: StatusStopped},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Printable(c.in); got != c.want {
				t.Errorf("Printable = %s, want %s", got, c.want)
			}
		})
	}
}

// TestPrintableThroughPass pins the consequences of section 5 that depend
// on the pass: the pending expectation set by the pass's own action, and
// the crash-loop record written before the printable status.
func TestPrintableThroughPass(t *testing.T) {
	failDelete := Outcome{Err: &Failure{Reason: ReasonFailedDelete, Message: "boom"}}
	failCreate := Outcome{Err: &Failure{Reason: ReasonFailedCreate, Message: "boom"}}
	cases := []struct {
		name string
		p    Pass
		o    Outcome
		want string
	}{
		{name: "5 consequence/Starting right after the create", p: Pass{VM: newVM(Always)}, want: StatusStarting},
		{name: "5 consequence/Stopped when the create failed", p: Pass{VM: newVM(Always)}, o: failCreate, want: StatusStopped},
		{name: "5 consequence/Starting while the creation is pending", p: Pass{VM: newVM(Manual), CreatePending: true}, want: StatusStarting},
		{name: "5 consequence/Stopping right after the delete", p: Pass{VM: newVM(Halted), Instance: newInst("vmi-1", PhaseRunning)}, want: StatusStopping},
		{name: "5 consequence/Running when the delete failed", p: Pass{VM: newVM(Halted), Instance: newInst("vmi-1", PhaseRunning)}, o: failDelete, want: StatusRunning},
		{name: "5 consequence/Stopping while the deletion is pending", p: Pass{VM: newVM(Halted), Instance: newInst("vmi-1", PhaseRunning), DeletePending: true}, want: StatusStopping},
		{name: "5 consequence/Always first early failure is CrashLoopBackOff", p: Pass{VM: newVM(Always), Instance: newInst("vmi-1", PhaseFailed)}, want: StatusCrashLoopBackOff},
		{name: "5 consequence/RerunOnFailure first early failure is CrashLoopBackOff", p: Pass{VM: newVM(RerunOnFailure), Instance: newInst("vmi-1", PhaseFailed)}, want: StatusCrashLoopBackOff},
		{name: "5 consequence/Once early failure is Stopped (Vigil)", p: Pass{VM: newVM(Once, onceStarted), Instance: newInst("vmi-1", PhaseFailed)}, want: StatusStopped},
		{name: "5 consequence/Once early failure, VMI gone, is Stopped (Vigil)", p: Pass{VM: newVM(Once, onceStarted, failures(1, "vmi-1", time.Minute))}, want: StatusStopped},
		{name: "5 consequence/Always crash loop waiting without VMI", p: Pass{VM: newVM(Always, failures(2, "vmi-1", time.Minute))}, want: StatusCrashLoopBackOff},
		{name: "5 consequence/Always crash loop gate passed: Starting", p: Pass{VM: newVM(Always, failures(2, "vmi-1", -time.Second))}, want: StatusStarting},
		{name: "5 consequence/Manual crash-looping VMI is Stopped", p: Pass{VM: newVM(Manual), Instance: newInst("vmi-1", PhaseFailed)}, want: StatusStopped},
		{name: "5 consequence/stopped Always VM (now Halted) leaves CrashLoopBackOff", p: Pass{VM: newVM(Halted, failures(3, "vmi-1", time.Minute))}, want: StatusStopped},
		{name: "2.8 VM deleted with VMI is Terminating", p: Pass{VM: newVM(Always, deletingVM), Instance: newInst("vmi-1", PhaseRunning)}, want: StatusTerminating},
		{name: "2.8 VM deleted without VMI is Terminating", p: Pass{VM: newVM(Always, deletingVM)}, want: StatusTerminating},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := pass(c.p, c.o)
			if st.PrintableStatus != c.want {
				t.Errorf("printable status = %s, want %s", st.PrintableStatus, c.want)
			}
		})
	}
}
