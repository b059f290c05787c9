package apiserver

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
)

// selectable lists, per kind, the members of a stored object that the
// resource's fields function reads, as dotted JSON paths of at most two
// keys; the watch cache decodes only these and the metadata an Entry
// holds. A kind not listed is decoded in full. TestProjectionFields holds
// this to the fields functions.
var selectable = map[string][]string{
	v1.KindVirtualMachine:         {"status.printableStatus"},
	v1.KindVirtualMachineInstance: {"status.phase", "status.nodeName"},
	v1.KindNode:                   {"spec.unschedulable"},
	v1.KindLease:                  {},
	v1.KindEvent:                  {"involvedObject", "reason", "type", "source"},
	v1.KindHeartbeatDigest:        {},
}

// entryMeta are the metadata members an Entry needs.
var entryMeta = []string{"name", "namespace", "uid", "labels", "ownerReferences"}

// projection decodes what a watch cache Entry needs of one resource's
// stored objects. The stored form is encodeStored's: json.Marshal of the
// typed object without a resourceVersion. So the Entry's JSON is the
// stored JSON with "resourceVersion" inserted where json.Marshal puts it in
// metadata, and only the projected members need decoding.
//
// It checks what is cheap to check and falls back to a full decode for
// anything else: the text must be valid, compact UTF-8 JSON whose
// top-level and metadata keys are known, in encoding order, each once,
// with no resourceVersion, and whose kind and apiVersion are the
// resource's. What it cannot see (an unknown or out-of-order key deeper
// in, a map's key order, an escape json.Marshal would not write) never
// occurs in what encodeStored writes.
type projection struct {
	r *resource
	// keyPrefix is r.keyPrefix().
	keyPrefix string
	// kindJSON and apiVersionJSON are the quoted kind and apiVersion.
	kindJSON, apiVersionJSON string
	// top and meta are the object's and ObjectMeta's keys in encoding
	// order; topAlways and metaAlways mark those json.Marshal always writes.
	top, meta             []string
	topAlways, metaAlways uint64
	// typeMeta has the bits of kind, apiVersion and metadata in top.
	typeMeta uint64
	// rvIndex is the index of resourceVersion in meta.
	rvIndex int
	// members are the top-level members to decode besides metadata; a
	// member with no sub-keys is decoded whole.
	members []projMember
}

type projMember struct {
	key  string
	sub  []string
	full bool
}

// newProjection returns r's projection, or nil when r's kind is decoded in
// full.
func newProjection(r *resource) *projection {
	paths, ok := selectable[r.kind]
	if !ok {
		return nil
	}
	p := &projection{
		r: r, keyPrefix: r.keyPrefix(), kindJSON: strconv.Quote(r.kind), apiVersionJSON: strconv.Quote(r.apiVersion()),
	}
	p.top, p.topAlways = jsonKeys(reflect.TypeOf(r.newObj()).Elem())
	p.meta, p.metaAlways = jsonKeys(reflect.TypeFor[metav1.ObjectMeta]())
	p.rvIndex = slices.Index(p.meta, "resourceVersion")
	if p.rvIndex < 0 || len(p.top) > 64 || len(p.meta) > 64 {
		return nil
	}
	for _, k := range []string{"kind", "apiVersion", "metadata"} {
		i := slices.Index(p.top, k)
		if i < 0 {
			return nil
		}
		p.typeMeta |= 1 << i
	}
	for _, path := range paths {
		first, rest, nested := strings.Cut(path, ".")
		i := slices.IndexFunc(p.members, func(m projMember) bool { return m.key == first })
		if i < 0 {
			p.members = append(p.members, projMember{key: first})
			i = len(p.members) - 1
		}
		if nested {
			p.members[i].sub = append(p.members[i].sub, rest)
		} else {
			p.members[i].full = true
		}
	}
	return p
}

// jsonKeys returns the JSON keys of struct type t in the order
// json.Marshal writes them, with embedded structs inlined, and the mask of
// those it always writes (bit i for keys[i]; none past the 64th).
func jsonKeys(t reflect.Type) (keys []string, always uint64) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" && opts == "":
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			inner, innerAlways := jsonKeys(f.Type)
			always |= innerAlways << len(keys)
			keys = append(keys, inner...)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		// omitempty never omits a struct; omitzero may omit anything.
		omit := slices.Contains(strings.Split(opts, ","), "omitzero") ||
			(slices.Contains(strings.Split(opts, ","), "omitempty") && f.Type.Kind() != reflect.Struct)
		if !omit && len(keys) < 64 {
			always |= 1 << len(keys)
		}
		keys = append(keys, name)
	}
	return keys, always
}

// index returns the index of key in keys, or -1.
func index(keys []string, key []byte) int {
	for i, k := range keys {
		if k == string(key) {
			return i
		}
	}
	return -1
}

