package bench

import (
	"context"
	"sync"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
)

// vmiState is what the tracker knows of the VMI of one VM name.
type vmiState struct {
	uid     string
	phase   v1.VirtualMachineInstancePhase
	node    string
	gone    bool      // no VMI of this name exists
	running time.Time // when this uid was first seen Running
	since   time.Time // when this state (uid, phase, gone) was first seen
}

// reached is when the state was reached: for a Running VMI, when it was
// first seen Running.
func (s vmiState) reached() time.Time {
	if s.phase == v1.Running && !s.running.IsZero() {
		return s.running
	}
	return s.since
}

// waiter is someone waiting for a VM's VMI to reach a state.
type waiter struct {
	cond func(vmiState) bool
	ch   chan time.Time
}

// tracker follows every VMI through a watch and tells when each reaches
// a state, at the moment the watch delivers it.
type tracker struct {
	inf *informer.Informer[*v1.VirtualMachineInstance]

	mu      sync.Mutex
	state   map[string]vmiState
	waiters map[string][]waiter
	running int // VMIs in phase Running now
}

func newTracker(c *client.Client) *tracker {
	t := &tracker{state: map[string]vmiState{}, waiters: map[string][]waiter{}}
	t.inf = informer.New[*v1.VirtualMachineInstance](c.VirtualMachineInstances(v1.DefaultNamespace).Resource, client.ListOptions{}, nil)
	t.inf.AddHandler(informer.Handler[*v1.VirtualMachineInstance]{
		OnAdd:    func(vmi *v1.VirtualMachineInstance) { t.observe(vmi.Name, vmi) },
		OnUpdate: func(_, vmi *v1.VirtualMachineInstance) { t.observe(vmi.Name, vmi) },
		OnDelete: func(vmi *v1.VirtualMachineInstance) { t.observe(vmi.Name, nil) },
	})
	return t
}

// run follows the VMIs until ctx ends.
func (t *tracker) run(ctx context.Context) { t.inf.Run(ctx) }

func (t *tracker) observe(name string, vmi *v1.VirtualMachineInstance) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.state[name]
	var s vmiState
	if vmi == nil {
		s = vmiState{gone: true, since: old.since}
		if !old.gone {
			s.since = now
		}
	} else {
		s = vmiState{uid: string(vmi.UID), phase: vmi.Status.Phase, node: vmi.Status.NodeName}
		if old.uid == s.uid {
			s.running = old.running
		}
		if s.phase == v1.Running && s.running.IsZero() {
			s.running = now
		}
		s.since = now
		if old.uid == s.uid && old.phase == s.phase && !old.gone {
			s.since = old.since
		}
	}
	if old.phase == v1.Running && !old.gone {
		t.running--
	}
	if s.phase == v1.Running && !s.gone {
		t.running++
	}
	t.state[name] = s
	ws := t.waiters[name]
	kept := ws[:0]
	for _, w := range ws {
		if w.cond(s) {
			w.ch <- now
			continue
		}
		kept = append(kept, w)
	}
	if len(kept) == 0 {
		delete(t.waiters, name)
	} else {
		t.waiters[name] = kept
	}
}

// get returns what is known of a VM's VMI.
func (t *tracker) get(name string) vmiState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.state[name]
	if !ok {
		return vmiState{gone: true}
	}
	return s
}

// runningCount is how many VMIs are Running now.
func (t *tracker) runningCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running
}

// wait returns a channel that receives the time the VM's VMI meets cond
// (at once if it already does).
func (t *tracker) wait(name string, cond func(vmiState) bool) <-chan time.Time {
	ch := make(chan time.Time, 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.state[name]
	if !ok {
		s = vmiState{gone: true}
	}
	if cond(s) {
		at := s.reached()
		if at.IsZero() {
			at = time.Now()
		}
		ch <- at
		return ch
	}
	t.waiters[name] = append(t.waiters[name], waiter{cond: cond, ch: ch})
	return ch
}

// runningNot is the condition "a VMI other than uid is Running".
func runningNot(uid string) func(vmiState) bool {
	return func(s vmiState) bool { return !s.gone && s.phase == v1.Running && s.uid != uid }
}

func isGone(s vmiState) bool { return s.gone }
