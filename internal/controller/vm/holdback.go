package vm

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/runstrategy"
)

// startHold, when enabled (Config.StartingHold, off by default), holds back
// the status write of a VM whose VMI this controller has just created,
// while that write would only say "Starting": a VMI usually runs within
// milliseconds, and then one write says Running instead of one saying
// Starting and another saying Running. It is a write saved per start, at
// the price of KubeVirt's rule that the status says Starting as soon as
// the VMI is created. Once the hold expires, or the status has anything
// else to say (a request consumed, a failure, a start-failure count), it
// is written as usual.
type startHold struct {
	hold time.Duration

	mu sync.Mutex
	m  map[string]time.Time // key -> when this controller created the VMI
}

// created notes that the VM's VMI was created at now.
func (h *startHold) created(key string, now time.Time) {
	if h.hold <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]time.Time{}
	}
	h.m[key] = now
}

func (h *startHold) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, key)
}

// wait returns how long the write of next over cur should wait (0: write
// now).
func (h *startHold) wait(key string, cur, next *v1.VirtualMachineStatus, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.m[key]
	if !ok {
		return 0
	}
	left := h.hold - now.Sub(at)
	if left <= 0 || next.PrintableStatus != runstrategy.StatusStarting || !onlyProgress(cur, next) {
		delete(h.m, key)
		return 0
	}
	return left
}

// onlyProgress reports whether next differs from cur only in what a start
// in progress changes: the printable status, created, ready, the strategy
// echoed, the conditions and the generations. Requests, the start-failure
// record and onceStarted are never held back.
func onlyProgress(cur, next *v1.VirtualMachineStatus) bool {
	a, b := *cur, *next
	for _, s := range []*v1.VirtualMachineStatus{&a, &b} {
		s.PrintableStatus, s.Created, s.Ready, s.RunStrategy, s.Conditions = "", false, false, "", nil
		s.ObservedGeneration, s.DesiredGeneration = 0, 0
	}
	return equality.Semantic.DeepEqual(a, b)
}
