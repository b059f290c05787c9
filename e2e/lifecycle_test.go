package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

const wait = 30 * time.Second

func boot(d string) map[string]string { return map[string]string{"sim.vigil.dev/boot-delay": d} }

// TestGuestEndsPerStrategy: how each strategy reacts to each way a guest
// ends: guest shutdown, hypervisor crash, guest panic, in-place reboot.
func TestGuestEndsPerStrategy(t *testing.T) {
	type outcome int
	const (
		restarted outcome = iota + 1 // a new VMI runs
		stoppedSucceeded
		stoppedFailed
		sameVMI // still the same VMI, Running
	)
	cases := []struct {
		strategy v1.RunStrategy
		action   string
		want     outcome
		status   v1.VirtualMachinePrintableStatus
	}{
		{v1.RunStrategyAlways, "shutdown", restarted, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyAlways, "crash", restarted, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyAlways, "panic", restarted, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyAlways, "reboot", sameVMI, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyRerunOnFailure, "shutdown", stoppedSucceeded, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyRerunOnFailure, "crash", restarted, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyRerunOnFailure, "panic", restarted, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyRerunOnFailure, "reboot", sameVMI, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyManual, "shutdown", stoppedSucceeded, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyManual, "crash", stoppedFailed, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyManual, "panic", stoppedFailed, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyManual, "reboot", sameVMI, v1.VirtualMachineStatusRunning},
		{v1.RunStrategyOnce, "shutdown", stoppedSucceeded, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyOnce, "crash", stoppedFailed, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyOnce, "panic", stoppedFailed, v1.VirtualMachineStatusStopped},
		{v1.RunStrategyOnce, "reboot", sameVMI, v1.VirtualMachineStatusRunning},
	}
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "16", "32Gi", nil)
	for _, tc := range cases {
		name := strings.ToLower(string(tc.strategy)) + "-" + tc.action
		t.Run(name, func(t *testing.T) {
			cl.t = t
			cl.create(newVM(name, tc.strategy, boot("100ms")))
			if tc.strategy == v1.RunStrategyManual {
				cl.mustVigil("start", name)
			}
			cl.waitStatus(name, v1.VirtualMachineStatusRunning, wait)
			first := cl.vmi(name)
			cl.annotateVMI(name, "sim.vigil.dev/action", tc.action)
			switch tc.want {
			case restarted:
				cl.waitVMIPhase(name, v1.Running, string(first.UID), wait)
			case stoppedSucceeded, stoppedFailed:
				phase := v1.Succeeded
				if tc.want == stoppedFailed {
					phase = v1.Failed
				}
				cl.waitStatus(name, tc.status, wait)
				if vmi := cl.vmi(name); vmi != nil && vmi.Status.Phase != phase {
					t.Errorf("VMI phase %s, want %s", vmi.Status.Phase, phase)
				}
				// It stays down.
				time.Sleep(300 * time.Millisecond)
				if st := cl.vm(name).Status.PrintableStatus; st != tc.status {
					t.Errorf("status became %s, want it to stay %s", st, tc.status)
				}
			case sameVMI:
				cl.waitFor("the reboot to be reported", wait, func() (bool, error) {
					ev, err := cl.c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
					if err != nil {
						return false, err
					}
					_ = ev
					return true, nil
				})
				time.Sleep(300 * time.Millisecond)
				vmi := cl.vmi(name)
				if vmi == nil || vmi.UID != first.UID || vmi.Status.Phase != v1.Running {
					t.Errorf("after a reboot the VMI changed: %v", vmi)
				}
			}
			if got := cl.vm(name).Status.PrintableStatus; got != tc.status {
				t.Errorf("printable status %s, want %s", got, tc.status)
			}
		})
	}
	cl.t = t
}

// TestFailureReasons: the VMI's reason says how the guest ended.
func TestFailureReasons(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	for action, reason := range map[string]string{"crash": v1.ReasonCrashed, "panic": v1.ReasonGuestPanicked, "shutdown": v1.ReasonGuestShutdown} {
		name := "reason-" + action
		cl.create(newVM(name, v1.RunStrategyManual, nil))
		cl.mustVigil("start", name)
		cl.waitStatus(name, v1.VirtualMachineStatusRunning, wait)
		cl.annotateVMI(name, "sim.vigil.dev/action", action)
		cl.waitStatus(name, v1.VirtualMachineStatusStopped, wait)
		if got := cl.vmi(name).Status.Reason; got != reason {
			t.Errorf("%s: reason %q, want %q", action, got, reason)
		}
	}
}

