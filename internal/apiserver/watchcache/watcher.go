package watchcache

import (
	"context"
	"strings"
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
	// ch carries live events. Its buffer is how far the consumer (an HTTP
	// stream) may lag behind; a watcher that would block the cache is cut
	// off instead and resumes from its last revision.
	ch chan Event
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
	w := &Watcher{c: c, rc: rc, match: match, keyPrefix: keyPrefix, ch: make(chan Event, c.cfg.WatcherBuffer), done: make(chan struct{}), startRev: c.rev}
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
	select {
	case w.ch <- ev:
	default:
		w.closeLocked(nil) // too slow: cut off, the client resumes from its revision
	}
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
	select {
	case ev := <-w.ch:
		return ev, true, false
	default:
	}
	select {
	case ev := <-w.ch:
		return ev, true, false
	case <-w.done:
		// Deliver what was queued before the cut.
		select {
		case ev := <-w.ch:
			return ev, true, false
		default:
		}
		return Event{}, false, false
	case <-interrupt:
		return Event{}, true, true
	case <-ctx.Done():
		return Event{}, false, false
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
func (w *Watcher) Pending() bool { return len(w.initial) > 0 || len(w.ch) > 0 }

// Stop ends the watch.
func (w *Watcher) Stop() {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.closeLocked(nil)
}
