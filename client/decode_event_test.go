package client

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// refDecodeEvent is decodeEvent as it was, parsing every line twice: the
// two-pass decoder it still falls back to. The tests hold the one-pass
// path to it.
func refDecodeEvent[T Object](line []byte) (Event[T], error) { return decodeEventSlow[T](line) }

func watchVMI() *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Name: "vm-1", Namespace: "default", UID: "4b7c2d0e-7f0b-4a4e-9d8c-1f2e3d4c5b6a", ResourceVersion: "12345",
			Labels: map[string]string{"kubevirt.io/vm": "vm-1", "odd": "q\"\\<>&\u2028"}, Finalizers: []string{v1.AgentFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.KubeVirtAPIVersion, Kind: v1.KindVirtualMachine, Name: "vm-1", UID: "u"}}},
		Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}},
		Status: v1.VirtualMachineInstanceStatus{NodeName: "node-7", Phase: v1.Running, Conditions: []v1.VirtualMachineInstanceCondition{
			{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue, LastTransitionTime: metav1.Unix(1700000000, 0)}}},
	}
}

func watchLine(typ string, obj any) string {
	b, err := json.Marshal(map[string]any{"type": typ, "object": obj})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestDecodeEventMatchesTwoPass: every kind of watch line, well-formed or
// not, decodes as the two-pass decode did.
func TestDecodeEventMatchesTwoPass(t *testing.T) {
	vmi := watchVMI()
	object := watchLine("ADDED", vmi)
	lines := []string{
		object,
		watchLine("MODIFIED", vmi),
		watchLine("DELETED", vmi),
		strings.Replace(object, `"type":"ADDED"`, `"type":"MODIFIED","type":"ADDED"`, 1),
		`{"object":` + string(mustJSON(vmi)) + `,"type":"MODIFIED"}`,
		` { "type" : "ADDED" , "object" : {"metadata":{"name":"x","resourceVersion":"7"}} } `,
		`{"type":"ADDED","object":{"metadata":{"name":"x","resourceVersion":"7"}},"extra":[1,{"a":null}]}`,
		`{"type":"BOOKMARK","object":{"kind":"VirtualMachineInstance","apiVersion":"kubevirt.io/v1","metadata":{"resourceVersion":"9"}}}`,
		`{"type":"BOOKMARK","object":{"kind":"VirtualMachineInstance","apiVersion":"kubevirt.io/v1","metadata":{"resourceVersion":"10","annotations":{"k8s.io/initial-events-end":"true"}}}}`,
		`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"11"},"status":"odd"}}`,
		`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":12}}}`,
		`{"type":"BOOKMARK"}`,
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}`,
		`{"type":"ERROR","object":{"kind":"Status","message":"no status field"}}`,
		`{"type":"ERROR","object":"nonsense"}`,
		`{"type":"ADDED","object":{"metadata":{"name":7}}}`,
		`{"type":"ADDED","object":{"status":"Failure"}}`,
		`{"type":"ADDED","object":[]}`,
		`{"type":"ADDED"}`,
		`{"type":"WHATEVER","object":{}}`,
		`{"type":7,"object":{}}`,
		`{"type":"ADDED","object":{}`,
		`not json`,
		``,
	}
	for _, line := range lines {
		got, gerr := decodeEvent[*v1.VirtualMachineInstance]([]byte(line))
		want, werr := refDecodeEvent[*v1.VirtualMachineInstance]([]byte(line))
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Errorf("%.80s: error %v, want %v", line, gerr, werr)
		}
		if got.Type != want.Type || got.ResourceVersion != want.ResourceVersion || fmt.Sprint(got.Err) != fmt.Sprint(want.Err) {
			t.Errorf("%.80s: got %s %q %v, want %s %q %v", line, got.Type, got.ResourceVersion, got.Err, want.Type, want.ResourceVersion, want.Err)
		}
		if !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("%.80s: object\n got %+v\nwant %+v", line, got.Object, want.Object)
		}
	}
	if ev, _ := decodeEvent[*v1.VirtualMachineInstance]([]byte(object)); !reflect.DeepEqual(ev.Object, vmi) || ev.ResourceVersion != "12345" {
		t.Errorf("ADDED decoded to %+v", ev)
	}
}

// TestDecodeEventNullObject: an event whose object is null is malformed (the
// two-pass decode panicked on it).
func TestDecodeEventNullObject(t *testing.T) {
	for _, typ := range []string{"ADDED", "MODIFIED", "DELETED"} {
		if _, err := decodeEvent[*v1.VirtualMachineInstance]([]byte(`{"type":"` + typ + `","object":null}`)); err == nil || !strings.Contains(err.Error(), "malformed watch object") {
			t.Errorf("%s with a null object: %v, want a malformed object error", typ, err)
		}
	}
	ev, err := decodeEvent[*v1.VirtualMachineInstance]([]byte(`{"type":"BOOKMARK","object":null}`))
	if err != nil || ev.Type != Bookmark || ev.ResourceVersion != "" {
		t.Errorf("BOOKMARK with a null object: %+v, %v", ev, err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkDecodeEvent: decoding one watch line of a VMI, in one pass and in
// the two the client used to take.
func BenchmarkDecodeEvent(b *testing.B) {
	line := []byte(watchLine("MODIFIED", watchVMI()))
	for _, impl := range []struct {
		name   string
		decode func([]byte) (Event[*v1.VirtualMachineInstance], error)
	}{{"two-pass", refDecodeEvent[*v1.VirtualMachineInstance]}, {"one-pass", decodeEvent[*v1.VirtualMachineInstance]}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := impl.decode(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
