package apiserver

import (
	"net/http/httptest"
	"testing"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
)

// TestSelectorsAllocateNothing: a watch event is matched against every
// watcher of its resource (an agent's watch selects its node's VMIs), so a
// match must not allocate.
func TestSelectorsAllocateNothing(t *testing.T) {
	var r *resource
	for _, x := range resources(0) {
		if x.kind == v1.KindVirtualMachineInstance {
			r = x
		}
	}
	req := httptest.NewRequest("GET", "/?fieldSelector=status.nodeName%3Dnode-1&labelSelector=app%3Dweb", nil)
	match, err := selectors(r, req)
	if err != nil {
		t.Fatal(err)
	}
	hit := &watchcache.Entry{Labels: watchcache.NewSet(map[string]string{"app": "web"}),
		Fields: watchcache.NewSet(map[string]string{"status.nodeName": "node-1", "metadata.name": "a"})}
	miss := &watchcache.Entry{Labels: hit.Labels, Fields: watchcache.NewSet(map[string]string{"status.nodeName": "node-2"})}
	if !match(hit) || match(miss) {
		t.Fatalf("match(hit) = %v, match(miss) = %v", match(hit), match(miss))
	}
	if n := testing.AllocsPerRun(100, func() { match(hit); match(miss) }); n != 0 {
		t.Errorf("%v allocations per match, want 0", n)
	}
}
