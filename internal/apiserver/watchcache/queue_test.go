package watchcache

import (
	"context"
	"testing"
)

// TestWatcherQueue: a watcher queues events in order up to WatcherBuffer,
// holds no array while idle, lets a burst's array go once drained, and is
// cut off at the limit after delivering what it had queued.
func TestWatcherQueue(t *testing.T) {
	c := &Cache{cfg: Config{WatcherBuffer: 100}}
	rc := &resourceCache{watchers: map[*Watcher]struct{}{}}
	w := &Watcher{c: c, rc: rc, queued: make(chan struct{}, 1), done: make(chan struct{})}
	rc.watchers[w] = struct{}{}
	if w.queue != nil || w.Pending() {
		t.Fatal("a new watcher holds a queue")
	}
	ctx := context.Background()
	for round := range 2 {
		for i := range 100 {
			w.sendLocked(Event{Type: Modified, Entry: &Entry{Rev: int64(i)}})
		}
		if !w.Pending() {
			t.Fatalf("round %d: nothing pending after 100 events", round)
		}
		for i := range 100 {
			ev, ok, _ := w.Next(ctx, nil)
			if !ok || ev.Entry.Rev != int64(i) {
				t.Fatalf("round %d: event %d = %+v, %v", round, i, ev.Entry, ok)
			}
		}
		if w.queue != nil || w.Pending() {
			t.Fatalf("round %d: the drained queue keeps %d slots", round, cap(w.queue))
		}
	}
	// The 101st event queued at once cuts the watcher off; the 100 before it
	// are still delivered, then the end.
	for i := range 101 {
		w.sendLocked(Event{Type: Modified, Entry: &Entry{Rev: int64(i)}})
	}
	if _, ok := rc.watchers[w]; ok {
		t.Fatal("a watcher over its buffer was not cut off")
	}
	for i := range 100 {
		if ev, ok, _ := w.Next(ctx, nil); !ok || ev.Entry.Rev != int64(i) {
			t.Fatalf("after the cut: event %d = %+v, %v", i, ev.Entry, ok)
		}
	}
	if _, ok, _ := w.Next(ctx, nil); ok {
		t.Fatal("the watch went on after the cut and its queued events")
	}
}
