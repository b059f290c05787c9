package apiserver

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
)

// refDecoderFor is the watch cache's decoder as it was before it spliced the
// resourceVersion in: decode in full, encode again (decodeEntryFull, which
// the splicing decoder still falls back to). The tests hold the splicing
// decoder to it.
func refDecoderFor(r *resource) watchcache.Decoder {
	return func(key string, value []byte, rev int64) (*watchcache.Entry, error) {
		return decodeEntryFull(r, key, value, rev)
	}
}

// odd is a string with everything JSON encoding treats specially.
const odd = "q\"uote \\back/slash <html> & amp \u2028\u2029 tab\t nl\n ctl\x01 é ☃ 🚀 \ufffd resourceVersion\":\"1\" {\"metadata\":{}}"

func codecServer(t testing.TB) *Server {
	t.Helper()
	return New(Config{Log: slog.New(slog.DiscardHandler)})
}

// codecSample is one object of one resource for the codec tests.
type codecSample struct {
	name string
	r    *resource
	obj  object
}

func testTime(sec int) metav1.Time {
	return metav1.NewTime(time.Date(2026, 11, 29, 3, 55, sec, 0, time.UTC))
}

func owner(kind, name, uid string, controller bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: v1.KubeVirtAPIVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &controller, BlockOwnerDeletion: &controller}
}

