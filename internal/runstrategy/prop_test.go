package runstrategy

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"
)

// pinRapidSeed makes the property tests deterministic and a little
// deeper than rapid's defaults: unless given on the command line
// (-rapid.seed, -rapid.checks, -rapid.steps) or in the environment
// (RAPID_SEED, ...), the tests explore the same 300 sequences of about 80
// actions on every run. -rapid.seed=0 asks for a random seed.
func pinRapidSeed(t *testing.T) {
	t.Helper()
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, value := range map[string]string{"seed": "20260801", "checks": "300", "steps": "80"} {
		if given["rapid."+name] || os.Getenv("RAPID_"+strings.ToUpper(name)) != "" {
			continue
		}
		if err := flag.Set("rapid."+name, value); err != nil {
			t.Fatal(err)
		}
	}
}

var propStrategies = []Strategy{Always, RerunOnFailure, Manual, Halted, Once}

// invariants holds what the property test remembers across actions.
type invariants struct {
	w *world
	// rofStopped is set when a RerunOnFailure VM's VMI went away through a
	// stop, a guest shutdown or a deletion, with no Start queued: the VM
	// must then stay stopped until a user acts.
	rofStopped bool
	// read is the VMI a slow client read earlier; its late request races
	// with everything that happened since.
	read *Instance
}

// TestInvariants drives random sequences of user requests, guest events,
// VMI deletions, strategy edits, time and controller passes through the
// simulated world, and checks the invariants of section 9.4 after each.
func TestInvariants(t *testing.T) {
	pinRapidSeed(t)
	rapid.Check(t, func(rt *rapid.T) {
		var spec VM
		if rapid.Bool().Draw(rt, "legacy") {
			spec.Running = ptr(rapid.Bool().Draw(rt, "running"))
		} else {
			spec.RunStrategy = ptr(rapid.SampledFrom(propStrategies).Draw(rt, "strategy"))
		}
		iv := &invariants{w: newWorld(spec)}
		w := iv.w
		if rapid.Bool().Draw(rt, "shrunk backoff") {
			w.backoff.Base, w.backoff.Max = time.Second, 8*time.Second
		}
		w.backoff.Jitter = func(n int64) int64 { return rapid.Int64Range(0, n).Draw(rt, "jitter") }

		passAction := func(stale, fail bool) func(*rapid.T) {
			return func(rt *rapid.T) {
				s, err := w.pass(stale, fail)
				if err != nil {
					rt.Skip(err)
				}
				iv.checkPass(rt, s)
			}
		}
		lifecycle := func(verb string, late bool) func(*rapid.T) {
			return func(rt *rapid.T) {
				var g *int64
				if rapid.Bool().Draw(rt, "with grace") {
					g = ptr(rapid.SampledFrom([]int64{-1, 0, 1, 30, 1800}).Draw(rt, "grace"))
				}
				read := w.vmi
				if late {
					read = iv.read
				}
				iv.checkLifecycle(rt, read, verb, g, rapid.Bool().Draw(rt, "paused"))
			}
		}
		agent := func(phases ...Phase) func(*rapid.T) {
			return func(rt *rapid.T) {
				if err := w.setPhase(rapid.SampledFrom(phases).Draw(rt, "phase")); err != nil {
					rt.Skip(err)
				}
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"pass":          passAction(false, false),
			"pass again":    passAction(false, false),
			"stale pass":    passAction(true, false),
			"failing pass":  passAction(false, true),
			"start":         lifecycle("start", false),
			"stop":          lifecycle("stop", false),
			"restart":       lifecycle("restart", false),
			"pause":         lifecycle("pause", false),
			"unpause":       lifecycle("unpause", false),
			"soft-reboot":   lifecycle("soft-reboot", false),
			"client reads":  func(*rapid.T) { iv.read = cloneInst(w.vmi) },
			"late start":    lifecycle("start", true),
			"late stop":     lifecycle("stop", true),
			"late restart":  lifecycle("restart", true),
			"agent starts":  agent(PhasePending, PhaseScheduling, PhaseScheduled, PhaseUnknown),
			"guest runs":    agent(PhaseRunning),
			"guest ends":    agent(PhaseSucceeded, PhaseFailed),
			"guest crashes": agent(PhaseFailed),
			"delete VMI": func(rt *rapid.T) {
				if err := w.deleteVMI(); err != nil {
					rt.Skip(err)
				}
			},
			"VMI gone": func(rt *rapid.T) {
				if err := w.vmiGone(); err != nil {
					rt.Skip(err)
				}
			},
			"edit strategy": func(rt *rapid.T) {
				if rapid.IntRange(0, 9).Draw(rt, "edit") == 0 {
					w.setRunning(rapid.SampledFrom([]*bool{nil, ptr(true), ptr(false)}).Draw(rt, "running"))
				} else {
					w.setStrategy(rapid.SampledFrom(propStrategies).Draw(rt, "strategy"), true)
				}
				iv.rofStopped = false
			},
			"advance": func(rt *rapid.T) {
				w.now = w.now.Add(time.Duration(rapid.IntRange(1, 400).Draw(rt, "seconds")) * time.Second)
			},
			"": func(rt *rapid.T) { iv.checkWorld(rt) },
		})
	})
}

