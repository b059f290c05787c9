package vm

import (
	"sync"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// written remembers the VM each key's last write by this controller
// returned. A pass that runs before the informer has delivered that write
// starts from it instead of from the older cached VM, whose
// resourceVersion would only earn a conflict and a retry. Once the cache
// has caught up (or the VM was replaced), the cached VM is used again.
type written struct {
	mu sync.Mutex
	m  map[string]*v1.VirtualMachine
}

// fresher returns the newer of the cached VM and the last one written.
func (w *written) fresher(key string, cached *v1.VirtualMachine) *v1.VirtualMachine {
	w.mu.Lock()
	defer w.mu.Unlock()
	mine := w.m[key]
	if mine == nil {
		return cached
	}
	if mine.UID != cached.UID || !newer(mine.ResourceVersion, cached.ResourceVersion) {
		delete(w.m, key)
		return cached
	}
	return mine
}

// record keeps a VM as stored by a write.
func (w *written) record(key string, vm *v1.VirtualMachine) {
	if vm == nil || vm.ResourceVersion == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]*v1.VirtualMachine{}
	}
	w.m[key] = vm
}

// seen drops the VM kept for key once the cache shows a version at least as
// new, so that the map holds only writes still in flight, not a copy of
// every VM.
func (w *written) seen(key string, cached *v1.VirtualMachine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if mine := w.m[key]; mine != nil && (mine.UID != cached.UID || !newer(mine.ResourceVersion, cached.ResourceVersion)) {
		delete(w.m, key)
	}
}

func (w *written) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// newer reports whether resourceVersion a is later than b; never when
// their order is unknown.
func newer(a, b string) bool {
	cmp, ok := v1.CompareResourceVersions(a, b)
	return ok && cmp > 0
}