// codecSamples returns objects of every resource: plain ones, ones with
// every metadata field, and ones with odd strings everywhere.
func codecSamples(s *Server) []codecSample {
	vms, vmis := s.vmRes(), s.vmiRes()
	nodes, leases, events := s.resource("", "nodes"), s.resource(v1.CoordinationGroupName, "leases"), s.resource("", "events")
	rs := v1.RunStrategyAlways
	grace := int64(30)
	del := testTime(9)
	fullMeta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name, GenerateName: name[:3], Namespace: ns, SelfLink: "/x/" + name, UID: types.UID("uid-" + name),
			Generation: 7, CreationTimestamp: testTime(1), DeletionTimestamp: &del, DeletionGracePeriodSeconds: &grace,
			Labels:          map[string]string{"app": "web", "kubevirt.io/vm": name, "z": ""},
			Annotations:     map[string]string{"note": odd, "b": "2"},
			OwnerReferences: []metav1.OwnerReference{owner("VirtualMachine", "a", "owner-a", true), owner("VirtualMachine", "b", "owner-b", false)},
			Finalizers:      []string{v1.AgentFinalizer, "example.com/x"},
		}
	}
	oddMeta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name + odd, Namespace: ns + odd, UID: types.UID(odd),
			Labels:          map[string]string{odd: odd, "resourceVersion": "12"},
			Annotations:     map[string]string{"resourceVersion": odd, odd: ""},
			OwnerReferences: []metav1.OwnerReference{owner(odd, odd, odd, true)},
			Finalizers:      []string{odd},
		}
	}
	vmiSpec := func() v1.VirtualMachineInstanceSpec {
		return v1.VirtualMachineInstanceSpec{
			Domain: v1.DomainSpec{
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: apiresource.MustParse("1.5Gi"), v1.ResourceCPU: apiresource.MustParse("500m")}},
				CPU:       &v1.CPU{Cores: 2},
				Devices: v1.Devices{
					Disks:      []v1.Disk{{Name: "root", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{Bus: "virtio"}}}, {Name: "cloudinit", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{Bus: "virtio"}}}},
					Interfaces: []v1.Interface{{Name: "default", InterfaceBindingMethod: v1.InterfaceBindingMethod{Masquerade: &v1.InterfaceMasquerade{}}}},
				},
			},
			TerminationGracePeriodSeconds: &grace,
			Volumes: []v1.Volume{
				{Name: "root", VolumeSource: v1.VolumeSource{ContainerDisk: &v1.ContainerDiskSource{Image: "quay.io/containerdisks/debian:12"}}},
				{Name: "cloudinit", VolumeSource: v1.VolumeSource{CloudInitNoCloud: &v1.CloudInitNoCloudSource{UserData: "#cloud-config\npassword: " + odd + "\n"}}},
			},
			Networks: []v1.Network{{Name: "default", NetworkSource: v1.NetworkSource{Pod: &v1.PodNetwork{}}}},
		}
	}
	vm := func(meta metav1.ObjectMeta) *v1.VirtualMachine {
		return &v1.VirtualMachine{ObjectMeta: meta, Spec: v1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template:    &v1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, ResourceVersion: "5"}, Spec: vmiSpec()},
		}, Status: v1.VirtualMachineStatus{
			Created: true, Ready: true, PrintableStatus: v1.VirtualMachineStatusRunning, RunStrategy: rs, ObservedGeneration: 7, DesiredGeneration: 7,
			Conditions: []v1.VirtualMachineCondition{{Type: "Ready", Status: metav1.ConditionTrue, LastTransitionTime: testTime(3), Reason: odd}},
		}}
	}
	vmi := func(meta metav1.ObjectMeta) *v1.VirtualMachineInstance {
		return &v1.VirtualMachineInstance{ObjectMeta: meta, Spec: vmiSpec(), Status: v1.VirtualMachineInstanceStatus{
			NodeName: "node-17", Phase: v1.Running,
			Conditions: []v1.VirtualMachineInstanceCondition{
				{Type: v1.VirtualMachineInstancePodScheduled, Status: metav1.ConditionTrue, LastTransitionTime: testTime(2)},
				{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue, LastTransitionTime: testTime(4)},
			},
			PhaseTransitionTimestamps: []v1.VirtualMachineInstancePhaseTransitionTimestamp{
				{Phase: v1.Scheduling, PhaseTransitionTimestamp: testTime(2)}, {Phase: v1.Scheduled, PhaseTransitionTimestamp: testTime(3)}, {Phase: v1.Running, PhaseTransitionTimestamp: testTime(4)},
			},
			Interfaces:   []v1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: "10.0.2.15", IPs: []string{"10.0.2.15"}, MAC: "52:54:00:12:34:56"}},
			PortForwards: []v1.PortForward{{Name: "http", Protocol: "TCP", GuestPort: 80, HostIP: "127.0.0.1", HostPort: 31080}},
			Accelerator:  "tcg",
		}}
	}
	node := func(meta metav1.ObjectMeta, unsched bool) *v1.Node {
		return &v1.Node{ObjectMeta: meta, Spec: v1.NodeSpec{Unschedulable: unsched}, Status: v1.NodeStatus{
			Capacity:   v1.ResourceList{v1.ResourceMemory: apiresource.MustParse("64Gi"), v1.ResourceCPU: apiresource.MustParse("32")},
			Conditions: []v1.NodeCondition{{Type: "Ready", Status: metav1.ConditionTrue, LastHeartbeatTime: testTime(5), Message: odd}},
			Addresses:  []v1.NodeAddress{{Type: "InternalIP", Address: "192.0.2.1"}},
		}}
	}
	holder, secs, trans := "node-1", int32(10), int32(3)
	now := metav1.NewMicroTime(time.Date(2026, 11, 29, 3, 55, 1, 123456000, time.UTC))
	lease := func(meta metav1.ObjectMeta) *v1.Lease {
		return &v1.Lease{ObjectMeta: meta, Spec: v1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now, LeaseTransitions: &trans}}
	}
	event := func(meta metav1.ObjectMeta, s string) *v1.Event {
		return &v1.Event{ObjectMeta: meta,
			InvolvedObject: v1.ObjectReference{Kind: "VirtualMachineInstance", Namespace: "default", Name: "vm-" + s, UID: types.UID("uid-" + s), APIVersion: v1.KubeVirtAPIVersion, ResourceVersion: "42"},
			Reason:         "Started" + s, Message: "the guest started: " + s, Source: v1.EventSource{Component: "virt-handler" + s, Host: "node-1"},
			FirstTimestamp: testTime(1), LastTimestamp: testTime(2), Count: 3, Type: "Normal" + s, EventTime: now,
			ReportingController: "vigil", ReportingInstance: "node-1",
		}
	}
	plain := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), CreationTimestamp: testTime(1), Generation: 1}
	}
	return []codecSample{
		{"vm/plain", vms, vm(plain("vm-1", "default"))},
		{"vm/full", vms, vm(fullMeta("vm-2", "default"))},
		{"vm/odd", vms, vm(oddMeta("vm-3", "default"))},
		{"vm/empty", vms, &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "default"}}},
		{"vm/name-only", vms, &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "n"}}},
		{"vm/no-meta", vms, &v1.VirtualMachine{}},
		{"vm/after-uid", vms, &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "n", GenerateName: "g", Namespace: "ns", SelfLink: "s", UID: "u"}}},
		{"vm/labels-only", vms, &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}}}},
		{"vmi/plain", vmis, vmi(plain("vmi-1", "default"))},
		{"vmi/full", vmis, vmi(fullMeta("vmi-2", "default"))},
		{"vmi/odd", vmis, vmi(oddMeta("vmi-3", "default"))},
		{"vmi/pending", vmis, &v1.VirtualMachineInstance{ObjectMeta: plain("vmi-4", "default"), Spec: vmiSpec()}},
		{"node/plain", nodes, node(plain("node-1", ""), false)},
		{"node/full", nodes, node(fullMeta("node-2", ""), true)},
		{"node/odd", nodes, node(oddMeta("node-3", ""), true)},
		{"lease/plain", leases, lease(plain("node-1", "vigil-node-lease"))},
		{"lease/full", leases, lease(fullMeta("node-2", "vigil-node-lease"))},
		{"lease/odd", leases, lease(oddMeta("node-3", "vigil-node-lease"))},
		{"event/plain", events, event(plain("vm-1.1875", "default"), "")},
		{"event/full", events, event(fullMeta("vm-2.1876", "default"), "")},
		{"event/odd", events, event(oddMeta("vm-3.1877", "default"), odd)},
	}
}

