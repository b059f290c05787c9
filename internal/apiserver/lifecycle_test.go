package apiserver_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/runstrategy"
)

// The lifecycle subresources, row by row of spec/lifecycle.md sections
// 4.2 to 4.7, through HTTP. VMIs are set up directly through the API (create,
// then /status), since no controller runs here.

// lc is one row: the state before, the request, and the expected answer and
// state after.
type lc struct {
	name string
	// rs is the VM's runStrategy; "running=true" and "running=false" use
	// the deprecated spec.running field instead.
	rs string
	// vmi is "none", "unset" (a VMI with no phase) or the VMI's phase.
	vmi     string
	vmiOpts []vmiOpt
	// queue is the VM's request queue before, in the notation of
	// queueString ("Stop(vmi),Start"); startFailure sets a crash-loop record.
	queue        string
	startFailure bool
	// body is the request body (JSON), query the request's query string.
	body, query string
	code        int
	// msg is the exact message of a refusal, or a prefix ending in "*".
	msg string
	// After an accepted, persisted request: wantRS is the strategy field
	// after ("" = unchanged), wantQueue the queue after ("-" = unchanged),
	// wantGrace the VMI's terminationGracePeriodSeconds after ("" = the VMI
	// is not written at all).
	wantRS    string
	wantQueue string
	wantGrace string
}

// dryRun reports whether the row's request is a dry run.
func (c lc) dryRun() bool {
	return strings.Contains(c.query, "dryRun=All") || strings.Contains(c.body, `"dryRun"`)
}

// setupLifecycle creates the VM (and VMI) of a row under name.
func (h *harness) setupLifecycle(c lc, name string) (*v1.VirtualMachine, *v1.VirtualMachineInstance) {
	h.t.Helper()
	vm := newVM(h.ns, name, v1.RunStrategy(c.rs))
	if r, ok := strings.CutPrefix(c.rs, "running="); ok {
		vm.Spec.RunStrategy = nil
		vm.Spec.Running = ptr(r == "true")
	}
	vm, err := h.vms().Create(ctx(), vm, client.WriteOptions{})
	if err != nil {
		h.t.Fatalf("creating VM: %v", err)
	}
	var vmi *v1.VirtualMachineInstance
	switch c.vmi {
	case "none":
	case "unset":
		vmi = h.createVMI(name, "", append([]vmiOpt{withOwner(vm)}, c.vmiOpts...)...)
	default:
		vmi = h.createVMI(name, v1.VirtualMachineInstancePhase(c.vmi), append([]vmiOpt{withOwner(vm)}, c.vmiOpts...)...)
	}
	if c.queue != "" || c.startFailure {
		vm.Status.StateChangeRequests = parseQueue(h.t, c.queue, vmi)
		if c.startFailure {
			vm.Status.StartFailure = &v1.VirtualMachineStartFailure{ConsecutiveFailCount: 3, LastFailedVMIUID: "old"}
		}
		if vm, err = h.vms().UpdateStatus(ctx(), vm, client.WriteOptions{}); err != nil {
			h.t.Fatalf("writing the VM status: %v", err)
		}
	}
	return vm, vmi
}

// parseQueue reads "Stop(vmi),Start{paused}": Stop(vmi) targets the row's
// VMI, Stop(old) another instance.
func parseQueue(t *testing.T, s string, vmi *v1.VirtualMachineInstance) []v1.VirtualMachineStateChangeRequest {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []v1.VirtualMachineStateChangeRequest
	for _, part := range strings.Split(s, ",") {
		var r v1.VirtualMachineStateChangeRequest
		switch {
		case part == "Start":
			r.Action = v1.StartRequest
		case part == "Start{paused}":
			r = v1.VirtualMachineStateChangeRequest{Action: v1.StartRequest, Data: map[string]string{"paused": "true"}}
		case part == "Stop(vmi)":
			r = v1.VirtualMachineStateChangeRequest{Action: v1.StopRequest, UID: &vmi.UID}
		case part == "Stop(old)":
			r = v1.VirtualMachineStateChangeRequest{Action: v1.StopRequest, UID: ptr(types.UID("old-uid"))}
		default:
			t.Fatalf("bad queue notation %q", part)
		}
		out = append(out, r)
	}
	return out
}

