package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

// runServer runs an API server on st until the test ends and waits until it
// is ready.
func runServer(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-s.Ready()
}

// reportCPU starts measuring the process's CPU time (user and system, of
// every goroutine: the server's, and etcd's, which runs in the process);
// the function it returns reports it per iteration as cpu-µs/op. CPU time
// varies less than wall time on a shared machine.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// put stores obj as the server would, behind its back.
func put(t testing.TB, st *store.Store, r *resource, obj object) int64 {
	t.Helper()
	rev, err := storeObject(st, r, obj)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// storeObject creates or updates obj in etcd and returns its new revision.
func storeObject(st *store.Store, r *resource, obj object) (int64, error) {
	data, err := encodeStored(obj, r)
	if err != nil {
		return 0, err
	}
	key := r.key(obj.GetNamespace(), obj.GetName())
	ctx := context.Background()
	cur, err := st.Get(ctx, key)
	var kv store.KV
	switch {
	case store.IsNotFound(err):
		kv, err = st.Create(ctx, key, data, 0)
	case err == nil:
		kv, err = st.Update(ctx, key, data, cur.ModRevision)
	}
	if err != nil {
		return 0, fmt.Errorf("storing %s: %w", key, err)
	}
	return kv.ModRevision, nil
}

// BenchmarkUpdateObject: one write through updateObject, without HTTP, on
// etcd without fsync: the server's own cost of a write (B/op and allocs/op
// include etcd's, which runs in the process). The writes go round-robin
// over 100 objects, so that the watch cache has seen an object's last
// write before its next one, as when many objects are written.
func BenchmarkUpdateObject(b *testing.B) {
	st := store.New(etcdtest.Start(b).Client)
	s := New(Config{Store: st, Log: slog.New(slog.DiscardHandler), CompactionInterval: -1})
	runServer(b, s)
	ctx := context.Background()
	const objects = 100
	for _, res := range []*resource{s.vmRes(), s.vmiRes()} {
		for i := range objects {
			var obj object
			spec := v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: apiresource.MustParse("64Mi")}}}}
			if res == s.vmRes() {
				rs := v1.RunStrategyHalted
				obj = &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: &rs, Template: &v1.VirtualMachineInstanceTemplateSpec{Spec: spec}}}
			} else {
				obj = &v1.VirtualMachineInstance{Spec: spec}
			}
			obj.SetName(fmt.Sprintf("o-%03d", i))
			obj.SetNamespace("bench")
			obj.SetUID(types.UID(fmt.Sprintf("uid-%s-%03d", res.plural, i)))
			put(b, st, res, obj)
		}
	}
	if err := s.cache.WaitFresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("vm-labels", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		n := 0
		for b.Loop() {
			n++
			_, _, err := s.updateObject(ctx, s.vmRes(), "bench", fmt.Sprintf("o-%03d", n%objects), mainResource, false, func(cur object) (object, error) {
				cur.SetLabels(map[string]string{"seq": fmt.Sprint(n)})
				return cur, nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("vmi-status", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		n := 0
		for b.Loop() {
			n++
			_, _, err := s.updateObject(ctx, s.vmiRes(), "bench", fmt.Sprintf("o-%03d", n%objects), statusResource, false, func(cur object) (object, error) {
				vmi := cur.(*v1.VirtualMachineInstance)
				vmi.Status.NodeName, vmi.Status.Phase = "node-1", v1.Running
				vmi.Status.Conditions = []v1.VirtualMachineInstanceCondition{{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue, Reason: fmt.Sprint("Probe", n)}}
				return vmi, nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