func TestStartStopRestart(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)

	// Halted: start flips to Always, stop back to Halted.
	cl.create(newVM("h", v1.RunStrategyHalted, boot("100ms")))
	cl.waitStatus("h", v1.VirtualMachineStatusStopped, wait)
	if out := cl.mustVigil("start", "h"); !strings.Contains(out, "VM h was scheduled to start") {
		t.Errorf("start said %q", out)
	}
	cl.waitStatus("h", v1.VirtualMachineStatusRunning, wait)
	if rs := *cl.vm("h").Spec.RunStrategy; rs != v1.RunStrategyAlways {
		t.Errorf("runStrategy after start: %s", rs)
	}
	first := cl.vmi("h")
	cl.mustVigil("restart", "h")
	second := cl.waitVMIPhase("h", v1.Running, string(first.UID), wait)
	if second.UID == first.UID {
		t.Error("restart kept the VMI")
	}
	cl.mustVigil("stop", "h")
	cl.waitStatus("h", v1.VirtualMachineStatusStopped, wait)
	cl.waitNoVMI("h", wait)
	if rs := *cl.vm("h").Spec.RunStrategy; rs != v1.RunStrategyHalted {
		t.Errorf("runStrategy after stop: %s", rs)
	}

	// Manual and RerunOnFailure keep their strategy through start/stop/restart.
	for _, rs := range []v1.RunStrategy{v1.RunStrategyManual, v1.RunStrategyRerunOnFailure} {
		name := strings.ToLower(string(rs))
		cl.create(newVM(name, rs, boot("100ms")))
		if rs == v1.RunStrategyManual {
			cl.waitStatus(name, v1.VirtualMachineStatusStopped, wait)
			cl.mustVigil("start", name)
		}
		cl.waitStatus(name, v1.VirtualMachineStatusRunning, wait)
		first := cl.vmi(name)
		cl.mustVigil("restart", name)
		cl.waitVMIPhase(name, v1.Running, string(first.UID), wait)
		cl.mustVigil("stop", name)
		cl.waitStatus(name, v1.VirtualMachineStatusStopped, wait)
		cl.waitNoVMI(name, wait)
		if got := *cl.vm(name).Spec.RunStrategy; got != rs {
			t.Errorf("%s became %s", rs, got)
		}
		cl.mustVigil("start", name)
		cl.waitStatus(name, v1.VirtualMachineStatusRunning, wait)
	}
	// Start paused: the guest runs paused; unpause resumes it.
	cl.mustVigil("stop", "manual")
	cl.waitNoVMI("manual", wait)
	cl.mustVigil("start", "manual", "--paused")
	cl.waitStatus("manual", v1.VirtualMachineStatusPaused, wait)
	cl.mustVigil("unpause", "vm", "manual")
	cl.waitStatus("manual", v1.VirtualMachineStatusRunning, wait)
}

func TestPauseUnpause(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("p", v1.RunStrategyAlways, nil))
	cl.waitStatus("p", v1.VirtualMachineStatusRunning, wait)
	if out := cl.mustVigil("pause", "vm", "p"); !strings.Contains(out, "VMI p was scheduled to pause") {
		t.Errorf("pause said %q", out)
	}
	cl.waitStatus("p", v1.VirtualMachineStatusPaused, wait)
	vmi := cl.vmi("p")
	if c := vmi.Status.Condition(v1.VirtualMachineInstancePaused); c == nil || c.Reason != v1.PausedByUserReason {
		t.Errorf("paused VMI conditions: %+v", vmi.Status.Conditions)
	}
	if _, err := cl.vigil("pause", "vmi", "p"); err == nil || !strings.Contains(err.Error(), "VMI is already paused") {
		t.Errorf("second pause: %v", err)
	}
	if _, err := cl.vigil("soft-reboot", "p"); err == nil || !strings.Contains(err.Error(), "VMI is paused") {
		t.Errorf("soft-reboot while paused: %v", err)
	}
	cl.mustVigil("unpause", "vmi", "p")
	cl.waitStatus("p", v1.VirtualMachineStatusRunning, wait)
	if _, err := cl.vigil("unpause", "vmi", "p"); err == nil || !strings.Contains(err.Error(), "VMI is not paused") {
		t.Errorf("second unpause: %v", err)
	}
	cl.mustVigil("soft-reboot", "p")
	cl.waitFor("the soft reboot to be carried out", wait, func() (bool, error) {
		return len(cl.vmi("p").Status.ActionRequests) == 0, nil
	})
	if cl.vmi("p").UID != vmi.UID {
		t.Error("soft-reboot replaced the VMI")
	}
}

