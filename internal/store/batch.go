package store

import (
	"context"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit. Every etcd transaction is one Raft proposal, one revision,
// one apply and (with fsync) one sync of the log, whatever it holds; writes
// that are not waited on closely and that may share a revision (Events,
// lease renewals) are cheaper many to a transaction. CreateBatched and
// UpdateBatched queue a write; the first caller of a batch waits up to the
// linger time for others to join, commits them all in one transaction, and
// hands each its result. No goroutine outlives a call.

// batchMax is the most writes in one transaction: etcd refuses transactions
// of more than 128 operations by default (--max-txn-ops).
const batchMax = 128

// batchLinger is how long the first write of a batch waits for company.
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
	// taken: a committer has the batch, its leader or a write that
	// carries it (guarded by the batcher's mu).
	taken bool
	// keys and bytes describe the ops, so that a write carries only a
	// batch etcd will take in one transaction with it: no key twice, well
	// under etcd's request size limit (guarded by the batcher's mu).
	keys  map[string]struct{}
	bytes int
	dup   bool
}

// carryMaxBytes bounds the batch an update carries: etcd refuses requests
// over 1.5 MiB by default (--max-request-bytes).
const carryMaxBytes = 512 << 10

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
// with other writes made at about the same time (Events' counts): it waits
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
		bt.open = &batch{full: make(chan struct{}), done: make(chan struct{}), keys: map[string]struct{}{}}
		lead = true
	}
	b = bt.open
	b.ops = append(b.ops, op)
	if _, ok := b.keys[op.key]; ok {
		b.dup = true
	}
	b.keys[op.key] = struct{}{}
	b.bytes += len(op.key) + len(op.value)
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
	case <-b.done: // a write carried it
	case <-ctx.Done():
	}
	t.Stop()
	bt.mu.Lock()
	if b.taken {
		bt.mu.Unlock()
		return // a write carried the batch; it closes done
	}
	b.taken = true
	if bt.open == b {
		bt.open = nil
	}
	bt.mu.Unlock()
	bt.finish(ctx, b, b.ops)
}

// finish commits the ops of b still unanswered and closes b.done. The
// commit does not stop when the committer's caller gives up: the batch's
// other writers still want their result.
func (bt *batcher) finish(ctx context.Context, b *batch, ops []*batchOp) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	bt.commit(cctx, ops)
	close(b.done)
}

// take hands the open batch to a write of key that will carry it in its own
// transaction, or returns nil: no batch is open, or it writes key too.
func (bt *batcher) take(key string) *batch {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	b := bt.open
	if b == nil || b.taken || b.dup || b.bytes > carryMaxBytes {
		return nil
	}
	if _, ok := b.keys[key]; ok {
		return nil
	}
	b.taken = true
	bt.open = nil
	return b
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
	cmps, puts, gets := opsTxn(ops)
	resp, err := bt.s.c.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return ops, err
	}
	if resp.Succeeded {
		settled(ops, resp.Header.Revision)
		return nil, nil
	}
	return unsettled(ops, resp.Responses), nil
}

// opsTxn builds the comparisons, writes and reads of ops in a transaction.
func opsTxn(ops []*batchOp) (cmps []clientv3.Cmp, puts, gets []clientv3.Op) {
	cmps = make([]clientv3.Cmp, len(ops))
	puts = make([]clientv3.Op, len(ops))
	gets = make([]clientv3.Op, len(ops))
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
	return cmps, puts, gets
}

// settled records that ops were written at revision rev.
func settled(ops []*batchOp, rev int64) {
	for _, op := range ops {
		op.kv = KV{Key: op.key, Value: op.value, ModRevision: rev}
		if !op.update {
			op.kv.CreateRevision, op.kv.Lease = rev, int64(op.lease)
		}
	}
}

// unsettled answers, from the reads of a failed transaction (one per op,
// in order), the ops that cannot succeed: ErrExists, ErrNotFound, or
// ErrConflict with the current object. It returns the others.
func unsettled(ops []*batchOp, reads []*etcdserverpb.ResponseOp) []*batchOp {
	var rest []*batchOp
	for i, op := range ops {
		kvs := reads[i].GetResponseRange().GetKvs()
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
	return rest
}

// updateCarrying is Update with the open batch b written in the same
// transaction: the batch costs no transaction of its own. When the
// transaction fails, the update is answered or retried alone, and the
// batch's ops that can still succeed are committed on their own.
func (s *Store) updateCarrying(ctx context.Context, key string, value []byte, expectedRev int64, b *batch) (KV, error) {
	cmps, puts, gets := opsTxn(b.ops)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := s.c.Txn(tctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", expectedRev)}, cmps...)...).
		Then(append([]clientv3.Op{clientv3.OpPut(key, string(value), clientv3.WithIgnoreLease())}, puts...)...).
		Else(append([]clientv3.Op{clientv3.OpGet(key)}, gets...)...).
		Commit()
	if err != nil {
		// Whatever failed (etcd down, or refusing the batch: too large, a
		// lease gone), the batch is written on its own and the update is
		// tried alone, as if it had carried nothing.
		s.batch.finish(ctx, b, b.ops)
		if ctx.Err() != nil {
			return KV{}, translate(err, key)
		}
		return s.update(ctx, key, value, expectedRev)
	}
	if resp.Succeeded {
		settled(b.ops, resp.Header.Revision)
		close(b.done)
		return KV{Key: key, Value: value, ModRevision: resp.Header.Revision}, nil
	}
	s.batch.finish(ctx, b, unsettled(b.ops, resp.Responses[1:]))
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	switch {
	case len(kvs) == 0:
		return KV{}, keyErr(ErrNotFound, key)
	case kvs[0].ModRevision != expectedRev:
		return kvOf(kvs[0]), keyErr(ErrConflict, key)
	}
	return s.update(ctx, key, value, expectedRev) // the batch made it fail
}

// single writes one op in a transaction of its own.
func (bt *batcher) single(ctx context.Context, op *batchOp) {
	if op.update {
		op.kv, op.err = bt.s.update(ctx, op.key, op.value, op.rev)
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
