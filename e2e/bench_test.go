package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// BenchmarkStart1000VMs creates 1,000 Always VMs on 10 sim agents (one
// process) and reports create-to-Running latency percentiles and the
// throughput. Run: go test ./e2e -run '^$' -bench Start1000 -benchtime 1x
func BenchmarkStart1000VMs(b *testing.B) {
	for range b.N {
		benchStart(b, 1000, 10)
	}
}

func benchStart(b *testing.B, vms, nodes int) {
	cl := newBenchCluster(b)
	for i := range nodes {
		cl.addAgent(fmt.Sprintf("node-%02d", i), "64", "256Gi", nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := cl.c.VirtualMachineInstances("").Watch(ctx, client.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	created := map[string]time.Time{}
	running := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.C {
			if ev.Object == nil || ev.Object.Status.Phase != v1.Running {
				continue
			}
			mu.Lock()
			if _, ok := running[ev.Object.Name]; !ok {
				running[ev.Object.Name] = time.Now()
			}
			n := len(running)
			mu.Unlock()
			if n == vms {
				return
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range vms {
		name := fmt.Sprintf("vm-%04d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			vm := newVM(name, v1.RunStrategyAlways, nil)
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			if _, err := cl.c.VirtualMachines(v1.DefaultNamespace).Create(ctx, vm, client.WriteOptions{}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d VMs Running after 5 minutes", len(running), vms)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var lat []time.Duration
	mu.Lock()
	for n, r := range running {
		lat = append(lat, r.Sub(created[n]))
	}
	mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	b.ReportMetric(float64(pct(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(pct(0.95).Milliseconds()), "p95-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(vms)/elapsed.Seconds(), "VMs/s")
	b.Logf("%d VMs on %d nodes: all Running in %s; create-to-Running p50 %s p95 %s p99 %s max %s; %.0f VMs/s",
		vms, nodes, elapsed.Round(time.Millisecond), pct(0.5), pct(0.95), pct(0.99), lat[len(lat)-1], float64(vms)/elapsed.Seconds())
}