// TestGracefulAndForcedStop: a guest that ignores ACPI is killed when its
// grace period ends (Failed, GracePeriodExpired); stop --force
// --grace-period 0 kills at once (Succeeded).
func TestGracefulAndForcedStop(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)

	vm := newVM("stubborn", v1.RunStrategyManual, map[string]string{"sim.vigil.dev/ignore-acpi": "true"})
	grace := int64(2)
	vm.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
	cl.create(vm)
	cl.mustVigil("start", "stubborn")
	cl.waitStatus("stubborn", v1.VirtualMachineStatusRunning, wait)
	start := time.Now()
	cl.mustVigil("stop", "stubborn")
	cl.waitStatus("stubborn", v1.VirtualMachineStatusStopping, wait)
	cl.waitFor("the stubborn guest to be killed", wait, func() (bool, error) {
		vmi := cl.vmi("stubborn")
		return vmi == nil || vmi.Status.Phase == v1.Failed, nil
	})
	if el := time.Since(start); el < time.Duration(grace)*time.Second {
		t.Errorf("the guest was killed after %s, before its grace period of %ds", el, grace)
	}
	cl.waitNoVMI("stubborn", wait)
	cl.waitEventAbout("stubborn", v1.ReasonGracePeriodExpired, wait)

	vm = newVM("forced", v1.RunStrategyManual, map[string]string{"sim.vigil.dev/ignore-acpi": "true"})
	long := int64(600)
	vm.Spec.Template.Spec.TerminationGracePeriodSeconds = &long
	cl.create(vm)
	cl.mustVigil("start", "forced")
	cl.waitStatus("forced", v1.VirtualMachineStatusRunning, wait)
	cl.mustVigil("stop", "forced", "--force", "--grace-period", "0")
	cl.waitNoVMI("forced", 15*time.Second)
	cl.waitEventAbout("forced", v1.ReasonStopped, wait) // a forced stop ends Succeeded/Stopped
}

