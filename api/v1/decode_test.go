package v1_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// newObject returns an empty object of a kind, for decoding into.
func newObject(t *testing.T, kind string) any {
	t.Helper()
	switch kind {
	case v1.KindVirtualMachine:
		return &v1.VirtualMachine{}
	case v1.KindVirtualMachineInstance:
		return &v1.VirtualMachineInstance{}
	case v1.KindNode:
		return &v1.Node{}
	case v1.KindLease:
		return &v1.Lease{}
	case v1.KindEvent:
		return &v1.Event{}
	}
	t.Fatalf("no type for kind %q", kind)
	return nil
}

// manifests returns the paths of the YAML files in a testdata directory.
func manifests(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in testdata/%s", dir)
	}
	return files
}

// decodeFile decodes a YAML manifest into an object of its kind. The kind
// is found with PeekType on the manifest's JSON form.
func decodeFile(t *testing.T, path string) (obj any, data []byte, err error) {
	t.Helper()
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	j, rerr := yaml.YAMLToJSON(data)
	if rerr != nil {
		t.Fatal(rerr)
	}
	ti, rerr := v1.PeekType(j)
	if rerr != nil {
		t.Fatalf("PeekType: %v", rerr)
	}
	if ti.APIVersion != v1.TypeMetaFor(ti.Kind).APIVersion {
		t.Errorf("apiVersion %q, want %q", ti.APIVersion, v1.TypeMetaFor(ti.Kind).APIVersion)
	}
	obj = newObject(t, ti.Kind)
	return obj, data, v1.DecodeYAML(data, obj)
}

// dropNulls removes null members: in Kubernetes documents a null field is
// the same as an absent one (creationTimestamp: null).
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = dropNulls(e)
		}
		return out
	}
	return v
}

// emptyObject reports whether v is null, or an object with nothing in it
// but nulls and empty objects.
func emptyObject(v any) bool {
	if v == nil {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, e := range m {
		if !emptyObject(e) {
			return false
		}
	}
	return true
}

// dropAddedEmpty removes from got the members that are absent from want and
// hold only nulls or empty objects: Go encodes struct fields such as status,
// domain.resources and features.acpi as {}, and a zero time as null, even
// when the input had none, which is the same document. Everything else is left for the comparison.
func dropAddedEmpty(got, want any) any {
	switch g := got.(type) {
	case map[string]any:
		w, _ := want.(map[string]any)
		out := map[string]any{}
		for k, e := range g {
			we, inWant := w[k]
			if !inWant && emptyObject(e) {
				continue
			}
			out[k] = dropAddedEmpty(e, we)
		}
		return out
	case []any:
		w, _ := want.([]any)
		out := make([]any, len(g))
		for i, e := range g {
			var we any
			if i < len(w) {
				we = w[i]
			}
			out[i] = dropAddedEmpty(e, we)
		}
		return out
	}
	return got
}

// sameQuantity treats two strings as equal when they are the same quantity:
// a Quantity encodes in canonical form ("1024Mi" becomes "1Gi"), as it does
// in KubeVirt. Strings that are not quantities must match exactly.
var sameQuantity = cmp.Comparer(func(a, b string) bool {
	if a == b {
		return true
	}
	qa, errA := resource.ParseQuantity(a)
	qb, errB := resource.ParseQuantity(b)
	return errA == nil && errB == nil && qa.Cmp(qb) == 0
})

func generic(t *testing.T, j []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDecodeValidManifests: real KubeVirt manifests that use only supported
// features decode, and encode back to the same document.
func TestDecodeValidManifests(t *testing.T) {
	for _, path := range manifests(t, "valid") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			obj, data, err := decodeFile(t, path)
			if err != nil {
				t.Fatalf("DecodeYAML: %v", err)
			}
			out, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			in, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			want := dropNulls(generic(t, in))
			got := dropAddedEmpty(generic(t, out), want)
			if diff := cmp.Diff(want, got, sameQuantity); diff != "" {
				t.Errorf("re-encoded document differs (-manifest +re-encoded):\n%s", diff)
			}

			// The JSON form of the manifest decodes the same way.
			again := newObject(t, reflectKind(obj))
			if err := v1.Decode(in, again); err != nil {
				t.Fatalf("Decode of the JSON form: %v", err)
			}
			if diff := cmp.Diff(obj, again); diff != "" {
				t.Errorf("JSON and YAML forms decode differently (-yaml +json):\n%s", diff)
			}
		})
	}
}

func reflectKind(obj any) string {
	switch obj.(type) {
	case *v1.VirtualMachine:
		return v1.KindVirtualMachine
	case *v1.VirtualMachineInstance:
		return v1.KindVirtualMachineInstance
	}
	return ""
}