// checkWorld holds after every action.
func (iv *invariants) checkWorld(rt *rapid.T) {
	w := iv.w
	if w.createPending && w.vmi == nil {
		rt.Fatalf("a create is pending but there is no VMI")
	}
	for _, r := range w.vm.Status.Requests {
		if r.Action != StartRequest && (r.Action != StopRequest || r.UID == "") {
			rt.Fatalf("malformed request in the queue: %s", fmtQueue(w.vm.Status.Requests))
		}
	}
	if sf := w.vm.Status.StartFailure; sf != nil && (sf.Count < 1 || sf.LastFailedUID == "") {
		rt.Fatalf("malformed crash-loop record %+v", *sf)
	}
}

func headIsStopFor(q []Request, uid string) bool {
	return len(q) > 0 && q[0].Action == StopRequest && q[0].UID == uid
}

func hasStart(q []Request) bool {
	return slices.ContainsFunc(q, func(r Request) bool { return r.Action == StartRequest })
}

// checkPass checks one controller pass against section 9.4.
func (iv *invariants) checkPass(rt *rapid.T, s step) {
	p, d, st := s.p, s.d, s.st
	in := p.Instance
	q := p.VM.Status.Requests
	strat, err := Effective(p.VM)
	pending := p.CreatePending || p.DeletePending
	fail := func(format string, args ...any) {
		rt.Helper()
		rt.Fatalf("pass on %s with VMI %+v, queue %s, pending=%v:\n"+format, append([]any{strat, in, fmtQueue(q), pending}, args...)...)
	}

	// The core is pure: it changed nothing in its input.
	if diff := cmp.Diff(clonePass(p), s.pCopy, cmpopts.IgnoreFields(Pass{}, "Backoff")); diff != "" {
		fail("the pass changed its input:\n%s", diff)
	}
	// Nothing is done while a create or delete is in flight.
	if pending && (d.Action != None || len(d.AppendRequests) > 0) {
		fail("acted (%v) while an operation was in flight", d.Action)
	}
	// At most one instance: never create over an existing VMI.
	if d.Action == CreateInstance && s.storedVMI != nil {
		fail("created a VMI while %s exists", s.storedVMI.UID)
	}
	if d.Action == DeleteInstance && (in == nil || in.Deleting) {
		fail("deleted a VMI that is absent or already being deleted")
	}
	if !pending && !p.VM.Deleting && (err != nil) != (d.Err != nil) {
		fail("strategy error %v but decision error %+v", err, d.Err)
	}
	if err != nil || p.VM.Deleting {
		iv.checkStartFailure(rt, s, strat)
		return
	}
	// A stop only ever affects the VMI it names.
	if d.Action == DeleteInstance && strat != Halted && !in.Phase.Final() && !headIsStopFor(q, in.UID) {
		fail("deleted the live VMI %s without a stop request for it", in.UID)
	}
	settled := !pending && in != nil && !in.Deleting
	switch strat {
	case Always:
		if settled && in.Phase.Final() && d.Action != DeleteInstance {
			fail("Always left the final VMI in place")
		}
		if !pending && in == nil && d.Action != CreateInstance && TimeLeft(p.VM.Status.StartFailure, p.Now) == 0 {
			fail("Always did not create a VMI (%v)", d.Action)
		}
	case Manual:
		if d.Action == DeleteInstance && !headIsStopFor(q, in.UID) {
			fail("Manual deleted a VMI on its own")
		}
		if d.Action == CreateInstance && (len(q) == 0 || q[0].Action != StartRequest) {
			fail("Manual created a VMI without a start request")
		}
	case Once:
		if d.Action == DeleteInstance {
			fail("Once deleted a VMI")
		}
		if d.Action == CreateInstance && p.VM.Status.OnceStarted {
			fail("Once started a second run")
		}
	case Halted:
		if d.Action == CreateInstance {
			fail("Halted created a VMI")
		}
		if settled && d.Action != DeleteInstance {
			fail("Halted left a VMI in place")
		}
	case RerunOnFailure:
		startHead := len(q) > 0 && q[0].Action == StartRequest
		if d.Action == CreateInstance && !startHead && p.VM.Status.RunStrategy == RerunOnFailure {
			fail("RerunOnFailure started without a start request")
		}
		if d.Action == CreateInstance && iv.rofStopped {
			fail("RerunOnFailure started again after a clean stop, with no user action")
		}
		if settled && !headIsStopFor(q, in.UID) {
			switch in.Phase {
			case PhaseFailed:
				if d.Action != DeleteInstance || fmtQueue(d.AppendRequests) != "[Start]" {
					fail("RerunOnFailure did not restart a failed VMI: %v append %s", d.Action, fmtQueue(d.AppendRequests))
				}
			case PhaseSucceeded:
				if d.Action != DeleteInstance || len(d.AppendRequests) > 0 {
					fail("RerunOnFailure did not just delete a succeeded VMI: %v append %s", d.Action, fmtQueue(d.AppendRequests))
				}
			}
		}
		if in != nil && ((d.Action == DeleteInstance && s.o.Err == nil) || in.Deleting) && !hasStart(st.Requests) && st.RunStrategy == RerunOnFailure {
			iv.rofStopped = true
		}
	}
	if strat != RerunOnFailure {
		iv.rofStopped = false
	}
	if len(d.AppendRequests) > 0 && (strat != RerunOnFailure || in == nil || in.Phase != PhaseFailed) {
		fail("appended %s outside RerunOnFailure's failed-VMI case", fmtQueue(d.AppendRequests))
	}
	// At most one request is trimmed per pass, and only the head.
	grown := append(slices.Clone(q), d.AppendRequests...)
	if s.o.Err != nil || d.Err != nil {
		grown = slices.Clone(q)
	}
	if !cmp.Equal(st.Requests, grown, cmpopts.EquateEmpty()) && (len(grown) == 0 || !cmp.Equal(st.Requests, grown[1:], cmpopts.EquateEmpty())) {
		fail("queue %s became %s (appended %s)", fmtQueue(q), fmtQueue(st.Requests), fmtQueue(d.AppendRequests))
	}
	iv.checkStartFailure(rt, s, strat)
}

