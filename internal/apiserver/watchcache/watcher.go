package watchcache

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Watcher is one watch on one resource. Its events come from Next.
type Watcher struct {
	c     *Cache
	rc    *resourceCache
	match func(*Entry) bool
	// keyPrefix restricts the watch to one namespace's keys.
	keyPrefix string

	// initial holds the events owed at start (the current objects, or the
	// history after the requested revision); owned by the consumer.
	initial []Event
	// startRev is the revision the watch started at: the initial events
	// bring the watcher up to it.
	startRev int64
	// queue holds live events not yet consumed, at most WatcherBuffer: how
	// far the consumer (an HTTP stream) may lag behind. A watcher that would
	// queue more is cut off instead and resumes from its last revision. It
	// grows as needed: a buffered channel of that size would cost every
	// watcher ~100 KiB up front (an agent has a few, and there are hundreds
	// of agents).
	qmu   sync.Mutex
	queue []Event
	qhead int
	// queued is signalled (capacity 1) when an event is queued.
	queued chan struct{}
	// done is closed when the watcher is stopped or cut off; err says why.
	done chan struct{}
	err  error
}

// Watch starts a watch of resource for keys under keyPrefix that match. From
// revision 0 it first delivers every current object as ADDED; from a
// revision it delivers every change after it, or fails with ErrGone when the
// history no longer reaches back that far.
func (c *Cache) Watch(resource, keyPrefix string, fromRev int64, match func(*Entry) bool) (*Watcher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return nil, ErrNotReady
	}
	rc := c.res[resource]
	if rc == nil {
		return nil, ErrNotReady
	}
	w := &Watcher{c: c, rc: rc, match: match, keyPrefix: keyPrefix, queued: make(chan struct{}, 1), done: make(chan struct{}), startRev: c.rev}
	if fromRev == 0 {
		for k, e := range rc.items {
			if strings.HasPrefix(k, keyPrefix) && (match == nil || match(e)) {
				w.initial = append(w.initial, Event{Type: Added, Entry: e})
			}
		}
	} else {
		if fromRev < rc.oldest {
			return nil, ErrGone
		}
		for i := range rc.hlen {
			ev := rc.history[(rc.hstart+i)%len(rc.history)]
			if ev.Entry.Rev <= fromRev {
				continue
			}
			if out, ok := w.convert(ev); ok {
				w.initial = append(w.initial, out)
			}
		}
	}
	rc.watchers[w] = struct{}{}
	return w, nil
}

// convert applies the watcher's filter to an event, with Kubernetes'
// selector semantics: an update that makes an object stop matching is a
// deletion for this watcher, one that makes it start matching an addition.
func (w *Watcher) convert(ev Event) (Event, bool) {
	key := ev.Entry.Key
	if !strings.HasPrefix(key, w.keyPrefix) {
		return Event{}, false
	}
	if w.match == nil {
		return ev, true
	}
	newMatch := w.match(ev.Entry)
	oldMatch := ev.Prev != nil && w.match(ev.Prev)
	switch ev.Type {
	case Deleted:
		if oldMatch || newMatch {
			return ev, true
		}
	case Added:
		if newMatch {
			return ev, true
		}
	case Modified:
		switch {
		case newMatch && oldMatch:
			return ev, true
		case newMatch:
			return Event{Type: Added, Entry: ev.Entry, Prev: ev.Prev}, true
		case oldMatch:
			return Event{Type: Deleted, Entry: ev.Entry, Prev: ev.Prev}, true
		}
	}
	return Event{}, false
}

func (w *Watcher) sendLocked(ev Event) {
	w.qmu.Lock()
	full := len(w.queue)-w.qhead >= w.c.cfg.WatcherBuffer
	if !full {
		w.queue = append(w.queue, ev)
	}
	w.qmu.Unlock()
	if full {
		w.closeLocked(nil) // too slow: cut off, the client resumes from its revision
		return
	}
	select {
	case w.queued <- struct{}{}:
	default: // already signalled
	}
}

// pop takes the oldest queued event.
func (w *Watcher) pop() (Event, bool) {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.qhead == len(w.queue) {
		return Event{}, false
	}
	ev := w.queue[w.qhead]
	w.queue[w.qhead] = Event{}
	w.qhead++
	if w.qhead == len(w.queue) { // drained: start over, and let a burst's array go
		w.qhead = 0
		if cap(w.queue) > 64 {
			w.queue = nil
		} else {
			w.queue = w.queue[:0]
		}
	}
	return ev, true
}

func (w *Watcher) closeLocked(err error) {
	if _, ok := w.rc.watchers[w]; !ok {
		return
	}
	delete(w.rc.watchers, w)
	w.err = err
	close(w.done)
}

// Next returns the next event. ok is false when the watch has ended (it was
// stopped, cut off for lagging, or the cache relisted) or ctx ended; the
// client then resumes from the last revision it saw. A receive on interrupt
// returns early with interrupted set and no event.
func (w *Watcher) Next(ctx context.Context, interrupt <-chan time.Time) (ev Event, ok, interrupted bool) {
	if len(w.initial) > 0 {
		// Clear the slot handed out, and drop the backing array once it is
		// consumed: a watcher started with every object must not keep
		// them all alive for its whole life.
		ev, w.initial[0] = w.initial[0], Event{}
		w.initial = w.initial[1:]
		if len(w.initial) == 0 {
			w.initial = nil
		}
		return ev, true, false
	}
	for {
		if ev, ok := w.pop(); ok {
			return ev, true, false
		}
		select {
		case <-w.queued:
		case <-w.done:
			// Deliver what was queued before the cut.
			if ev, ok := w.pop(); ok {
				return ev, true, false
			}
			return Event{}, false, false
		case <-interrupt:
			return Event{}, true, true
		case <-ctx.Done():
			return Event{}, false, false
		}
	}
}

// StartRev is the revision the watch started at: once the initial events
// (InitialPending) are consumed, the watcher has seen every change up to it.
func (w *Watcher) StartRev() int64 { return w.startRev }

// InitialPending reports whether initial events remain to be consumed.
func (w *Watcher) InitialPending() bool { return len(w.initial) > 0 }

// Caught returns the cache's revision when this watcher has been handed
// every change up to it and still runs: a bookmark at that revision is
// then safe. ok is false while events are pending, and after the watcher
// was cut off: it may have lost events the revision covers, and a client
// told that revision would resume past them.
func (w *Watcher) Caught() (rev int64, ok bool) {
	w.c.mu.RLock()
	defer w.c.mu.RUnlock()
	select {
	case <-w.done:
		return 0, false
	default:
	}
	if w.Pending() {
		return 0, false
	}
	return w.c.rev, true
}

// Pending reports whether an event is ready without blocking.
func (w *Watcher) Pending() bool {
	if len(w.initial) > 0 {
		return true
	}
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return w.qhead < len(w.queue)
}

// Stop ends the watch.
func (w *Watcher) Stop() {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.closeLocked(nil)
}
