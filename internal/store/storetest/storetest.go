// Package storetest is the conformance suite of the object store: every
// way of reaching etcd that Vigil uses must pass it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-vm/vigil/internal/store"
)

// Run runs every conformance test against stores made by newStore. Each
// test gets its own store and its own key prefix.
func Run(t *testing.T, newStore func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store, prefix string)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"GetMissing", testGetMissing},
		{"UpdateCompareAndSwap", testUpdateCAS},
		{"DeletePreconditions", testDelete},
		{"GuaranteedUpdateNoLostUpdates", testGuaranteedUpdateConcurrent},
		{"GuaranteedUpdateSkipsNoOp", testGuaranteedUpdateNoOp},
		{"GuaranteedUpdateAbort", testGuaranteedUpdateAbort},
		{"ListPages", testListPages},
		{"ListAtCompactedRevision", testListCompacted},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchCompacted", testWatchCompacted},
		{"WatchProgress", testWatchProgress},
		{"TTL", testTTL},
		{"Compactor", testCompactor},
		{"CreateBatched", testCreateBatched},
		{"CreateBatchedExisting", testCreateBatchedExisting},
		{"UpdateBatched", testUpdateBatched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t), "/conformance/"+tc.name+"/")
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, s *store.Store, key, val string) store.KV {
	t.Helper()
	kv, err := s.Create(ctx(t), key, []byte(val), 0)
	if err != nil {
		t.Fatalf("Create(%s): %v", key, err)
	}
	return kv
}

func testCreateGet(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	if kv.ModRevision == 0 || kv.CreateRevision != kv.ModRevision {
		t.Fatalf("Create returned revisions %d/%d", kv.CreateRevision, kv.ModRevision)
	}
	got, err := s.Get(ctx(t), p+"a")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "one" || got.ModRevision != kv.ModRevision {
		t.Fatalf("Get = %q@%d, want one@%d", got.Value, got.ModRevision, kv.ModRevision)
	}
}

func testCreateExisting(t *testing.T, s *store.Store, p string) {
	mustCreate(t, s, p+"a", "one")
	_, err := s.Create(ctx(t), p+"a", []byte("two"), 0)
	if !store.IsExists(err) {
		t.Fatalf("second Create: err = %v, want ErrExists", err)
	}
	got, _ := s.Get(ctx(t), p+"a")
	if string(got.Value) != "one" {
		t.Fatalf("a failed Create changed the value to %q", got.Value)
	}
}

func testGetMissing(t *testing.T, s *store.Store, p string) {
	if _, err := s.Get(ctx(t), p+"missing"); !store.IsNotFound(err) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx(t), p+"missing", []byte("x"), 1); !store.IsNotFound(err) {
		t.Fatalf("Update of a missing key: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx(t), p+"missing", 0); !store.IsNotFound(err) {
		t.Fatalf("Delete of a missing key: err = %v, want ErrNotFound", err)
	}
}

