package apiserver

import (
	"context"
	"encoding/json"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
)

// cacheEntry is a watch cache entry, as updateObject keeps it.
type cacheEntry = watchcache.Entry

// readForUpdate reads the object an update starts from: the watch cache's
// copy when the cache has the object, knows its stored form, and has seen
// this server's last write of it (e is then that entry, and kv has the key
// and revision but no value), etcd's otherwise. The cache's copy may still
// be stale, or the object gone: only a compare-and-swap on kv.ModRevision
// tells. (A compare-and-swap that fails is a write to etcd, with its
// consensus round, where a read is not: hence no cache read when the cache
// is known to be behind.)
func (s *Server) readForUpdate(ctx context.Context, r *resource, ns, name string) (obj object, kv store.KV, e *cacheEntry, err error) {
	key := r.key(ns, name)
	if e := s.cache.Fresh(r.keyPrefix(), key); e != nil && e.RVEnd > 0 {
		obj := r.newObj()
		if err := json.Unmarshal(e.Data, obj); err == nil {
			setTypeMeta(obj, r)
			return obj, store.KV{Key: key, ModRevision: e.Rev}, e, nil
		}
	}
	obj, kv, err = s.read(ctx, r, ns, name)
	return obj, kv, nil, err
}

// nextObject computes what an update of cur writes: mutate's result, with
// what mode may not change kept from cur, checked against its
// resourceVersion precondition and validated.
func (s *Server) nextObject(r *resource, name string, mode updateMode, cur object, mutate mutateFunc) (next object, warnings []string, err error) {
	desired, err := mutate(cur.DeepCopyObject().(object))
	if err != nil {
		return nil, nil, err
	}
	// A resourceVersion in the new object is a precondition. After a
	// conflict the update goes on with the current object, so a
	// precondition that went stale meanwhile fails here too.
	if rv := desired.GetResourceVersion(); rv != "" && rv != cur.GetResourceVersion() {
		return nil, nil, conflict(r, name, "the object has been modified; please apply your changes to the latest version and try again")
	}
	next, err = s.prepareUpdate(r, desired, cur, mode)
	if err != nil {
		return nil, nil, err
	}
	var errs field.ErrorList
	if r.validateUpdate != nil && mode == mainResource {
		errs = r.validateUpdate(next, cur) // validates next in full too
	} else {
		errs, warnings = r.validate(next)
	}
	if mode == statusResource {
		warnings = nil // they are about the spec, which a status writer does not own
	}
	errs = append(errs, validateMeta(next)...)
	if len(errs) > 0 {
		return nil, nil, invalid(r, name, errs)
	}
	return next, warnings, nil
}