// queueString writes a queue in parseQueue's notation.
func queueString(q []v1.VirtualMachineStateChangeRequest, vmi *v1.VirtualMachineInstance) string {
	var parts []string
	for _, r := range q {
		s := string(r.Action)
		if r.UID != nil {
			switch {
			case vmi != nil && *r.UID == vmi.UID:
				s += "(vmi)"
			case *r.UID == "old-uid":
				s += "(old)"
			default:
				s += "(" + string(*r.UID) + ")"
			}
		}
		if len(r.Data) > 0 {
			keys := make([]string, 0, len(r.Data))
			for k, v := range r.Data {
				if v == "true" {
					keys = append(keys, k)
				} else {
					keys = append(keys, k+"="+v)
				}
			}
			slices.Sort(keys)
			s += "{" + strings.Join(keys, ",") + "}"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func strategyString(vm *v1.VirtualMachine) string {
	switch {
	case vm.Spec.Running != nil && vm.Spec.RunStrategy != nil:
		return "both"
	case vm.Spec.Running != nil:
		return fmt.Sprintf("running=%v", *vm.Spec.Running)
	case vm.Spec.RunStrategy != nil:
		return string(*vm.Spec.RunStrategy)
	}
	return ""
}

func graceString(vmi *v1.VirtualMachineInstance) string {
	if g := vmi.Spec.TerminationGracePeriodSeconds; g != nil {
		return fmt.Sprint(*g)
	}
	return "unset"
}

// subresource sends PUT .../{kind}/{name}/{action}.
func (h *harness) subresource(kind, name, action, body, query string) *response {
	h.t.Helper()
	var b any
	if body != "" {
		b = body
	}
	return h.do("PUT", subBase+"/namespaces/"+h.ns+"/"+kind+"/"+name+"/"+action+query, b, "")
}

// runVMActions runs rows of a VM subresource (start, stop, restart).
func runVMActions(t *testing.T, h *harness, action string, cases []lc) {
	t.Helper()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := *h
			h.t = t
			name := fmt.Sprintf("%s-%d", action, i)
			vm, vmi := h.setupLifecycle(c, name)
			r := h.subresource("virtualmachines", name, action, c.body, c.query)
			if c.code >= 400 {
				checkRefusal(t, r, c.code, c.msg)
			} else {
				r.expectCode(t, c.code)
			}
			after := h.getVM(name)
			var vmiAfter *v1.VirtualMachineInstance
			if vmi != nil {
				vmiAfter = h.getVMI(name)
			}
			if c.code >= 400 || c.dryRun() {
				if after.ResourceVersion != vm.ResourceVersion {
					t.Errorf("the VM was written (rv %s -> %s): strategy %s, queue %q", vm.ResourceVersion, after.ResourceVersion, strategyString(after), queueString(after.Status.StateChangeRequests, vmi))
				}
				if vmi != nil && vmiAfter.ResourceVersion != vmi.ResourceVersion {
					t.Errorf("the VMI was written (rv %s -> %s): grace %s", vmi.ResourceVersion, vmiAfter.ResourceVersion, graceString(vmiAfter))
				}
				return
			}
			if want := c.wantRS; want == "" {
				if strategyString(after) != strategyString(vm) {
					t.Errorf("strategy changed from %s to %s", strategyString(vm), strategyString(after))
				}
			} else if got := strategyString(after); got != want {
				t.Errorf("strategy = %s, want %s", got, want)
			}
			wantQ := c.wantQueue
			if wantQ == "-" {
				wantQ = c.queue
			}
			if got := queueString(after.Status.StateChangeRequests, vmi); got != wantQ {
				t.Errorf("queue = %q, want %q", got, wantQ)
			}
			if c.startFailure && c.wantQueue != "-" && after.Status.StartFailure != nil {
				t.Error("a queued user action did not clear status.startFailure")
			}
			if vmi != nil {
				if c.wantGrace == "" {
					if vmiAfter.ResourceVersion != vmi.ResourceVersion {
						t.Errorf("the VMI was written (grace %s -> %s)", graceString(vmi), graceString(vmiAfter))
					}
				} else if got := graceString(vmiAfter); got != c.wantGrace {
					t.Errorf("VMI grace period = %s, want %s", got, c.wantGrace)
				}
			}
		})
	}
}

// checkRefusal checks a refusal's code, message, and Status form.
func checkRefusal(t *testing.T, r *response, code int, msg string) {
	t.Helper()
	st := r.expectStatus(t, code, "")
	if p, ok := strings.CutSuffix(msg, "*"); ok {
		if !strings.HasPrefix(st.Message, p) {
			t.Errorf("message = %q, want prefix %q", st.Message, p)
		}
	} else if msg != "" && st.Message != msg {
		t.Errorf("message = %q, want %q", st.Message, msg)
	}
	wantReason := map[int]metav1.StatusReason{400: metav1.StatusReasonBadRequest, 404: metav1.StatusReasonNotFound, 409: metav1.StatusReasonConflict, 500: metav1.StatusReasonInternalError}[code]
	if wantReason != "" && st.Reason != wantReason {
		t.Errorf("reason = %q, want %q", st.Reason, wantReason)
	}
}