// TestCrashLoop: an Always VM whose guest never starts shows
// CrashLoopBackOff with growing delays, and recovers once it can start.
func TestCrashLoop(t *testing.T) {
	cl := newCluster(t, clusterOptions{backoffBase: time.Second, backoffMax: 8 * time.Second})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("loop", v1.RunStrategyAlways, map[string]string{"sim.vigil.dev/fail-start": "true"}))
	cl.waitStatus("loop", v1.VirtualMachineStatusCrashLoopBackOff, wait)
	var delays []time.Duration
	last := 0
	cl.waitFor("three start failures", 60*time.Second, func() (bool, error) {
		vm := cl.vm("loop")
		sf := vm.Status.StartFailure
		if sf == nil || sf.ConsecutiveFailCount <= last || sf.RetryAfterTimestamp == nil {
			return false, nil
		}
		last = sf.ConsecutiveFailCount
		delays = append(delays, time.Until(sf.RetryAfterTimestamp.Time).Round(time.Second))
		return last >= 3, nil
	})
	t.Logf("crash-loop delays: %v", delays)
	if len(delays) >= 3 && delays[2] <= delays[0] {
		t.Errorf("delays did not grow: %v", delays)
	}
	// Fix the template: the next start succeeds and the record is cleared.
	// A merge patch, not a read and an update: the controller writes the
	// VM's status meanwhile, and an update would race it into a conflict.
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"sim.vigil.dev/fail-start":null}}}}}`)
	_, err := cl.c.VirtualMachines(v1.DefaultNamespace).Patch(context.Background(), "loop", client.MergePatch, patch, "", client.WriteOptions{})
	must(t, err)
	cl.waitStatus("loop", v1.VirtualMachineStatusRunning, 60*time.Second)
	cl.waitFor("the start-failure record to be cleared", wait, func() (bool, error) {
		return cl.vm("loop").Status.StartFailure == nil, nil
	})
}

func TestOnceRunsOnce(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("once", v1.RunStrategyOnce, nil))
	cl.waitStatus("once", v1.VirtualMachineStatusRunning, wait)
	if _, err := cl.vigil("start", "once"); err == nil || !strings.Contains(err.Error(), "VM is already running") {
		t.Errorf("start of a running Once VM: %v", err)
	}
	cl.annotateVMI("once", "sim.vigil.dev/action", "shutdown")
	cl.waitStatus("once", v1.VirtualMachineStatusStopped, wait)
	if _, err := cl.vigil("start", "once"); err == nil || !strings.Contains(err.Error(), "Once does not support manual start requests") {
		t.Errorf("start of a stopped Once VM: %v", err)
	}
	// Deleting its VMI does not make it run again (a Vigil decision).
	_, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).Delete(context.Background(), "once", client.DeleteOptions{})
	must(t, err)
	cl.waitNoVMI("once", wait)
	time.Sleep(500 * time.Millisecond)
	if cl.vmi("once") != nil {
		t.Error("Once ran a second time after its VMI was deleted")
	}
	if !cl.vm("once").Status.OnceStarted {
		t.Error("status.onceStarted is not recorded")
	}
}

func TestDeleteVMWithRunningVMI(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("doomed", v1.RunStrategyAlways, nil))
	cl.waitStatus("doomed", v1.VirtualMachineStatusRunning, wait)
	cl.mustVigil("delete", "vm", "doomed")
	cl.waitFor("the VM and its VMI to be gone", wait, func() (bool, error) {
		_, err1 := cl.c.VirtualMachines(v1.DefaultNamespace).Get(context.Background(), "doomed")
		_, err2 := cl.c.VirtualMachineInstances(v1.DefaultNamespace).Get(context.Background(), "doomed")
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), nil
	})
}

// TestDeleteVMIDirectly: a user's delete is a clean stop (spec 2.4.7).
func TestDeleteVMIDirectly(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("always", v1.RunStrategyAlways, nil))
	cl.create(newVM("rerun", v1.RunStrategyRerunOnFailure, nil))
	for _, n := range []string{"always", "rerun"} {
		cl.waitStatus(n, v1.VirtualMachineStatusRunning, wait)
	}
	first := cl.vmi("always")
	for _, n := range []string{"always", "rerun"} {
		cl.mustVigil("delete", "vmi", n)
	}
	cl.waitVMIPhase("always", v1.Running, string(first.UID), wait)
	cl.waitNoVMI("rerun", wait)
	cl.waitStatus("rerun", v1.VirtualMachineStatusStopped, wait)
}

// TestUnschedulableUntilANodeJoins: a VMI that fits no node waits, visibly,
// and is bound when a node with room joins.
func TestUnschedulableUntilANodeJoins(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("small", "2", "1Gi", nil)
	vm := newVM("big", v1.RunStrategyAlways, nil)
	vm.Spec.Template.Spec.Domain.Resources.Requests[v1.ResourceMemory] = mustQuantity("4Gi")
	cl.create(vm)
	cl.waitStatus("big", v1.VirtualMachineStatusUnschedulable, wait)
	vmi := cl.vmi("big")
	c := vmi.Status.Condition(v1.VirtualMachineInstancePodScheduled)
	if c == nil || !strings.Contains(c.Message, "insufficient memory") {
		t.Errorf("unschedulable condition: %+v", c)
	}
	cl.addAgent("large", "8", "16Gi", nil)
	cl.waitStatus("big", v1.VirtualMachineStatusRunning, wait)
	if node := cl.vmi("big").Status.NodeName; node != "large" {
		t.Errorf("bound to %s, want large", node)
	}
}

// TestNodeSelectorAndSpread: nodeSelector restricts placement; VMIs spread.
func TestNodeSelectorAndSpread(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("a", "4", "8Gi", map[string]string{"zone": "east"})
	cl.addAgent("b", "4", "8Gi", map[string]string{"zone": "west"})
	vm := newVM("east-only", v1.RunStrategyAlways, nil)
	vm.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "east"}
	cl.create(vm)
	cl.waitStatus("east-only", v1.VirtualMachineStatusRunning, wait)
	if node := cl.vmi("east-only").Status.NodeName; node != "a" {
		t.Errorf("bound to %s, want a", node)
	}
	counts := map[string]int{}
	for i := range 6 {
		name := "spread-" + string(rune('a'+i))
		cl.create(newVM(name, v1.RunStrategyAlways, nil))
		cl.waitStatus(name, v1.VirtualMachineStatusRunning, wait)
		counts[cl.vmi(name).Status.NodeName]++
	}
	if counts["a"] == 0 || counts["b"] == 0 {
		t.Errorf("VMIs did not spread: %v", counts)
	}
}

// TestAgentRestartKeepsGuests: guests outlive their agent, and the next
// agent re-adopts them without restarting them.
func TestAgentRestartKeepsGuests(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	cl.create(newVM("survivor", v1.RunStrategyAlways, nil))
	cl.waitStatus("survivor", v1.VirtualMachineStatusRunning, wait)
	before := cl.vmi("survivor")
	cl.stopAgent("node-1")
	cl.addAgent("node-1", "8", "16Gi", nil)
	time.Sleep(500 * time.Millisecond)
	after := cl.vmi("survivor")
	if after.UID != before.UID || after.Status.Phase != v1.Running {
		t.Errorf("after an agent restart: %s %s, want %s Running", after.UID, after.Status.Phase, before.UID)
	}
	// Still controllable.
	cl.mustVigil("stop", "survivor")
	cl.waitNoVMI("survivor", wait)
}
