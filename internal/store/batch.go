package store

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit. Every etcd transaction is one Raft proposal, one revision,
// one apply and (with fsync) one sync of the log, whatever it holds; writes
// that are not waited on closely and that may share a revision (Events,
// lease renewals) are cheaper many to a transaction. CreateBatched and
// UpdateBatched queue a write; the first caller of a batch waits up to the
// linger time for others to join, commits them all in one transaction, and
// hands each its result. No goroutine outlives a call.

// batchMax is the most creates in one transaction: etcd refuses transactions
// of more than 128 operations by default (--max-txn-ops).
const batchMax = 128

// batchLinger is how long the first create of a batch waits for company.
const batchLinger = 50 * time.Millisecond

type batchOp struct {
	key   string
	value []byte
	lease clientv3.LeaseID
	// update: replace the value if the key's revision is still rev;
	// otherwise create the key if it does not exist.
	update bool
	rev    int64
	kv     KV
	err    error
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
	return s.batch.do(ctx, op)
}

// UpdateBatched is Update for objects that tolerate sharing their revision
// with other writes made at about the same time (lease renewals): it waits
// up to a few milliseconds for other writes and commits them in one etcd
// transaction. The result is the same as Update's, conflicts included.
func (s *Store) UpdateBatched(ctx context.Context, key string, value []byte, expectedRev int64) (KV, error) {
	return s.batch.do(ctx, &batchOp{key: key, value: value, update: true, rev: expectedRev})
}

// do queues op, commits its batch if op opened it, and waits for its result.
func (bt *batcher) do(ctx context.Context, op *batchOp) (KV, error) {
	b, lead := bt.join(op)
	if lead {
		bt.lead(ctx, b)
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

// commit writes ops in one transaction that requires every created key to
// be new and every updated key to be at its expected revision. When that
// fails, the transaction's else branch reads every key, the ops it shows
// cannot succeed get their answer (ErrExists, ErrConflict with the current
// object, ErrNotFound), and the rest are committed again. etcd refuses a
// transaction that writes one key twice, so a second write of a key in one
// batch waits for the first and goes on its own.
func (bt *batcher) commit(ctx context.Context, ops []*batchOp) {
	first, again := splitDuplicates(ops)
	for range 3 {
		if len(first) == 0 {
			break
		}
		if len(first) == 1 {
			bt.single(ctx, first[0])
			first = nil
			break
		}
		var err error
		if first, err = bt.txn(ctx, first); err != nil {
			break // unavailable: one by one, each with its own error
		}
	}
	var wg sync.WaitGroup
	for _, op := range first {
		wg.Go(func() { bt.single(ctx, op) })
	}
	wg.Wait()
	for _, op := range again {
		bt.single(ctx, op)
	}
}

// txn commits ops in one transaction. It returns the ops still to write:
// none when the transaction succeeded; after a failed comparison, those
// whose comparison held (a concurrent writer may have made the others
// fail). On an error every op is returned.
func (bt *batcher) txn(ctx context.Context, ops []*batchOp) ([]*batchOp, error) {
	cmps := make([]clientv3.Cmp, len(ops))
	puts := make([]clientv3.Op, len(ops))
	gets := make([]clientv3.Op, len(ops))
	for i, op := range ops {
		gets[i] = clientv3.OpGet(op.key)
		if op.update {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(op.key), "=", op.rev)
			puts[i] = clientv3.OpPut(op.key, string(op.value), clientv3.WithIgnoreLease())
			continue
		}
		cmps[i] = clientv3.Compare(clientv3.CreateRevision(op.key), "=", 0)
		puts[i] = clientv3.OpPut(op.key, string(op.value), clientv3.WithLease(op.lease))
	}
	resp, err := bt.s.c.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return ops, err
	}
	rev := resp.Header.Revision
	if resp.Succeeded {
		for _, op := range ops {
			op.kv = KV{Key: op.key, Value: op.value, ModRevision: rev}
			if !op.update {
				op.kv.CreateRevision, op.kv.Lease = rev, int64(op.lease)
			}
		}
		return nil, nil
	}
	var rest []*batchOp
	for i, op := range ops {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		switch {
		case !op.update && len(kvs) > 0:
			op.err = keyErr(ErrExists, op.key)
		case op.update && len(kvs) == 0:
			op.err = keyErr(ErrNotFound, op.key)
		case op.update && kvs[0].ModRevision != op.rev:
			op.kv, op.err = kvOf(kvs[0]), keyErr(ErrConflict, op.key)
		default:
			rest = append(rest, op)
		}
	}
	return rest, nil
}

// single writes one op in a transaction of its own.
func (bt *batcher) single(ctx context.Context, op *batchOp) {
	if op.update {
		op.kv, op.err = bt.s.Update(ctx, op.key, op.value, op.rev)
		return
	}
	op.kv, op.err = bt.s.create(ctx, op.key, op.value, op.lease)
}

// splitDuplicates returns the first op of each key, in order, and the
// later ops of keys already seen.
func splitDuplicates(ops []*batchOp) (first, again []*batchOp) {
	seen := make(map[string]struct{}, len(ops))
	for _, op := range ops {
		if _, ok := seen[op.key]; ok {
			again = append(again, op)
			continue
		}
		seen[op.key] = struct{}{}
		first = append(first, op)
	}
	return first, again
}
