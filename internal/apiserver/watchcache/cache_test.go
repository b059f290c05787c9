package watchcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

const (
	prefix = "/t/"
	things = "/t/things/"
	others = "/t/others/"
)

// doc is the stored form of the test objects.
type doc struct {
	UID    string            `json:"uid"`
	Labels map[string]string `json:"labels,omitempty"`
	Owners []string          `json:"owners,omitempty"`
}

func decode(key string, value []byte, rev int64) (*watchcache.Entry, error) {
	var d doc
	if err := json.Unmarshal(value, &d); err != nil {
		return nil, err
	}
	name := key[strings.LastIndex(key, "/")+1:]
	return &watchcache.Entry{Key: key, Name: name, UID: d.UID, Rev: rev, Data: value, Labels: watchcache.NewSet(d.Labels),
		Fields: watchcache.Set{"metadata.name", name}, Owners: d.Owners}, nil
}

type env struct {
	t  *testing.T
	st *store.Store
	c  *watchcache.Cache
}

func newEnv(t *testing.T, cfg watchcache.Config) *env {
	t.Helper()
	e := etcdtest.Start(t)
	st := store.New(e.Client)
	cfg.Store, cfg.Prefix = st, prefix
	cfg.Resources = map[string]watchcache.Decoder{things: decode, others: decode}
	cfg.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	c := watchcache.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := c.WaitRev(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, c: c}
}

func (e *env) put(key string, d doc) int64 {
	e.t.Helper()
	b, _ := json.Marshal(d)
	ctx := context.Background()
	cur, err := e.st.Get(ctx, key)
	var kv store.KV
	switch {
	case store.IsNotFound(err):
		kv, err = e.st.Create(ctx, key, b, 0)
	case err == nil:
		kv, err = e.st.Update(ctx, key, b, cur.ModRevision)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return kv.ModRevision
}

func (e *env) del(key string) int64 {
	e.t.Helper()
	kv, err := e.st.Delete(context.Background(), key, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return kv.ModRevision
}

// fresh waits until the cache has seen every write.
func (e *env) fresh() {
	e.t.Helper()
	if err := e.c.WaitFresh(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func next(t *testing.T, w *watchcache.Watcher) watchcache.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, ok, _ := w.Next(ctx, nil)
	if !ok {
		t.Fatal("the watch ended")
	}
	return ev
}

func describe(ev watchcache.Event) string { return fmt.Sprintf("%s %s", ev.Type, ev.Entry.Name) }

// TestHistory: a watch resumes from any revision the history still holds,
// and a revision older than it is ErrGone.
func TestHistory(t *testing.T) {
	e := newEnv(t, watchcache.Config{History: 3})
	r1 := e.put(things+"a", doc{UID: "1"})
	r2 := e.put(things+"b", doc{UID: "2"})
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"x": "y"}})
	e.put(others+"o", doc{UID: "9"}) // another resource's history
	r4 := e.del(things + "b")
	e.fresh()
	// Three events kept: b added (r2), a modified, b deleted (r4).
	if _, err := e.c.Watch(things, things, r1-1, nil); !errors.Is(err, watchcache.ErrGone) {
		t.Errorf("watch from before the history: %v", err)
	}
	w, err := e.c.Watch(things, things, r1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, want := range []string{"ADDED b", "MODIFIED a", "DELETED b"} {
		if got := describe(next(t, w)); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	// One more event pushes r2's out.
	e.put(things+"c", doc{UID: "3"})
	e.fresh()
	if _, err := e.c.Watch(things, things, r1, nil); !errors.Is(err, watchcache.ErrGone) {
		t.Errorf("watch from a revision pushed out: %v", err)
	}
	w2, err := e.c.Watch(things, things, r2, nil)
	if err != nil {
		t.Fatalf("watch from the oldest kept revision: %v", err)
	}
	defer w2.Stop()
	if got := describe(next(t, w2)); got != "MODIFIED a" {
		t.Errorf("resumed at %d: %s", r2, got)
	}
	if ev := next(t, w); describe(ev) != "ADDED c" {
		t.Errorf("live: %s", describe(ev))
	}
	if w.StartRev() < r4 {
		t.Errorf("StartRev %d < %d", w.StartRev(), r4)
	}
	// Indexes.
	if !e.c.Exists("1") || e.c.Exists("2") || !e.c.Exists("9") {
		t.Error("Exists is wrong")
	}
	if e.c.Count(things) != 2 {
		t.Errorf("Count = %d", e.c.Count(things))
	}
}

// TestSlowWatcherIsCutOff: a watcher that falls WatcherBuffer events
// behind is ended (not blocking the cache); it gets what was buffered and
// resumes from its last revision without a gap.
func TestSlowWatcherIsCutOff(t *testing.T) {
	e := newEnv(t, watchcache.Config{WatcherBuffer: 2})
	start := e.put(things+"a", doc{UID: "1"})
	e.fresh()
	slow, err := e.c.Watch(things, things, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := e.c.Watch(things, things, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Stop()
	var last int64
	for i := range 5 {
		last = e.put(things+"a", doc{UID: "1", Labels: map[string]string{"i": fmt.Sprint(i)}})
		next(t, fast) // the fast one keeps up
	}
	e.fresh()
	var seen int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	for {
		ev, ok, _ := slow.Next(ctx, nil)
		if !ok {
			break
		}
		seen = ev.Entry.Rev
		n++
	}
	if n != 2 {
		t.Errorf("the slow watcher got %d events before the cut, want its buffer (2)", n)
	}
	resumed, err := e.c.Watch(things, things, seen, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Stop()
	for range 5 - n {
		seen = next(t, resumed).Entry.Rev
	}
	if seen != last {
		t.Errorf("resumed up to %d, want %d", seen, last)
	}
}

// TestNoBookmarkAfterCut: a watcher cut off for lagging never offers a
// bookmark revision, since it lost events that revision covers (a client
// resuming from it would skip them); a live, drained watcher does.
func TestNoBookmarkAfterCut(t *testing.T) {
	e := newEnv(t, watchcache.Config{WatcherBuffer: 1})
	start := e.put(things+"a", doc{UID: "1"})
	e.fresh()
	w, err := e.c.Watch(things, things, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, ok := w.Caught(); !ok {
		t.Fatal("an idle watcher is not caught up")
	}
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"i": "1"}})
	e.fresh()
	if _, ok := w.Caught(); ok {
		t.Error("a watcher with an event pending offers a bookmark")
	}
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"i": "2"}}) // overflows: cut off
	e.fresh()
	next(t, w) // drain what was buffered before the cut
	if rev, ok := w.Caught(); ok {
		t.Errorf("a watcher cut off after losing an event offers a bookmark at %d", rev)
	}
}

