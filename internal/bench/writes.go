package bench

import (
	"context"
	"fmt"
	"sync"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// writeCounter counts the writes the control plane stores, by kind, from
// watches of every resource: each watch event but a bookmark is one key
// written (the store skips writes that change nothing, so none is missed or
// double counted). It also counts the distinct resourceVersions, which are
// etcd revisions: one per transaction, however many keys it wrote (the API
// server commits Events several to a transaction).
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
	revs   map[string]map[string]struct{}
	stop   []func()
	wg     sync.WaitGroup
}

// startWriteCounter starts counting from now.
func startWriteCounter(ctx context.Context, c *client.Client) (*writeCounter, error) {
	w := &writeCounter{counts: map[string]int{}, revs: map[string]map[string]struct{}{}}
	if err := countKind(ctx, w, "VirtualMachine", c.VirtualMachines("").Resource); err != nil {
		return nil, err
	}
	if err := countKind(ctx, w, "VirtualMachineInstance", c.VirtualMachineInstances("").Resource); err != nil {
		w.close()
		return nil, err
	}
	if err := countKind(ctx, w, "Event", c.Events("")); err != nil {
		w.close()
		return nil, err
	}
	if err := countKind(ctx, w, "Lease", c.Leases(v1.NodeLeaseNamespace)); err != nil {
		w.close()
		return nil, err
	}
	if err := countKind(ctx, w, "HeartbeatDigest", c.HeartbeatDigests()); err != nil {
		w.close()
		return nil, err
	}
	if err := countKind(ctx, w, "Node", c.Nodes()); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func countKind[T client.Object](ctx context.Context, w *writeCounter, kind string, r *client.Resource[T]) error {
	list, err := r.List(ctx, client.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("counting writes: listing %s: %w", kind, err)
	}
	wt, err := r.Watch(ctx, client.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return fmt.Errorf("counting writes: watching %s: %w", kind, err)
	}
	w.stop = append(w.stop, wt.Stop)
	w.wg.Go(func() {
		for ev := range wt.C {
			if ev.Type == client.Bookmark || ev.Type == client.Error {
				continue
			}
			w.mu.Lock()
			w.counts[kind]++
			if w.revs[kind] == nil {
				w.revs[kind] = map[string]struct{}{}
			}
			w.revs[kind][ev.Object.GetResourceVersion()] = struct{}{}
			w.mu.Unlock()
		}
	})
	return nil
}

// snapshot returns the keys written so far, by kind.
func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make(map[string]int, len(w.counts))
	for k, v := range w.counts {
		keys[k] = v
	}
	return keys
}

// transactions counts the distinct revisions of the writes of kinds
// together: a transaction that wrote keys of several kinds (a VMI's status
// carrying a batch of Events) is one. Revisions that also wrote a kind in
// free (heartbeats, which would be written anyway, carrying Events) are
// not counted.
func (w *writeCounter) transactions(kinds, free []string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	all := map[string]struct{}{}
	for _, k := range kinds {
		for rv := range w.revs[k] {
			all[rv] = struct{}{}
		}
	}
	for _, k := range free {
		for rv := range w.revs[k] {
			delete(all, rv)
		}
	}
	return len(all)
}

func (w *writeCounter) close() {
	for _, s := range w.stop {
		s()
	}
	w.wg.Wait()
}
