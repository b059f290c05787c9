package vm

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// TestWrittenKeepsOnlyWritesInFlight: a VM kept from a write is used while
// the cache is older, and dropped once the cache shows that version (or a
// newer one, or another VM of that name), so the map does not keep a copy
// of every VM.
func TestWrittenKeepsOnlyWritesInFlight(t *testing.T) {
	vm := func(uid, rv string) *v1.VirtualMachine {
		return &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{UID: types.UID("u" + uid), ResourceVersion: rv}}
	}
	for _, tc := range []struct {
		name      string
		cached    *v1.VirtualMachine
		wantKept  bool
		wantFresh string // the resourceVersion fresher returns
	}{
		{"cache older", vm("1", "5"), true, "7"},
		{"cache caught up", vm("1", "7"), false, "7"},
		{"cache newer", vm("1", "9"), false, "9"},
		{"another VM of that name", vm("2", "3"), false, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w written
			w.record("ns/a", vm("1", "7"))
			w.seen("ns/a", tc.cached)
			if _, kept := w.m["ns/a"]; kept != tc.wantKept {
				t.Errorf("after seen: kept = %v, want %v", kept, tc.wantKept)
			}
			if got := w.fresher("ns/a", tc.cached).ResourceVersion; got != tc.wantFresh {
				t.Errorf("fresher = rv %s, want %s", got, tc.wantFresh)
			}
		})
	}
}
