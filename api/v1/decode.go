package v1

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DecodeError is a document that could not be decoded: a syntax error, or
// one or more field errors (unsupported fields, duplicate fields, values of
// the wrong type). Field errors name the path of every offending field.
//
// +k8s:deepcopy-gen=false
type DecodeError struct {
	// Syntax is set when the document is not JSON (or YAML) at all, or not
	// exactly one YAML document.
	Syntax error
	// Fields lists every field-level problem found, ordered by path.
	Fields field.ErrorList
}

func (e *DecodeError) Error() string {
	if e.Syntax != nil {
		return e.Syntax.Error()
	}
	msgs := make([]string, len(e.Fields))
	for i, fe := range e.Fields {
		msgs[i] = FieldErrorMessage(fe)
	}
	return strings.Join(msgs, "; ")
}

// FieldErrorMessage renders one field error the way Vigil prints them:
// "spec.template.spec.domain.devices.gpus: not supported" for unsupported and
// duplicate fields, and apimachinery's rendering for the rest.
func FieldErrorMessage(fe *field.Error) string {
	if fe.Type == field.ErrorTypeForbidden && (fe.Detail == detailNotSupported || fe.Detail == detailDuplicate) {
		return fe.Field + ": " + fe.Detail
	}
	return fe.Error()
}

const (
	detailNotSupported = "not supported"
	detailDuplicate    = "duplicate field"
)

func notSupported(path string) *field.Error {
	return &field.Error{Type: field.ErrorTypeForbidden, Field: path, Detail: detailNotSupported}
}

func duplicate(path string) *field.Error {
	return &field.Error{Type: field.ErrorTypeForbidden, Field: path, Detail: detailDuplicate}
}

// Decode parses one JSON document into obj. Every field obj's type does not
// declare is refused: the error lists all of them, never only the first.
// Field names match case-sensitively, and duplicate fields are refused.
// Values of the wrong type, and values their type refuses (a malformed
// quantity or time), are reported with their path as well, all of them.
// After an error obj may be partly filled and must not be used.
func Decode(data []byte, obj any) error {
	strict, err := kjson.UnmarshalStrict(data, obj)
	if err == nil {
		if len(strict) == 0 {
			return nil
		}
		var errs field.ErrorList
		for _, se := range strict {
			var fe kjson.FieldError
			if !errors.As(se, &fe) {
				errs = append(errs, field.InternalError(field.NewPath("<root>"), se))
				continue
			}
			if strings.HasPrefix(se.Error(), "duplicate field") {
				errs = append(errs, duplicate(fe.FieldPath()))
			} else {
				errs = append(errs, notSupported(fe.FieldPath()))
			}
		}
		return fieldErrors(errs)
	}
	if ok, _ := kjson.SyntaxErrorOffset(err); ok {
		return &DecodeError{Syntax: fmt.Errorf("malformed JSON: %w", err)}
	}
	// Decoding stopped at the first value of the wrong type, or at a value
	// whose own decoder refused it, and so never reported the rest: walk the
	// whole document next to obj's type to name every offending field.
	errs := append(duplicateJSONFields(data), checkDocument(data, reflect.TypeOf(obj))...)
	if len(errs) == 0 {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fieldErrors(field.ErrorList{field.Invalid(field.NewPath(orRoot(te.Field)), field.OmitValueType{}, "expected "+describeType(te.Type)+", got "+te.Value)})
		}
		return &DecodeError{Syntax: err}
	}
	return fieldErrors(errs)
}

func fieldErrors(errs field.ErrorList) *DecodeError {
	slices.SortStableFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Field, b.Field) })
	return &DecodeError{Fields: errs}
}

func orRoot(path string) string {
	if path == "" {
		return "<root>"
	}
	return path
}

// DecodeYAML is Decode for one YAML (or JSON) document. Duplicate keys are
// refused as in JSON, and so is a stream of several documents: decode them
// one at a time.
func DecodeYAML(data []byte, obj any) error {
	dups, err := checkYAML(data)
	if err != nil {
		return &DecodeError{Syntax: err}
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return &DecodeError{Syntax: fmt.Errorf("malformed YAML: %w", err)}
	}
	err = Decode(j, obj)
	if len(dups) == 0 {
		return err
	}
	var de *DecodeError
	switch {
	case err == nil:
		return fieldErrors(dups)
	case errors.As(err, &de) && de.Syntax == nil:
		return fieldErrors(append(dups, de.Fields...))
	}
	return err
}

// yamlDocument is one YAML document; a mapping is kept as a MapSlice, which
// keeps duplicate keys (and makes every mapping under it a MapSlice too).
type yamlDocument struct {
	isMapping bool
	mapping   yamlv2.MapSlice
	other     any // any other document: a list, a scalar, or nil when empty
}

func (d *yamlDocument) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal(&d.mapping); err == nil {
		d.isMapping = true
		return nil
	}
	d.mapping = nil
	return unmarshal(&d.other)
}

func (d *yamlDocument) empty() bool { return !d.isMapping && d.other == nil }

