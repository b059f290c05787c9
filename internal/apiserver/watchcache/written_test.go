package watchcache

import "testing"

// TestForgetWrites: the cache forgets each write it was told of once it has
// applied that revision, and not a later write of the same key.
func TestForgetWrites(t *testing.T) {
	c := &Cache{written: map[string]int64{}}
	c.Wrote("a", 5)
	c.Wrote("b", 3)
	c.Wrote("a", 7) // the same key again, later
	c.Wrote("c", 6)
	c.Wrote("c", 4) // older than what is known: ignored
	check := func(rev int64, want map[string]int64) {
		t.Helper()
		c.forgetWritesLocked(rev)
		if len(c.written) != len(want) {
			t.Fatalf("at %d: written = %v, want %v", rev, c.written, want)
		}
		for k, v := range want {
			if c.written[k] != v {
				t.Fatalf("at %d: written = %v, want %v", rev, c.written, want)
			}
		}
	}
	check(2, map[string]int64{"a": 7, "b": 3, "c": 6})
	check(5, map[string]int64{"a": 7, "c": 6})
	check(6, map[string]int64{"a": 7})
	check(9, map[string]int64{})
	if len(c.pending) != 0 {
		t.Fatalf("%d writes still queued", len(c.pending))
	}
}