// decode makes the Entry of a stored object; ok is false when the value is
// not what the projection expects (it is then decoded in full).
func (p *projection) decode(key string, value []byte, rev int64) (e *watchcache.Entry, ok bool) {
	if !utf8.Valid(value) {
		return nil, false
	}
	s := rawScanner{b: value}
	// proj is the projection as JSON, decoded into the typed object at the
	// end: the metadata an Entry needs and the selectable members.
	proj := make([]byte, 0, 256)
	proj = append(proj, '{')
	// The keys seen, as masks like topAlways and metaAlways.
	var topSeen, metaSeen uint64
	topAt := -1
	// The resourceVersion goes at insertAt: before the first metadata key
	// that json.Marshal writes after it, or else before metadata's '}'.
	insertAt, beforeKey, metaEmpty := -1, false, true
	err := s.object(func(k []byte, escaped bool) error {
		i := index(p.top, k)
		if escaped || i <= topAt {
			return errNotCompact
		}
		topAt = i
		topSeen |= 1 << i
		start := s.i
		switch string(k) {
		case "kind", "apiVersion":
			if err := s.value(); err != nil {
				return err
			}
			want := p.kindJSON
			if string(k) == "apiVersion" {
				want = p.apiVersionJSON
			}
			if string(value[start:s.i]) != want {
				return errNotCompact
			}
			return nil
		case "metadata":
			proj = appendKey(proj, k)
			proj = append(proj, '{')
			metaAt := -1
			if err := s.object(func(mk []byte, escaped bool) error {
				j := index(p.meta, mk)
				if escaped || j <= metaAt || j == p.rvIndex {
					return errNotCompact
				}
				metaAt, metaEmpty = j, false
				metaSeen |= 1 << j
				if j > p.rvIndex && insertAt < 0 {
					insertAt, beforeKey = s.i-len(mk)-3, true // at the key's opening quote
				}
				vs := s.i
				if err := s.value(); err != nil {
					return err
				}
				if index(entryMeta, mk) >= 0 {
					proj = appendMember(proj, mk, value[vs:s.i])
				}
				return nil
			}); err != nil {
				return err
			}
			if insertAt < 0 {
				insertAt = s.i - 1 // metadata's '}'
			}
			proj = append(proj, '}')
			return nil
		}
		m := slices.IndexFunc(p.members, func(m projMember) bool { return m.key == string(k) })
		if m < 0 || p.members[m].full || s.i >= len(value) || value[s.i] != '{' {
			if err := s.value(); err != nil {
				return err
			}
			if m >= 0 {
				proj = appendMember(proj, k, value[start:s.i])
			}
			return nil
		}
		proj = appendKey(proj, k)
		proj = append(proj, '{')
		if err := s.object(func(sk []byte, escaped bool) error {
			vs := s.i
			if err := s.value(); err != nil {
				return err
			}
			if escaped || index(p.members[m].sub, sk) >= 0 {
				// An escaped key may spell a selected one: keep it, as
				// decoding the whole member would.
				proj = appendMember(proj, sk, value[vs:s.i])
			}
			return nil
		}); err != nil {
			return err
		}
		proj = append(proj, '}')
		return nil
	})
	// Every key json.Marshal always writes must be there (kind, apiVersion
	// and metadata are: encodeStored sets them), or the full decode would
	// add it.
	if err != nil || s.i != len(value) || topSeen&p.topAlways != p.topAlways || metaSeen&p.metaAlways != p.metaAlways ||
		topSeen&p.typeMeta != p.typeMeta {
		return nil, false
	}
	proj = append(proj, '}')
	obj := p.r.newObj()
	if err := json.Unmarshal(proj, obj); err != nil {
		return nil, false // the full decode words the error
	}

	rv := make([]byte, 0, 40)
	rv = append(rv, `"resourceVersion":"`...)
	rv = strconv.AppendInt(rv, rev, 10)
	rv = append(rv, '"')
	data := make([]byte, 0, len(value)+len(rv)+1)
	data = append(data, value[:insertAt]...)
	rvStart := len(data)
	switch {
	case beforeKey:
		data = append(data, rv...)
		data = append(data, ',')
	case metaEmpty:
		data = append(data, rv...)
	default:
		data = append(data, ',')
		data = append(data, rv...)
	}
	rvEnd := len(data)
	data = append(data, value[insertAt:]...)

	// The name and namespace are in the key: share its memory.
	ns, name := obj.GetNamespace(), obj.GetName()
	if rest, ok := strings.CutPrefix(key, p.keyPrefix); ok {
		if !p.r.namespaced {
			if rest == name {
				obj.SetName(rest)
			}
		} else if len(rest) == len(ns)+1+len(name) && rest[len(ns)] == '/' && rest[:len(ns)] == ns && rest[len(ns)+1:] == name {
			obj.SetNamespace(rest[:len(ns)])
			obj.SetName(rest[len(ns)+1:])
		}
	}
	e = newEntry(p.r, key, rev, obj, data)
	e.RVStart, e.RVEnd = int32(rvStart), int32(rvEnd)
	return e, true
}

// appendKey appends `"key":` to a JSON object under construction, after a
// comma unless it is the first member.
func appendKey(b []byte, key []byte) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendMember(b []byte, key, raw []byte) []byte {
	return append(appendKey(b, key), raw...)
}
