package vm

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// expectationTTL bounds how long an unobserved create or delete blocks a
// VM, in case its watch event was lost.
const expectationTTL = 5 * time.Minute

// expectations remembers, per VM key, a VMI create or delete this
// controller issued and has not seen in its cache yet. While one is
// outstanding a pass writes status only, so nothing is done twice.
type expectations struct {
	mu sync.Mutex // guards m
	m  map[string]expectation
}

type expectation struct {
	create    bool
	deleteUID types.UID
	at        time.Time
}

func newExpectations() *expectations { return &expectations{m: map[string]expectation{}} }

func (e *expectations) pending(key string, now time.Time) (create, del bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return false, false
	}
	if now.Sub(x.at) > expectationTTL {
		delete(e.m, key)
		return false, false
	}
	return x.create, x.deleteUID != ""
}

func (e *expectations) expectCreate(key string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = expectation{create: true, at: now}
}

func (e *expectations) expectDelete(key string, uid types.UID, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = expectation{deleteUID: uid, at: now}
}

// observed is called for every VMI the cache reports: it satisfies a
// pending create (any VMI of that key appeared), and a pending delete once
// the VMI is being deleted or gone.
func (e *expectations) observed(key string, uid types.UID, deleting, gone bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return
	}
	if x.create {
		delete(e.m, key)
		return
	}
	if x.deleteUID != "" && x.deleteUID == uid && (deleting || gone) {
		delete(e.m, key)
	}
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