// checkStartFailure checks section 6's bookkeeping on one pass.
func (iv *invariants) checkStartFailure(rt *rapid.T, s step, strat Strategy) {
	old, got, in := s.p.VM.Status.StartFailure, s.st.StartFailure, s.p.Instance
	switch {
	case in != nil && in.EverRunning && got != nil:
		rt.Fatalf("startFailure %+v kept although VMI %s reached Running", *got, in.UID)
	case strat != Always && strat != RerunOnFailure && strat != Once && got != nil:
		rt.Fatalf("startFailure %+v kept under %q", *got, strat)
	case got == nil || (old != nil && *got == *old):
		return
	}
	if in == nil || !in.Phase.Final() || in.EverRunning || got.LastFailedUID != in.UID {
		rt.Fatalf("startFailure changed to %+v for VMI %+v", *got, in)
	}
	want := 1
	if old != nil {
		if old.LastFailedUID == in.UID {
			rt.Fatalf("VMI %s counted twice: %+v -> %+v", in.UID, *old, *got)
		}
		want = old.Count + 1
	}
	if got.Count != want {
		rt.Fatalf("startFailure count %d, want %d", got.Count, want)
	}
	b := s.p.Backoff
	b.Jitter = nil
	lo := s.p.Now.Add(b.Delay(got.Count))
	b.Jitter = func(n int64) int64 { return n }
	hi := s.p.Now.Add(b.Delay(got.Count) + time.Second)
	if got.RetryAfter.Before(lo) || got.RetryAfter.After(hi) || got.RetryAfter.Nanosecond() != 0 {
		rt.Fatalf("retryAfter %s after now, want whole seconds within [%s, %s]", got.RetryAfter.Sub(s.p.Now), lo.Sub(s.p.Now), hi.Sub(s.p.Now))
	}
}