const (
	msgAlreadyRunning = "VM is already running"
	msgNotRunning     = "VM is not running"
	msgUnderway       = "unable to complete request: stop/start already underway"
	msgBadBody        = "Can not unmarshal Request body to struct, error: *"
	msgShorterGrace   = "Halted only supports manual stop requests with a shorter graceperiod"
)

// TestMessagesMatchCore: the messages this suite expects are the core's.
func TestMessagesMatchCore(t *testing.T) {
	for got, want := range map[string]string{
		msgAlreadyRunning: runstrategy.MsgAlreadyRunning, msgNotRunning: runstrategy.MsgNotRunning,
		msgUnderway: runstrategy.MsgAlreadyUnderway, msgShorterGrace: runstrategy.MsgHaltedShorterGrace,
	} {
		if got != want {
			t.Errorf("spec message %q, core message %q", got, want)
		}
	}
}

// TestStart covers section 4.2.
func TestStart(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	var cases []lc
	// 2. A VMI that is alive (not final, phase neither Unknown nor unset):
	// 409 for every strategy.
	for _, rs := range []string{"Always", "RerunOnFailure", "Manual", "Halted", "Once", "running=true"} {
		for _, ph := range []string{"Running", "Pending", "Scheduling", "Scheduled"} {
			cases = append(cases, lc{name: rs + " " + ph + " is already running", rs: rs, vmi: ph, code: 409, msg: msgAlreadyRunning})
		}
	}
	cases = append(cases, []lc{
		// 4. The body is decoded after the "already running" check.
		{name: "bad body", rs: "Manual", vmi: "none", body: `{"paused":"yes"}`, code: 400, msg: msgBadBody},
		{name: "malformed body", rs: "Manual", vmi: "none", body: `{`, code: 400, msg: msgBadBody},
		{name: "bad body but already running", rs: "Manual", vmi: "Running", body: `{`, code: 409, msg: msgAlreadyRunning},
		// 5. By strategy.
		{name: "Halted none", rs: "Halted", vmi: "none", code: 202, wantRS: "Always", wantQueue: ""},
		{name: "Halted Succeeded", rs: "Halted", vmi: "Succeeded", code: 202, wantRS: "Always", wantQueue: ""},
		{name: "Halted Failed", rs: "Halted", vmi: "Failed", code: 202, wantRS: "Always", wantQueue: ""},
		{name: "Halted Unknown", rs: "Halted", vmi: "Unknown", code: 202, wantRS: "Always", wantQueue: ""},
		{name: "Halted unset", rs: "Halted", vmi: "unset", code: 202, wantRS: "Always", wantQueue: ""},
		{name: "running=false none", rs: "running=false", vmi: "none", code: 202, wantRS: "running=true", wantQueue: ""},
		{name: "Halted paused", rs: "Halted", vmi: "none", body: `{"paused":true}`, code: 202, wantRS: "Always", wantQueue: "Start{paused}"},
		{name: "Halted paused final", rs: "Halted", vmi: "Succeeded", body: `{"paused":true}`, code: 202, wantRS: "Always", wantQueue: "Start{paused}"},
		{name: "running=false paused", rs: "running=false", vmi: "none", body: `{"paused":true}`, code: 202, wantRS: "running=true", wantQueue: "Start{paused}"},
		{name: "Halted paused underway", rs: "Halted", vmi: "none", queue: "Start", body: `{"paused":true}`, code: 409, msg: msgUnderway},
		{name: "Manual none", rs: "Manual", vmi: "none", code: 202, wantQueue: "Start"},
		{name: "Manual Unknown", rs: "Manual", vmi: "Unknown", code: 202, wantQueue: "Start"},
		{name: "Manual unset", rs: "Manual", vmi: "unset", code: 202, wantQueue: "Start"},
		{name: "Manual Succeeded", rs: "Manual", vmi: "Succeeded", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Manual Failed", rs: "Manual", vmi: "Failed", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Manual none paused", rs: "Manual", vmi: "none", body: `{"paused":true}`, code: 202, wantQueue: "Start{paused}"},
		{name: "Manual Succeeded paused", rs: "Manual", vmi: "Succeeded", body: `{"paused":true}`, code: 202, wantQueue: "Stop(vmi),Start{paused}"},
		{name: "Manual clears startFailure", rs: "Manual", vmi: "none", startFailure: true, code: 202, wantQueue: "Start"},
		{name: "RerunOnFailure none", rs: "RerunOnFailure", vmi: "none", code: 202, wantQueue: "Start"},
		{name: "RerunOnFailure Unknown", rs: "RerunOnFailure", vmi: "Unknown", code: 202, wantQueue: "Start"},
		{name: "RerunOnFailure Succeeded", rs: "RerunOnFailure", vmi: "Succeeded", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "RerunOnFailure Failed", rs: "RerunOnFailure", vmi: "Failed", code: 409, msg: "RerunOnFailure does not support starting VM from failed state"},
		{name: "RerunOnFailure paused", rs: "RerunOnFailure", vmi: "none", body: `{"paused":true}`, code: 202, wantQueue: "Start{paused}"},
		{name: "Always none", rs: "Always", vmi: "none", code: 409, msg: "Always does not support manual start requests"},
		{name: "Always Succeeded", rs: "Always", vmi: "Succeeded", code: 409, msg: "Always does not support manual start requests"},
		{name: "Always Unknown", rs: "Always", vmi: "Unknown", code: 409, msg: "Always does not support manual start requests"},
		{name: "running=true none", rs: "running=true", vmi: "none", code: 409, msg: "Always does not support manual start requests"},
		{name: "Once none", rs: "Once", vmi: "none", code: 409, msg: "Once does not support manual start requests"},
		{name: "Once Succeeded", rs: "Once", vmi: "Succeeded", code: 409, msg: "Once does not support manual start requests"},
		// Adding a Start to a non-empty queue: 409 (KubeVirt: 500), same message.
		{name: "Manual underway", rs: "Manual", vmi: "none", queue: "Start", code: 409, msg: msgUnderway},
		{name: "RerunOnFailure underway", rs: "RerunOnFailure", vmi: "none", queue: "Stop(old)", code: 409, msg: msgUnderway},
		{name: "Manual final underway", rs: "Manual", vmi: "Succeeded", queue: "Stop(vmi)", code: 409, msg: msgUnderway},
		// Dry run: every check, no write.
		{name: "dry run query", rs: "Halted", vmi: "none", query: "?dryRun=All", code: 202},
		{name: "dry run body", rs: "Manual", vmi: "Succeeded", body: `{"dryRun":["All"]}`, code: 202},
		{name: "dry run paused", rs: "Halted", vmi: "none", body: `{"paused":true,"dryRun":["All"]}`, code: 202},
		{name: "dry run refused", rs: "Always", vmi: "none", query: "?dryRun=All", code: 409, msg: "Always does not support manual start requests"},
		{name: "dry run bad value", rs: "Manual", vmi: "none", body: `{"dryRun":["Some"]}`, code: 400},
	}...)
	runVMActions(t, h, "start", cases)

	// 1. No VM: 404, whatever the body.
	checkRefusal(t, h.subresource("virtualmachines", "missing", "start", "", ""), 404, "")
	checkRefusal(t, h.subresource("virtualmachines", "missing", "start", "{", ""), 404, "")
}

