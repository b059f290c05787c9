package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/store"
)

// deleteOptions reads DeleteOptions from the body (optional) and the query.
func deleteOptions(req *http.Request) (metav1.DeleteOptions, error) {
	var opts metav1.DeleteOptions
	if req.ContentLength != 0 && req.Body != nil {
		body, _, err := readBody(req, "application/json", "application/yaml")
		if err != nil {
			return opts, err
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &opts); err != nil {
				return opts, badRequest("malformed DeleteOptions: %v", err)
			}
		}
	}
	q := req.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return opts, badRequest("gracePeriodSeconds must be an integer, not %q", g)
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	opts.DryRun = append(opts.DryRun, q["dryRun"]...)
	for _, d := range opts.DryRun {
		if d != metav1.DryRunAll {
			return opts, badRequest("unsupported dryRun value %q: the only supported value is All", d)
		}
	}
	if g := opts.GracePeriodSeconds; g != nil && *g < 0 {
		return opts, badRequest("gracePeriodSeconds must not be negative")
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return opts, badRequest("unsupported propagationPolicy %q: use Background, Foreground or Orphan", *p)
		}
	}
	return opts, nil
}

func (s *Server) deleteHandler(r *resource) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		opts, err := deleteOptions(req)
		if err != nil {
			return err
		}
		obj, err := s.deleteObject(req.Context(), r, namespaceOf(r, req), req.PathValue("name"), opts)
		if err != nil {
			return err
		}
		writeObject(w, http.StatusOK, obj)
		return nil
	}
}

// deleteObject deletes an object. An object with finalizers is only marked
// (deletionTimestamp, and for a VMI the grace period its guest gets); the
// write that removes its last finalizer deletes it. Dependents are deleted
// by the garbage collector, or orphaned with propagationPolicy Orphan.
func (s *Server) deleteObject(ctx context.Context, r *resource, ns, name string, opts metav1.DeleteOptions) (object, error) {
	dry := len(opts.DryRun) > 0
	for {
		cur, kv, err := s.read(ctx, r, ns, name)
		if err != nil {
			return nil, err
		}
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != cur.GetUID() {
				return nil, conflict(r, name, "Precondition failed: UID in precondition: "+string(*p.UID)+", UID in object meta: "+string(cur.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != cur.GetResourceVersion() {
				return nil, conflict(r, name, "Precondition failed: ResourceVersion in precondition: "+*p.ResourceVersion+", ResourceVersion in object meta: "+cur.GetResourceVersion())
			}
		}
		if pp := opts.PropagationPolicy; pp != nil && *pp == metav1.DeletePropagationOrphan && !dry {
			if err := s.orphanDependents(ctx, cur.GetUID()); err != nil {
				return nil, err
			}
		}
		if len(cur.GetFinalizers()) > 0 {
			next := cur.DeepCopyObject().(object)
			grace := s.gracePeriod(r, cur, opts)
			old := cur.GetDeletionGracePeriodSeconds()
			switch {
			case cur.GetDeletionTimestamp() == nil:
				now := metav1.NewTime(s.now()).Rfc3339Copy()
				next.SetDeletionTimestamp(&now)
				next.SetDeletionGracePeriodSeconds(&grace)
				next.SetGeneration(cur.GetGeneration() + 1)
			case old == nil || grace < *old:
				next.SetDeletionGracePeriodSeconds(&grace) // a shorter grace period may be asked later
			default:
				return cur, nil // already being deleted
			}
			if dry {
				return next, nil
			}
			data, err := encodeStored(next, r)
			if err != nil {
				return nil, err
			}
			up, err := s.store.Update(ctx, kv.Key, data, kv.ModRevision)
			if store.IsConflict(err) {
				continue
			}
			if err != nil {
				return nil, storeErr(r, name, err)
			}
			next.SetResourceVersion(strconv.FormatInt(up.ModRevision, 10))
			return next, nil
		}
		if dry {
			return cur, nil
		}
		del, err := s.store.Delete(ctx, kv.Key, kv.ModRevision)
		if store.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, storeErr(r, name, err)
		}
		cur.SetResourceVersion(strconv.FormatInt(del.ModRevision, 10))
		return cur, nil
	}
}

// gracePeriod is the deletionGracePeriodSeconds a deletion records: the
// request's, or for a VMI its own terminationGracePeriodSeconds (default
// 30), which its node agent honours; 0 for other resources.
func (s *Server) gracePeriod(r *resource, cur object, opts metav1.DeleteOptions) int64 {
	if opts.GracePeriodSeconds != nil {
		return *opts.GracePeriodSeconds
	}
	if vmi, ok := cur.(*v1.VirtualMachineInstance); ok {
		return vmi.GracePeriodSeconds()
	}
	return 0
}

// orphanDependents removes ownerUID from the owner references of every
// object it owns, so that deleting the owner leaves them alone.
func (s *Server) orphanDependents(ctx context.Context, ownerUID types.UID) error {
	// The cache must hold every dependent written before this request, or
	// one it has not seen yet would keep its reference and be collected.
	if err := s.cache.WaitFresh(ctx); err != nil {
		return err
	}
	for _, e := range s.cache.Dependents(string(ownerUID)) {
		r := s.resourceForKey(e.Key)
		if r == nil {
			continue
		}
		if err := s.removeOwner(ctx, r, e.Namespace, e.Name, ownerUID); err != nil && !isNotFoundStatus(err) {
			return err
		}
	}
	return nil
}

// removeOwner removes the owner reference to ownerUID from one object.
func (s *Server) removeOwner(ctx context.Context, r *resource, ns, name string, ownerUID types.UID) error {
	_, _, err := s.updateObject(ctx, r, ns, name, mainResource, false, func(cur object) (object, error) {
		var keep []metav1.OwnerReference
		for _, o := range cur.GetOwnerReferences() {
			if o.UID != ownerUID {
				keep = append(keep, o)
			}
		}
		cur.SetOwnerReferences(keep)
		return cur, nil
	})
	return err
}

func (s *Server) resourceForKey(key string) *resource {
	for _, r := range s.resources {
		if len(key) > len(r.keyPrefix()) && key[:len(r.keyPrefix())] == r.keyPrefix() {
			return r
		}
	}
	return nil
}

// deleteCollection deletes every object of a list (with its selectors).
func (s *Server) deleteCollection(r *resource) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		opts, err := deleteOptions(req)
		if err != nil {
			return err
		}
		match, err := selectors(r, req)
		if err != nil {
			return err
		}
		if err := s.cache.WaitFresh(req.Context()); err != nil {
			return err
		}
		ns := namespaceOf(r, req)
		entries, rev, err := s.cache.List(r.keyPrefix(), r.nsPrefix(ns), match)
		if err != nil {
			return err
		}
		var items [][]byte
		for _, e := range entries {
			obj, err := s.deleteObject(req.Context(), r, e.Namespace, e.Name, opts)
			if isNotFoundStatus(err) {
				continue
			}
			if err != nil {
				return err
			}
			b, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			items = append(items, b)
		}
		writeList(w, r, rev, "", -1, items)
		return nil
	}
}
