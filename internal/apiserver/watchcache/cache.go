package watchcache

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-vm/vigil/internal/store"
)

// ErrGone is returned for a watch from a revision older than the history.
var ErrGone = errors.New("too old resource version")

// ErrNotReady is returned before the cache's first list completed, or when it
// could not catch up with etcd in time.
var ErrNotReady = errors.New("watch cache is not ready")

// Entry is one object as the cache holds it. Entries are never modified
// after they are made; a change makes a new Entry.
type Entry struct {
	Key       string
	Namespace string
	Name      string
	UID       string
	// Rev is the object's resourceVersion (for a deletion: the revision of
	// the deletion).
	Rev int64
	// Data is the object's JSON with metadata.resourceVersion set.
	Data []byte
	// RVStart and RVEnd, when RVEnd > 0, say where the decoder put the
	// resourceVersion: Data without Data[RVStart:RVEnd] is the stored value.
	RVStart, RVEnd int32
	// Labels are the object's labels, Fields the values its field
	// selectors select on.
	Labels, Fields Set
	// Owners are the UIDs of the object's owner references.
	Owners []string
}

// withoutData returns a copy of e without its JSON: what an Event keeps of
// the object before a change, which only selectors look at.
func (e *Entry) withoutData() *Entry {
	c := *e
	c.Data, c.RVStart, c.RVEnd = nil, 0, 0
	return &c
}

// IsStored reports whether v is the stored value e was decoded from. It is
// false when e does not know where its resourceVersion is (RVEnd is 0).
func (e *Entry) IsStored(v []byte) bool {
	start, end := int(e.RVStart), int(e.RVEnd)
	if end <= start || end > len(e.Data) || len(v) != len(e.Data)-(end-start) {
		return false
	}
	return bytes.Equal(v[:start], e.Data[:start]) && bytes.Equal(v[start:], e.Data[end:])
}

// EventType is the type of a watch event.
type EventType string

// Event types, as they appear on the wire.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change of one object.
type Event struct {
	Type  EventType
	Entry *Entry
	// Prev is the object before the change (nil for an addition), for
	// selectors: it has no Data.
	Prev *Entry
}

// Decoder turns a stored value into an Entry; rev is the revision to record.
type Decoder func(key string, value []byte, rev int64) (*Entry, error)

// Config configures a Cache.
type Config struct {
	Store *store.Store
	// Prefix is the etcd prefix of everything the cache holds.
	Prefix string
	// Resources maps each resource's key prefix (under Prefix) to its decoder.
	Resources map[string]Decoder
	// History is how many recent events each resource keeps for watchers that
	// resume from a resourceVersion (default 10000).
	History int
	// HistoryOf overrides History for some resources, by key prefix: a
	// resource of few, often rewritten objects keeps a short history.
	HistoryOf map[string]int
	// WatcherBuffer is how many events a watcher may lag behind before it is
	// cut off and must resume (default 4096).
	WatcherBuffer int
	Log           *slog.Logger
	// BeforeApply, when set, is called with each batch of changes (or
	// progress notification) from etcd before the cache applies it; the
	// cache waits for it to return. Tests use it to hold the cache back.
	BeforeApply func(rev int64)
}

// Cache is the watch cache. Run feeds it; the other methods are safe for
// concurrent use.
type Cache struct {
	cfg Config

	mu sync.RWMutex // guards everything below
	// rev is the etcd revision the cache reflects.
	rev int64
	// ready is true once the first list has been loaded.
	ready bool
	// revChanged is closed (and replaced) whenever rev advances.
	revChanged chan struct{}
	res        map[string]*resourceCache

	wmu sync.Mutex // guards written; taken after mu
	// written holds, by key, the revision of a write the cache was told of
	// (Wrote) and has not applied yet.
	written map[string]int64
	// pending holds the same writes by revision, lowest first, so that the
	// cache forgets each as it applies it without scanning written (a map
	// that held thousands of keys during a burst costs as much to iterate
	// when it is nearly empty).
	pending writeHeap
}

type pendingWrite struct {
	rev int64
	key string
}

// writeHeap is a min-heap of writes by revision (container/heap).
type writeHeap []pendingWrite

func (h writeHeap) Len() int           { return len(h) }
func (h writeHeap) Less(i, j int) bool { return h[i].rev < h[j].rev }
func (h writeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *writeHeap) Push(x any)        { *h = append(*h, x.(pendingWrite)) }
func (h *writeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pendingWrite{} // let the key go
	*h = old[:len(old)-1]
	return x
}