// TestStartPausedOneWrite: start --paused on a Halted VM writes the strategy
// and the paused Start request in one update (a Vigil difference: KubeVirt
// lets the controller flip the strategy later).
func TestStartPausedOneWrite(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	vm := h.createVM("vm", v1.RunStrategyHalted)
	w := h.watchRaw(h.vmsPath() + "?watch=true&resourceVersion=" + vm.ResourceVersion)
	h.subresource("virtualmachines", "vm", "start", `{"paused":true}`, "").expectCode(t, 202)
	after := h.getVM("vm")
	ev := w.next(t)
	var seen v1.VirtualMachine
	if err := json.Unmarshal(ev.Object, &seen); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "MODIFIED" || seen.ResourceVersion != after.ResourceVersion {
		t.Fatalf("the first write after start has rv %s, the VM now %s: more than one write", seen.ResourceVersion, after.ResourceVersion)
	}
	if strategyString(&seen) != "Always" || queueString(seen.Status.StateChangeRequests, nil) != "Start{paused}" {
		t.Errorf("the one write has strategy %s and queue %q", strategyString(&seen), queueString(seen.Status.StateChangeRequests, nil))
	}
	if seen.Generation != vm.Generation+1 {
		t.Errorf("generation %d, want %d (the spec changed)", seen.Generation, vm.Generation+1)
	}
	for _, c := range seen.Status.Conditions {
		if c.Type == v1.VirtualMachineFailure {
			t.Errorf("a Failure condition was recorded: %+v", c)
		}
	}
}