// checkYAML parses a YAML stream, refuses it unless it holds exactly one
// document, and returns the paths of the keys that a mapping repeats (which
// YAML-to-JSON conversion would silently drop).
func checkYAML(data []byte) (field.ErrorList, error) {
	dec := yamlv2.NewDecoder(bytes.NewReader(data))
	var first yamlDocument
	for n := 0; ; n++ {
		var doc yamlDocument
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("malformed YAML: %w", err)
		}
		switch {
		case n == 0:
			first = doc
		case !doc.empty():
			return nil, errors.New("more than one YAML document: give one object per document, and decode them one at a time")
		}
	}
	if first.empty() {
		return nil, errors.New("empty YAML document")
	}
	var errs field.ErrorList
	yamlDuplicates(first.mapping, nil, &errs)
	return errs, nil
}

func yamlDuplicates(v any, p *field.Path, errs *field.ErrorList) {
	switch v := v.(type) {
	case yamlv2.MapSlice:
		seen := map[string]bool{}
		for _, item := range v {
			k := fmt.Sprint(item.Key)
			cp := child(p, k)
			if seen[k] {
				*errs = append(*errs, duplicate(cp.String()))
			}
			seen[k] = true
			yamlDuplicates(item.Value, cp, errs)
		}
	case []any:
		for i, e := range v {
			yamlDuplicates(e, p.Index(i), errs)
		}
	}
}

func child(p *field.Path, name string) *field.Path {
	if p == nil {
		return field.NewPath(name)
	}
	return p.Child(name)
}

// duplicateJSONFields returns the path of every key that a JSON object
// repeats.
func duplicateJSONFields(data []byte) field.ErrorList {
	dec := json.NewDecoder(bytes.NewReader(data))
	var errs field.ErrorList
	var walk func(p *field.Path) error
	walk = func(p *field.Path) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				cp := child(p, k)
				if seen[k] {
					errs = append(errs, duplicate(cp.String()))
				}
				seen[k] = true
				if err := walk(cp); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(p.Index(i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	_ = walk(nil) // the document was checked for syntax already
	return errs
}

// checkDocument walks a JSON document next to the Go type it is meant for
// and returns an error for every field the type does not declare, every
// value of the wrong JSON type, and every value its type's own decoder
// refuses.
func checkDocument(data []byte, t reflect.Type) field.ErrorList {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil
	}
	var errs field.ErrorList
	checkValue(tree, t, nil, &errs)
	return errs
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func checkValue(v any, t reflect.Type, p *field.Path, errs *field.ErrorList) {
	if v == nil {
		return // null leaves the zero value, for every type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	path := p
	if path == nil {
		path = field.NewPath("<root>")
	}
	wrongType := func(want string) {
		*errs = append(*errs, field.Invalid(path, shownValue(v), "expected "+want+", got "+describeJSON(v)))
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		raw, err := json.Marshal(v)
		if err != nil {
			return
		}
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, field.Invalid(path, shownValue(v), err.Error()))
		}
		return
	}
	if s, ok := v.(string); ok && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			*errs = append(*errs, field.Invalid(path, s, err.Error()))
		}
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			wrongType("a boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType("an integer")
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			*errs = append(*errs, field.Invalid(path, n, numberProblem(err, fmt.Sprintf("a %d-bit integer", t.Bits()))))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType("a non-negative integer")
			return
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			*errs = append(*errs, field.Invalid(path, n, numberProblem(err, fmt.Sprintf("a %d-bit non-negative integer", t.Bits()))))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			wrongType("a number")
			return
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			*errs = append(*errs, field.Invalid(path, n, "is out of range"))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			wrongType("a string")
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			wrongType("an object")
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[k]
			if !ok {
				*errs = append(*errs, notSupported(child(p, k).String()))
				continue
			}
			checkValue(obj[k], ft, child(p, k), errs)
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				wrongType("a base64 string")
			}
			return
		}
		list, ok := v.([]any)
		if !ok {
			wrongType("a list")
			return
		}
		for i, ev := range list {
			checkValue(ev, t.Elem(), path.Index(i), errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			wrongType("an object")
			return
		}
		for _, k := range sortedKeys(obj) {
			checkValue(obj[k], t.Elem(), path.Key(k), errs)
		}
	}
}

func numberProblem(err error, want string) string {
	if errors.Is(err, strconv.ErrRange) {
		return "is out of range for " + want
	}
	return "expected " + want
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// shownValue is the bad value an error shows: scalars as they are, objects
// and lists not at all.
func shownValue(v any) any {
	switch v.(type) {
	case map[string]any, []any:
		return field.OmitValueType{}
	}
	return v
}

func describeJSON(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "null"
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	default:
		return "an object"
	}
}

// jsonFields maps the JSON names of a struct's fields, embedded structs
// included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// TypeInfo is the apiVersion and kind of a document.
type TypeInfo struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// PeekType reads only the apiVersion and kind of a JSON document; it ignores
// every other field. Names match case-sensitively, as in Decode.
func PeekType(data []byte) (TypeInfo, error) {
	var ti TypeInfo
	err := kjson.UnmarshalCaseSensitivePreserveInts(data, &ti)
	if err == nil {
		return ti, nil
	}
	if ok, _ := kjson.SyntaxErrorOffset(err); ok {
		return ti, &DecodeError{Syntax: fmt.Errorf("malformed JSON: %w", err)}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return ti, &DecodeError{Fields: field.ErrorList{field.Invalid(field.NewPath(orRoot(te.Field)), field.OmitValueType{}, "expected "+describeType(te.Type)+", got "+te.Value)}}
	}
	return ti, &DecodeError{Syntax: err}
}
