package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// KV is one stored object.
type KV struct {
	Key   string
	Value []byte
	// ModRevision is the revision of the last write; it is the object's version.
	ModRevision int64
	// CreateRevision is the revision that created the key.
	CreateRevision int64
	// Lease is the etcd lease the key is attached to (0: none).
	Lease int64
}

// Store is the etcd-backed object store. It is safe for concurrent use.
type Store struct {
	c      *clientv3.Client
	leases *leaseManager
	batch  batcher
}

// New returns a Store on an etcd client. The caller keeps ownership of c.
func New(c *clientv3.Client) *Store {
	s := &Store{c: c, leases: newLeaseManager(c)}
	s.batch = batcher{s: s, linger: batchLinger}
	return s
}

// Client returns the etcd client, for the leader election of the controllers.
func (s *Store) Client() *clientv3.Client { return s.c }

func kvOf(kv *mvccpb.KeyValue) KV {
	return KV{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision, Lease: kv.Lease}
}

// translate maps etcd client errors to the store's sentinels.
func translate(err error, key string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrGRPCCompacted):
		return keyErr(ErrCompacted, key)
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, key, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, key, err)
}

// Get returns the object at key.
func (s *Store) Get(ctx context.Context, key string) (KV, error) {
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return KV{}, translate(err, key)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, keyErr(ErrNotFound, key)
	}
	return kvOf(resp.Kvs[0]), nil
}

// ListOptions select a page of a list.
type ListOptions struct {
	// Limit is the most items to return; 0 means all.
	Limit int64
	// After continues a list after this key (exclusive).
	After string
	// Revision reads the list as of this revision; 0 means the current one.
	// A compacted revision fails with ErrCompacted.
	Revision int64
}

// ListResult is one page of a list.
type ListResult struct {
	Items []KV
	// Revision is the revision the list was read at; continue at the same one.
	Revision int64
	// More is true when items remain after the last one returned.
	More bool
	// Remaining counts the items after this page.
	Remaining int64
}

// List returns the objects whose keys start with prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string, o ListOptions) (ListResult, error) {
	start := prefix
	if o.After != "" {
		start = o.After + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if o.Limit > 0 {
		opts = append(opts, clientv3.WithLimit(o.Limit))
	}
	if o.Revision > 0 {
		opts = append(opts, clientv3.WithRev(o.Revision))
	}
	resp, err := s.c.Get(ctx, start, opts...)
	if err != nil {
		return ListResult{}, translate(err, prefix)
	}
	out := ListResult{Items: make([]KV, len(resp.Kvs)), Revision: resp.Header.Revision, More: resp.More}
	if o.Revision > 0 {
		out.Revision = o.Revision
	}
	for i, kv := range resp.Kvs {
		out.Items[i] = kvOf(kv)
	}
	out.Remaining = max(resp.Count-int64(len(resp.Kvs)), 0)
	return out, nil
}

// CurrentRevision returns etcd's current revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.c.Get(ctx, "\x00vigil-revision-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, translate(err, "revision")
	}
	return resp.Header.Revision, nil
}

// Create stores value at key if the key does not exist. With ttl > 0 the
// key expires on its own after about ttl (at most 10% later).
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (KV, error) {
	var lease clientv3.LeaseID
	if ttl > 0 {
		id, err := s.leases.leaseFor(ctx, ttl)
		if err != nil {
			return KV{}, translate(err, key)
		}
		lease = id
	}
	return s.create(ctx, key, value, lease)
}

// create stores value at key, attached to lease (0: none), if the key does
// not exist.
func (s *Store) create(ctx context.Context, key string, value []byte, lease clientv3.LeaseID) (KV, error) {
	var putOpts []clientv3.OpOption
	if lease != 0 {
		putOpts = append(putOpts, clientv3.WithLease(lease))
	}
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value), putOpts...)).
		Commit()
	if err != nil {
		return KV{}, translate(err, key)
	}
	if !resp.Succeeded {
		return KV{}, keyErr(ErrExists, key)
	}
	rev := resp.Header.Revision
	return KV{Key: key, Value: value, ModRevision: rev, CreateRevision: rev, Lease: int64(lease)}, nil
}

// Update replaces the value at key if its revision is still expectedRev. A
// stale expectedRev fails with ErrConflict and returns the current object.
// The key keeps its lease.
//
// A group-committed batch waiting to be written (Events) rides in the same
// etcd transaction, which then costs the batch nothing.
func (s *Store) Update(ctx context.Context, key string, value []byte, expectedRev int64) (KV, error) {
	if b := s.batch.take(key); b != nil {
		return s.updateCarrying(ctx, key, value, expectedRev, b)
	}
	return s.update(ctx, key, value, expectedRev)
}

// update is Update in a transaction of its own.
func (s *Store) update(ctx context.Context, key string, value []byte, expectedRev int64) (KV, error) {
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectedRev)).
		Then(clientv3.OpPut(key, string(value), clientv3.WithIgnoreLease())).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return KV{}, translate(err, key)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return KV{}, keyErr(ErrNotFound, key)
		}
		return kvOf(kvs[0]), keyErr(ErrConflict, key)
	}
	return KV{Key: key, Value: value, ModRevision: resp.Header.Revision}, nil
}

// Delete removes key. With expectedRev > 0 it deletes only if the key's
// revision is still expectedRev (ErrConflict otherwise). It returns the
// deleted object, whose ModRevision is the revision of the deletion.
func (s *Store) Delete(ctx context.Context, key string, expectedRev int64) (KV, error) {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if expectedRev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", expectedRev)
	}
	resp, err := s.c.Txn(ctx).If(cmp).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return KV{}, translate(err, key)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return KV{}, keyErr(ErrNotFound, key)
		}
		return kvOf(kvs[0]), keyErr(ErrConflict, key)
	}
	prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs
	if len(prev) == 0 {
		return KV{}, keyErr(ErrNotFound, key)
	}
	out := kvOf(prev[0])
	out.ModRevision = resp.Header.Revision
	return out, nil
}

// UpdateFunc computes the next value of an object from its current state.
// Returning the current value unchanged skips the write. Returning an error
// aborts the update with that error.
type UpdateFunc func(cur KV) ([]byte, error)

// GuaranteedUpdate reads key, calls tryUpdate, and writes the result if the
// object has not changed meanwhile; on a conflict it reads again and retries
// until it succeeds, tryUpdate fails, or ctx ends. A result equal to the
// current value writes nothing. A missing key fails with ErrNotFound.
func (s *Store) GuaranteedUpdate(ctx context.Context, key string, tryUpdate UpdateFunc) (KV, error) {
	cur, err := s.Get(ctx, key)
	if err != nil {
		return KV{}, err
	}
	for {
		next, err := tryUpdate(cur)
		if err != nil {
			return cur, err
		}
		if bytes.Equal(next, cur.Value) {
			return cur, nil
		}
		kv, err := s.Update(ctx, key, next, cur.ModRevision)
		switch {
		case err == nil:
			kv.CreateRevision, kv.Lease = cur.CreateRevision, cur.Lease
			return kv, nil
		case IsConflict(err):
			cur = kv
		default:
			return KV{}, err
		}
		if err := ctx.Err(); err != nil {
			return KV{}, err
		}
	}
}