// TestSelectorTransitions: leaving a watcher's selector is DELETED for it,
// entering it ADDED, and a deletion of an object it never matched is not
// sent.
func TestSelectorTransitions(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	match := func(en *watchcache.Entry) bool { return sel.Matches(en.Labels) }
	w, err := e.c.Watch(things, things, 0, match)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.put(things+"a", doc{UID: "1"})
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"app": "web"}})
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"app": "web", "v": "2"}})
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"app": "db"}})
	e.del(things + "a")
	e.put(things+"z", doc{UID: "2", Labels: map[string]string{"app": "web"}})
	for _, want := range []string{"ADDED a", "MODIFIED a", "DELETED a", "ADDED z"} {
		if got := describe(next(t, w)); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	// A watch from now starts with the matching objects.
	w2, err := e.c.Watch(things, things, 0, match)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	if !w2.InitialPending() || describe(next(t, w2)) != "ADDED z" || w2.InitialPending() {
		t.Error("initial events wrong")
	}
	// Namespaced key prefixes restrict a watch.
	w3, err := e.c.Watch(things, things+"q", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Stop()
	e.put(things+"b", doc{UID: "3"})
	e.put(things+"qq", doc{UID: "4"})
	if got := describe(next(t, w3)); got != "ADDED qq" {
		t.Errorf("prefixed watch: %s", got)
	}
}

// TestStopEndsWatch: a stopped watcher's Next ends.
func TestStopEndsWatch(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	w, err := e.c.Watch(things, things, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	w.Stop() // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, ok, _ := w.Next(ctx, nil); ok {
		t.Error("an event after Stop")
	}
}