// wantLines returns the "# want: " lines of a manifest.
func wantLines(t *testing.T, data []byte) []string {
	t.Helper()
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			want = append(want, w)
		}
	}
	if len(want) == 0 {
		t.Fatal("manifest has no '# want: ' lines")
	}
	return want
}

func asDecodeError(t *testing.T, err error) *v1.DecodeError {
	t.Helper()
	if err == nil {
		t.Fatal("decoded without error")
	}
	var de *v1.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	return de
}

func fieldMessages(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, fe := range errs {
		out[i] = v1.FieldErrorMessage(fe)
	}
	return out
}

// TestDecodeUnsupportedManifests: a manifest with fields Vigil does not
// support is refused, and the error names every one of them, as
// "<path>: not supported" (or "<path>: duplicate field").
func TestDecodeUnsupportedManifests(t *testing.T) {
	for _, path := range manifests(t, "unsupported") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, data, err := decodeFile(t, path)
			want := wantLines(t, data)
			de := asDecodeError(t, err)
			if de.Syntax != nil {
				t.Fatalf("Syntax error %v, want field errors", de.Syntax)
			}
			if diff := cmp.Diff(want, fieldMessages(de.Fields)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
			if got, w := err.Error(), strings.Join(want, "; "); got != w {
				t.Errorf("Error() = %q, want %q", got, w)
			}
			for _, fe := range de.Fields {
				if fe.Type != field.ErrorTypeForbidden {
					t.Errorf("%s: type %s, want Forbidden", fe.Field, fe.Type)
				}
			}
		})
	}
}

