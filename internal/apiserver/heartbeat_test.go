package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
)

// digest reads the server's heartbeat digest (nil when there is none yet).
func (h *harness) digest(name string) *v1.HeartbeatDigest {
	h.t.Helper()
	d, err := h.c.HeartbeatDigests().Get(context.Background(), name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// TestHeartbeatStream checks that every beat is acknowledged only once the
// digest holding it is in etcd, that each beat changes the node's serial,
// and that a node leaves the digest a retention after its stream ended,
// its last beat unchanged until then.
func TestHeartbeatStream(t *testing.T) {
	h := newHarness(t, apiserver.Config{HeartbeatDigest: "api-1", HeartbeatRetention: 300 * time.Millisecond})
	ctx := context.Background()
	s, err := h.c.Heartbeat(ctx, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	var serials []int64
	for n := uint64(1); n <= 3; n++ {
		if err := s.Beat(n); err != nil {
			t.Fatal(err)
		}
		got, err := s.Ack()
		if err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Fatalf("beat %d acknowledged as %d", n, got)
		}
		// Acknowledged means committed: etcd has it now.
		d := h.digest("api-1")
		if d == nil {
			t.Fatalf("beat %d acknowledged, but there is no digest", n)
		}
		b, ok := d.Nodes["node-1"]
		if !ok {
			t.Fatalf("beat %d acknowledged, but the digest has no node-1: %+v", n, d.Nodes)
		}
		serials = append(serials, b.Serial)
		if d.Kind != v1.KindHeartbeatDigest || d.APIVersion != v1.VigilAPIVersion || d.UID == "" {
			t.Errorf("digest %s: kind %q apiVersion %q uid %q", d.Name, d.Kind, d.APIVersion, d.UID)
		}
	}
	if serials[0] == serials[1] || serials[1] == serials[2] {
		t.Errorf("serials %v: every beat must change it", serials)
	}
	if err := s.Close(); err != nil {
		t.Log(err)
	}
	// The node stays, its last beat unchanged, for the retention; then it
	// leaves.
	eventually(t, "node-1 to leave the digest", func() bool {
		b, ok := h.digest("api-1").Nodes["node-1"]
		if ok && b.Serial != serials[2] {
			t.Fatalf("node-1's serial changed after its stream ended: %d, then %d", serials[2], b.Serial)
		}
		return !ok
	})
}

// TestHeartbeatsShareCommits checks that beats of many nodes arriving
// together are committed together: fewer digest revisions than beats.
func TestHeartbeatsShareCommits(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	ctx := context.Background()
	const nodes = 20
	streams := make([]*client.HeartbeatStream, nodes)
	for i := range streams {
		s, err := h.c.Heartbeat(ctx, fmt.Sprintf("node-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[i] = s
	}
	before := h.digest("apiserver")
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for _, s := range streams {
		wg.Go(func() {
			if err := s.Beat(7); err != nil {
				errs <- err
				return
			}
			if n, err := s.Ack(); err != nil || n != 7 {
				errs <- fmt.Errorf("ack %d, %v", n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	after := h.digest("apiserver")
	if len(after.Nodes) != nodes {
		t.Fatalf("the digest holds %d nodes, want %d", len(after.Nodes), nodes)
	}
	var from int64
	if before != nil {
		from = rvOf(t, before.ResourceVersion)
	}
	// Every revision in between is a commit of this digest or nothing.
	list, err := h.c.HeartbeatDigests().List(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d digests, want 1", len(list.Items))
	}
	if commits := rvOf(t, after.ResourceVersion) - from; commits >= nodes/2 {
		t.Errorf("%d beats took %d commits; they should share a few", nodes, commits)
	}
}

func rvOf(t *testing.T, rv string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(rv, &n); err != nil {
		t.Fatalf("resourceVersion %q: %v", rv, err)
	}
	return n
}

// TestHeartbeatBadInput checks the answers to a bad node name and to bad
// beats: a clear error, and no beat recorded.
func TestHeartbeatBadInput(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	ctx := context.Background()

	_, err := h.c.Heartbeat(ctx, "Not_A_Node")
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `"Not_A_Node" is not a node name`) {
		t.Errorf("bad node name: %v, want a 400 naming it", err)
	}

	for _, tc := range []struct{ name, line, want string }{
		{"not a number", "abc", `a beat is a decimal number, not "abc"`},
		{"negative", "-1", `a beat is a decimal number, not "-1"`},
		{"too long", strings.Repeat("1", 100), "a beat is a decimal number on a line of at most 64 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.rawHeartbeat("node-bad", tc.line+"\n")
			if code != 200 || !strings.Contains(body, "error: "+tc.want) {
				t.Errorf("beat %q: %d %q, want an error line %q", tc.line, code, body, tc.want)
			}
		})
	}
	if d := h.digest("apiserver"); d != nil {
		if _, ok := d.Nodes["node-bad"]; ok {
			t.Errorf("a bad beat was recorded: %+v", d.Nodes)
		}
	}
}

// TestHeartbeatRefused checks that a stream the server refuses before it
// reads a beat (a wrong token) gets its answer at once, though its body
// has not ended.
func TestHeartbeatRefused(t *testing.T) {
	h := newHarness(t, apiserver.Config{Token: "right"})
	c := h.s.Client(t, client.Config{Token: "wrong"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Heartbeat(ctx, "node-1")
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("a wrong token: %v, want 401 Unauthorized", err)
	}
}

// TestHeartbeatDigestsReadOnly checks that clients cannot write digests: a
// renewal is only ever a beat the server acknowledged.
func TestHeartbeatDigestsReadOnly(t *testing.T) {
	h := newHarness(t, apiserver.Config{})
	base := "/apis/vigil.dev/v1/heartbeatdigests"
	body := `{"apiVersion":"vigil.dev/v1","kind":"HeartbeatDigest","metadata":{"name":"x"},"nodes":{"n1":{"serial":1,"time":"2026-01-01T00:00:00.000000Z"}}}`
	for _, tc := range []struct{ method, path string }{
		{"POST", base}, {"PUT", base + "/x"}, {"PATCH", base + "/x"}, {"DELETE", base + "/x"}, {"DELETE", base},
	} {
		r := h.do(tc.method, tc.path, body, "application/json")
		if st := r.status(t); r.code != 405 || st.Reason != "MethodNotAllowed" {
			t.Errorf("%s %s: %d %s, want 405 MethodNotAllowed", tc.method, tc.path, r.code, st.Reason)
		}
	}
	h.do("GET", base, nil, "").expectCode(t, 200)
}

// rawHeartbeat posts body as a whole heartbeat stream and returns the answer.
func (h *harness) rawHeartbeat(node, body string) (int, string) {
	h.t.Helper()
	r := h.do("POST", client.HeartbeatPath(node), body, "text/plain")
	return r.code, string(r.body)
}
