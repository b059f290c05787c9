package watchcache_test

import (
	"context"
	"slices"
	"testing"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
)

// TestDependents: the owner index follows dependents as they are added,
// change owners and go.
func TestDependents(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	deps := func(owner string) []string {
		var names []string
		for _, en := range e.c.Dependents(owner) {
			names = append(names, en.Name)
		}
		slices.Sort(names)
		return names
	}
	check := func(owner string, want ...string) {
		t.Helper()
		e.fresh()
		if got := deps(owner); !slices.Equal(got, want) {
			t.Errorf("dependents of %s: %v, want %v", owner, got, want)
		}
	}
	e.put(things+"a", doc{UID: "1", Owners: []string{"o1"}})
	e.put(things+"b", doc{UID: "2", Owners: []string{"o1", "o2"}})
	e.put(others+"c", doc{UID: "3", Owners: []string{"o1"}})
	e.put(things+"d", doc{UID: "4", Owners: []string{"o2", "o2"}})
	check("o1", "a", "b", "c")
	check("o2", "b", "d")
	e.put(things+"a", doc{UID: "1", Owners: []string{"o2"}})
	check("o1", "b", "c")
	check("o2", "a", "b", "d")
	e.del(things + "b")
	e.del(things + "d")
	check("o1", "c")
	check("o2", "a")
	e.put(things+"a", doc{UID: "1"})
	e.del(others + "c")
	check("o1")
	check("o2")
}

// TestPrevHasNoData: the object before a change is there for selectors,
// without its JSON; the change itself has it.
func TestPrevHasNoData(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"app": "web"}})
	e.fresh()
	w, err := e.c.Watch(things, things, e.c.Rev(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.put(things+"a", doc{UID: "1", Labels: map[string]string{"app": "db"}})
	ev, ok, _ := w.Next(context.Background(), nil)
	if !ok || ev.Type != watchcache.Modified || ev.Prev == nil {
		t.Fatalf("got %+v", ev)
	}
	if ev.Prev.Data != nil || ev.Prev.Labels.Get("app") != "web" || ev.Prev.UID != "1" || ev.Prev.Key != things+"a" {
		t.Errorf("Prev = %+v", ev.Prev)
	}
	if string(ev.Entry.Data) != `{"uid":"1","labels":{"app":"db"}}` {
		t.Errorf("Entry.Data = %s", ev.Entry.Data)
	}
}

// TestFreshAfterWrote: Fresh does not answer with an entry older than a
// write the cache was told of, until it has applied that write.
func TestFreshAfterWrote(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	r1 := e.put(things+"a", doc{UID: "1"})
	e.fresh()
	if en := e.c.Fresh(things, things+"a"); en == nil || en.Rev != r1 {
		t.Fatalf("Fresh = %+v, want the entry at %d", en, r1)
	}
	e.c.Wrote(things+"a", r1) // applied already: no effect
	if e.c.Fresh(things, things+"a") == nil {
		t.Error("Fresh is nil after Wrote of a write the cache has")
	}
	// A write the cache will see at the next revision.
	e.c.Wrote(things+"a", r1+1)
	if en := e.c.Fresh(things, things+"a"); en != nil {
		t.Errorf("Fresh = %+v before the cache has the write it was told of", en)
	}
	if en := e.c.Get(things, things+"a"); en == nil || en.Rev != r1 {
		t.Errorf("Get = %+v, want the entry at %d", en, r1)
	}
	r2 := e.put(things+"a", doc{UID: "1", Labels: map[string]string{"v": "2"}})
	if r2 != r1+1 {
		t.Fatalf("the write is at %d, not %d", r2, r1+1)
	}
	e.fresh()
	if en := e.c.Fresh(things, things+"a"); en == nil || en.Rev != r2 {
		t.Errorf("Fresh = %+v, want the entry at %d", en, r2)
	}
	// A write of a key the cache then sees deleted.
	e.c.Wrote(things+"a", r2+1)
	e.del(things + "a")
	e.fresh()
	if en := e.c.Fresh(things, things+"a"); en != nil {
		t.Errorf("Fresh = %+v after the deletion", en)
	}
	// Another key's write does not hide this one's entry.
	r4 := e.put(things+"b", doc{UID: "2"})
	e.fresh()
	e.c.Wrote(things+"c", r4+5)
	if e.c.Fresh(things, things+"b") == nil || e.c.Fresh(others, things+"b") != nil {
		t.Error("Fresh of b is wrong")
	}
}

// TestMissingOwners: owners named by some entry that no entry, in any
// resource, has; each once however many dependents name it.
func TestMissingOwners(t *testing.T) {
	e := newEnv(t, watchcache.Config{})
	check := func(want ...string) {
		t.Helper()
		e.fresh()
		got := e.c.MissingOwners()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("missing owners: %v, want %v", got, want)
		}
	}
	check()
	e.put(others+"owner", doc{UID: "o1"})
	e.put(things+"a", doc{UID: "1", Owners: []string{"o1"}})            // owner in another resource
	e.put(things+"b", doc{UID: "2", Owners: []string{"o1", "gone"}})    // one owner missing
	e.put(others+"c", doc{UID: "3", Owners: []string{"gone", "gone2"}}) // named twice across resources
	e.put(things+"d", doc{UID: "4", Owners: []string{"1"}})             // owned by a dependent
	check("gone", "gone2")
	e.del(others + "owner")
	check("gone", "gone2", "o1")
	e.del(things + "a")
	check("1", "gone", "gone2", "o1")
	e.put(others+"owner", doc{UID: "o1"})
	e.put(things+"d", doc{UID: "4"})
	e.del(things + "b")
	e.del(others + "c")
	check()
}
