package store

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CompactKey is where servers sharing one etcd agree on compactions.
const CompactKey = "/vigil/compact_rev_key"

// Compactor removes etcd history older than one Interval, so that the
// history of a busy system never fills etcd's quota. Each tick it compacts
// to the revision it saw on the previous tick. Several servers on one etcd
// coordinate through CompactKey: only the one whose compare-and-swap wins
// compacts in a given interval.
type Compactor struct {
	Store    *Store
	Interval time.Duration
	Log      *slog.Logger
}

// Run compacts every Interval until ctx ends.
func (c *Compactor) Run(ctx context.Context) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	var version, pending int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, rev, err := c.tick(ctx, version, pending)
		if err != nil {
			if ctx.Err() == nil {
				c.Log.Warn("compaction failed", "err", err)
			}
			continue
		}
		version, pending = v, rev
	}
}

// tick records the current revision as the next compaction target and
// compacts to the target recorded one interval ago. It returns the version
// of CompactKey and the revision to compact to next time.
func (c *Compactor) tick(ctx context.Context, version, target int64) (int64, int64, error) {
	cl := c.Store.c
	resp, err := cl.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(CompactKey), "=", version)).
		Then(clientv3.OpPut(CompactKey, strconv.FormatInt(target, 10))).
		Else(clientv3.OpGet(CompactKey)).
		Commit()
	if err != nil {
		return version, target, err
	}
	cur := resp.Header.Revision
	if !resp.Succeeded {
		// Another server compacted this interval; follow its version.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			version = kvs[0].Version
		}
		return version, cur, nil
	}
	if target > 0 {
		if _, err := cl.Compact(ctx, target); err != nil && !isCompactedErr(err) {
			return version + 1, cur, err
		}
		c.Log.Debug("compacted etcd history", "revision", target)
	}
	return version + 1, cur, nil
}

func isCompactedErr(err error) bool { return errors.Is(translate(err, CompactKey), ErrCompacted) }
