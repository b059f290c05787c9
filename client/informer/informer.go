// Package informer keeps a local, read-only copy of one resource, fed by a
// list and then a watch from the list's resourceVersion, and tells handlers
// about every change. After a watch ends it resumes from the last
// resourceVersion it saw; when the server answers 410 (that version is gone)
// it lists again and reports the differences, so a handler never misses the
// end state of an object. Controllers and node agents use it instead of
// polling.
package informer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vigil-vm/vigil/client"
)

// ListWatcher lists and watches one resource; *client.Resource is one.
type ListWatcher[T client.Object] interface {
	List(ctx context.Context, opts client.ListOptions) (*client.List[T], error)
	Watch(ctx context.Context, opts client.ListOptions) (*client.Watch[T], error)
}

// Handler receives changes. Handlers run on the informer's goroutine, one at
// a time, in order; they must not block for long (enqueue a key and return)
// and must not modify the objects they get.
type Handler[T client.Object] struct {
	OnAdd    func(obj T)
	OnUpdate func(old, new T)
	OnDelete func(obj T)
}

// IndexFunc returns the index values of an object.
type IndexFunc[T client.Object] func(obj T) []string

// Informer is a list+watch cache of one resource.
type Informer[T client.Object] struct {
	lw   ListWatcher[T]
	opts client.ListOptions
	log  *slog.Logger

	// handlers and indexers are set before Run and read-only afterwards.
	handlers []Handler[T]
	indexers map[string]IndexFunc[T]

	mu    sync.RWMutex // guards items, index, rv
	items map[string]T
	index map[string]map[string]map[string]struct{} // index name -> value -> keys
	rv    string

	synced     chan struct{} // closed after the first list
	syncedOnce sync.Once
}

// New returns an informer of lw restricted by opts' selectors.
func New[T client.Object](lw ListWatcher[T], opts client.ListOptions, log *slog.Logger) *Informer[T] {
	if log == nil {
		log = slog.Default()
	}
	return &Informer[T]{lw: lw, opts: opts, log: log, indexers: map[string]IndexFunc[T]{},
		items: map[string]T{}, index: map[string]map[string]map[string]struct{}{}, synced: make(chan struct{})}
}

// AddHandler registers h; call it before Run.
func (inf *Informer[T]) AddHandler(h Handler[T]) { inf.handlers = append(inf.handlers, h) }

// AddIndex registers an index; call it before Run.
func (inf *Informer[T]) AddIndex(name string, f IndexFunc[T]) {
	inf.indexers[name] = f
	inf.index[name] = map[string]map[string]struct{}{}
}

// Key is the cache key of an object: namespace/name, or name.
func Key(obj client.Object) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}

