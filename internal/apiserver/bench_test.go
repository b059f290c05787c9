package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/apiserver/apiservertest"
)

// The benchmarks run the API server over an embedded etcd with fsync on, as
// users run it, and report throughput as custom metrics. One iteration is a
// whole batch, so `-benchtime=1x` gives meaningful numbers:
//
//	go test -run '^$' -bench . -benchtime=1x ./internal/apiserver/

const benchNS = "bench"

// benchWorkers is how many requests are in flight at once.
const benchWorkers = 64

func benchServer(b *testing.B) (*apiservertest.Server, *client.Client) {
	b.Helper()
	s := apiservertest.Start(b, apiservertest.Config{Fsync: true, API: apiserver.Config{CompactionInterval: -1}})
	return s, s.Client(b, client.Config{Timeout: time.Minute})
}

// parallel runs f(i) for i in [0, n) on benchWorkers goroutines.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchWorkers)
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func createVMs(b *testing.B, c *client.Client, prefix string, n int) {
	b.Helper()
	vms := c.VirtualMachines(benchNS)
	parallel(b, n, func(i int) error {
		_, err := vms.Create(context.Background(), newVM(benchNS, fmt.Sprintf("%s-%05d", prefix, i), v1.RunStrategyHalted), client.WriteOptions{})
		return err
	})
}

// BenchmarkCreate: VM creates per second, benchWorkers at a time.
func BenchmarkCreate(b *testing.B) {
	_, c := benchServer(b)
	const batch = 2000
	total, start, iter := 0, time.Now(), 0
	for b.Loop() {
		createVMs(b, c, fmt.Sprintf("c%d", iter), batch)
		total += batch
		iter++
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "creates/s")
}

// BenchmarkGet: VM gets per second, benchWorkers at a time.
func BenchmarkGet(b *testing.B) {
	_, c := benchServer(b)
	const objects, batch = 100, 20000
	createVMs(b, c, "g", objects)
	vms := c.VirtualMachines(benchNS)
	total := 0
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		parallel(b, batch, func(i int) error {
			_, err := vms.Get(context.Background(), fmt.Sprintf("g-%05d", i%objects))
			return err
		})
		total += batch
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "gets/s")
}

// BenchmarkList: the time of one consistent list of a namespace of n VMs
// (from the watch cache), as raw bytes and decoded by the typed client,
// and of the same list paged 500 at a time (from etcd).
func BenchmarkList(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, c := benchServer(b)
			createVMs(b, c, "l", n)
			url := s.URL + kvBase + "/namespaces/" + benchNS + "/virtualmachines"
			hc := &http.Client{}
			const lists = 5
			var raw, decoded, paged time.Duration
			var size int64
			for b.Loop() {
				for range lists {
					t0 := time.Now()
					resp, err := hc.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					size, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("list: %v %d", err, resp.StatusCode)
					}
					raw += time.Since(t0)

					t0 = time.Now()
					l, err := c.VirtualMachines(benchNS).List(context.Background(), client.ListOptions{})
					if err != nil || len(l.Items) != n {
						b.Fatalf("typed list: %v", err)
					}
					decoded += time.Since(t0)

					t0 = time.Now()
					got, opts := 0, client.ListOptions{Limit: 500}
					for {
						p, err := c.VirtualMachines(benchNS).List(context.Background(), opts)
						if err != nil {
							b.Fatal(err)
						}
						got += len(p.Items)
						if p.Continue == "" {
							break
						}
						opts.Continue = p.Continue
					}
					if got != n {
						b.Fatalf("paged list: %d items", got)
					}
					paged += time.Since(t0)
				}
			}
			perList := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(lists*b.N) }
			b.ReportMetric(perList(raw), "ms/list")
			b.ReportMetric(perList(decoded), "ms/list-decoded")
			b.ReportMetric(perList(paged), "ms/list-paged500")
			b.ReportMetric(float64(size)/(1<<20), "MiB/list")
		})
	}
}

// BenchmarkWatchFanOut: 100 watchers (typed clients, decoding every event)
// follow a namespace while VMs are updated; events delivered per second
// across all watchers, from the first write to the last delivery.
func BenchmarkWatchFanOut(b *testing.B) {
	_, c := benchServer(b)
	const watchers, objects, writes = 100, benchWorkers, 1000
	createVMs(b, c, "w", objects)
	vms := c.VirtualMachines(benchNS)
	list, err := vms.List(context.Background(), client.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rv := list.ResourceVersion
	var delivered, wrote time.Duration
	total := 0
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		var got sync.WaitGroup
		for range watchers {
			w, err := vms.Watch(ctx, client.ListOptions{ResourceVersion: rv})
			if err != nil {
				b.Fatal(err)
			}
			got.Add(1)
			go func() {
				defer got.Done()
				defer w.Stop()
				n := 0
				for ev := range w.C {
					if ev.Type == client.Modified {
						if n++; n == writes {
							return
						}
					}
				}
				b.Errorf("a watcher ended after %d events: %v", n, w.Err())
			}()
		}
		t0 := time.Now()
		var seq atomic.Int64
		parallel(b, writes, func(i int) error {
			patch := fmt.Sprintf(`{"metadata":{"labels":{"seq":"%d"}}}`, seq.Add(1))
			out, err := vms.Patch(ctx, fmt.Sprintf("w-%05d", i%objects), client.MergePatch, []byte(patch), "", client.WriteOptions{})
			if err == nil && i == writes-1 {
				_ = out
			}
			return err
		})
		wrote += time.Since(t0)
		got.Wait()
		delivered += time.Since(t0)
		total += watchers * writes
		cancel()
		l, err := vms.List(context.Background(), client.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		rv = l.ResourceVersion
	}
	b.ReportMetric(float64(total)/delivered.Seconds(), "events/s")
	b.ReportMetric(float64(writes*b.N)/wrote.Seconds(), "writes/s")
}