// TestStop covers section 4.3.
func TestStop(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	cases := []lc{
		{name: "bad body", rs: "Always", vmi: "Running", body: `{"gracePeriod":"x"}`, code: 400, msg: msgBadBody},
		{name: "negative grace", rs: "Always", vmi: "Running", body: `{"gracePeriod":-1}`, code: 400},
		{name: "Always none", rs: "Always", vmi: "none", code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "Always Running", rs: "Always", vmi: "Running", code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "Always Failed", rs: "Always", vmi: "Failed", code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "Always crash loop", rs: "Always", vmi: "none", startFailure: true, code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "Once Running", rs: "Once", vmi: "Running", code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "Once none", rs: "Once", vmi: "none", code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "running=true Running", rs: "running=true", vmi: "Running", code: 202, wantRS: "running=false", wantQueue: "-"},
		{name: "Manual none", rs: "Manual", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "Manual Succeeded", rs: "Manual", vmi: "Succeeded", code: 409, msg: msgNotRunning},
		{name: "Manual Failed", rs: "Manual", vmi: "Failed", code: 409, msg: msgNotRunning},
		{name: "RerunOnFailure none", rs: "RerunOnFailure", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "RerunOnFailure Succeeded", rs: "RerunOnFailure", vmi: "Succeeded", code: 409, msg: msgNotRunning},
		{name: "Manual Running", rs: "Manual", vmi: "Running", code: 202, wantQueue: "Stop(vmi)"},
		{name: "Manual Pending", rs: "Manual", vmi: "Pending", code: 202, wantQueue: "Stop(vmi)"},
		{name: "Manual Unknown", rs: "Manual", vmi: "Unknown", code: 202, wantQueue: "Stop(vmi)"},
		{name: "RerunOnFailure Running", rs: "RerunOnFailure", vmi: "Running", code: 202, wantQueue: "Stop(vmi)"},
		{name: "stop overrides a start", rs: "Manual", vmi: "Running", queue: "Start", code: 202, wantQueue: "Stop(vmi)"},
		{name: "stop overrides a restart", rs: "RerunOnFailure", vmi: "Running", queue: "Stop(vmi),Start", code: 202, wantQueue: "Stop(vmi)"},
		{name: "Manual clears startFailure", rs: "Manual", vmi: "Running", startFailure: true, code: 202, wantQueue: "Stop(vmi)"},
		{name: "Halted none", rs: "Halted", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "Halted Succeeded", rs: "Halted", vmi: "Succeeded", code: 409, msg: msgNotRunning},
		// The Halted grace-period table (VMI Running).
		{name: "Halted 1800 none", rs: "Halted", vmi: "Running", vmiOpts: []vmiOpt{withGrace(1800)}, code: 409, msg: msgShorterGrace},
		{name: "Halted 1800 1800", rs: "Halted", vmi: "Running", vmiOpts: []vmiOpt{withGrace(1800)}, body: `{"gracePeriod":1800}`, code: 409, msg: msgShorterGrace},
		// Vigil difference: the refused request does not patch the VMI to 2400.
		{name: "Halted 1800 2400", rs: "Halted", vmi: "Running", vmiOpts: []vmiOpt{withGrace(1800)}, body: `{"gracePeriod":2400}`, code: 409, msg: msgShorterGrace},
		{name: "Halted unset 1800", rs: "Halted", vmi: "Running", body: `{"gracePeriod":1800}`, code: 202, wantQueue: "Stop(vmi)", wantGrace: "1800"},
		{name: "Halted 1800 800", rs: "Halted", vmi: "Running", vmiOpts: []vmiOpt{withGrace(1800)}, body: `{"gracePeriod":800}`, code: 202, wantQueue: "Stop(vmi)", wantGrace: "800"},
		{name: "Halted Unknown unset 10", rs: "Halted", vmi: "Unknown", body: `{"gracePeriod":10}`, code: 202, wantQueue: "Stop(vmi)", wantGrace: "10"},
		{name: "Halted underway shorter", rs: "Halted", vmi: "Running", vmiOpts: []vmiOpt{withGrace(1800)}, queue: "Stop(vmi)", body: `{"gracePeriod":5}`, code: 202, wantQueue: "Stop(vmi)", wantGrace: "5"},
		// Force stop: the grace period first, then the strategy's effect.
		{name: "force Always Running", rs: "Always", vmi: "Running", vmiOpts: []vmiOpt{withGrace(30)}, body: `{"gracePeriod":0}`, code: 202, wantRS: "Halted", wantQueue: "-", wantGrace: "0"},
		{name: "force Manual Running", rs: "Manual", vmi: "Running", body: `{"gracePeriod":0}`, code: 202, wantQueue: "Stop(vmi)", wantGrace: "0"},
		{name: "force Always Failed", rs: "Always", vmi: "Failed", vmiOpts: []vmiOpt{withGrace(30)}, body: `{"gracePeriod":0}`, code: 202, wantRS: "Halted", wantQueue: "-"},
		{name: "force Manual none", rs: "Manual", vmi: "none", body: `{"gracePeriod":0}`, code: 409, msg: msgNotRunning},
		// Dry run.
		{name: "dry run force", rs: "Manual", vmi: "Running", vmiOpts: []vmiOpt{withGrace(30)}, body: `{"gracePeriod":0,"dryRun":["All"]}`, code: 202},
		{name: "dry run Always", rs: "Always", vmi: "Running", query: "?dryRun=All", code: 202},
		{name: "dry run Halted shorter", rs: "Halted", vmi: "Running", query: "?dryRun=All", body: `{"gracePeriod":1}`, code: 202},
	}
	runVMActions(t, h, "stop", cases)
	checkRefusal(t, h.subresource("virtualmachines", "missing", "stop", "", ""), 404, "")

	// A second stop of an Always VM whose VMI is gone: 409.
	vm := h.createVM("twice", v1.RunStrategyAlways)
	h.subresource("virtualmachines", "twice", "stop", "", "").expectCode(t, 202)
	checkRefusal(t, h.subresource("virtualmachines", "twice", "stop", "", ""), 409, msgNotRunning)
	_ = vm
}