func testUpdateCAS(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	up, err := s.Update(ctx(t), p+"a", []byte("two"), kv.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	if up.ModRevision <= kv.ModRevision {
		t.Fatalf("revision did not advance: %d -> %d", kv.ModRevision, up.ModRevision)
	}
	cur, err := s.Update(ctx(t), p+"a", []byte("stale"), kv.ModRevision)
	if !store.IsConflict(err) {
		t.Fatalf("stale Update: err = %v, want ErrConflict", err)
	}
	if string(cur.Value) != "two" || cur.ModRevision != up.ModRevision {
		t.Fatalf("conflict returned %q@%d, want the current two@%d", cur.Value, cur.ModRevision, up.ModRevision)
	}
}

func testDelete(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	if _, err := s.Delete(ctx(t), p+"a", kv.ModRevision+1000); !store.IsConflict(err) {
		t.Fatalf("Delete with a wrong revision: err = %v, want ErrConflict", err)
	}
	del, err := s.Delete(ctx(t), p+"a", kv.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	if string(del.Value) != "one" || del.ModRevision <= kv.ModRevision {
		t.Fatalf("Delete returned %q@%d", del.Value, del.ModRevision)
	}
	if _, err := s.Get(ctx(t), p+"a"); !store.IsNotFound(err) {
		t.Fatalf("after Delete: err = %v, want ErrNotFound", err)
	}
	mustCreate(t, s, p+"b", "x")
	if _, err := s.Delete(ctx(t), p+"b", 0); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
}

func testGuaranteedUpdateConcurrent(t *testing.T, s *store.Store, p string) {
	key := p + "counter"
	mustCreate(t, s, key, "0")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, err := s.GuaranteedUpdate(ctx(t), key, func(cur store.KV) ([]byte, error) {
					n, err := strconv.Atoi(string(cur.Value))
					if err != nil {
						return nil, err
					}
					return []byte(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx(t), key)
	if string(got.Value) != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %s after %d increments: updates were lost", got.Value, writers*each)
	}
}

func testGuaranteedUpdateNoOp(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "same")
	calls := 0
	got, err := s.GuaranteedUpdate(ctx(t), p+"a", func(cur store.KV) ([]byte, error) {
		calls++
		return cur.Value, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ModRevision != kv.ModRevision || calls != 1 {
		t.Fatalf("no-op update wrote (revision %d -> %d, %d calls)", kv.ModRevision, got.ModRevision, calls)
	}
	if _, err := s.GuaranteedUpdate(ctx(t), p+"missing", func(cur store.KV) ([]byte, error) { return []byte("x"), nil }); !store.IsNotFound(err) {
		t.Fatalf("update of a missing key: err = %v, want ErrNotFound", err)
	}
}

func testGuaranteedUpdateAbort(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	abort := errors.New("refused")
	if _, err := s.GuaranteedUpdate(ctx(t), p+"a", func(store.KV) ([]byte, error) { return nil, abort }); !errors.Is(err, abort) {
		t.Fatalf("err = %v, want the update function's error", err)
	}
	got, _ := s.Get(ctx(t), p+"a")
	if got.ModRevision != kv.ModRevision {
		t.Fatal("an aborted update wrote")
	}
}

func testListPages(t *testing.T, s *store.Store, p string) {
	for i := range 7 {
		mustCreate(t, s, fmt.Sprintf("%sk%02d", p, i), strconv.Itoa(i))
	}
	mustCreate(t, s, p[:len(p)-1]+"-other/x", "outside the prefix")
	first, err := s.List(ctx(t), p, store.ListOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Items) != 3 || !first.More || first.Remaining != 4 {
		t.Fatalf("first page: %d items, more=%v remaining=%d", len(first.Items), first.More, first.Remaining)
	}
	// A write after the first page must not show up in the pinned pages.
	mustCreate(t, s, p+"k99", "late")
	var keys []string
	for _, kv := range first.Items {
		keys = append(keys, kv.Key)
	}
	after := first.Items[len(first.Items)-1].Key
	for {
		page, err := s.List(ctx(t), p, store.ListOptions{Limit: 3, After: after, Revision: first.Revision})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range page.Items {
			keys = append(keys, kv.Key)
		}
		if !page.More {
			break
		}
		after = page.Items[len(page.Items)-1].Key
	}
	if len(keys) != 7 {
		t.Fatalf("paged list returned %d keys, want the 7 of the snapshot: %v", len(keys), keys)
	}
	for i, k := range keys {
		if want := fmt.Sprintf("%sk%02d", p, i); k != want {
			t.Fatalf("key %d = %s, want %s (key order)", i, k, want)
		}
	}
	all, err := s.List(ctx(t), p, store.ListOptions{})
	if err != nil || len(all.Items) != 8 {
		t.Fatalf("full list: %d items, err %v; want 8", len(all.Items), err)
	}
}

func testListCompacted(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	if _, err := s.Update(ctx(t), p+"a", []byte("two"), kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	rev, _ := s.CurrentRevision(ctx(t))
	if _, err := s.Client().Compact(ctx(t), rev); err != nil {
		t.Fatal(err)
	}
	_, err := s.List(ctx(t), p, store.ListOptions{Revision: kv.ModRevision})
	if !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("list at a compacted revision: err = %v, want ErrCompacted", err)
	}
}

func testWatchFromRevision(t *testing.T, s *store.Store, p string) {
	a := mustCreate(t, s, p+"a", "one")
	b := mustCreate(t, s, p+"b", "two")
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	ch := s.Watch(wctx, p, a.ModRevision)
	up, _ := s.Update(ctx(t), p+"a", []byte("three"), a.ModRevision)
	if _, err := s.Delete(ctx(t), p+"b", 0); err != nil {
		t.Fatal(err)
	}
	var got []store.Event
	for len(got) < 3 {
		select {
		case r, ok := <-ch:
			if !ok || r.Err != nil {
				t.Fatalf("watch ended: %v", r.Err)
			}
			got = append(got, r.Events...)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d events after 10s", len(got))
		}
	}
	want := []struct {
		typ store.EventType
		key string
		val string
		rev int64
	}{
		{store.Put, p + "b", "two", b.ModRevision},
		{store.Put, p + "a", "three", up.ModRevision},
		{store.Delete, p + "b", "", 0},
	}
	for i, w := range want {
		e := got[i]
		if e.Type != w.typ || e.KV.Key != w.key || string(e.KV.Value) != w.val || (w.rev != 0 && e.KV.ModRevision != w.rev) {
			t.Errorf("event %d = %v %s=%q@%d, want %v %s=%q@%d", i, e.Type, e.KV.Key, e.KV.Value, e.KV.ModRevision, w.typ, w.key, w.val, w.rev)
		}
	}
}

func testWatchCompacted(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "one")
	if _, err := s.Update(ctx(t), p+"a", []byte("two"), kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	rev, _ := s.CurrentRevision(ctx(t))
	if _, err := s.Client().Compact(ctx(t), rev); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	select {
	case r := <-s.Watch(wctx, p, kv.ModRevision-1):
		if !errors.Is(r.Err, store.ErrCompacted) {
			t.Fatalf("watch from a compacted revision: %+v, want ErrCompacted", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from a watch at a compacted revision")
	}
}

func testWatchProgress(t *testing.T, s *store.Store, p string) {
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	rev, _ := s.CurrentRevision(ctx(t))
	ch := s.Watch(wctx, p, rev)
	// A write elsewhere advances the revision without an event here.
	other := mustCreate(t, s, "/conformance-elsewhere/"+p, "x")
	deadline := time.After(10 * time.Second)
	for {
		if err := s.RequestProgress(ctx(t)); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if len(r.Events) > 0 {
				t.Fatalf("unexpected events %v", r.Events)
			}
			if r.Revision >= other.ModRevision {
				return
			}
		case <-deadline:
			t.Fatal("no progress notification reached the revision of the other write")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// testCreateBatched: concurrent batched creates all land, share few
// revisions, keep their values and TTL leases.
func testCreateBatched(t *testing.T, s *store.Store, p string) {
	const n = 300 // more than one transaction holds
	kvs := make([]store.KV, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kvs[i], errs[i] = s.CreateBatched(ctx(t), fmt.Sprintf("%sk%03d", p, i), []byte(strconv.Itoa(i)), time.Hour)
		}()
	}
	wg.Wait()
	revs := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CreateBatched %d: %v", i, errs[i])
		}
		revs[kvs[i].ModRevision] = true
		got, err := s.Get(ctx(t), kvs[i].Key)
		if err != nil || string(got.Value) != strconv.Itoa(i) || got.ModRevision != kvs[i].ModRevision || got.Lease == 0 {
			t.Fatalf("key %d: got %q@%d lease %d (err %v), want %d@%d with a lease", i, got.Value, got.ModRevision, got.Lease, err, i, kvs[i].ModRevision)
		}
	}
	// 300 concurrent creates need at least 3 transactions of 128; one per
	// create would mean no batching at all.
	if len(revs) < 3 || len(revs) >= n {
		t.Fatalf("%d creates took %d revisions", n, len(revs))
	}
}

// testCreateBatchedExisting: a batch holding a key that exists still
// creates the others, and the existing one is ErrExists and unchanged.
func testCreateBatchedExisting(t *testing.T, s *store.Store, p string) {
	mustCreate(t, s, p+"taken", "old")
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	for _, k := range []string{"a", "taken", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateBatched(ctx(t), p+k, []byte("new"), 0)
			mu.Lock()
			errs[k] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if k == "taken" {
			if !store.IsExists(err) {
				t.Errorf("batched create of an existing key: err = %v, want ErrExists", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("batched create of %s: %v", k, err)
		}
	}
	if got, _ := s.Get(ctx(t), p+"taken"); string(got.Value) != "old" {
		t.Errorf("the existing key now holds %q", got.Value)
	}
}

// testUpdateBatched: concurrent batched updates of distinct keys land; a
// stale one is a conflict carrying the current value and leaves the others
// alone; two updates of one key from the same revision: one wins.
func testUpdateBatched(t *testing.T, s *store.Store, p string) {
	const n = 50
	kvs := make([]store.KV, n)
	for i := range n {
		kvs[i] = mustCreate(t, s, fmt.Sprintf("%sk%02d", p, i), "v0")
	}
	stale := mustCreate(t, s, p+"stale", "v0")
	cur, err := s.Update(ctx(t), p+"stale", []byte("v1"), stale.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	twice := mustCreate(t, s, p+"twice", "v0")
	var wg sync.WaitGroup
	errs := make([]error, n)
	var staleKV store.KV
	var staleErr error
	twiceErrs := make([]error, 2)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateBatched(ctx(t), kvs[i].Key, []byte("v1"), kvs[i].ModRevision)
		})
	}
	wg.Go(func() { staleKV, staleErr = s.UpdateBatched(ctx(t), p+"stale", []byte("v2"), stale.ModRevision) })
	for i := range 2 {
		wg.Go(func() {
			_, twiceErrs[i] = s.UpdateBatched(ctx(t), p+"twice", []byte(strconv.Itoa(i)), twice.ModRevision)
		})
	}
	wg.Wait()
	revs := map[int64]bool{}
	for i := range n {
		got, err := s.Get(ctx(t), kvs[i].Key)
		if errs[i] != nil || err != nil || string(got.Value) != "v1" {
			t.Fatalf("key %d: update err %v, now %q (err %v), want v1", i, errs[i], got.Value, err)
		}
		revs[got.ModRevision] = true
	}
	if len(revs) >= n {
		t.Errorf("%d concurrent batched updates took %d revisions, want fewer", n, len(revs))
	}
	if !store.IsConflict(staleErr) || string(staleKV.Value) != "v1" || staleKV.ModRevision != cur.ModRevision {
		t.Errorf("stale batched update: err %v, value %q@%d, want a conflict with v1@%d", staleErr, staleKV.Value, staleKV.ModRevision, cur.ModRevision)
	}
	won := 0
	for _, err := range twiceErrs {
		switch {
		case err == nil:
			won++
		case !store.IsConflict(err):
			t.Errorf("update of a key updated twice in a batch: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("two updates of one key from one revision: %d succeeded, want 1", won)
	}
}

func testTTL(t *testing.T, s *store.Store, p string) {
	if _, err := s.Create(ctx(t), p+"short", []byte("x"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx(t), p+"short2", []byte("y"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	kv, err := s.Get(ctx(t), p+"short")
	if err != nil || kv.Lease == 0 {
		t.Fatalf("a key with a TTL has lease %d (err %v)", kv.Lease, err)
	}
	// An update keeps the lease.
	if _, err := s.Update(ctx(t), p+"short", []byte("x2"), kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		_, err1 := s.Get(ctx(t), p+"short")
		_, err2 := s.Get(ctx(t), p+"short2")
		if store.IsNotFound(err1) && store.IsNotFound(err2) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatal("keys with a 2s TTL still exist after 15s")
}

func testCompactor(t *testing.T, s *store.Store, p string) {
	kv := mustCreate(t, s, p+"a", "0")
	for i := range 5 {
		var err error
		kv, err = s.Update(ctx(t), p+"a", []byte(strconv.Itoa(i+1)), kv.ModRevision)
		if err != nil {
			t.Fatal(err)
		}
	}
	first := kv.ModRevision
	c := &store.Compactor{Store: s, Interval: 100 * time.Millisecond, Log: discardLogger()}
	cctx, cancel := context.WithCancel(ctx(t))
	done := make(chan struct{})
	go func() { defer close(done); c.Run(cctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		_, err := s.List(ctx(t), p, store.ListOptions{Revision: first - 1})
		if errors.Is(err, store.ErrCompacted) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the compactor did not compact history within 15s")
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
