package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
)

// maxBodyBytes limits request bodies, as kube-apiserver does (3 MiB).
const maxBodyBytes = 3 << 20

// setTypeMeta stamps the resource's apiVersion and kind on obj.
func setTypeMeta(obj object, r *resource) {
	obj.GetObjectKind().SetGroupVersionKind(r.groupKind().WithVersion(r.version))
}

// encodeStored is the stored form of obj: its JSON without resourceVersion
// (the etcd revision is the version).
func encodeStored(obj object, r *resource) ([]byte, error) {
	rv := obj.GetResourceVersion()
	obj.SetResourceVersion("")
	setTypeMeta(obj, r)
	b, err := json.Marshal(obj)
	obj.SetResourceVersion(rv)
	return b, err
}

// decodeStored decodes a stored object and sets its resourceVersion.
func decodeStored(r *resource, kv store.KV) (object, error) {
	obj := r.newObj()
	if err := json.Unmarshal(kv.Value, obj); err != nil {
		return nil, fmt.Errorf("decoding stored %s %s: %w", r.kind, kv.Key, err)
	}
	obj.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	setTypeMeta(obj, r)
	return obj, nil
}

// decoderFor makes the watch cache's decoder of a resource. It reads only
// what an Entry needs of the stored object (a projection: see
// newProjection) and splices the resourceVersion into the stored JSON,
// instead of decoding the whole object and encoding it again: the same
// bytes for a fraction of the work. Anything it does not expect is decoded
// in full, as before.
func (s *Server) decoderFor(r *resource) watchcache.Decoder {
	p := newProjection(r)
	return func(key string, value []byte, rev int64) (*watchcache.Entry, error) {
		if p != nil {
			if e, ok := p.decode(key, value, rev); ok {
				return e, nil
			}
		}
		return decodeEntryFull(r, key, value, rev)
	}
}

// decodeEntryFull makes an Entry by decoding the stored object in full and
// encoding it again with its resourceVersion.
func decodeEntryFull(r *resource, key string, value []byte, rev int64) (*watchcache.Entry, error) {
	obj, err := decodeStored(r, store.KV{Key: key, Value: value, ModRevision: rev})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", r.kind, key, err)
	}
	return newEntry(r, key, rev, obj, data), nil
}

// newEntry makes the Entry of obj, whose JSON is data.
func newEntry(r *resource, key string, rev int64, obj object, data []byte) *watchcache.Entry {
	var owners []string
	for _, o := range obj.GetOwnerReferences() {
		owners = append(owners, string(o.UID))
	}
	return &watchcache.Entry{
		Key: key, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID()), Rev: rev,
		Data: data, Labels: watchcache.NewSet(obj.GetLabels()), Fields: watchcache.NewSet(r.fields(obj)), Owners: owners,
	}
}

// readBody reads a size-limited request body and converts YAML to JSON.
func readBody(req *http.Request, allowed ...string) ([]byte, string, error) {
	ct := req.Header.Get("Content-Type")
	mt := "application/json"
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, "", unsupportedMediaType(ct, allowed)
		}
	}
	ok := false
	for _, a := range allowed {
		if mt == a {
			ok = true
		}
	}
	if !ok {
		return nil, "", unsupportedMediaType(mt, allowed)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, "", apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the request body exceeds %d bytes", maxBodyBytes))
		}
		return nil, "", badRequest("reading the request body: %v", err)
	}
	if mt == "application/yaml" {
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return nil, "", badRequest("malformed YAML: %v", err)
		}
		return j, "application/json", nil
	}
	return body, mt, nil
}

// decodeObject strictly decodes an object of resource r and checks that its
// apiVersion and kind, when given, are r's.
func decodeObject(r *resource, body []byte) (object, error) {
	if len(body) == 0 {
		return nil, badRequest("the request body is empty; send a %s", r.kind)
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, badRequest("the request body is not a JSON object; send a %s", r.kind)
	}
	// One parse when the body is good; a body that does not decode is
	// looked at again for its kind, so that a body of another kind is
	// named as such rather than by the fields this kind lacks.
	obj := r.newObj()
	derr := v1.Decode(body, obj)
	if derr == nil {
		tm, ok := obj.GetObjectKind().(*metav1.TypeMeta)
		if !ok { // every kind embeds TypeMeta; should one not, look again
			ti, err := v1.PeekType(body)
			if err != nil {
				return nil, err
			}
			tm = &metav1.TypeMeta{APIVersion: ti.APIVersion, Kind: ti.Kind}
		}
		if err := checkTypeMeta(r, tm.APIVersion, tm.Kind); err != nil {
			return nil, err
		}
		setTypeMeta(obj, r)
		return obj, nil
	}
	ti, err := v1.PeekType(body)
	if err != nil {
		return nil, err
	}
	if err := checkTypeMeta(r, ti.APIVersion, ti.Kind); err != nil {
		return nil, err
	}
	var de *v1.DecodeError
	if errors.As(derr, &de) && de.Syntax == nil {
		return nil, invalid(r, nameOf(body), de.Fields)
	}
	return nil, derr
}

// checkTypeMeta refuses a body whose apiVersion or kind, where given, is not
// r's.
func checkTypeMeta(r *resource, apiVersion, kind string) error {
	if apiVersion != "" && apiVersion != r.apiVersion() {
		return badRequest("the apiVersion in the body (%s) is not %s, the apiVersion of %s", apiVersion, r.apiVersion(), r.plural)
	}
	if kind != "" && kind != r.kind {
		return badRequest("the kind in the body (%s) is not %s: this endpoint serves %s", kind, r.kind, r.plural)
	}
	return nil
}

// nameOf extracts metadata.name from a body that did not decode, for messages.
func nameOf(body []byte) string {
	var m struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Metadata.Name
}

// writeObject answers with obj.
func writeObject(w http.ResponseWriter, code int, obj object) {
	writeJSON(w, code, obj)
}

func unsupportedMediaType(mt string, allowed []string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body's content type %q is not supported here; use one of %s", mt, strings.Join(allowed, ", ")),
	}}
}