// TestRestart covers section 4.4.
func TestRestart(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	cases := []lc{
		{name: "bad body", rs: "Always", vmi: "Running", body: `{"gracePeriodSeconds":"x"}`, code: 400, msg: msgBadBody},
		{name: "grace 5", rs: "Always", vmi: "Running", body: `{"gracePeriodSeconds":5}`, code: 400, msg: "For force restart, only gracePeriod=0 is supported for now"},
		{name: "grace -1", rs: "Always", vmi: "Running", body: `{"gracePeriodSeconds":-1}`, code: 400, msg: "gracePeriod has to be greater or equal to 0"},
		{name: "Halted", rs: "Halted", vmi: "Running", code: 409, msg: "RunStrategy Halted does not support manual restart requests"},
		{name: "Halted none", rs: "Halted", vmi: "none", code: 409, msg: "RunStrategy Halted does not support manual restart requests"},
		{name: "running=false", rs: "running=false", vmi: "none", code: 409, msg: "RunStrategy Halted does not support manual restart requests"},
		{name: "Once", rs: "Once", vmi: "Running", code: 409, msg: "RunStrategy Once does not support manual restart requests"},
		{name: "Always none", rs: "Always", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "Manual none", rs: "Manual", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "RerunOnFailure none", rs: "RerunOnFailure", vmi: "none", code: 409, msg: msgNotRunning},
		{name: "Always Running", rs: "Always", vmi: "Running", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "running=true Running", rs: "running=true", vmi: "Running", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Always Pending", rs: "Always", vmi: "Pending", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Manual Failed", rs: "Manual", vmi: "Failed", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Manual Succeeded", rs: "Manual", vmi: "Succeeded", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "RerunOnFailure Succeeded", rs: "RerunOnFailure", vmi: "Succeeded", code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "Manual paused", rs: "Manual", vmi: "Running", vmiOpts: []vmiOpt{withCondition(v1.VirtualMachineInstancePaused, "True")}, code: 202, wantQueue: "Stop(vmi),Start"},
		{name: "clears startFailure", rs: "Always", vmi: "Failed", startFailure: true, code: 202, wantQueue: "Stop(vmi),Start"},
		// Force restart: the VMI's grace period becomes 1 second.
		{name: "force", rs: "Always", vmi: "Running", vmiOpts: []vmiOpt{withGrace(30)}, body: `{"gracePeriodSeconds":0}`, code: 202, wantQueue: "Stop(vmi),Start", wantGrace: "1"},
		{name: "force unset grace", rs: "Manual", vmi: "Running", body: `{"gracePeriodSeconds":0}`, code: 202, wantQueue: "Stop(vmi),Start", wantGrace: "1"},
		// Underway: 409, and (Vigil) the grace period is not lowered first.
		{name: "underway", rs: "Manual", vmi: "Running", queue: "Stop(vmi)", code: 409, msg: msgUnderway},
		{name: "underway force", rs: "Manual", vmi: "Running", vmiOpts: []vmiOpt{withGrace(30)}, queue: "Start", body: `{"gracePeriodSeconds":0}`, code: 409, msg: msgUnderway},
		// Dry run.
		{name: "dry run force", rs: "Always", vmi: "Running", vmiOpts: []vmiOpt{withGrace(30)}, body: `{"gracePeriodSeconds":0,"dryRun":["All"]}`, code: 202},
		{name: "dry run query", rs: "Manual", vmi: "Running", query: "?dryRun=All", code: 202},
	}
	runVMActions(t, h, "restart", cases)
	// The grace-period checks come before the VM lookup.
	checkRefusal(t, h.subresource("virtualmachines", "missing", "restart", `{"gracePeriodSeconds":5}`, ""), 400, "For force restart, only gracePeriod=0 is supported for now")
	checkRefusal(t, h.subresource("virtualmachines", "missing", "restart", "", ""), 404, "")
}

// vmiCase is one row of a VMI subresource.
type vmiCase struct {
	name    string
	phase   string // "none" or a phase
	opts    []vmiOpt
	pending []v1.VMIAction // actions already queued on the VMI
	body    string
	query   string
	code    int
	msg     string
}

// TestVMIActions covers sections 4.5 (pause), 4.6 (unpause) and 4.7
// (soft reboot): codes, messages, and the action queued on the VMI's
// status.actionRequests; refusals and dry runs write nothing.
func TestVMIActions(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	paused := withCondition(v1.VirtualMachineInstancePaused, "True")
	notPaused := withCondition(v1.VirtualMachineInstancePaused, "False")
	agent := withCondition(v1.VirtualMachineInstanceAgentConnected, "True")
	tables := map[string][]vmiCase{
		"pause": {
			{name: "missing", phase: "none", code: 404},
			{name: "Pending", phase: "Pending", code: 409, msg: "VM is not running"},
			{name: "Scheduled", phase: "Scheduled", code: 409, msg: "VM is not running"},
			{name: "Succeeded", phase: "Succeeded", code: 409, msg: "VM is not running"},
			{name: "already paused", phase: "Running", opts: []vmiOpt{paused}, code: 409, msg: "VMI is already paused"},
			{name: "pause pending", phase: "Running", pending: []v1.VMIAction{v1.VMIActionPause}, code: 409, msg: "VMI is already paused"},
			{name: "bad body", phase: "Running", body: `{"dryRun":"All"}`, code: 400, msg: msgBadBody},
			{name: "Running", phase: "Running", code: 200},
			{name: "Running Paused=False", phase: "Running", opts: []vmiOpt{notPaused}, code: 200},
			{name: "paused, unpause pending", phase: "Running", opts: []vmiOpt{paused}, pending: []v1.VMIAction{v1.VMIActionUnpause}, code: 200},
			{name: "dry run body", phase: "Running", body: `{"dryRun":["All"]}`, code: 200},
			{name: "dry run query", phase: "Running", query: "?dryRun=All", code: 200},
			{name: "dry run refused", phase: "Pending", body: `{"dryRun":["All"]}`, code: 409, msg: "VM is not running"},
		},
		"unpause": {
			{name: "missing", phase: "none", code: 404},
			{name: "Pending", phase: "Pending", code: 409, msg: "VMI is not running"},
			{name: "Failed", phase: "Failed", opts: []vmiOpt{paused}, code: 409, msg: "VMI is not running"},
			{name: "not paused", phase: "Running", code: 409, msg: "VMI is not paused"},
			{name: "Paused=False", phase: "Running", opts: []vmiOpt{notPaused}, code: 409, msg: "VMI is not paused"},
			{name: "unpause pending", phase: "Running", opts: []vmiOpt{paused}, pending: []v1.VMIAction{v1.VMIActionUnpause}, code: 409, msg: "VMI is not paused"},
			{name: "paused", phase: "Running", opts: []vmiOpt{paused}, code: 200},
			{name: "pause pending", phase: "Running", pending: []v1.VMIAction{v1.VMIActionPause}, code: 200},
			{name: "dry run", phase: "Running", opts: []vmiOpt{paused}, body: `{"dryRun":["All"]}`, code: 200},
		},
		"softreboot": {
			{name: "missing", phase: "none", code: 404},
			{name: "Scheduled", phase: "Scheduled", code: 409, msg: "VM is not running"},
			{name: "Succeeded", phase: "Succeeded", code: 409, msg: "VM is not running"},
			{name: "paused", phase: "Running", opts: []vmiOpt{paused}, code: 409, msg: "VMI is paused"},
			{name: "pause pending", phase: "Running", pending: []v1.VMIAction{v1.VMIActionPause}, code: 409, msg: "VMI is paused"},
			{name: "no agent, no ACPI", phase: "Running", opts: []vmiOpt{withACPI(false)}, code: 409, msg: "VMI neither have the agent connected nor the ACPI feature enabled"},
			{name: "agent, no ACPI", phase: "Running", opts: []vmiOpt{withACPI(false), agent}, code: 200},
			{name: "ACPI explicitly on", phase: "Running", opts: []vmiOpt{withACPI(true)}, code: 200},
			{name: "Running", phase: "Running", code: 200},
			{name: "dry run query", phase: "Running", query: "?dryRun=All", code: 200},
		},
	}
	for _, action := range []string{"pause", "unpause", "softreboot"} {
		want := map[string]v1.VMIAction{"pause": v1.VMIActionPause, "unpause": v1.VMIActionUnpause, "softreboot": v1.VMIActionSoftReboot}[action]
		for i, c := range tables[action] {
			t.Run(action+"/"+c.name, func(t *testing.T) {
				h := *h
				h.t = t
				name := fmt.Sprintf("%s-%d", action, i)
				vm := h.createVM(name, v1.RunStrategyManual)
				var vmi *v1.VirtualMachineInstance
				if c.phase != "none" {
					vmi = h.createVMI(name, v1.VirtualMachineInstancePhase(c.phase), append([]vmiOpt{withOwner(vm)}, c.opts...)...)
					if len(c.pending) > 0 {
						for _, a := range c.pending {
							vmi.Status.ActionRequests = append(vmi.Status.ActionRequests, v1.VirtualMachineInstanceActionRequest{Action: a, ID: "earlier-" + string(a)})
						}
						var err error
						if vmi, err = h.vmis().UpdateStatus(ctx(), vmi, client.WriteOptions{}); err != nil {
							t.Fatal(err)
						}
					}
				}
				r := h.subresource("virtualmachineinstances", name, action, c.body, c.query)
				if c.code >= 400 {
					checkRefusal(t, r, c.code, c.msg)
				} else {
					r.expectCode(t, c.code)
				}
				h.unchanged(h.vmPath(name), vm.ResourceVersion) // the VM is never touched
				if vmi == nil {
					return
				}
				after := h.getVMI(name)
				dry := strings.Contains(c.query+c.body, "dryRun")
				if c.code >= 400 || dry {
					if after.ResourceVersion != vmi.ResourceVersion {
						t.Errorf("the VMI was written: actionRequests %+v", after.Status.ActionRequests)
					}
					return
				}
				reqs := after.Status.ActionRequests
				if len(reqs) != len(c.pending)+1 {
					t.Fatalf("actionRequests = %+v, want the %d pending plus one", reqs, len(c.pending))
				}
				last := reqs[len(reqs)-1]
				if last.Action != want || last.ID == "" || last.RequestTime.IsZero() {
					t.Errorf("queued %+v, want a %s with an id and a time", last, want)
				}
				for j, a := range c.pending {
					if reqs[j].Action != a {
						t.Errorf("pending action %d changed to %s", j, reqs[j].Action)
					}
				}
				if after.Status.Phase != vmi.Status.Phase || graceString(after) != graceString(vmi) || after.Generation != vmi.Generation {
					t.Error("the action changed more than status.actionRequests")
				}
			})
		}
	}

	// Each accepted request queues one more action, in order, with its own id.
	vm := h.createVM("seq", v1.RunStrategyManual)
	h.createVMI("seq", v1.Running, withOwner(vm))
	h.subresource("virtualmachineinstances", "seq", "pause", "", "").expectCode(t, 200)
	h.subresource("virtualmachineinstances", "seq", "unpause", "", "").expectCode(t, 200)
	h.subresource("virtualmachineinstances", "seq", "softreboot", "", "").expectCode(t, 200)
	reqs := h.getVMI("seq").Status.ActionRequests
	var got []string
	ids := map[string]bool{}
	for _, r := range reqs {
		got = append(got, string(r.Action))
		ids[r.ID] = true
	}
	if strings.Join(got, ",") != "Pause,Unpause,SoftReboot" || len(ids) != 3 {
		t.Errorf("actionRequests = %+v", reqs)
	}
}
