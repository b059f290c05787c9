package store

// Internal tests of the group commit: with a linger of an hour, a batch is
// committed only when a write carries it (or it fills), so what carries
// what is deterministic.

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
)

func newCarryStore(t *testing.T) *Store {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir(), UnsafeNoFsync: true, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	s := New(e.Client)
	s.batch.linger = time.Hour
	return s
}

// openBatch starts batched creates of keys and waits until they wait in the
// open batch; it returns their results, delivered when they are written.
func openBatch(t *testing.T, s *Store, keys ...string) <-chan error {
	t.Helper()
	errs := make(chan error, len(keys))
	for _, k := range keys {
		go func() {
			_, err := s.CreateBatched(context.Background(), k, []byte("event"), 0)
			errs <- err
		}()
	}
	joined(t, s, len(keys))
	return errs
}

// joined waits until the open batch holds n writes, and returns it.
func joined(t *testing.T, s *Store, n int) *batch {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.batch.mu.Lock()
		b := s.batch.open
		full := b != nil && len(b.ops) == n
		s.batch.mu.Unlock()
		if full {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes never joined the open batch", n)
		}
	}
}

func wait(t *testing.T, errs <-chan error, n int) []error {
	t.Helper()
	var out []error
	for range n {
		select {
		case err := <-errs:
			out = append(out, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a batched create never finished")
		}
	}
	return out
}

// TestUpdateCarriesBatch: an update commits the open batch in its own
// transaction: the batch's keys and the update share one revision.
func TestUpdateCarriesBatch(t *testing.T) {
	s := newCarryStore(t)
	ctx := context.Background()
	obj, err := s.Create(ctx, "/o/vmi", []byte("v0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	errs := openBatch(t, s, "/e/1", "/e/2", "/e/3")
	up, err := s.Update(ctx, "/o/vmi", []byte("v1"), obj.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range wait(t, errs, 3) {
		if err != nil {
			t.Fatalf("carried create: %v", err)
		}
	}
	for _, k := range []string{"/e/1", "/e/2", "/e/3"} {
		kv, err := s.Get(ctx, k)
		if err != nil || kv.ModRevision != up.ModRevision {
			t.Errorf("%s: revision %d (err %v), want the update's %d", k, kv.ModRevision, err, up.ModRevision)
		}
	}
	if s.batch.open != nil {
		t.Error("the carried batch is still open")
	}
}

// TestStaleUpdateCarryingBatch: an update that loses its compare-and-swap
// is a conflict as ever, and the batch it carried is still written.
func TestStaleUpdateCarryingBatch(t *testing.T) {
	s := newCarryStore(t)
	ctx := context.Background()
	obj, _ := s.Create(ctx, "/o/vmi", []byte("v0"), 0)
	cur, _ := s.Update(ctx, "/o/vmi", []byte("v1"), obj.ModRevision)
	errs := openBatch(t, s, "/e/1", "/e/2")
	got, err := s.Update(ctx, "/o/vmi", []byte("v2"), obj.ModRevision)
	if !IsConflict(err) || string(got.Value) != "v1" || got.ModRevision != cur.ModRevision {
		t.Fatalf("stale update: %q@%d, %v; want a conflict with v1@%d", got.Value, got.ModRevision, err, cur.ModRevision)
	}
	for _, err := range wait(t, errs, 2) {
		if err != nil {
			t.Fatalf("create carried by a failed update: %v", err)
		}
	}
	for _, k := range []string{"/e/1", "/e/2"} {
		if _, err := s.Get(ctx, k); err != nil {
			t.Errorf("%s after the failed update: %v", k, err)
		}
	}
}

// TestUpdateCarryingExistingKey: a batch with a key that exists makes the
// carrying transaction fail; the update is retried alone and succeeds, the
// existing key is ErrExists, the rest are written.
func TestUpdateCarryingExistingKey(t *testing.T) {
	s := newCarryStore(t)
	ctx := context.Background()
	obj, _ := s.Create(ctx, "/o/vmi", []byte("v0"), 0)
	if _, err := s.Create(ctx, "/e/taken", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	errs := openBatch(t, s, "/e/taken", "/e/new")
	if _, err := s.Update(ctx, "/o/vmi", []byte("v1"), obj.ModRevision); err != nil {
		t.Fatalf("update carrying a batch with an existing key: %v", err)
	}
	exists, ok := 0, 0
	for _, err := range wait(t, errs, 2) {
		switch {
		case IsExists(err):
			exists++
		case err == nil:
			ok++
		default:
			t.Errorf("carried create: %v", err)
		}
	}
	if exists != 1 || ok != 1 {
		t.Errorf("carried creates: %d exist, %d written; want 1 and 1", exists, ok)
	}
	if kv, _ := s.Get(ctx, "/e/taken"); string(kv.Value) != "old" {
		t.Errorf("the existing key now holds %q", kv.Value)
	}
	if kv, _ := s.Get(ctx, "/o/vmi"); string(kv.Value) != "v1" {
		t.Errorf("the update wrote %q, want v1", kv.Value)
	}
}

// TestUpdateDoesNotCarryItsOwnKey: a batch that writes the updated key is
// left for its leader.
func TestUpdateDoesNotCarryItsOwnKey(t *testing.T) {
	s := newCarryStore(t)
	if b := s.batch.take("/x"); b != nil {
		t.Fatal("took a batch when none is open")
	}
	_ = openBatch(t, s, "/o/vmi")
	if b := s.batch.take("/o/vmi"); b != nil {
		t.Fatal("an update of /o/vmi took a batch that creates /o/vmi")
	}
}

// TestUpdateLeavesUncarriableBatch: a batch that writes one key twice
// (which etcd refuses in one transaction) or is too large is not carried;
// the update goes alone and the batch is still written, each key once.
func TestUpdateLeavesUncarriableBatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  []string
		value []byte
	}{
		{"same key twice", []string{"/e/same", "/e/same"}, []byte("event")},
		{"too large", []string{"/e/big1", "/e/big2"}, make([]byte, carryMaxBytes/2+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCarryStore(t)
			ctx := context.Background()
			obj, _ := s.Create(ctx, "/o/vmi", []byte("v0"), 0)
			errs := make(chan error, len(tc.keys))
			for _, k := range tc.keys {
				go func() {
					_, err := s.CreateBatched(ctx, k, tc.value, 0)
					errs <- err
				}()
			}
			joined(t, s, len(tc.keys))
			if _, err := s.Update(ctx, "/o/vmi", []byte("v1"), obj.ModRevision); err != nil {
				t.Fatalf("update next to an uncarriable batch: %v", err)
			}
			s.batch.mu.Lock()
			b := s.batch.open
			s.batch.mu.Unlock()
			if b == nil {
				t.Fatal("the update carried the batch")
			}
			// Commit it as its leader would.
			s.batch.mu.Lock()
			b.taken, s.batch.open = true, nil
			s.batch.mu.Unlock()
			s.batch.finish(ctx, b, b.ops)
			written := 0
			for _, err := range wait(t, errs, len(tc.keys)) {
				switch {
				case err == nil:
					written++
				case !IsExists(err):
					t.Errorf("batched create: %v", err)
				}
			}
			if want := len(map[string]bool{tc.keys[0]: true, tc.keys[1]: true}); written != want {
				t.Errorf("%d creates written, want %d", written, want)
			}
		})
	}
}

// TestUpdateRetriedAloneWhenBatchRefused: when etcd refuses the carried
// batch (here: its lease was revoked), the update is tried alone and
// succeeds; the batch's writes get their own errors.
func TestUpdateRetriedAloneWhenBatchRefused(t *testing.T) {
	s := newCarryStore(t)
	ctx := context.Background()
	obj, _ := s.Create(ctx, "/o/vmi", []byte("v0"), 0)
	errs := make(chan error, 1)
	go func() {
		_, err := s.CreateBatched(ctx, "/e/1", []byte("event"), time.Hour)
		errs <- err
	}()
	lease := joined(t, s, 1).ops[0].lease
	if _, err := s.c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	up, err := s.Update(ctx, "/o/vmi", []byte("v1"), obj.ModRevision)
	if err != nil {
		t.Fatalf("update carrying a refused batch: %v", err)
	}
	if kv, _ := s.Get(ctx, "/o/vmi"); string(kv.Value) != "v1" || kv.ModRevision != up.ModRevision {
		t.Errorf("stored %q@%d, want v1@%d", kv.Value, kv.ModRevision, up.ModRevision)
	}
	if err := wait(t, errs, 1)[0]; err == nil {
		t.Error("a create with a revoked lease succeeded")
	}
}
