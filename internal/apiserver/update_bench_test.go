package apiserver_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// BenchmarkUpdate: the latency of one write through the API, over HTTP, on
// etcd with fsync on. One iteration is one write, so ns/op is the latency
// of a write (serial) or the time per write at benchWorkers in flight
// (parallel, which also reports the latency percentiles).
//
//   - patch: a merge patch of a VM's labels, with no precondition.
//   - status: a VMI status write with the resourceVersion of the writer's
//     own previous write as its precondition, as node agents and
//     controllers write.
func BenchmarkUpdate(b *testing.B) {
	for _, kind := range []string{"patch", "status"} {
		for _, workers := range []int{1, benchWorkers} {
			b.Run(fmt.Sprintf("%s/workers=%d", kind, workers), func(b *testing.B) {
				_, c := benchServer(b)
				write := updater(b, c, kind, workers)
				var mu sync.Mutex
				var lat []time.Duration
				var wg sync.WaitGroup
				work := make(chan struct{}, workers)
				errs := make(chan error, workers)
				b.ReportAllocs()
				b.ResetTimer()
				for w := range workers {
					wg.Go(func() {
						var mine []time.Duration
						defer func() {
							mu.Lock()
							lat = append(lat, mine...)
							mu.Unlock()
						}()
						for range work {
							t0 := time.Now()
							if err := write(w); err != nil {
								errs <- err
								return
							}
							mine = append(mine, time.Since(t0))
						}
					})
				}
				for b.Loop() {
					select {
					case work <- struct{}{}:
					case err := <-errs:
						close(work)
						wg.Wait()
						b.Fatal(err)
					}
				}
				close(work)
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				slices.Sort(lat)
				if n := len(lat); n > 0 {
					b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}

// updater creates one object per worker and returns the write of worker w.
func updater(b *testing.B, c *client.Client, kind string, workers int) func(w int) error {
	b.Helper()
	ctx := context.Background()
	switch kind {
	case "patch":
		vms := c.VirtualMachines(benchNS)
		seq := make([]int, workers)
		for w := range workers {
			if _, err := vms.Create(ctx, newVM(benchNS, fmt.Sprintf("u-%03d", w), v1.RunStrategyHalted), client.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		return func(w int) error {
			seq[w]++
			_, err := vms.Patch(ctx, fmt.Sprintf("u-%03d", w), client.MergePatch, fmt.Appendf(nil, `{"metadata":{"labels":{"seq":"%d"}}}`, seq[w]), "", client.WriteOptions{})
			return err
		}
	default:
		vmis := c.VirtualMachineInstances(benchNS)
		cur := make([]*v1.VirtualMachineInstance, workers)
		for w := range workers {
			vmi := newVMI(benchNS, fmt.Sprintf("u-%03d", w))
			out, err := vmis.Create(ctx, vmi, client.WriteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			out.Status.NodeName, out.Status.Phase = "node-1", v1.Running
			if cur[w], err = vmis.UpdateStatus(ctx, out, client.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		seq := make([]int, workers)
		return func(w int) error {
			seq[w]++
			vmi := cur[w]
			vmi.Status.Conditions = []v1.VirtualMachineInstanceCondition{{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue,
				Reason: fmt.Sprintf("Probe%d", seq[w])}}
			out, err := vmis.UpdateStatus(ctx, vmi, client.WriteOptions{})
			if err != nil {
				return err
			}
			cur[w] = out
			return nil
		}
	}
}