// stored encodes a sample as the server stores it.
func stored(t testing.TB, sm codecSample) []byte {
	t.Helper()
	obj := sm.obj.DeepCopyObject().(object)
	obj.SetResourceVersion("") // what the server stores never has one
	b, err := encodeStored(obj, sm.r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecoderMatchesFullDecode holds the watch cache's decoder to a full
// decode and re-encode: the same bytes, and the same key, names, UID,
// labels, selectable fields and owners, for objects of every resource.
func TestDecoderMatchesFullDecode(t *testing.T) {
	s := codecServer(t)
	for _, sm := range codecSamples(s) {
		t.Run(sm.name, func(t *testing.T) {
			value := stored(t, sm)
			key := sm.r.key(sm.obj.GetNamespace(), sm.obj.GetName())
			for _, rev := range []int64{1, 9, 10, 123456789, 1 << 62} {
				want, err := refDecoderFor(sm.r)(key, value, rev)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.decoderFor(sm.r)(key, value, rev)
				if err != nil {
					t.Fatal(err)
				}
				if string(got.Data) != string(want.Data) {
					t.Fatalf("rev %d: Data\n got %s\nwant %s", rev, got.Data, want.Data)
				}
				if !json.Valid(got.Data) {
					t.Fatalf("rev %d: Data is not valid JSON: %s", rev, got.Data)
				}
				checkEntry(t, got, want)
				if _, ok := newProjection(sm.r).decode(key, value, rev); !ok {
					t.Errorf("rev %d: the projection fell back to a full decode", rev)
				}
				if !got.IsStored(value) {
					t.Errorf("rev %d: IsStored(the stored value) is false; RVStart %d, RVEnd %d in %s", rev, got.RVStart, got.RVEnd, got.Data)
				}
				if got.IsStored(append(value[:len(value):len(value)], ' ')) || got.IsStored(got.Data) {
					t.Errorf("rev %d: IsStored is true for another value", rev)
				}
			}
		})
	}
}

// checkEntry compares everything in an Entry but Data.
func checkEntry(t *testing.T, got, want *watchcache.Entry) {
	t.Helper()
	if got.Key != want.Key || got.Namespace != want.Namespace || got.Name != want.Name || got.UID != want.UID || got.Rev != want.Rev {
		t.Errorf("identity: got %q %q %q %q %d, want %q %q %q %q %d", got.Key, got.Namespace, got.Name, got.UID, got.Rev,
			want.Key, want.Namespace, want.Name, want.UID, want.Rev)
	}
	if len(got.Labels) != len(want.Labels) || (len(want.Labels) > 0 && !reflect.DeepEqual(got.Labels, want.Labels)) {
		t.Errorf("labels: got %v, want %v", got.Labels, want.Labels)
	}
	if !reflect.DeepEqual(got.Fields, want.Fields) {
		t.Errorf("fields: got %v, want %v", got.Fields, want.Fields)
	}
	if len(got.Owners) != len(want.Owners) || (len(want.Owners) > 0 && !reflect.DeepEqual(got.Owners, want.Owners)) {
		t.Errorf("owners: got %v, want %v", got.Owners, want.Owners)
	}
}

// TestDecoderUncanonicalStored: a stored value that is not what
// encodeStored writes (a resourceVersion already in it, keys out of order,
// whitespace, escapes in keys) decodes as a full decode and re-encode does.
func TestDecoderUncanonicalStored(t *testing.T) {
	s := codecServer(t)
	vms := s.vmRes()
	key := vms.key("default", "x")
	for _, value := range []string{
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x","namespace":"default","resourceVersion":"3"},"spec":{"template":null}}`,
		`{"metadata":{"uid":"u","name":"x","namespace":"default"},"spec":{"template":null}}`,
		`{"metadata":{"name":"x","labels":{"a":"b"},"namespace":"default"},"spec":{"template":null}}`,
		` { "metadata" : { "name" : "x" , "labels" : { "a" : "b" } } , "spec" : { "template" : null } } `,
		`{"metad\u0061ta":{"name":"x"},"spec":{"template":null}}`,
		`{"metadata":{"n\u0061me":"x"},"spec":{"template":null}}`,
		`{"metadata":{"name":"x\u00e9\ud83d\ude80"},"status":{"printableStatus":"Run\u006eing"}}`,
		`{"metadata":{"name":"x"},"metadata":{"name":"y"}}`,
		`{"metadata":{"name":"x","name":"y"}}`,
		`{"metadata":{"labels":{"a":"1","a":"2"},"name":"x"}}`,
		`{"metadata":null,"spec":{}}`,
		`{"spec":{}}`,
		`{}`,
		`null`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x","uid":"u"},"spec":{"template":null}}`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x"},"status":{}}`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x"},"spec":{"template":null},"status":{},"extra":1}`,
		`{"kind":"VirtualMachineInstance","apiVersion":"kubevirt.io/v1","metadata":{"name":"x"},"spec":{"template":null},"status":{}}`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v2","metadata":{"name":"x"},"spec":{"template":null},"status":{}}`,
		`{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"x"},"spec":{"template":null},"status":{}}`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"name":"x","uid":"u"},"spec":{"template":null},"status":{}}`,
		`{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{},"spec":{"template":null},"status":{}}`,
	} {
		want, werr := refDecoderFor(vms)(key, []byte(value), 5)
		got, gerr := s.decoderFor(vms)(key, []byte(value), 5)
		if (werr != nil) != (gerr != nil) {
			t.Errorf("%s: error %v, want %v", value, gerr, werr)
			continue
		}
		if werr != nil {
			continue
		}
		if string(got.Data) != string(want.Data) {
			t.Errorf("%s: Data\n got %s\nwant %s", value, got.Data, want.Data)
		}
		checkEntry(t, got, want)
	}
	// Deeper than metadata the projection trusts that the value is
	// encodeStored's: a duplicate key there stays in Data, but the Entry
	// reads the last one, as a full decode does.
	dup := `{"kind":"VirtualMachine","apiVersion":"kubevirt.io/v1","metadata":{"labels":{"a":"b"}},"spec":{"template":null},"status":{"printableStatus":"Running","printableStatus":"Stopped"}}`
	want, err := refDecoderFor(vms)(key, []byte(dup), 5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.decoderFor(vms)(key, []byte(dup), 5)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, got, want)
	if !json.Valid(got.Data) || got.Fields.Get("status.printableStatus") != "Stopped" {
		t.Errorf("duplicate key: %s, fields %v", got.Data, got.Fields)
	}

	for _, value := range []string{``, `[]`, `{`, `{"metadata":{"name":"x"}`, `{"metadata":{"name":1}}`, `{"metadata":{"labels":[]}}`, `{"status":{"printableStatus":7}}`, `{"metadata":{"name":"x"}} x`} {
		if _, err := refDecoderFor(vms)(key, []byte(value), 5); err == nil {
			t.Fatalf("%s: the reference decoder accepts it", value)
		}
		if e, err := s.decoderFor(vms)(key, []byte(value), 5); err == nil {
			t.Errorf("%s: decoded to %s, want an error", value, e.Data)
		}
	}
}

// BenchmarkDecoder: the watch cache's decode of one stored object, per
// resource, against the full decode and re-encode it replaced.
func BenchmarkDecoder(b *testing.B) {
	s := codecServer(b)
	for _, sm := range codecSamples(s) {
		if sm.name != "vm/full" && sm.name != "vmi/full" && sm.name != "vmi/plain" && sm.name != "event/plain" && sm.name != "lease/plain" && sm.name != "node/plain" {
			continue
		}
		value := stored(b, sm)
		key := sm.r.key(sm.obj.GetNamespace(), sm.obj.GetName())
		for _, impl := range []struct {
			name string
			dec  watchcache.Decoder
		}{{"full", refDecoderFor(sm.r)}, {"splice", s.decoderFor(sm.r)}} {
			b.Run(fmt.Sprintf("%s/%s", sm.name, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(value)))
				rev := int64(1000000)
				for b.Loop() {
					rev++
					if _, err := impl.dec(key, value, rev); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// fill sets every exported field reachable from v to a distinct non-zero
// value.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Interface().(type) {
	case metav1.Time:
		v.Set(reflect.ValueOf(testTime(*n % 60)))
		return
	case metav1.MicroTime:
		v.Set(reflect.ValueOf(metav1.NewMicroTime(time.Date(2026, 1, 2, 3, 4, 5, *n*1000, time.UTC))))
		return
	case apiresource.Quantity:
		v.Set(reflect.ValueOf(apiresource.MustParse(fmt.Sprint(*n))))
		return
	case metav1.FieldsV1:
		v.Set(reflect.ValueOf(metav1.FieldsV1{Raw: []byte(`{"f:x":{}}`)}))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(k, e)
	}
}

// TestProjectionFields holds the selectable table to the resources' fields
// functions: on objects with every field set, the projection's fields,
// labels and owners are those of the full object.
func TestProjectionFields(t *testing.T) {
	s := codecServer(t)
	for _, r := range s.resources {
		t.Run(r.plural, func(t *testing.T) {
			p := newProjection(r)
			if p == nil {
				t.Skipf("%s is decoded in full", r.kind)
			}
			for seed := range 3 {
				obj := r.newObj()
				n := seed * 1000
				fill(reflect.ValueOf(obj).Elem(), &n)
				obj.SetManagedFields(nil)
				obj.SetResourceVersion("")
				value := stored(t, codecSample{r: r, obj: obj})
				key := r.key(obj.GetNamespace(), obj.GetName())
				want, err := refDecoderFor(r)(key, value, 77)
				if err != nil {
					t.Fatal(err)
				}
				got, ok := p.decode(key, value, 77)
				if !ok {
					t.Fatalf("the projection fell back to a full decode of %s", value)
				}
				if string(got.Data) != string(want.Data) {
					t.Errorf("Data\n got %s\nwant %s", got.Data, want.Data)
				}
				checkEntry(t, got, want)
				if len(want.Fields) < 2 || len(want.Labels) == 0 || len(want.Owners) == 0 {
					t.Errorf("the filled object selects too little: %v %v %v", want.Fields, want.Labels, want.Owners)
				}
			}
		})
	}
}
