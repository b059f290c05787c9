package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"

	"github.com/google/uuid"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/store"
)

// dryRun reads the dryRun parameter: "All" or absent.
func dryRun(req *http.Request) (bool, error) {
	vals := req.URL.Query()["dryRun"]
	for _, v := range vals {
		if v != metav1.DryRunAll {
			return false, badRequest("unsupported dryRun value %q: the only supported value is All", v)
		}
	}
	return len(vals) > 0, nil
}

// warn adds Kubernetes-style warning headers.
func warn(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", `299 - "`+msg+`"`)
	}
}

// namespaceOf returns the request's namespace for a namespaced resource.
func namespaceOf(r *resource, req *http.Request) string {
	if !r.namespaced {
		return ""
	}
	return req.PathValue("namespace")
}

// read gets one object from etcd.
func (s *Server) read(ctx context.Context, r *resource, ns, name string) (object, store.KV, error) {
	kv, err := s.store.Get(ctx, r.key(ns, name))
	if err != nil {
		return nil, kv, storeErr(r, name, err)
	}
	obj, err := decodeStored(r, kv)
	return obj, kv, err
}

func (s *Server) get(r *resource) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		obj, _, err := s.read(req.Context(), r, namespaceOf(r, req), req.PathValue("name"))
		if err != nil {
			return err
		}
		writeObject(w, http.StatusOK, obj)
		return nil
	}
}

const generateNameChars = "bcdfghjklmnpqrstvwxz2456789"

func generateName(base string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = generateNameChars[int(b[i])%len(generateNameChars)]
	}
	return base + string(b)
}

func (s *Server) create(r *resource) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		dry, err := dryRun(req)
		if err != nil {
			return err
		}
		obj, err := readObject(r, req)
		if err != nil {
			return err
		}
		ns := namespaceOf(r, req)
		if r.namespaced {
			if obj.GetNamespace() != "" && obj.GetNamespace() != ns {
				return badRequest("the namespace of the object (%s) does not match the namespace of the request (%s)", obj.GetNamespace(), ns)
			}
			obj.SetNamespace(ns)
		}
		if obj.GetResourceVersion() != "" {
			return badRequest("metadata.resourceVersion must not be set on objects to be created")
		}
		node, err := nodeNameParam(r, req)
		if err != nil {
			return err
		}
		out, warnings, err := s.createObject(req.Context(), r, obj, dry, node)
		if err != nil {
			return err
		}
		warn(w, warnings)
		writeObject(w, http.StatusCreated, out)
		return nil
	}
}

// createObject prepares, validates and stores a new object. A VMI with a
// node is created already scheduled to it.
func (s *Server) createObject(ctx context.Context, r *resource, obj object, dry bool, node string) (object, []string, error) {
	if node != "" {
		if err := s.nodeExists(ctx, node, obj.GetName()); err != nil {
			return nil, nil, err
		}
	}
	generated := obj.GetName() == "" && obj.GetGenerateName() != ""
	for attempt := 0; ; attempt++ {
		if generated {
			obj.SetName(generateName(obj.GetGenerateName()))
		}
		obj.SetUID(types.UID(uuid.NewString()))
		obj.SetCreationTimestamp(metav1.NewTime(s.now()).Rfc3339Copy())
		obj.SetDeletionTimestamp(nil)
		obj.SetDeletionGracePeriodSeconds(nil)
		obj.SetManagedFields(nil)
		obj.SetSelfLink("")
		if r.spec != nil {
			obj.SetGeneration(1)
		}
		if r.hasStatus && r.kind != v1.KindNode {
			resetStatus(r, obj)
		}
		if vmi, ok := obj.(*v1.VirtualMachineInstance); ok && !slices.Contains(vmi.Finalizers, v1.AgentFinalizer) {
			// The node agent lets a VMI go only when its guest is gone.
			vmi.Finalizers = append(vmi.Finalizers, v1.AgentFinalizer)
		}
		if vmi, ok := obj.(*v1.VirtualMachineInstance); ok && node != "" {
			vmi.Status.Bind(node, metav1.NewTime(s.now()).Rfc3339Copy())
		}
		if vm, ok := obj.(*v1.VirtualMachine); ok && s.cfg.ControllerFinalizers && !slices.Contains(vm.Finalizers, v1.VirtualMachineControllerFinalizer) {
			// What the VM controller's first pass would add, saving it a write.
			vm.Finalizers = append(vm.Finalizers, v1.VirtualMachineControllerFinalizer)
		}
		errs, warnings := r.validate(obj)
		errs = append(errs, validateMeta(obj)...)
		if len(errs) > 0 {
			return nil, nil, invalid(r, obj.GetName(), errs)
		}
		if dry {
			// As the real create would, refuse a name that is taken.
			if _, err := s.store.Get(ctx, r.key(obj.GetNamespace(), obj.GetName())); err == nil {
				return nil, nil, apierrors.NewAlreadyExists(r.groupResource(), obj.GetName())
			} else if !store.IsNotFound(err) {
				return nil, nil, err
			}
			return obj, warnings, nil
		}
		data, err := encodeStored(obj, r)
		if err != nil {
			return nil, nil, err
		}
		create := s.store.Create
		if r.batched {
			create = s.store.CreateBatched
		}
		kv, err := create(ctx, r.key(obj.GetNamespace(), obj.GetName()), data, r.ttl)
		if store.IsExists(err) && generated && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, nil, storeErr(r, obj.GetName(), err)
		}
		obj.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
		return obj, warnings, nil
	}
}