// TestDecodeUnsupportedJSON: the same rules hold for JSON documents,
// including duplicate keys, which only a JSON decoder sees as such.
func TestDecodeUnsupportedJSON(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{
			name: "three unsupported fields",
			doc: `{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"a"},
				"spec":{"runStrategy":"Always","dataVolumeTemplates":[],
				"template":{"spec":{"domain":{"devices":{"gpus":[{"name":"g","deviceName":"x"}]},"resources":{"requests":{"memory":"64Mi"}}},
				"volumes":[{"name":"v","dataVolume":{"name":"dv"}}]}}}}`,
			want: []string{
				"spec.dataVolumeTemplates: not supported",
				"spec.template.spec.domain.devices.gpus: not supported",
				"spec.template.spec.volumes[0].dataVolume: not supported",
			},
		},
		{
			name: "duplicate keys",
			doc:  `{"spec":{"running":true,"running":false,"template":{"spec":{"nodeSelector":{"a":"b","a":"c"}}}}}`,
			want: []string{
				"spec.running: duplicate field",
				"spec.template.spec.nodeSelector.a: duplicate field",
			},
		},
		{
			name: "case matters",
			doc:  `{"Spec":{},"spec":{"runstrategy":"Always","template":{"Metadata":{}}}}`,
			want: []string{
				"Spec: not supported",
				"spec.runstrategy: not supported",
				"spec.template.Metadata: not supported",
			},
		},
		{
			name: "unknown metadata field",
			doc:  `{"metadata":{"name":"a","labelz":{"a":"b"}}}`,
			want: []string{"metadata.labelz: not supported"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vm v1.VirtualMachine
			de := asDecodeError(t, v1.Decode([]byte(tc.doc), &vm))
			if diff := cmp.Diff(tc.want, fieldMessages(de.Fields)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeValueErrors: values of the wrong type and values their type
// refuses name their field, with list indexes, and all of them are
// reported, together with any unsupported or duplicate field.
func TestDecodeValueErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{
			name: "string for a bool",
			doc:  "spec:\n  running: \"true\"\n",
			want: []string{`spec.running: Invalid value: "true": expected a boolean, got a string`},
		},
		{
			name: "object for a list",
			doc:  "spec:\n  template:\n    spec:\n      domain:\n        devices:\n          disks: {name: a}\n",
			want: []string{"spec.template.spec.domain.devices.disks: Invalid value: expected a list, got an object"},
		},
		{
			name: "list for an object",
			doc:  "metadata: [a]\n",
			want: []string{"metadata: Invalid value: expected an object, got a list"},
		},
		{
			name: "number for a string in a list",
			doc:  "spec:\n  template:\n    spec:\n      volumes:\n      - name: a\n        containerDisk: {image: x}\n      - name: 5\n",
			want: []string{"spec.template.spec.volumes[1].name: Invalid value: 5: expected a string, got a number"},
		},
		{
			name: "bool for a label value",
			doc:  "metadata:\n  labels:\n    enabled: yes\n",
			want: []string{"metadata.labels[enabled]: Invalid value: true: expected a string, got a boolean"},
		},
		{
			name: "unknown quantity suffix",
			doc:  "spec:\n  template:\n    spec:\n      domain:\n        resources:\n          requests:\n            memory: 64Xi\n",
			want: []string{`spec.template.spec.domain.resources.requests[memory]: Invalid value: "64Xi": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		},
		{
			name: "words for a quantity",
			doc:  "spec:\n  template:\n    spec:\n      domain:\n        memory:\n          guest: lots\n",
			want: []string{`spec.template.spec.domain.memory.guest: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		},
		{
			name: "bad quantity in a list",
			doc:  "spec:\n  template:\n    spec:\n      volumes:\n      - name: d\n        hostDisk: {path: /d, type: DiskOrCreate, capacity: 1GB}\n",
			want: []string{`spec.template.spec.volumes[0].hostDisk.capacity: Invalid value: "1GB": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		},
		{
			name: "bad time",
			doc:  "metadata:\n  creationTimestamp: yesterday\n",
			want: []string{`metadata.creationTimestamp: Invalid value: "yesterday": parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		},
		{
			name: "fraction for an integer",
			doc:  "spec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 1.5\n",
			want: []string{"spec.template.spec.terminationGracePeriodSeconds: Invalid value: 1.5: expected a 64-bit integer"},
		},
		{
			name: "integer out of range",
			doc:  "spec:\n  template:\n    spec:\n      domain:\n        devices:\n          interfaces:\n          - name: a\n            ports:\n            - port: 99999999999\n",
			want: []string{"spec.template.spec.domain.devices.interfaces[0].ports[0].port: Invalid value: 99999999999: is out of range for a 32-bit integer"},
		},
		{
			name: "negative for an unsigned integer",
			doc:  "spec:\n  template:\n    spec:\n      domain:\n        cpu:\n          cores: -2\n",
			want: []string{"spec.template.spec.domain.cpu.cores: Invalid value: -2: expected a 32-bit non-negative integer"},
		},
		{
			name: "everything at once",
			doc: `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: many
spec:
  running: "yes"
  runStrategy: Always
  runStrategy: Halted
  template:
    spec:
      evictionStrategy: LiveMigrate
      domain:
        resources:
          requests:
            memory: 64Xi
        devices:
          disks: {}
`,
			want: []string{
				"spec.runStrategy: duplicate field",
				`spec.running: Invalid value: "yes": expected a boolean, got a string`,
				"spec.template.spec.domain.devices.disks: Invalid value: expected a list, got an object",
				`spec.template.spec.domain.resources.requests[memory]: Invalid value: "64Xi": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
				"spec.template.spec.evictionStrategy: not supported",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vm v1.VirtualMachine
			de := asDecodeError(t, v1.DecodeYAML([]byte(tc.doc), &vm))
			if de.Syntax != nil {
				t.Fatalf("Syntax error %v, want field errors", de.Syntax)
			}
			if diff := cmp.Diff(tc.want, fieldMessages(de.Fields)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
			// The JSON form gives the same errors, except for duplicate keys,
			// which the conversion to JSON cannot carry.
			j, err := yaml.YAMLToJSON([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			de = asDecodeError(t, v1.Decode(j, &v1.VirtualMachine{}))
			want := slices.DeleteFunc(slices.Clone(tc.want), func(s string) bool { return strings.HasSuffix(s, ": duplicate field") })
			if diff := cmp.Diff(want, fieldMessages(de.Fields)); diff != "" {
				t.Errorf("JSON form: field errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeRootNotObject: a document that is not an object at all.
func TestDecodeRootNotObject(t *testing.T) {
	for _, doc := range []string{`[1, 2]`, `"vm"`, `42`} {
		de := asDecodeError(t, v1.Decode([]byte(doc), &v1.VirtualMachine{}))
		if len(de.Fields) != 1 || de.Fields[0].Field != "<root>" {
			t.Errorf("Decode(%s): %v, want one error on <root>", doc, de)
		}
	}
}

// TestDecodeSyntax: a document that is not JSON (or YAML), or not exactly
// one YAML document, gives DecodeError.Syntax and no field errors.
func TestDecodeSyntax(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		yaml      bool
		want      string // a substring of the error
	}{
		{name: "truncated JSON", doc: `{"spec": {"running": true`, want: "malformed JSON"},
		{name: "empty JSON", doc: ``, want: "malformed JSON"},
		{name: "trailing garbage", doc: `{"spec": {}} x`, want: "malformed JSON"},
		{name: "bad YAML", doc: "spec: [\n", yaml: true, want: "malformed YAML"},
		{name: "tab indentation", doc: "spec:\n\trunning: true\n", yaml: true, want: "malformed YAML"},
		{name: "two documents", doc: "kind: VirtualMachine\n---\nkind: VirtualMachine\n", yaml: true, want: "more than one YAML document"},
		{name: "empty first document", doc: "---\n---\nkind: VirtualMachine\n", yaml: true, want: "more than one YAML document"},
		{name: "empty YAML", doc: "", yaml: true, want: "empty YAML document"},
		{name: "only a comment", doc: "# nothing\n", yaml: true, want: "empty YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vm v1.VirtualMachine
			var err error
			if tc.yaml {
				err = v1.DecodeYAML([]byte(tc.doc), &vm)
			} else {
				err = v1.Decode([]byte(tc.doc), &vm)
			}
			de := asDecodeError(t, err)
			if de.Syntax == nil || len(de.Fields) != 0 {
				t.Fatalf("got Syntax %v and Fields %v, want only Syntax", de.Syntax, de.Fields)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Error() = %q, want it to contain %q", err.Error(), tc.want)
			}
		})
	}
}

// TestDecodeYAMLDocumentMarkers: document markers around one document are
// fine, and JSON is valid YAML.
func TestDecodeYAMLDocumentMarkers(t *testing.T) {
	for _, doc := range []string{
		"---\nkind: VirtualMachine\nspec:\n  runStrategy: Once\n",
		"kind: VirtualMachine\nspec:\n  runStrategy: Once\n---\n",
		"---\nkind: VirtualMachine\nspec:\n  runStrategy: Once\n...\n",
		`{"kind": "VirtualMachine", "spec": {"runStrategy": "Once"}}`,
	} {
		var vm v1.VirtualMachine
		if err := v1.DecodeYAML([]byte(doc), &vm); err != nil {
			t.Errorf("DecodeYAML(%q): %v", doc, err)
			continue
		}
		if vm.Kind != v1.KindVirtualMachine || vm.Spec.RunStrategy == nil || *vm.Spec.RunStrategy != v1.RunStrategyOnce {
			t.Errorf("DecodeYAML(%q) = %+v", doc, vm)
		}
	}
}

// TestDecodeYAMLAnchors: anchors and merge keys are resolved; a key that
// overrides a merged one is not a duplicate.
func TestDecodeYAMLAnchors(t *testing.T) {
	doc := `
kind: VirtualMachine
metadata:
  name: a
  labels: &common
    app: web
    tier: front
  annotations:
    <<: *common
    tier: back
`
	var vm v1.VirtualMachine
	if err := v1.DecodeYAML([]byte(doc), &vm); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"app": "web", "tier": "back"}
	if diff := cmp.Diff(want, vm.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}

func TestPeekType(t *testing.T) {
	for _, tc := range []struct {
		doc     string
		want    v1.TypeInfo
		wantErr string
	}{
		{doc: `{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","spec":{"anything":1}}`, want: v1.TypeInfo{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"}},
		{doc: `{"kind":"Lease","apiVersion":"coordination.k8s.io/v1"}`, want: v1.TypeInfo{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"}},
		{doc: `{"metadata":{}}`, want: v1.TypeInfo{}},
		{doc: `{"Kind":"VirtualMachine","APIVERSION":"v1"}`, want: v1.TypeInfo{}}, // names are case-sensitive
		{doc: `{"kind":`, wantErr: "malformed JSON"},
		{doc: `{"kind":5}`, wantErr: "kind: Invalid value: expected a string, got number"},
	} {
		got, err := v1.PeekType([]byte(tc.doc))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("PeekType(%s) error = %v, want %q", tc.doc, err, tc.wantErr)
			}
			var de *v1.DecodeError
			if !errors.As(err, &de) {
				t.Errorf("PeekType(%s) error %T, want *DecodeError", tc.doc, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("PeekType(%s): %v", tc.doc, err)
		}
		if got != tc.want {
			t.Errorf("PeekType(%s) = %+v, want %+v", tc.doc, got, tc.want)
		}
	}
}

// TestDecodeOtherKinds: Node, Lease and Event decode strictly too.
func TestDecodeOtherKinds(t *testing.T) {
	node := `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"vigil.dev/runtime":"sim"}},
		"spec":{"unschedulable":true},
		"status":{"capacity":{"cpu":"4","memory":"8Gi"},"allocatable":{"cpu":"4","memory":"7Gi"},
		"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-28T10:00:00Z","lastTransitionTime":"2026-11-28T09:00:00Z","reason":"AgentReady"}],
		"addresses":[{"type":"InternalIP","address":"10.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":8443}},
		"nodeInfo":{"machineID":"m","bootID":"b","kernelVersion":"6.1","osImage":"Debian","operatingSystem":"linux","architecture":"amd64","kubeletVersion":"v0.1.0","containerRuntimeVersion":"qemu://7.2.0","accelerator":"tcg"}}}`
	lease := `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1","namespace":"vigil-node-lease"},
		"spec":{"holderIdentity":"n1","leaseDurationSeconds":8,"renewTime":"2026-11-28T10:00:00.123456Z","acquireTime":"2026-11-28T09:00:00.000001Z","leaseTransitions":1}}`
	event := `{"apiVersion":"v1","kind":"Event","metadata":{"name":"web.1","namespace":"default"},
		"involvedObject":{"kind":"VirtualMachine","namespace":"default","name":"web","uid":"u1","apiVersion":"kubevirt.io/v1"},
		"reason":"SuccessfulCreate","message":"Started the virtual machine by creating the new virtual machine instance web",
		"source":{"component":"virt-controller"},"firstTimestamp":"2026-11-28T10:00:00Z","lastTimestamp":"2026-11-28T10:00:00Z","count":1,"type":"Normal",
		"eventTime":"2026-11-28T10:00:00.500000Z","reportingComponent":"vigil","reportingInstance":"server-1"}`
	for _, doc := range []string{node, lease, event} {
		ti, err := v1.PeekType([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		obj := newObject(t, ti.Kind)
		if err := v1.Decode([]byte(doc), obj); err != nil {
			t.Errorf("%s: %v", ti.Kind, err)
			continue
		}
		out, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		want := generic(t, []byte(doc))
		if diff := cmp.Diff(want, dropAddedEmpty(generic(t, out), want), sameQuantity); diff != "" {
			t.Errorf("%s: re-encoded document differs (-in +out):\n%s", ti.Kind, diff)
		}
		// An unknown field is refused in these kinds as well.
		bad := strings.Replace(doc, `"metadata":{`, `"metadata":{"bogus":1,`, 1)
		de := asDecodeError(t, v1.Decode([]byte(bad), newObject(t, ti.Kind)))
		if got := fieldMessages(de.Fields); !slices.Equal(got, []string{"metadata.bogus: not supported"}) {
			t.Errorf("%s with an unknown field: %v", ti.Kind, got)
		}
	}
}

// TestDecodeOptions: the bodies of the lifecycle subresources decode
// strictly too; an empty object is a valid body. Stop and restart name their
// grace period differently, as in KubeVirt.
func TestDecodeOptions(t *testing.T) {
	var start v1.StartOptions
	if err := v1.DecodeYAML([]byte("{}"), &start); err != nil {
		t.Errorf("DecodeYAML({}) into StartOptions: %v", err)
	}
	if err := v1.Decode([]byte(`{"kind":"StartOptions","apiVersion":"subresources.kubevirt.io/v1","paused":true,"dryRun":["All"]}`), &start); err != nil || !start.Paused || !slices.Equal(start.DryRun, []string{"All"}) {
		t.Errorf("StartOptions = %+v, %v", start, err)
	}
	var stop v1.StopOptions
	if err := v1.Decode([]byte(`{"gracePeriod":0}`), &stop); err != nil || stop.GracePeriod == nil || *stop.GracePeriod != 0 {
		t.Errorf("StopOptions = %+v, %v", stop, err)
	}
	de := asDecodeError(t, v1.Decode([]byte(`{"gracePeriodSeconds":0}`), &v1.StopOptions{}))
	if got := fieldMessages(de.Fields); !slices.Equal(got, []string{"gracePeriodSeconds: not supported"}) {
		t.Errorf("StopOptions with gracePeriodSeconds: %v", got)
	}
	var restart v1.RestartOptions
	if err := v1.Decode([]byte(`{"gracePeriodSeconds":0}`), &restart); err != nil || restart.GracePeriodSeconds == nil {
		t.Errorf("RestartOptions = %+v, %v", restart, err)
	}
	if err := v1.Decode([]byte(`{"dryRun":["All"]}`), &v1.PauseOptions{}); err != nil {
		t.Errorf("PauseOptions: %v", err)
	}
	if err := v1.Decode([]byte(`{"dryRun":"All"}`), &v1.UnpauseOptions{}); err == nil {
		t.Error("UnpauseOptions with a string for dryRun decoded")
	}
	if err := v1.DecodeYAML([]byte("null\n"), &v1.StopOptions{}); err == nil {
		t.Error("DecodeYAML(null) decoded")
	}
}
