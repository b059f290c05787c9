package caches

import (
	"slices"
	"testing"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

func digest(beats map[string]int64) *v1.HeartbeatDigest {
	d := &v1.HeartbeatDigest{Nodes: map[string]v1.NodeBeat{}}
	for n, s := range beats {
		d.Nodes[n] = v1.NodeBeat{Serial: s}
	}
	return d
}

// TestBeatsChanged checks which changes of a digest are renewals: a new
// serial, a node joining; never an unchanged beat or a node leaving.
func TestBeatsChanged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, cur map[string]int64
		want     []string
	}{
		{"nothing changed", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 1, "b": 2}, nil},
		{"one beat", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 3, "b": 2}, []string{"a"}},
		{"a node joins", map[string]int64{"a": 1}, map[string]int64{"a": 1, "b": 5}, []string{"b"}},
		{"a node leaves", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 1}, nil},
		{"all at once", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 4, "c": 1}, []string{"a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			BeatsChanged(digest(tc.old), digest(tc.cur), func(n string) { got = append(got, n) })
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("renewed %v, want %v", got, tc.want)
			}
		})
	}
}
