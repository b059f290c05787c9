package agent

import (
	"context"
	"time"

	"github.com/vigil-vm/vigil/internal/driver"
)

// Self-fencing. An agent that has not renewed its node's heartbeat for
// FenceAfter may already be declared lost by the control plane, which then
// starts its VMs elsewhere. So it kills every guest it runs and starts none
// until a renewal succeeds again. The control plane waits NodeLostAfter,
// at least 2 s more than FenceAfter, before it recovers anything
// (docs/ha.md has the arithmetic).

// fence is the agent's fencing state, guarded by Agent.fenceMu.
type fence struct {
	lastRenew time.Time // the last successful renewal, on this agent's clock
	fenced    bool
	rearm     chan struct{} // size 1: a renewal moved the deadline
}

// renewed records a successful renewal (a heartbeat acknowledged or a
// Lease written), sent at at, and lifts a fence.
func (a *Agent) renewed(at time.Time) {
	a.fenceMu.Lock()
	if !at.After(a.fence.lastRenew) || a.cfg.Now().Sub(at) >= a.cfg.FenceAfter {
		// An older renewal acknowledged late moves nothing, nor does one
		// sent longer than FenceAfter ago: the control plane may already
		// count the node as silent since then.
		a.fenceMu.Unlock()
		return
	}
	a.fence.lastRenew = at
	lifted := a.fence.fenced
	a.fence.fenced = false
	a.fenceMu.Unlock()
	if a.cfg.OnRenew != nil {
		a.cfg.OnRenew(at)
	}
	select {
	case a.fence.rearm <- struct{}{}:
	default:
	}
	if lifted {
		a.log.Warn("the node lease is renewed again: the fence is lifted, guests may start")
		a.pokeRunners()
	}
}

// fenced reports whether the agent has fenced itself.
func (a *Agent) fenced() bool {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	return a.fence.fenced
}

// watchFence fences the node when FenceAfter passes without a renewal. It
// runs until ctx ends.
func (a *Agent) watchFence(ctx context.Context) {
	for {
		a.fenceMu.Lock()
		wait := a.fence.lastRenew.Add(a.cfg.FenceAfter).Sub(a.cfg.Now())
		fenced := a.fence.fenced
		a.fenceMu.Unlock()
		if wait <= 0 && !fenced {
			a.fenceNow(ctx)
			continue
		}
		if wait <= 0 {
			wait = a.cfg.FenceAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.fence.rearm:
			t.Stop()
		case <-t.C:
		}
	}
}

// fenceNow kills every guest on the node.
func (a *Agent) fenceNow(ctx context.Context) {
	a.fenceMu.Lock()
	silent := a.cfg.Now().Sub(a.fence.lastRenew)
	a.fence.fenced = true
	a.fenceMu.Unlock()
	a.log.Error("no heartbeat acknowledged: fencing this node, every guest is killed", "since", silent.Round(time.Millisecond), "fenceAfter", a.cfg.FenceAfter)
	a.mu.Lock()
	adopted := make([]driver.Guest, 0, len(a.adopted))
	for _, g := range a.adopted {
		adopted = append(adopted, g)
	}
	a.mu.Unlock()
	for _, g := range adopted {
		if err := g.Kill(ctx); err != nil {
			a.log.Error("fencing: killing a guest failed", "guest", g.ID(), "err", err)
		}
	}
	a.pokeRunners()
}

// pokeRunners wakes every runner to look at the fence.
func (a *Agent) pokeRunners() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.runners {
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}
