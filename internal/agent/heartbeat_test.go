package agent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/agent"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// startAgent runs a sim agent for node through c until the test ends, and
// counts its renewals.
func startAgent(t *testing.T, c *client.Client, node string) *atomic.Int64 {
	t.Helper()
	d, err := sim.New(sim.Config{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	var renewals atomic.Int64
	a, err := agent.New(agent.Config{Client: c, Node: node, Driver: d, LeaseRenewInterval: time.Second,
		FenceAfter: 4 * time.Second, OnRenew: func(time.Time) { renewals.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &renewals
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestHeartbeatStreams checks that an agent beats through the stream: its
// node appears in the server's digest and its beats keep changing there,
// while its Lease is written once, at start.
func TestHeartbeatStreams(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Config{})
	c := s.Client(t, client.Config{})
	renewals := startAgent(t, c, "n1")
	ctx := context.Background()
	serial := func() int64 {
		d, err := c.HeartbeatDigests().Get(ctx, "apiserver")
		if err != nil {
			return 0
		}
		return d.Nodes["n1"].Serial
	}
	eventually(t, "n1 in the digest", func() bool { return serial() != 0 })
	first := serial()
	eventually(t, "n1's beat to change", func() bool { return serial() != first })
	l, err := c.Leases(v1.NodeLeaseNamespace).Get(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	leaseRV := l.ResourceVersion
	before := renewals.Load()
	eventually(t, "three more renewals", func() bool { return renewals.Load() >= before+3 })
	if l, err := c.Leases(v1.NodeLeaseNamespace).Get(ctx, "n1"); err != nil || l.ResourceVersion != leaseRV {
		t.Errorf("the Lease was written while the stream worked (%v)", err)
	}
}

// TestHeartbeatFallsBackToLease checks that an agent whose heartbeat stream
// cannot work (here a proxy refuses it, as one that buffers bodies would
// break it) renews its Lease every interval instead, and never fences.
func TestHeartbeatFallsBackToLease(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Config{})
	target := s.Client(t, client.Config{})
	var refused atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, client.HeartbeatPath("")) {
			refused.Add(1)
			http.Error(w, "no streams here", http.StatusBadGateway)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, s.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(proxy.Close)
	c, err := client.New(client.Config{Server: proxy.URL})
	if err != nil {
		t.Fatal(err)
	}
	renewals := startAgent(t, c, "n1")
	ctx := context.Background()
	renewTime := func() time.Time {
		l, err := target.Leases(v1.NodeLeaseNamespace).Get(ctx, "n1")
		if err != nil || l.Spec.RenewTime == nil {
			return time.Time{}
		}
		return l.Spec.RenewTime.Time
	}
	eventually(t, "the Lease", func() bool { return !renewTime().IsZero() })
	first := renewTime()
	eventually(t, "the Lease renewed again", func() bool { return renewTime().After(first) })
	if refused.Load() == 0 {
		t.Error("the agent never tried the stream")
	}
	before := renewals.Load()
	eventually(t, "three more renewals", func() bool { return renewals.Load() >= before+3 })
	if d, err := target.HeartbeatDigests().Get(ctx, "apiserver"); err == nil {
		if _, ok := d.Nodes["n1"]; ok {
			t.Errorf("n1 is in the digest, but its streams were all refused")
		}
	}
}