type resourceCache struct {
	prefix string
	decode Decoder
	items  map[string]*Entry
	// byOwner indexes item keys by owner UID. An owner has few dependents
	// (a VM has one VMI): a slice holds them in less memory than a map.
	byOwner map[string][]string
	// uids holds the UIDs of the items.
	uids map[string]struct{}
	// history is a ring of the latest events; it holds every event with a
	// revision above oldest.
	history []Event
	hstart  int
	hlen    int
	oldest  int64
	// watchers of this resource.
	watchers map[*Watcher]struct{}
}

// New returns a cache; call Run to fill it.
func New(cfg Config) *Cache {
	if cfg.History <= 0 {
		cfg.History = 10000
	}
	if cfg.WatcherBuffer <= 0 {
		cfg.WatcherBuffer = 4096
	}
	c := &Cache{cfg: cfg, revChanged: make(chan struct{}), res: map[string]*resourceCache{}, written: map[string]int64{}}
	for p, d := range cfg.Resources {
		history := cfg.History
		if n := cfg.HistoryOf[p]; n > 0 {
			history = n
		}
		c.res[p] = &resourceCache{prefix: p, decode: d, items: map[string]*Entry{}, byOwner: map[string][]string{}, uids: map[string]struct{}{},
			history: make([]Event, history), watchers: map[*Watcher]struct{}{}}
	}
	return c
}