// resetStatus empties an object's status: users never write it on create.
func resetStatus(r *resource, obj object) {
	v := reflect.ValueOf(r.status(obj)).Elem()
	v.Set(reflect.Zero(v.Type()))
}

// copyInto sets *dst = *src (a shallow copy) for two pointers of one type.
func copyInto(dst, src any) {
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}

// updateMode says which part of an object a write may change.
type updateMode int

const (
	mainResource   updateMode = iota + 1 // spec and metadata, never status
	statusResource                       // status only
	specAndStatus                        // both: lifecycle requests, written by the server itself
)

// mutateFunc produces the desired object from the current one (a copy).
type mutateFunc func(cur object) (object, error)

// updateObject is the one write path for PUT, PATCH and status writes: read,
// mutate, keep what the mode may not change, validate, and compare-and-swap.
// A stale resourceVersion in the new object is a 409; a conflict with a
// concurrent writer is retried on the object etcd returns with it.
//
// The first read is from the watch cache when it has the object (but for
// dry runs): a successful compare-and-swap on its revision proves that it
// was current. The cache may lag, though, so every other outcome (a 409, a
// refusal, an invalid object, nothing to write) is decided again on a read
// from etcd before it is returned.
func (s *Server) updateObject(ctx context.Context, r *resource, ns, name string, mode updateMode, dry bool, mutate mutateFunc) (object, []string, error) {
	var cur object
	var kv store.KV
	var cached *cacheEntry // the cache entry cur was decoded from, if any
	var err error
	if dry {
		cur, kv, err = s.read(ctx, r, ns, name)
	} else {
		cur, kv, cached, err = s.readForUpdate(ctx, r, ns, name)
	}
	if err != nil {
		return nil, nil, err
	}
	// recheck replaces the cache's copy with etcd's current object.
	recheck := func() (err error) {
		cached = nil
		cur, kv, err = s.read(ctx, r, ns, name)
		return err
	}
	for {
		next, warnings, err := s.nextObject(r, name, mode, cur, mutate)
		if err != nil && cached != nil {
			if err := recheck(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if dry {
			return next, warnings, nil
		}
		data, err := encodeStored(next, r)
		if err != nil {
			return nil, nil, err
		}
		if next.GetDeletionTimestamp() != nil && len(next.GetFinalizers()) == 0 {
			// The last finalizer is gone: the object goes now.
			del, err := s.store.Delete(ctx, kv.Key, kv.ModRevision)
			if store.IsConflict(err) {
				// del is the current object.
				if cur, err = decodeStored(r, del); err != nil {
					return nil, nil, err
				}
				kv, cached = del, nil
				continue
			}
			if err != nil {
				return nil, nil, storeErr(r, name, err)
			}
			s.cache.Wrote(kv.Key, del.ModRevision)
			next.SetResourceVersion(strconv.FormatInt(del.ModRevision, 10))
			return next, warnings, nil
		}
		if cached != nil && cached.IsStored(data) {
			// Nothing changed from the cache's copy: etcd says whether
			// anything changes.
			if err := recheck(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if cached == nil && string(data) == string(kv.Value) {
			return cur, warnings, nil // nothing changed: no write
		}
		update := s.store.Update
		if r.batched {
			update = s.store.UpdateBatched
		}
		up, err := update(ctx, kv.Key, data, kv.ModRevision)
		if store.IsConflict(err) {
			// up is the current object.
			if cur, err = decodeStored(r, up); err != nil {
				return nil, nil, err
			}
			kv, cached = up, nil
			continue
		}
		if err != nil {
			return nil, nil, storeErr(r, name, err)
		}
		s.cache.Wrote(kv.Key, up.ModRevision)
		next.SetResourceVersion(strconv.FormatInt(up.ModRevision, 10))
		return next, warnings, nil
	}
}

// prepareUpdate applies Kubernetes' update rules to desired against cur.
func (s *Server) prepareUpdate(r *resource, desired, cur object, mode updateMode) (object, error) {
	name := cur.GetName()
	if desired.GetName() != "" && desired.GetName() != name {
		return nil, badRequest("the name of the object (%s) does not match the name of the request (%s)", desired.GetName(), name)
	}
	if r.namespaced && desired.GetNamespace() != "" && desired.GetNamespace() != cur.GetNamespace() {
		return nil, badRequest("the namespace of the object (%s) does not match the namespace of the request (%s)", desired.GetNamespace(), cur.GetNamespace())
	}
	if uid := desired.GetUID(); uid != "" && uid != cur.GetUID() {
		return nil, conflict(r, name, fmt.Sprintf("Precondition failed: UID in object meta: %s, UID in record: %s", uid, cur.GetUID()))
	}
	var next object
	switch mode {
	case statusResource:
		next = cur.DeepCopyObject().(object)
		copyInto(r.status(next), r.status(desired))
	default:
		next = desired
		next.SetName(name)
		next.SetNamespace(cur.GetNamespace())
		next.SetUID(cur.GetUID())
		next.SetCreationTimestamp(cur.GetCreationTimestamp())
		next.SetDeletionTimestamp(cur.GetDeletionTimestamp())
		next.SetDeletionGracePeriodSeconds(cur.GetDeletionGracePeriodSeconds())
		next.SetGeneration(cur.GetGeneration())
		next.SetManagedFields(nil)
		next.SetSelfLink("")
		if r.hasStatus && mode == mainResource {
			copyInto(r.status(next), r.status(cur))
		}
		if r.spec != nil && !equality.Semantic.DeepEqual(r.spec(next), r.spec(cur)) {
			next.SetGeneration(cur.GetGeneration() + 1)
		}
		if cur.GetDeletionTimestamp() != nil {
			for _, f := range next.GetFinalizers() {
				if !slices.Contains(cur.GetFinalizers(), f) {
					return nil, invalid(r, name, field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"), "no new finalizers can be added if the object is being deleted, found new finalizer "+f)})
				}
			}
		}
	}
	next.SetResourceVersion(cur.GetResourceVersion())
	setTypeMeta(next, r)
	return next, nil
}

func (s *Server) replace(r *resource, mode updateMode) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		dry, err := dryRun(req)
		if err != nil {
			return err
		}
		obj, err := readObject(r, req)
		if err != nil {
			return err
		}
		name := req.PathValue("name")
		out, warnings, err := s.updateObject(req.Context(), r, namespaceOf(r, req), name, mode, dry, func(cur object) (object, error) {
			desired := obj.DeepCopyObject().(object)
			if desired.GetResourceVersion() == "" {
				// An unconditional update, as Kubernetes allows: it applies
				// to whatever is current, on every retry.
				desired.SetResourceVersion(cur.GetResourceVersion())
			}
			return desired, nil
		})
		if err != nil {
			return err
		}
		warn(w, warnings)
		writeObject(w, http.StatusOK, out)
		return nil
	}
}

// Patch content types.
const (
	mergePatch     = "application/merge-patch+json"
	jsonPatch      = "application/json-patch+json"
	strategicPatch = "application/strategic-merge-patch+json"
	applyPatch     = "application/apply-patch+yaml"
)

func (s *Server) patch(r *resource, mode updateMode) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		dry, err := dryRun(req)
		if err != nil {
			return err
		}
		if mt := req.Header.Get("Content-Type"); mt == applyPatch {
			return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", r.groupResource(), "",
				"server-side apply is not supported; use a merge patch, a JSON patch, or vigil apply", 0, false)
		}
		body, pt, err := readBody(req, mergePatch, jsonPatch, strategicPatch)
		if err != nil {
			return err
		}
		var ops jsonpatch.Patch
		if pt == jsonPatch {
			if ops, err = jsonpatch.DecodePatch(body); err != nil {
				return badRequest("malformed JSON patch: %v", err)
			}
		} else if !json.Valid(body) {
			return badRequest("malformed merge patch: not valid JSON")
		}
		name := req.PathValue("name")
		out, warnings, err := s.updateObject(req.Context(), r, namespaceOf(r, req), name, mode, dry, func(cur object) (object, error) {
			doc, err := json.Marshal(cur)
			if err != nil {
				return nil, err
			}
			var patched []byte
			if pt == jsonPatch {
				patched, err = ops.Apply(doc)
			} else {
				patched, err = jsonpatch.MergePatch(doc, body)
			}
			if err != nil {
				if errors.Is(err, jsonpatch.ErrTestFailed) {
					return nil, conflict(r, name, "the JSON patch test operation failed: "+err.Error())
				}
				return nil, invalid(r, name, field.ErrorList{field.Invalid(field.NewPath("<patch>"), string(body), "the patch cannot be applied: "+err.Error())})
			}
			return decodeObject(r, patched)
		})
		if err != nil {
			return err
		}
		warn(w, warnings)
		writeObject(w, http.StatusOK, out)
		return nil
	}
}

// readObject reads and decodes the object in a create or replace request.
func readObject(r *resource, req *http.Request) (object, error) {
	body, _, err := readBody(req, "application/json", "application/yaml")
	if err != nil {
		return nil, err
	}
	return decodeObject(r, body)
}
