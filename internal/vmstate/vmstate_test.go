package vmstate_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/runstrategy"
	"github.com/vigil-vm/vigil/internal/vmstate"
)

func ptr[T any](v T) *T { return &v }

// statusVM is testdata/vm-status.yaml, decoded as the store would give it.
func statusVM(t *testing.T) *v1.VirtualMachine {
	t.Helper()
	data, err := os.ReadFile("testdata/vm-status.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var vm v1.VirtualMachine
	if err := v1.DecodeYAML(data, &vm); err != nil {
		t.Fatal(err)
	}
	return &vm
}

// jsonRoundTrip encodes vm and decodes it again, as a write to the store and
// a read back do.
func jsonRoundTrip(t *testing.T, vm *v1.VirtualMachine) *v1.VirtualMachine {
	t.Helper()
	data, err := json.Marshal(vm)
	if err != nil {
		t.Fatal(err)
	}
	var out v1.VirtualMachine
	if err := v1.Decode(data, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestVM(t *testing.T) {
	vm := statusVM(t)
	got := vmstate.VM(vm)
	want := runstrategy.VM{
		UID:          "0f6bb5a2-2c51-4a57-9a4e-3c1f2b8d6e10",
		Generation:   4,
		HasFinalizer: true,
		RunStrategy:  ptr(runstrategy.RerunOnFailure),
		Status: runstrategy.Status{
			Created:         true,
			PrintableStatus: "Stopping",
			RunStrategy:     runstrategy.RerunOnFailure,
			Conditions: []runstrategy.Condition{
				{Type: "Ready", Status: runstrategy.ConditionFalse, Reason: "VMIConditionMissing", LastTransitionTime: time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC)},
				{
					Type: "RestartRequired", Status: runstrategy.ConditionTrue, Reason: "TemplateChanged", Message: "a restart applies the new template",
					LastProbeTime: time.Date(2026, 11, 28, 10, 1, 0, 0, time.UTC), LastTransitionTime: time.Date(2026, 11, 28, 8, 0, 7, 0, time.UTC),
				},
				{Type: "AgentConnected", Status: runstrategy.ConditionUnknown},
			},
			Requests: []runstrategy.Request{
				{Action: runstrategy.StopRequest, UID: "7d1c1f0e-8a9b-4c2d-9e3f-112233445566"},
				{Action: runstrategy.StartRequest, Data: map[string]string{"paused": "true", "note": "kept as it is"}},
			},
			StartFailure: &runstrategy.StartFailure{
				Count: 2, LastFailedUID: "11111111-2222-4333-8444-555555555555",
				RetryAfter: time.Date(2026, 11, 28, 10, 5, 0, 0, time.UTC),
			},
			ObservedGeneration: 3,
			DesiredGeneration:  4,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("VM (-want +got):\n%s", diff)
	}
	if !got.Status.Requests[1].Paused() {
		t.Error("the paused Start request does not read as paused")
	}

	// The core's view shares nothing with the API object.
	*got.RunStrategy = runstrategy.Halted
	got.Status.Requests[1].Data["paused"] = "false"
	if *vm.Spec.RunStrategy != v1.RunStrategyRerunOnFailure || vm.Status.StateChangeRequests[1].Data["paused"] != "true" {
		t.Error("changing the core's view changed the VM")
	}

	// running, deletion, no finalizer.
	vm = &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{UID: "u", DeletionTimestamp: ptr(metav1.Now()), Finalizers: []string{"other"}}}
	vm.Spec.Running = ptr(false)
	got = vmstate.VM(vm)
	if !got.Deleting || got.HasFinalizer || got.RunStrategy != nil || got.Running == nil || *got.Running {
		t.Errorf("VM of a deleted VM with running: false = %+v", got)
	}
	*got.Running = true
	if *vm.Spec.Running {
		t.Error("changing the core's Running changed the VM")
	}
	if s, err := runstrategy.Effective(got); err != nil || s != runstrategy.Always {
		t.Errorf("Effective = %v, %v; want Always", s, err)
	}
}

// TestStatusRoundTrip: writing back the core's view of a status read from
// the store changes nothing, not even the representation of its times, so a
// controller that compares statuses before writing does not write again.
func TestStatusRoundTrip(t *testing.T) {
	vm := statusVM(t)
	out := vm.DeepCopy()
	out.Status = v1.VirtualMachineStatus{PrintableStatus: "garbage", Conditions: []v1.VirtualMachineCondition{{Type: "Stale"}}}
	vmstate.ApplyStatus(out, vmstate.VM(vm).Status)
	if diff := cmp.Diff(vm.Status, out.Status); diff != "" {
		t.Errorf("status changed by the round trip (-read +written):\n%s", diff)
	}
	if !reflect.DeepEqual(vm.Status, out.Status) {
		t.Errorf("status is equal but not deeply equal after the round trip:\nread    %#v\nwritten %#v", vm.Status, out.Status)
	}

	// The empty status, too.
	empty := &v1.VirtualMachine{}
	vmstate.ApplyStatus(empty, vmstate.VM(empty).Status)
	if !reflect.DeepEqual(empty.Status, v1.VirtualMachineStatus{}) {
		t.Errorf("empty status became %#v", empty.Status)
	}
}

// TestApplyStatusTimes: times are written with the one-second precision of
// their JSON form, in the form a read back gives, so what was written and
// what is read back are deeply equal.
func TestApplyStatusTimes(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 5, 999_999_999, time.FixedZone("CET", 3600))
	st := runstrategy.Status{
		PrintableStatus: "Running",
		Conditions:      []runstrategy.Condition{{Type: "Ready", Status: runstrategy.ConditionTrue, LastProbeTime: now, LastTransitionTime: now.Add(-time.Hour)}},
		StartFailure:    &runstrategy.StartFailure{Count: 1, LastFailedUID: "u1", RetryAfter: now.Add(10 * time.Second)},
	}
	vm := &v1.VirtualMachine{}
	vmstate.ApplyStatus(vm, st)
	c := vm.Status.Conditions[0]
	if !c.LastProbeTime.Time.Equal(now.Truncate(time.Second)) || c.LastProbeTime.Nanosecond() != 0 {
		t.Errorf("lastProbeTime = %v, want %v", c.LastProbeTime, now.Truncate(time.Second))
	}
	if got := vm.Status.StartFailure.RetryAfterTimestamp; got == nil || !got.Time.Equal(now.Add(10*time.Second).Truncate(time.Second)) {
		t.Errorf("retryAfterTimestamp = %v", got)
	}
	back := jsonRoundTrip(t, vm)
	if !reflect.DeepEqual(vm.Status, back.Status) {
		t.Errorf("status read back is not deeply equal to the one written:\nwritten %#v\nread    %#v", vm.Status, back.Status)
	}

	// A zero time stays zero (null), and a zero retry time means no timestamp.
	vmstate.ApplyStatus(vm, runstrategy.Status{
		Conditions:   []runstrategy.Condition{{Type: "Ready", Status: runstrategy.ConditionFalse}},
		StartFailure: &runstrategy.StartFailure{Count: 1},
	})
	if !vm.Status.Conditions[0].LastProbeTime.IsZero() || vm.Status.StartFailure.RetryAfterTimestamp != nil {
		t.Errorf("zero times became %v and %v", vm.Status.Conditions[0].LastProbeTime, vm.Status.StartFailure.RetryAfterTimestamp)
	}
	// No start failure removes the record.
	vmstate.ApplyStatus(vm, runstrategy.Status{})
	if vm.Status.StartFailure != nil || vm.Status.Conditions != nil {
		t.Errorf("ApplyStatus left %+v", vm.Status)
	}
}

// TestRequestUIDs: a Stop without a UID and a Stop with an empty UID both
// reach the core as "no UID", and go back to the API without one.
func TestRequestUIDs(t *testing.T) {
	vm := &v1.VirtualMachine{}
	vm.Status.StateChangeRequests = []v1.VirtualMachineStateChangeRequest{
		{Action: v1.StopRequest},
		{Action: v1.StopRequest, UID: ptr(types.UID(""))},
		{Action: v1.StopRequest, UID: ptr(types.UID("vmi-1"))},
		{Action: v1.StartRequest, Data: map[string]string{}},
	}
	got := vmstate.VM(vm).Status.Requests
	want := []runstrategy.Request{
		{Action: runstrategy.StopRequest},
		{Action: runstrategy.StopRequest},
		{Action: runstrategy.StopRequest, UID: "vmi-1"},
		{Action: runstrategy.StartRequest, Data: map[string]string{}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("core requests (-want +got):\n%s", diff)
	}

	back := vmstate.Requests(got)
	wantBack := []v1.VirtualMachineStateChangeRequest{
		{Action: v1.StopRequest},
		{Action: v1.StopRequest},
		{Action: v1.StopRequest, UID: ptr(types.UID("vmi-1"))},
		{Action: v1.StartRequest, Data: map[string]string{}},
	}
	if diff := cmp.Diff(wantBack, back); diff != "" {
		t.Errorf("API requests (-want +got):\n%s", diff)
	}
	// The copies share nothing.
	got[3].Data["paused"] = "true"
	if len(back[3].Data) != 0 || len(vm.Status.StateChangeRequests[3].Data) != 0 {
		t.Error("request data is shared between copies")
	}

	if r := vmstate.Requests(nil); r != nil {
		t.Errorf("Requests(nil) = %#v, want nil", r)
	}
	if r := vmstate.Requests([]runstrategy.Request{}); r != nil {
		t.Errorf("Requests(empty) = %#v, want nil", r)
	}
}

func TestEverRunning(t *testing.T) {
	ts := func(phases ...v1.VirtualMachineInstancePhase) []v1.VirtualMachineInstancePhaseTransitionTimestamp {
		var out []v1.VirtualMachineInstancePhaseTransitionTimestamp
		for i, p := range phases {
			out = append(out, v1.VirtualMachineInstancePhaseTransitionTimestamp{Phase: p, PhaseTransitionTimestamp: metav1.NewTime(time.Unix(int64(i), 0))})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		status v1.VirtualMachineInstanceStatus
		want   bool
	}{
		{name: "new", status: v1.VirtualMachineInstanceStatus{}, want: false},
		{name: "scheduled", status: v1.VirtualMachineInstanceStatus{Phase: v1.Scheduled, PhaseTransitionTimestamps: ts(v1.Pending, v1.Scheduled)}, want: false},
		{name: "running", status: v1.VirtualMachineInstanceStatus{Phase: v1.Running}, want: true},
		{name: "succeeded after running", status: v1.VirtualMachineInstanceStatus{Phase: v1.Succeeded, PhaseTransitionTimestamps: ts(v1.Pending, v1.Scheduled, v1.Running, v1.Succeeded)}, want: true},
		{name: "failed after running", status: v1.VirtualMachineInstanceStatus{Phase: v1.Failed, PhaseTransitionTimestamps: ts(v1.Scheduled, v1.Running, v1.Failed)}, want: true},
		{name: "failed before running", status: v1.VirtualMachineInstanceStatus{Phase: v1.Failed, PhaseTransitionTimestamps: ts(v1.Pending, v1.Scheduled, v1.Failed)}, want: false},
		{name: "unknown after running", status: v1.VirtualMachineInstanceStatus{Phase: v1.Unknown, PhaseTransitionTimestamps: ts(v1.Running, v1.Unknown)}, want: true},
	} {
		vmi := &v1.VirtualMachineInstance{Status: tc.status}
		if got := vmstate.EverRunning(vmi); got != tc.want {
			t.Errorf("%s: EverRunning = %v, want %v", tc.name, got, tc.want)
		}
		if got := vmstate.Instance(vmi, nil).EverRunning; got != tc.want {
			t.Errorf("%s: Instance().EverRunning = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// templateVM is a VM with a template that sets labels, annotations and a
// spec, decoded from JSON as the store would give it.
func templateVM(t *testing.T) *v1.VirtualMachine {
	t.Helper()
	doc := `{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine",
		"metadata":{"name":"web","namespace":"prod","uid":"vm-uid-1","generation":7,"labels":{"vm-label":"not copied"}},
		"spec":{"runStrategy":"Always","template":{
			"metadata":{"name":"ignored","labels":{"app":"web","tier":"front"},"annotations":{"sim.vigil.dev/boot-delay":"300ms"}},
			"spec":{"domain":{"cpu":{"cores":2},"resources":{"requests":{"memory":"1024Mi"}},
				"devices":{"disks":[{"name":"root","disk":{"bus":"virtio"}}]}},
				"terminationGracePeriodSeconds":60,
				"volumes":[{"name":"root","containerDisk":{"image":"cirros.qcow2"}}]}}}}`
	var vm v1.VirtualMachine
	if err := v1.Decode([]byte(doc), &vm); err != nil {
		t.Fatal(err)
	}
	return &vm
}

var uuidV5 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewInstance(t *testing.T) {
	vm := templateVM(t)
	orig := vm.DeepCopy()
	vmi := vmstate.NewInstance(vm, false)

	if vmi.Kind != v1.KindVirtualMachineInstance || vmi.APIVersion != v1.KubeVirtAPIVersion {
		t.Errorf("TypeMeta = %+v", vmi.TypeMeta)
	}
	if vmi.Name != "web" || vmi.Namespace != "prod" {
		t.Errorf("name %s/%s, want prod/web (the VM's, not the template's)", vmi.Namespace, vmi.Name)
	}
	wantOwner := []metav1.OwnerReference{{
		APIVersion: v1.KubeVirtAPIVersion, Kind: v1.KindVirtualMachine, Name: "web", UID: "vm-uid-1",
		Controller: ptr(true), BlockOwnerDeletion: ptr(true),
	}}
	if diff := cmp.Diff(wantOwner, vmi.OwnerReferences); diff != "" {
		t.Errorf("owner references (-want +got):\n%s", diff)
	}
	if ref := metav1.GetControllerOf(vmi); ref == nil || ref.UID != vm.UID {
		t.Errorf("GetControllerOf = %v, want the VM", ref)
	}
	if !slices.Equal(vmi.Finalizers, []string{v1.VirtualMachineControllerFinalizer}) {
		t.Errorf("finalizers = %v", vmi.Finalizers)
	}
	wantLabels := map[string]string{"app": "web", "tier": "front", v1.CreatedByLabel: "vm-uid-1"}
	if diff := cmp.Diff(wantLabels, vmi.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	wantAnnotations := map[string]string{
		"sim.vigil.dev/boot-delay": "300ms",
		v1.TemplateHashAnnotation:  vmstate.TemplateHash(vm.Spec.Template),
		v1.VMGenerationAnnotation:  "7",
	}
	if diff := cmp.Diff(wantAnnotations, vmi.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if vmi.Spec.StartStrategy != nil {
		t.Errorf("startStrategy = %v, want unset", *vmi.Spec.StartStrategy)
	}

	// The spec is the template's, plus a firmware UUID.
	wantSpec := vm.Spec.Template.Spec.DeepCopy()
	wantSpec.Domain.Firmware = &v1.Firmware{UUID: vmstate.FirmwareUUID("prod", "web")}
	if diff := cmp.Diff(*wantSpec, vmi.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if !uuidV5.MatchString(string(vmi.Spec.Domain.Firmware.UUID)) {
		t.Errorf("firmware UUID %q is not an RFC 4122 version 5 UUID", vmi.Spec.Domain.Firmware.UUID)
	}
	if errs := v1.ValidateVirtualMachineInstance(vmi); len(errs) != 0 {
		t.Errorf("the new VMI does not validate: %v", errs)
	}
	if got := vmstate.Instance(vmi, vm); !got.TemplateCurrent || got.Generation != 7 || !got.HasFinalizer {
		t.Errorf("Instance of the new VMI = %+v; want TemplateCurrent, generation 7, the finalizer", got)
	}

	// The VM is untouched, and the VMI shares nothing with it.
	if diff := cmp.Diff(orig, vm); diff != "" {
		t.Errorf("NewInstance changed the VM (-before +after):\n%s", diff)
	}
	vmi.Labels["app"] = "changed"
	vmi.Annotations["sim.vigil.dev/boot-delay"] = "0s"
	vmi.Spec.Domain.Devices.Disks[0].Name = "changed"
	*vmi.Spec.TerminationGracePeriodSeconds = 1
	if diff := cmp.Diff(orig, vm); diff != "" {
		t.Errorf("changing the VMI changed the VM (-before +after):\n%s", diff)
	}

	// Asked to start paused.
	paused := vmstate.NewInstance(vm, true)
	if paused.Spec.StartStrategy == nil || *paused.Spec.StartStrategy != v1.StartStrategyPaused {
		t.Errorf("startStrategy = %v, want Paused", paused.Spec.StartStrategy)
	}
	if vm.Spec.Template.Spec.StartStrategy != nil {
		t.Error("NewInstance(paused) changed the template's startStrategy")
	}
	// A template that starts paused stays paused.
	vm2 := vm.DeepCopy()
	vm2.Spec.Template.Spec.StartStrategy = ptr(v1.StartStrategyPaused)
	if s := vmstate.NewInstance(vm2, false).Spec.StartStrategy; s == nil || *s != v1.StartStrategyPaused {
		t.Errorf("template startStrategy Paused gave %v", s)
	}

	// A template without labels or annotations still gets the VMI's own.
	bare := &v1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "bare", UID: "u2"}, Spec: v1.VirtualMachineSpec{Template: &v1.VirtualMachineInstanceTemplateSpec{}}}
	b := vmstate.NewInstance(bare, false)
	if b.Labels[v1.CreatedByLabel] != "u2" || b.Annotations[v1.VMGenerationAnnotation] != "0" || b.Annotations[v1.TemplateHashAnnotation] == "" {
		t.Errorf("bare VMI metadata: labels %v, annotations %v", b.Labels, b.Annotations)
	}
	if bare.Spec.Template.Spec.Domain.Firmware != nil {
		t.Error("NewInstance set a firmware on the VM's template")
	}
}

func TestFirmwareUUID(t *testing.T) {
	a := vmstate.FirmwareUUID("prod", "web")
	if a != vmstate.FirmwareUUID("prod", "web") {
		t.Error("FirmwareUUID is not stable")
	}
	seen := map[types.UID]string{}
	for _, nn := range [][2]string{{"prod", "web"}, {"prod", "web2"}, {"test", "web"}, {"", "web"}, {"a", "bc"}, {"ab", "c"}, {"default", "vm-cirros"}} {
		u := vmstate.FirmwareUUID(nn[0], nn[1])
		if !uuidV5.MatchString(string(u)) {
			t.Errorf("FirmwareUUID(%q, %q) = %q, not an RFC 4122 version 5 UUID", nn[0], nn[1], u)
		}
		if prev, dup := seen[u]; dup {
			t.Errorf("FirmwareUUID(%q, %q) = FirmwareUUID of %s", nn[0], nn[1], prev)
		}
		seen[u] = nn[0] + "/" + nn[1]
	}

	// The UUID is kept across runs: a second VMI of the same VM has it too.
	vm := templateVM(t)
	if u1, u2 := vmstate.NewInstance(vm, false).Spec.Domain.Firmware.UUID, vmstate.NewInstance(vm, true).Spec.Domain.Firmware.UUID; u1 != u2 {
		t.Errorf("two runs got UUIDs %s and %s", u1, u2)
	}

	// A pinned UUID is kept, and the rest of the firmware with it.
	vm.Spec.Template.Spec.Domain.Firmware = &v1.Firmware{
		UUID:       "5d307ca9-b3ef-428c-8861-06e72d69f223",
		KernelBoot: &v1.KernelBoot{KernelArgs: "console=ttyS0", Container: &v1.KernelBootContainer{Image: "k", KernelPath: "/vmlinuz"}},
	}
	vmi := vmstate.NewInstance(vm, false)
	if diff := cmp.Diff(vm.Spec.Template.Spec.Domain.Firmware, vmi.Spec.Domain.Firmware); diff != "" {
		t.Errorf("pinned firmware (-template +vmi):\n%s", diff)
	}
	// A template firmware without a UUID gets the derived one, and keeps
	// its kernel boot.
	vm.Spec.Template.Spec.Domain.Firmware.UUID = ""
	vmi = vmstate.NewInstance(vm, false)
	if vmi.Spec.Domain.Firmware.UUID != vmstate.FirmwareUUID("prod", "web") || vmi.Spec.Domain.Firmware.KernelBoot == nil {
		t.Errorf("firmware = %+v", vmi.Spec.Domain.Firmware)
	}
	if vm.Spec.Template.Spec.Domain.Firmware.UUID != "" {
		t.Error("NewInstance wrote the UUID into the VM's template")
	}
}

func TestTemplateCurrent(t *testing.T) {
	vm := templateVM(t)
	vmi := vmstate.NewInstance(vm, false)

	for _, tc := range []struct {
		name   string
		change func(vm *v1.VirtualMachine)
		want   bool
	}{
		{name: "unchanged", change: func(*v1.VirtualMachine) {}, want: true},
		{name: "run strategy", change: func(vm *v1.VirtualMachine) { vm.Spec.RunStrategy = ptr(v1.RunStrategyHalted) }, want: true},
		{name: "VM labels", change: func(vm *v1.VirtualMachine) { vm.Labels = map[string]string{"x": "y"} }, want: true},
		{name: "VM generation", change: func(vm *v1.VirtualMachine) { vm.Generation++ }, want: true},
		{name: "status", change: func(vm *v1.VirtualMachine) { vm.Status.PrintableStatus = v1.VirtualMachineStatusRunning }, want: true},
		{name: "template name", change: func(vm *v1.VirtualMachine) { vm.Spec.Template.ObjectMeta.Name = "other" }, want: true},
		{
			name: "same memory written differently",
			change: func(vm *v1.VirtualMachine) {
				vm.Spec.Template.Spec.Domain.Resources.Requests[v1.ResourceMemory] = resource.MustParse("1Gi")
			},
			want: true,
		},
		{
			name: "memory",
			change: func(vm *v1.VirtualMachine) {
				vm.Spec.Template.Spec.Domain.Resources.Requests[v1.ResourceMemory] = resource.MustParse("2Gi")
			},
			want: false,
		},
		{name: "cpu", change: func(vm *v1.VirtualMachine) { vm.Spec.Template.Spec.Domain.CPU.Cores = 4 }, want: false},
		{name: "grace period", change: func(vm *v1.VirtualMachine) { vm.Spec.Template.Spec.TerminationGracePeriodSeconds = nil }, want: false},
		{name: "template label", change: func(vm *v1.VirtualMachine) { vm.Spec.Template.ObjectMeta.Labels["tier"] = "back" }, want: false},
		{
			name: "template annotation",
			change: func(vm *v1.VirtualMachine) {
				vm.Spec.Template.ObjectMeta.Annotations["sim.vigil.dev/fail-start"] = "true"
			},
			want: false,
		},
		{name: "no template", change: func(vm *v1.VirtualMachine) { vm.Spec.Template = nil }, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := vm.DeepCopy()
			tc.change(changed)
			if got := vmstate.Instance(vmi, changed).TemplateCurrent; got != tc.want {
				t.Errorf("TemplateCurrent = %v, want %v", got, tc.want)
			}
		})
	}

	// The hash survives the VM's trip through the store.
	if got := vmstate.Instance(vmi, jsonRoundTrip(t, vm)).TemplateCurrent; !got {
		t.Error("TemplateCurrent is false for the same VM read back from JSON")
	}
	// A VMI without the hash was not created from this template.
	other := vmi.DeepCopy()
	delete(other.Annotations, v1.TemplateHashAnnotation)
	if vmstate.Instance(other, vm).TemplateCurrent {
		t.Error("TemplateCurrent is true for a VMI without a template hash")
	}
	// Without a VM there is nothing to compare with.
	if !vmstate.Instance(other, nil).TemplateCurrent {
		t.Error("TemplateCurrent is false without a VM")
	}
}

func TestInstance(t *testing.T) {
	if vmstate.Instance(nil, nil) != nil {
		t.Error("Instance(nil) is not nil")
	}
	now := metav1.NewTime(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
	vmi := &v1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{
			UID: "vmi-1", DeletionTimestamp: &now,
			Finalizers:  []string{v1.AgentFinalizer},
			Annotations: map[string]string{v1.VMGenerationAnnotation: "12"},
		},
		Spec: v1.VirtualMachineInstanceSpec{
			TerminationGracePeriodSeconds: ptr(int64(5)),
			Domain:                        v1.DomainSpec{Features: &v1.Features{ACPI: v1.FeatureState{Enabled: ptr(false)}}},
		},
		Status: v1.VirtualMachineInstanceStatus{
			Phase: v1.Running,
			Conditions: []v1.VirtualMachineInstanceCondition{
				{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue, LastTransitionTime: now},
				{Type: v1.VirtualMachineInstancePaused, Status: metav1.ConditionTrue, Reason: v1.PausedByUserReason, Message: "paused by user"},
			},
			ActionRequests: []v1.VirtualMachineInstanceActionRequest{{Action: v1.VMIActionUnpause, ID: "1"}, {Action: v1.VMIActionSoftReboot, ID: "2"}},
		},
	}
	got := vmstate.Instance(vmi, nil)
	want := &runstrategy.Instance{
		UID: "vmi-1", Phase: runstrategy.PhaseRunning, Deleting: true, HasFinalizer: false, EverRunning: true,
		Conditions: []runstrategy.Condition{
			{Type: "Ready", Status: runstrategy.ConditionTrue, LastTransitionTime: now.Time},
			{Type: "Paused", Status: runstrategy.ConditionTrue, Reason: "PausedByUser", Message: "paused by user"},
		},
		GracePeriod:     ptr(int64(5)),
		TemplateCurrent: true,
		Generation:      12,
		ACPIDisabled:    true,
		PendingActions:  []runstrategy.InstanceAction{runstrategy.ActionUnpause, runstrategy.ActionSoftReboot},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Instance (-want +got):\n%s", diff)
	}
	*got.GracePeriod = 0
	if *vmi.Spec.TerminationGracePeriodSeconds != 5 {
		t.Error("changing the core's grace period changed the VMI")
	}

	for _, tc := range []struct {
		name     string
		features *v1.Features
		want     bool
	}{
		{name: "no features", features: nil, want: false},
		{name: "acpi unset", features: &v1.Features{}, want: false},
		{name: "acpi enabled", features: &v1.Features{ACPI: v1.FeatureState{Enabled: ptr(true)}}, want: false},
		{name: "acpi disabled", features: &v1.Features{ACPI: v1.FeatureState{Enabled: ptr(false)}}, want: true},
	} {
		vmi := &v1.VirtualMachineInstance{Spec: v1.VirtualMachineInstanceSpec{Domain: v1.DomainSpec{Features: tc.features}}}
		if got := vmstate.Instance(vmi, nil).ACPIDisabled; got != tc.want {
			t.Errorf("%s: ACPIDisabled = %v, want %v", tc.name, got, tc.want)
		}
	}

	// Without a grace period the core sees none (it applies the default
	// itself); a generation annotation that is not a number reads as 0.
	bare := &v1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1.VMGenerationAnnotation: "seven"}}}
	if got := vmstate.Instance(bare, nil); got.GracePeriod != nil || got.Generation != 0 || got.EverRunning {
		t.Errorf("Instance of a bare VMI = %+v", got)
	}
}

func TestApplyChange(t *testing.T) {
	failure := &v1.VirtualMachineStartFailure{ConsecutiveFailCount: 3, LastFailedVMIUID: "old"}
	queue := []v1.VirtualMachineStateChangeRequest{{Action: v1.StartRequest}}
	for _, tc := range []struct {
		name   string
		vm     func() *v1.VirtualMachine
		change runstrategy.Change
		want   func(vm *v1.VirtualMachine)
	}{
		{
			name: "nothing",
			vm: func() *v1.VirtualMachine {
				return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyManual)}}
			},
			change: runstrategy.Change{},
			want:   func(*v1.VirtualMachine) {},
		},
		{
			name: "Always to runStrategy",
			vm: func() *v1.VirtualMachine {
				return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyHalted)}}
			},
			change: runstrategy.Change{Strategy: &runstrategy.StrategyWrite{Strategy: runstrategy.Always}},
			want:   func(vm *v1.VirtualMachine) { vm.Spec.RunStrategy = ptr(v1.RunStrategyAlways) },
		},
		{
			name: "Halted to runStrategy",
			vm: func() *v1.VirtualMachine {
				return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyAlways)}}
			},
			change: runstrategy.Change{Strategy: &runstrategy.StrategyWrite{Strategy: runstrategy.Halted}},
			want:   func(vm *v1.VirtualMachine) { vm.Spec.RunStrategy = ptr(v1.RunStrategyHalted) },
		},
		{
			name:   "Always to running",
			vm:     func() *v1.VirtualMachine { return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{Running: ptr(false)}} },
			change: runstrategy.Change{Strategy: &runstrategy.StrategyWrite{Strategy: runstrategy.Always, UseRunning: true}},
			want:   func(vm *v1.VirtualMachine) { vm.Spec.Running = ptr(true) },
		},
		{
			name:   "Halted to running",
			vm:     func() *v1.VirtualMachine { return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{Running: ptr(true)}} },
			change: runstrategy.Change{Strategy: &runstrategy.StrategyWrite{Strategy: runstrategy.Halted, UseRunning: true}},
			want:   func(vm *v1.VirtualMachine) { vm.Spec.Running = ptr(false) },
		},
		{
			name: "queue replaced and start failure cleared",
			vm: func() *v1.VirtualMachine {
				vm := &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyManual)}}
				vm.Status.StateChangeRequests = slices.Clone(queue)
				vm.Status.StartFailure = failure.DeepCopy()
				return vm
			},
			change: runstrategy.Change{
				SetRequests:       true,
				Requests:          []runstrategy.Request{{Action: runstrategy.StopRequest, UID: "vmi-2"}, {Action: runstrategy.StartRequest, Data: map[string]string{"paused": "true"}}},
				ClearStartFailure: true,
			},
			want: func(vm *v1.VirtualMachine) {
				vm.Status.StateChangeRequests = []v1.VirtualMachineStateChangeRequest{
					{Action: v1.StopRequest, UID: ptr(types.UID("vmi-2"))},
					{Action: v1.StartRequest, Data: map[string]string{"paused": "true"}},
				}
				vm.Status.StartFailure = nil
			},
		},
		{
			name: "queue emptied, start failure kept",
			vm: func() *v1.VirtualMachine {
				vm := &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyManual)}}
				vm.Status.StateChangeRequests = slices.Clone(queue)
				vm.Status.StartFailure = failure.DeepCopy()
				return vm
			},
			change: runstrategy.Change{SetRequests: true},
			want:   func(vm *v1.VirtualMachine) { vm.Status.StateChangeRequests = nil },
		},
		{
			name: "requests without SetRequests are ignored",
			vm: func() *v1.VirtualMachine {
				vm := &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyManual)}}
				vm.Status.StateChangeRequests = slices.Clone(queue)
				return vm
			},
			change: runstrategy.Change{Requests: []runstrategy.Request{{Action: runstrategy.StopRequest}}},
			want:   func(*v1.VirtualMachine) {},
		},
		{
			name: "VMI parts are left to the caller",
			vm: func() *v1.VirtualMachine {
				return &v1.VirtualMachine{Spec: v1.VirtualMachineSpec{RunStrategy: ptr(v1.RunStrategyManual)}}
			},
			change: runstrategy.Change{
				InstanceGracePeriod: ptr(int64(0)),
				InstanceAction:      runstrategy.ActionPause,
			},
			want: func(*v1.VirtualMachine) {},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := tc.vm()
			want := vm.DeepCopy()
			tc.want(want)
			vmstate.ApplyChange(vm, tc.change)
			if diff := cmp.Diff(want, vm); diff != "" {
				t.Errorf("VM after ApplyChange (-want +got):\n%s", diff)
			}
			// The field the VM did not use stays unset.
			if (tc.vm().Spec.Running == nil) != (vm.Spec.Running == nil) || (tc.vm().Spec.RunStrategy == nil) != (vm.Spec.RunStrategy == nil) {
				t.Errorf("ApplyChange switched representation: running %v, runStrategy %v", vm.Spec.Running, vm.Spec.RunStrategy)
			}
		})
	}
}
