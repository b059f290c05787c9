package store

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType is the kind of a watch event.
type EventType int

// Watch event types.
const (
	// Put is a create or an update; KV.CreateRevision == KV.ModRevision on create.
	Put EventType = iota + 1
	// Delete is a deletion; KV holds the key and, as ModRevision, the
	// deletion's revision, but no value: the watch does not ask etcd for
	// previous values (a read for every change), and its user, the watch
	// cache, has the last value already.
	Delete
)

// Event is one change of one key.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResult is one batch from a watch: events, a progress notification
// (no events, Revision set), or a terminal error.
type WatchResult struct {
	Events []Event
	// Revision is the store revision the watcher has seen up to.
	Revision int64
	// Err ends the watch; ErrCompacted means fromRev is gone and the caller
	// must relist.
	Err error
}

// Watch streams the changes of keys under prefix after fromRev (exclusive;
// 0 means from now). The channel closes after an error result or when ctx
// ends; its goroutine stops then too. The watch also delivers progress
// notifications, so that an idle watcher's revision advances.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchResult {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithProgressNotify()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev+1))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.c.Watch(wctx, prefix, opts...)
	out := make(chan WatchResult)
	go func() {
		defer close(out)
		defer cancel()
		send := func(r WatchResult) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if resp.CompactRevision > 0 {
				send(WatchResult{Err: keyErr(ErrCompacted, prefix)})
				return
			}
			if err := resp.Err(); err != nil {
				send(WatchResult{Err: translate(err, prefix)})
				return
			}
			r := WatchResult{Revision: resp.Header.Revision}
			if len(resp.Events) > 0 {
				r.Events = make([]Event, len(resp.Events))
				for i, ev := range resp.Events {
					e := Event{Type: Put, KV: kvOf(ev.Kv)}
					if ev.Type == clientv3.EventTypeDelete {
						e.Type = Delete
					}
					r.Events[i] = e
				}
				r.Revision = resp.Events[len(resp.Events)-1].Kv.ModRevision
				if resp.Header.Revision > r.Revision && resp.IsProgressNotify() {
					r.Revision = resp.Header.Revision
				}
			}
			if !send(r) {
				return
			}
		}
		if ctx.Err() == nil {
			send(WatchResult{Err: keyErr(ErrUnavailable, prefix+": watch closed")})
		}
	}()
	return out
}

// RequestProgress asks etcd to send a progress notification on every watch
// of this client, so that watchers learn the current revision even when
// nothing under their prefix changed.
//
// etcd routes the request by the context's metadata, so it carries the same
// require-leader mark as the watches.
func (s *Store) RequestProgress(ctx context.Context) error {
	return translate(s.c.RequestProgress(clientv3.WithRequireLeader(ctx)), "progress")
}
