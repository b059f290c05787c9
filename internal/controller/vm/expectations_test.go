package vm

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestExpectations checks when an outstanding create or delete stops
// holding a VM back: a create by any VMI of the key appearing; a delete only
// by the deleted VMI (same UID) being seen deleting or gone; either by
// forget, or by the TTL running out (a lost watch event must not block a
// VM forever). Nothing else clears it, and other keys are not affected.
func TestExpectations(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	const key, other = "default/web", "default/other"
	type step struct {
		uid            types.UID
		deleting, gone bool
	}
	tests := []struct {
		name             string
		expect           func(e *expectations)
		seen             []step
		forget           bool
		at               time.Time
		wantCreate, want bool // pending create, pending delete
	}{
		{name: "nothing expected", expect: func(*expectations) {}, at: t0},
		{name: "create outstanding", expect: func(e *expectations) { e.expectCreate(key, t0) }, at: t0, wantCreate: true},
		{name: "create satisfied by any VMI of the key", expect: func(e *expectations) { e.expectCreate(key, t0) },
			seen: []step{{uid: "u1"}}, at: t0},
		{name: "create satisfied at the TTL's end", expect: func(e *expectations) { e.expectCreate(key, t0) },
			at: t0.Add(expectationTTL + time.Nanosecond)},
		{name: "create still outstanding at the TTL", expect: func(e *expectations) { e.expectCreate(key, t0) },
			at: t0.Add(expectationTTL), wantCreate: true},
		{name: "create forgotten", expect: func(e *expectations) { e.expectCreate(key, t0) }, forget: true, at: t0},
		{name: "delete outstanding", expect: func(e *expectations) { e.expectDelete(key, "u1", t0) }, at: t0, want: true},
		{name: "delete not satisfied by the VMI merely seen", expect: func(e *expectations) { e.expectDelete(key, "u1", t0) },
			seen: []step{{uid: "u1"}}, at: t0, want: true},
		{name: "delete not satisfied by another VMI going", expect: func(e *expectations) { e.expectDelete(key, "u1", t0) },
			seen: []step{{uid: "u2", deleting: true}, {uid: "u2", gone: true}}, at: t0, want: true},
		{name: "delete satisfied by the VMI deleting", expect: func(e *expectations) { e.expectDelete(key, "u1", t0) },
			seen: []step{{uid: "u1", deleting: true}}, at: t0},
		{name: "delete satisfied by the VMI gone", expect: func(e *expectations) { e.expectDelete(key, "u1", t0) },
			seen: []step{{uid: "u1", gone: true}}, at: t0},
		{name: "a later create replaces a delete", expect: func(e *expectations) {
			e.expectDelete(key, "u1", t0)
			e.expectCreate(key, t0)
		}, at: t0, wantCreate: true},
		{name: "another key's expectation does not count", expect: func(e *expectations) { e.expectCreate(other, t0) }, at: t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExpectations()
			tt.expect(e)
			for _, s := range tt.seen {
				e.observed(key, s.uid, s.deleting, s.gone)
			}
			if tt.forget {
				e.forget(key)
			}
			c, d := e.pending(key, tt.at)
			if c != tt.wantCreate || d != tt.want {
				t.Errorf("pending = (create %v, delete %v), want (%v, %v)", c, d, tt.wantCreate, tt.want)
			}
		})
	}
}
