package watchcache_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
)

// TestSetIsMap: a Set answers as the map it was made of, and selectors
// match it as they match the map.
func TestSetIsMap(t *testing.T) {
	if watchcache.NewSet(nil) != nil || watchcache.NewSet(map[string]string{}) != nil {
		t.Error("the Set of an empty map is not nil")
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	keys := []string{"", "a", "app", "b", "kubevirt.io/vm", "metadata.name", "status.phase", "z", "é"}
	for range 500 {
		m := map[string]string{}
		for range rnd.IntN(len(keys) + 1) {
			m[keys[rnd.IntN(len(keys))]] = keys[rnd.IntN(len(keys))]
		}
		s := watchcache.NewSet(m)
		if s.Len() != len(m) || fmt.Sprint(s.Map()) != fmt.Sprint(m) {
			t.Fatalf("NewSet(%v) = %v", m, s)
		}
		if s.String() != labels.Set(m).String() || s.String() != fields.Set(m).String() {
			t.Errorf("String() = %q, want %q", s.String(), labels.Set(m).String())
		}
		for _, k := range append(slices.Clone(keys), "missing") {
			v, ok := m[k]
			if got, gotOK := s.Lookup(k); got != v || gotOK != ok || s.Has(k) != ok || s.Get(k) != v {
				t.Fatalf("%v: Lookup(%q) = %q %v, want %q %v", m, k, got, gotOK, v, ok)
			}
		}
		for _, sel := range []string{"app=b", "app!=b", "app", "!app", "app in (a,b)", "a=,z=z", "kubevirt.io/vm notin (app)"} {
			ls, err := labels.Parse(sel)
			if err != nil {
				t.Fatal(err)
			}
			if ls.Matches(s) != ls.Matches(labels.Set(m)) {
				t.Errorf("label selector %q on %v: %v", sel, m, ls.Matches(s))
			}
		}
		for _, sel := range []string{"status.phase=a", "status.phase!=a", "metadata.name=,status.phase=z", "app==b"} {
			fs, err := fields.ParseSelector(sel)
			if err != nil {
				t.Fatal(err)
			}
			if fs.Matches(s) != fs.Matches(fields.Set(m)) {
				t.Errorf("field selector %q on %v: %v", sel, m, fs.Matches(s))
			}
		}
	}
}