// checkLifecycle sends one request through the world's API server and
// checks the admission rules of sections 4 and 9.4.
func (iv *invariants) checkLifecycle(rt *rapid.T, read *Instance, verb string, grace *int64, paused bool) {
	w := iv.w
	if w.vmGone {
		rt.Skip("the VM is gone")
	}
	before := w.snapshot()
	strat, stratErr := Effective(before.VM)
	c, r := w.lifecycleOn(read, verb, grace, paused)
	if r != nil {
		if !cmp.Equal(c, Change{}) {
			rt.Fatalf("%s refused (%v) with a change %+v", verb, r, c)
		}
		if diff := cmp.Diff(before, w.snapshot()); diff != "" {
			rt.Fatalf("%s refused (%v) but changed the world:\n%s", verb, r, diff)
		}
		return
	}
	if stratErr != nil && (verb == "start" || verb == "stop" || verb == "restart") {
		rt.Fatalf("%s accepted with an invalid strategy", verb)
	}
	switch verb {
	case "start", "restart":
		iv.rofStopped = false
		if c.SetRequests && len(before.VM.Status.Requests) > 0 {
			rt.Fatalf("%s overrode the queue %s", verb, fmtQueue(before.VM.Status.Requests))
		}
	case "stop":
		if c.SetRequests && (read == nil || fmtQueue(c.Requests) != fmtQueue([]Request{stopReq(read.UID)})) {
			rt.Fatalf("stop queued %s", fmtQueue(c.Requests))
		}
	}
	if c.SetRequests && c.ClearStartFailure != (before.VM.Status.StartFailure != nil) {
		rt.Fatalf("%s queued a request without clearing the crash-loop record", verb)
	}
	wantStrategy := map[[2]string]Strategy{
		{"stop", string(Always)}: Halted, {"stop", string(Once)}: Halted, {"start", string(Halted)}: Always,
	}[[2]string{verb, string(strat)}]
	switch {
	case wantStrategy == "" && c.Strategy != nil:
		rt.Fatalf("%s on %s changed the strategy to %s", verb, strat, c.Strategy.Strategy)
	case wantStrategy != "" && (c.Strategy == nil || c.Strategy.Strategy != wantStrategy):
		rt.Fatalf("%s on %s: strategy change %+v, want %s", verb, strat, c.Strategy, wantStrategy)
	}
	if c.InstanceGracePeriod != nil && verb != "restart" && (grace == nil || *c.InstanceGracePeriod != *grace) {
		rt.Fatalf("%s set the grace period to %d, asked %v", verb, *c.InstanceGracePeriod, grace)
	}
}

// TestBackoffMonotonic checks that the backoff's bounds never shrink as the
// fail count grows, and stay within [base, max], for any parameters.
func TestBackoffMonotonic(t *testing.T) {
	pinRapidSeed(t)
	rapid.Check(t, func(rt *rapid.T) {
		b := Backoff{
			Base: time.Duration(rapid.Int64Range(0, 3600).Draw(rt, "base s")) * time.Second,
			Max:  time.Duration(rapid.Int64Range(0, 3600).Draw(rt, "max s")) * time.Second,
		}
		a := rapid.IntRange(-3, 1<<20).Draw(rt, "a")
		c := rapid.IntRange(a, 1<<30).Draw(rt, "b")
		hi := b
		hi.Jitter = func(n int64) int64 { return n }
		for _, x := range []Backoff{b, hi} {
			da, dc := x.Delay(a), x.Delay(c)
			if da > dc {
				rt.Fatalf("Delay(%d) = %v > Delay(%d) = %v", a, da, c, dc)
			}
			limit := x.withDefaults().Max
			if dc > max(limit, time.Second) || da < time.Second {
				rt.Fatalf("Delay out of [1s, %v]: %v, %v", limit, da, dc)
			}
		}
	})
}
