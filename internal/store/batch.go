package store

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit of creates. Every etcd transaction is one Raft proposal, one
// revision and one apply, whatever it holds; objects that nobody reads back
// at once and that may share a revision (Events) are cheaper written many to
// a transaction. CreateBatched queues a create; the first caller of a batch
// waits up to the linger time for others to join, commits them all in one
// transaction, and hands each its result. No goroutine outlives a call.

// batchMax is the most creates in one transaction: etcd refuses transactions
// of more than 128 operations by default (--max-txn-ops).
const batchMax = 128

// batchLinger is how long the first create of a batch waits for company.
const batchLinger = 50 * time.Millisecond

type batchOp struct {
	key   string
	value []byte
	lease clientv3.LeaseID
	kv    KV
	err   error
}

type batch struct {
	ops  []*batchOp
	full chan struct{} // closed when the batch reaches batchMax
	done chan struct{} // closed when every op has its result
}

type batcher struct {
	s      *Store
	linger time.Duration

	mu   sync.Mutex
	open *batch // the batch new creates join, nil when none
}

// CreateBatched is Create for objects that tolerate sharing their revision
// with other objects created at about the same time: it waits up to a few
// milliseconds for other creates and writes them in one etcd transaction.
// The result is the same as Create's, errors included.
func (s *Store) CreateBatched(ctx context.Context, key string, value []byte, ttl time.Duration) (KV, error) {
	op := &batchOp{key: key, value: value}
	if ttl > 0 {
		id, err := s.leases.leaseFor(ctx, ttl)
		if err != nil {
			return KV{}, translate(err, key)
		}
		op.lease = id
	}
	b, lead := s.batch.join(op)
	if lead {
		s.batch.lead(ctx, b)
	}
	select {
	case <-b.done:
		return op.kv, op.err
	case <-ctx.Done():
		return KV{}, ctx.Err()
	}
}

// join adds op to the open batch, opening one if needed; lead is true for
// the op that opened it, whose caller commits it.
func (bt *batcher) join(op *batchOp) (b *batch, lead bool) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if bt.open == nil {
		bt.open = &batch{full: make(chan struct{}), done: make(chan struct{})}
		lead = true
	}
	b = bt.open
	b.ops = append(b.ops, op)
	if len(b.ops) == batchMax {
		close(b.full)
		bt.open = nil
	}
	return b, lead
}

// lead waits for the batch to fill or the linger time to pass, closes it to
// newcomers and commits it. The commit does not stop when the leader's
// caller gives up: the other ops in the batch still want their result.
func (bt *batcher) lead(ctx context.Context, b *batch) {
	t := time.NewTimer(bt.linger)
	select {
	case <-b.full:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	bt.mu.Lock()
	if bt.open == b {
		bt.open = nil
	}
	bt.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	bt.commit(cctx, b.ops)
	close(b.done)
}

// commit writes ops in one transaction that requires every key to be new.
// When one already exists the whole transaction fails, and each op is
// written on its own so that each gets its own answer.
func (bt *batcher) commit(ctx context.Context, ops []*batchOp) {
	if len(ops) > 1 {
		cmps := make([]clientv3.Cmp, len(ops))
		puts := make([]clientv3.Op, len(ops))
		for i, op := range ops {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(op.key), "=", 0)
			puts[i] = clientv3.OpPut(op.key, string(op.value), clientv3.WithLease(op.lease))
		}
		resp, err := bt.s.c.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err == nil && resp.Succeeded {
			rev := resp.Header.Revision
			for _, op := range ops {
				op.kv = KV{Key: op.key, Value: op.value, ModRevision: rev, CreateRevision: rev, Lease: int64(op.lease)}
			}
			return
		}
		// Unavailable, or a key exists: fall through to one by one, which
		// reports the right error for each.
	}
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op.kv, op.err = bt.s.create(ctx, op.key, op.value, op.lease)
		}()
	}
	wg.Wait()
}