// Run lists everything under the prefix, then follows etcd's changes until
// ctx ends. When the watch fails it relists; watchers are then cut off and
// resume from their last revision (or relist if it is gone).
func (c *Cache) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rev, err := c.load(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Log.Warn("watch cache: list failed", "err", err)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		err = c.follow(ctx, rev)
		if ctx.Err() == nil {
			c.cfg.Log.Warn("watch cache: watch ended, relisting", "err", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rc := range c.res {
		for w := range rc.watchers {
			w.closeLocked(ErrNotReady)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// load replaces the cache's content with a fresh list.
func (c *Cache) load(ctx context.Context) (int64, error) {
	list, err := c.cfg.Store.List(ctx, c.cfg.Prefix, store.ListOptions{})
	if err != nil {
		return 0, err
	}
	fresh := map[string]map[string]*Entry{}
	for p := range c.res {
		fresh[p] = map[string]*Entry{}
	}
	for _, kv := range list.Items {
		rc := c.resourceFor(kv.Key)
		if rc == nil {
			continue
		}
		e, err := rc.decode(kv.Key, kv.Value, kv.ModRevision)
		if err != nil {
			c.cfg.Log.Error("watch cache: undecodable object skipped", "key", kv.Key, "err", err)
			continue
		}
		fresh[rc.prefix][kv.Key] = e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, rc := range c.res {
		for w := range rc.watchers {
			w.closeLocked(nil) // they resume from their own revision
		}
		rc.items = fresh[p]
		rc.byOwner = map[string][]string{}
		rc.uids = map[string]struct{}{}
		for k, e := range rc.items {
			rc.index(k, e)
		}
		rc.hstart, rc.hlen, rc.oldest = 0, 0, list.Revision
	}
	c.ready = true
	c.advanceLocked(list.Revision)
	c.forgetWritesLocked(list.Revision)
	return list.Revision, nil
}

func (c *Cache) resourceFor(key string) *resourceCache {
	for p, rc := range c.res {
		if strings.HasPrefix(key, p) {
			return rc
		}
	}
	return nil
}

// follow applies etcd's changes after rev until the watch fails.
func (c *Cache) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for r := range c.cfg.Store.Watch(wctx, c.cfg.Prefix, rev) {
		if r.Err != nil {
			return r.Err
		}
		if c.cfg.BeforeApply != nil {
			c.cfg.BeforeApply(r.Revision)
		}
		c.apply(r)
	}
	return ctx.Err()
}

func (c *Cache) apply(r store.WatchResult) {
	type decoded struct {
		rc *resourceCache
		ev store.Event
		e  *Entry
	}
	// Decode outside the lock.
	ds := make([]decoded, 0, len(r.Events))
	for _, ev := range r.Events {
		rc := c.resourceFor(ev.KV.Key)
		if rc == nil {
			continue
		}
		if ev.Type == store.Delete {
			// A deletion carries no value: the cached object, stamped
			// with the deletion's revision, is what watchers get.
			ds = append(ds, decoded{rc, ev, nil})
			continue
		}
		e, err := rc.decode(ev.KV.Key, ev.KV.Value, ev.KV.ModRevision)
		if err != nil {
			c.cfg.Log.Error("watch cache: undecodable object skipped", "key", ev.KV.Key, "err", err)
			continue
		}
		ds = append(ds, decoded{rc, ev, e})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range ds {
		prev := d.rc.items[d.ev.KV.Key]
		var out Event
		switch {
		case d.ev.Type == store.Delete:
			if prev == nil {
				continue
			}
			delete(d.rc.items, d.ev.KV.Key)
			d.rc.unindex(d.ev.KV.Key, prev)
			out = Event{Type: Deleted, Entry: d.rc.restamp(d.ev.KV.Key, prev, d.ev.KV.ModRevision), Prev: prev.withoutData()}
		case prev == nil:
			d.rc.items[d.ev.KV.Key] = d.e
			d.rc.index(d.ev.KV.Key, d.e)
			out = Event{Type: Added, Entry: d.e}
		default:
			d.rc.unindex(d.ev.KV.Key, prev)
			d.rc.items[d.ev.KV.Key] = d.e
			d.rc.index(d.ev.KV.Key, d.e)
			out = Event{Type: Modified, Entry: d.e, Prev: prev.withoutData()}
		}
		d.rc.record(out)
		for w := range d.rc.watchers {
			if ev, ok := w.convert(out); ok {
				w.sendLocked(ev)
			}
		}
	}
	c.advanceLocked(r.Revision)
	c.forgetWritesLocked(r.Revision)
}

// forgetWritesLocked forgets the writes the cache has applied, now that it
// is at rev.
func (c *Cache) forgetWritesLocked(rev int64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.pending) > 0 && c.pending[0].rev <= rev {
		w := heap.Pop(&c.pending).(pendingWrite)
		if c.written[w.key] <= rev { // not written again since
			delete(c.written, w.key)
		}
	}
}

func (c *Cache) advanceLocked(rev int64) {
	if rev > c.rev {
		c.rev = rev
		close(c.revChanged)
		c.revChanged = make(chan struct{})
	}
}

func (rc *resourceCache) record(e Event) {
	n := len(rc.history)
	if rc.hlen == n {
		rc.oldest = rc.history[rc.hstart].Entry.Rev
		rc.history[rc.hstart] = Event{}
		rc.hstart = (rc.hstart + 1) % n
		rc.hlen--
	}
	rc.history[(rc.hstart+rc.hlen)%n] = e
	rc.hlen++
}

func (rc *resourceCache) index(key string, e *Entry) {
	rc.uids[e.UID] = struct{}{}
	for _, o := range e.Owners {
		if keys := rc.byOwner[o]; !slices.Contains(keys, key) {
			rc.byOwner[o] = append(keys, key)
		}
	}
}

func (rc *resourceCache) unindex(key string, e *Entry) {
	delete(rc.uids, e.UID)
	for _, o := range e.Owners {
		keys := rc.byOwner[o]
		if i := slices.Index(keys, key); i >= 0 {
			keys[i] = keys[len(keys)-1]
			keys[len(keys)-1] = ""
			keys = keys[:len(keys)-1]
		}
		if len(keys) == 0 {
			delete(rc.byOwner, o)
		} else {
			rc.byOwner[o] = keys
		}
	}
}

// Rev returns the revision the cache reflects.
func (c *Cache) Rev() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// WaitFresh waits until the cache reflects at least etcd's current revision,
// asking etcd for progress notifications meanwhile. It fails with
// ErrNotReady if that does not happen before ctx ends or within 5 seconds.
func (c *Cache) WaitFresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want, err := c.cfg.Store.CurrentRevision(ctx)
	if err != nil {
		return err
	}
	return c.WaitRev(ctx, want)
}

// WaitRev waits until the cache reflects revision want.
func (c *Cache) WaitRev(ctx context.Context, want int64) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	asked := false
	for {
		c.mu.RLock()
		rev, ready, changed := c.rev, c.ready, c.revChanged
		c.mu.RUnlock()
		if ready && rev >= want {
			return nil
		}
		if ready && !asked {
			// Nothing under the prefix may change; ask etcd to tell the
			// cache's watch how far it is.
			if err := c.cfg.Store.RequestProgress(ctx); err != nil {
				return err
			}
			asked = true
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: at revision %d, waiting for %d", ErrNotReady, rev, want)
		case <-changed:
		case <-t.C:
			asked = false // ask again
		}
		t.Stop()
	}
}

// List returns the entries of a resource whose keys start with keyPrefix and
// that match, sorted by key, and the revision they reflect.
func (c *Cache) List(resource, keyPrefix string, match func(*Entry) bool) ([]*Entry, int64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ready {
		return nil, 0, ErrNotReady
	}
	rc := c.res[resource]
	if rc == nil {
		return nil, 0, fmt.Errorf("watch cache: unknown resource %s", resource)
	}
	out := make([]*Entry, 0, len(rc.items))
	for k, e := range rc.items {
		if strings.HasPrefix(k, keyPrefix) && (match == nil || match(e)) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, c.rev, nil
}

// Get returns the cached entry at key, or nil.
func (c *Cache) Get(resource, key string) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rc := c.res[resource]; rc != nil {
		return rc.items[key]
	}
	return nil
}

// Wrote tells the cache that the object at key was written at revision
// rev, so that Fresh does not answer with an older entry until the cache
// has applied the write. A writer that reads objects back from the cache
// calls it after each write it makes.
func (c *Cache) Wrote(key string, rev int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rev >= rev {
		return // applied already
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.written[key] < rev {
		c.written[key] = rev
		heap.Push(&c.pending, pendingWrite{rev: rev, key: key})
	}
}

// Fresh returns the cached entry at key, or nil: when the cache has none,
// or has not applied a write of it that it was told of (Wrote). The entry
// may still be older than etcd's object, written elsewhere.
func (c *Cache) Fresh(resource, key string) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rc := c.res[resource]
	if rc == nil {
		return nil
	}
	e := rc.items[key]
	if e == nil {
		return nil
	}
	c.wmu.Lock()
	w, pending := c.written[key]
	c.wmu.Unlock()
	if pending && e.Rev < w {
		return nil
	}
	return e
}

// Dependents returns the entries, in every resource, owned by ownerUID.
func (c *Cache) Dependents(ownerUID string) []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Entry
	for _, rc := range c.res {
		for _, k := range rc.byOwner[ownerUID] {
			out = append(out, rc.items[k])
		}
	}
	return out
}

// MissingOwners returns the UIDs named as owner by some entry, in any
// resource, that no entry has: the owners whose dependents are orphans. It
// reads one consistent state, from the owner index: a dependent created
// after its owner is never taken for an orphan.
func (c *Cache) MissingOwners() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	missing := map[string]struct{}{}
	for _, rc := range c.res {
	owners:
		for o := range rc.byOwner {
			for _, other := range c.res {
				if _, ok := other.uids[o]; ok {
					continue owners
				}
			}
			missing[o] = struct{}{}
		}
	}
	return slices.Collect(maps.Keys(missing))
}

// Exists reports whether an object with uid exists, in any resource.
func (c *Cache) Exists(uid string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, rc := range c.res {
		if _, ok := rc.uids[uid]; ok {
			return true
		}
	}
	return false
}

// Count returns how many objects a resource has.
func (c *Cache) Count(resource string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rc := c.res[resource]; rc != nil {
		return len(rc.items)
	}
	return 0
}

// restamp returns the cached entry e as of revision rev, a deletion's: its
// stored form (its Data without the resourceVersion the decoder inserted)
// decoded again with that revision, so that a watcher resuming from the
// deletion's resourceVersion does not see it again. An entry that does not
// know where its resourceVersion is (RVEnd 0, decoded in full) is decoded
// again from its Data, whose resourceVersion the full decode replaces.
func (rc *resourceCache) restamp(key string, e *Entry, rev int64) *Entry {
	start, end := int(e.RVStart), int(e.RVEnd)
	stored := e.Data
	if end > start && end <= len(e.Data) {
		stored = make([]byte, 0, len(e.Data)-(end-start))
		stored = append(stored, e.Data[:start]...)
		stored = append(stored, e.Data[end:]...)
	}
	out, err := rc.decode(key, stored, rev)
	if err != nil {
		return e
	}
	return out
}