// Run fills the cache and keeps it current until ctx ends.
func (inf *Informer[T]) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	needList := true
	for ctx.Err() == nil {
		if needList {
			if err := inf.relist(ctx); err != nil {
				if ctx.Err() == nil {
					inf.log.Warn("informer: list failed", "err", err)
					sleep(ctx, backoff)
					backoff = min(backoff*2, 5*time.Second)
				}
				continue
			}
			needList = false
		}
		err := inf.watch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			needList = true
		case err != nil:
			inf.log.Debug("informer: watch ended", "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		default:
			backoff = 100 * time.Millisecond
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

// relist replaces the cache with a fresh list and reports the differences.
func (inf *Informer[T]) relist(ctx context.Context) error {
	opts := inf.opts
	opts.Limit, opts.Continue, opts.ResourceVersion = 0, "", ""
	list, err := inf.lw.List(ctx, opts)
	if err != nil {
		return err
	}
	fresh := make(map[string]T, len(list.Items))
	for _, obj := range list.Items {
		fresh[Key(obj)] = obj
	}
	inf.mu.Lock()
	old := inf.items
	inf.items = map[string]T{}
	for name := range inf.index {
		inf.index[name] = map[string]map[string]struct{}{}
	}
	for k, obj := range fresh {
		inf.storeLocked(k, obj)
	}
	inf.rv = list.ResourceVersion
	inf.mu.Unlock()
	for k, obj := range old {
		if _, ok := fresh[k]; !ok {
			inf.notify(func(h Handler[T]) {
				if h.OnDelete != nil {
					h.OnDelete(obj)
				}
			})
		}
	}
	for k, obj := range fresh {
		prev, existed := old[k]
		switch {
		case !existed:
			inf.notify(func(h Handler[T]) {
				if h.OnAdd != nil {
					h.OnAdd(obj)
				}
			})
		case prev.GetResourceVersion() != obj.GetResourceVersion():
			inf.notify(func(h Handler[T]) {
				if h.OnUpdate != nil {
					h.OnUpdate(prev, obj)
				}
			})
		}
	}
	inf.syncedOnce.Do(func() { close(inf.synced) })
	return nil
}

// watch follows changes from the cache's resourceVersion until the stream ends.
func (inf *Informer[T]) watch(ctx context.Context) error {
	inf.mu.RLock()
	rv := inf.rv
	inf.mu.RUnlock()
	opts := inf.opts
	opts.ResourceVersion, opts.AllowWatchBookmarks = rv, true
	opts.TimeoutSeconds = 300 + int64(time.Now().UnixNano()%60) // spread reconnects
	w, err := inf.lw.Watch(ctx, opts)
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.C {
		switch ev.Type {
		case client.Error:
			return ev.Err
		case client.Bookmark:
			inf.mu.Lock()
			inf.rv = ev.ResourceVersion
			inf.mu.Unlock()
		case client.Added, client.Modified:
			k := Key(ev.Object)
			inf.mu.Lock()
			prev, existed := inf.items[k]
			inf.storeLocked(k, ev.Object)
			inf.rv = ev.ResourceVersion
			inf.mu.Unlock()
			obj := ev.Object
			if existed {
				inf.notify(func(h Handler[T]) {
					if h.OnUpdate != nil {
						h.OnUpdate(prev, obj)
					}
				})
			} else {
				inf.notify(func(h Handler[T]) {
					if h.OnAdd != nil {
						h.OnAdd(obj)
					}
				})
			}
		case client.Deleted:
			k := Key(ev.Object)
			inf.mu.Lock()
			prev, existed := inf.items[k]
			if existed {
				inf.deleteLocked(k, prev)
			}
			inf.rv = ev.ResourceVersion
			inf.mu.Unlock()
			obj := ev.Object
			inf.notify(func(h Handler[T]) {
				if h.OnDelete != nil {
					h.OnDelete(obj)
				}
			})
		}
	}
	if err := w.Err(); err != nil {
		return err
	}
	return nil
}

func (inf *Informer[T]) notify(f func(Handler[T])) {
	for _, h := range inf.handlers {
		f(h)
	}
}

func (inf *Informer[T]) storeLocked(k string, obj T) {
	if prev, ok := inf.items[k]; ok {
		inf.unindexLocked(k, prev)
	}
	inf.items[k] = obj
	for name, f := range inf.indexers {
		for _, v := range f(obj) {
			m := inf.index[name][v]
			if m == nil {
				m = map[string]struct{}{}
				inf.index[name][v] = m
			}
			m[k] = struct{}{}
		}
	}
}

func (inf *Informer[T]) deleteLocked(k string, prev T) {
	inf.unindexLocked(k, prev)
	delete(inf.items, k)
}

func (inf *Informer[T]) unindexLocked(k string, obj T) {
	for name, f := range inf.indexers {
		for _, v := range f(obj) {
			if m := inf.index[name][v]; m != nil {
				delete(m, k)
				if len(m) == 0 {
					delete(inf.index[name], v)
				}
			}
		}
	}
}

// WaitForSync waits until the first list has been loaded.
func (inf *Informer[T]) WaitForSync(ctx context.Context) error {
	select {
	case <-inf.synced:
		return nil
	case <-ctx.Done():
		return errors.New("informer: not synced: " + ctx.Err().Error())
	}
}

// HasSynced reports whether the first list has been loaded.
func (inf *Informer[T]) HasSynced() bool {
	select {
	case <-inf.synced:
		return true
	default:
		return false
	}
}

// Get returns the cached object with key (see Key). Do not modify it.
func (inf *Informer[T]) Get(key string) (T, bool) {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	obj, ok := inf.items[key]
	return obj, ok
}

// List returns every cached object. Do not modify them.
func (inf *Informer[T]) List() []T {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	out := make([]T, 0, len(inf.items))
	for _, obj := range inf.items {
		out = append(out, obj)
	}
	return out
}

// ByIndex returns the cached objects whose index name has value v.
func (inf *Informer[T]) ByIndex(name, v string) []T {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	keys := inf.index[name][v]
	out := make([]T, 0, len(keys))
	for k := range keys {
		out = append(out, inf.items[k])
	}
	return out
}

// ResourceVersion returns the last resourceVersion the cache has seen.
func (inf *Informer[T]) ResourceVersion() string {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return inf.rv
}
