package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

// memSample returns object i of a kind as the bench harness makes them: a
// VM with its finalizer and status, its Running VMI (owned by it, with the
// agent's finalizer), and an Event about it.
func memSample(s *Server, kind string, i int) (*resource, object) {
	for _, sm := range codecSamples(s) {
		if sm.name != kind+"/plain" {
			continue
		}
		obj := sm.obj.DeepCopyObject().(object)
		name := fmt.Sprintf("vm-%05d", i)
		obj.SetName(name)
		obj.SetUID(types.UID(fmt.Sprintf("%08d-7f0b-4a4e-9d8c-1f2e3d4c5b6a", i)))
		switch o := obj.(type) {
		case *v1.VirtualMachine:
			o.Finalizers = []string{v1.VirtualMachineControllerFinalizer}
		case *v1.VirtualMachineInstance:
			o.Finalizers = []string{v1.AgentFinalizer}
			o.OwnerReferences = []metav1.OwnerReference{owner(v1.KindVirtualMachine, name, fmt.Sprintf("%08d-0000-4a4e-9d8c-1f2e3d4c5b6a", i), true)}
		case *v1.Event:
			o.Name = fmt.Sprintf("%s.%x", name, i*7919)
			o.InvolvedObject.Name = name
		}
		return sm.r, obj
	}
	panic("no sample of " + kind)
}

// BenchmarkWatchCacheMemory: the heap the watch cache holds per object, for
// n objects of one kind, after its first list (bytes/entry) and after every
// object was changed once more (bytes/entry-changed: the history keeps the
// previous versions). Each is the heap with the cache less the heap once
// it is gone, so that etcd's own memory (in the process) does not count.
func BenchmarkWatchCacheMemory(b *testing.B) {
	const n = 5000
	for _, kind := range []string{"vm", "vmi", "event"} {
		b.Run(kind, func(b *testing.B) {
			st := store.New(etcdtest.Start(b).Client)
			s := New(Config{Store: st, Log: slog.New(slog.DiscardHandler)})
			var r *resource
			var objs []object
			for i := range n {
				var obj object
				r, obj = memSample(s, kind, i)
				objs = append(objs, obj)
			}
			putAll(b, st, r, objs)
			// cached fills a cache, calls f, and returns the heap the cache
			// held then.
			cached := func(f func(c *watchcache.Cache)) int64 {
				c := watchcache.New(watchcache.Config{Store: st, Prefix: r.keyPrefix(), Resources: map[string]watchcache.Decoder{r.keyPrefix(): s.decoderFor(r)},
					Log: slog.New(slog.DiscardHandler), History: n})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); c.Run(ctx) }()
				if err := c.WaitFresh(ctx); err != nil {
					b.Fatal(err)
				}
				if c.Count(r.keyPrefix()) != n {
					b.Fatalf("the cache has %d objects, want %d", c.Count(r.keyPrefix()), n)
				}
				f(c)
				with := heap()
				cancel()
				<-done
				runtime.KeepAlive(c)
				return with - heap()
			}
			var loaded, changed float64
			for b.Loop() {
				loaded += float64(cached(func(*watchcache.Cache) {})) / n
				changed += float64(cached(func(c *watchcache.Cache) {
					for _, obj := range objs {
						obj.SetAnnotations(map[string]string{"changed": fmt.Sprint(len(obj.GetAnnotations()) + 1)})
					}
					putAll(b, st, r, objs)
					if err := c.WaitFresh(context.Background()); err != nil {
						b.Fatal(err)
					}
				})) / n
			}
			b.ReportMetric(loaded/float64(b.N), "bytes/entry")
			b.ReportMetric(changed/float64(b.N), "bytes/entry-changed")
		})
	}
}

// heap returns the live heap after a collection.
func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// putAll stores objs (creating or updating each), eight at a time.
func putAll(b *testing.B, st *store.Store, r *resource, objs []object) {
	b.Helper()
	var wg sync.WaitGroup
	work := make(chan object)
	errs := make(chan error, len(objs))
	for range 8 {
		wg.Go(func() {
			for obj := range work {
				if _, err := storeObject(st, r, obj); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, obj := range objs {
		work <- obj
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
