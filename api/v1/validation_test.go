package v1_test

import (
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

func ptr[T any](v T) *T { return &v }

// validSpec is a VMI spec that passes validation: a container disk, a
// cloud-init disk and one masquerade interface on the pod network.
func validSpec() v1.VirtualMachineInstanceSpec {
	return v1.VirtualMachineInstanceSpec{
		Domain: v1.DomainSpec{
			Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")},
			},
			Devices: v1.Devices{
				Disks: []v1.Disk{
					{Name: "root", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{Bus: v1.DiskBusVirtio}}},
					{Name: "cloudinit", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{Bus: v1.DiskBusVirtio}}},
				},
				Interfaces: []v1.Interface{{
					Name:                   "default",
					InterfaceBindingMethod: v1.InterfaceBindingMethod{Masquerade: &v1.InterfaceMasquerade{}},
					Ports:                  []v1.Port{{Name: "http", Port: 80}},
				}},
			},
		},
		Networks: []v1.Network{{Name: "default", NetworkSource: v1.NetworkSource{Pod: &v1.PodNetwork{}}}},
		Volumes: []v1.Volume{
			{Name: "root", VolumeSource: v1.VolumeSource{ContainerDisk: &v1.ContainerDiskSource{Image: "cirros.qcow2"}}},
			{Name: "cloudinit", VolumeSource: v1.VolumeSource{CloudInitNoCloud: &v1.CloudInitNoCloudSource{UserData: "#cloud-config\n"}}},
		},
	}
}

func validVM() *v1.VirtualMachine {
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: v1.VirtualMachineSpec{
			RunStrategy: ptr(v1.RunStrategyAlways),
			Template:    &v1.VirtualMachineInstanceTemplateSpec{Spec: validSpec()},
		},
	}
}

func validVMI() *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       validSpec(),
	}
}

// summary renders errors as "<Type> <path>", the type without apimachinery's
// "FieldValue" prefix and the path without prefix, sorted, so that a case
// states exactly which fields fail and how.
func summary(errs field.ErrorList, prefix string) []string {
	out := []string{}
	for _, fe := range errs {
		typ := strings.TrimPrefix(string(fe.Type), "FieldValue")
		out = append(out, typ+" "+strings.TrimPrefix(fe.Field, prefix))
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// TestValidateRunStrategy covers spec/lifecycle.md section 3, with the exact
// messages clients match on.
func TestValidateRunStrategy(t *testing.T) {
	type want struct {
		typ    field.ErrorType
		field  string
		detail string
	}
	for _, tc := range []struct {
		name        string
		running     *bool
		runStrategy *v1.RunStrategy
		want        []want
		warnings    []string
	}{
		{name: "Always", runStrategy: ptr(v1.RunStrategyAlways)},
		{name: "RerunOnFailure", runStrategy: ptr(v1.RunStrategyRerunOnFailure)},
		{name: "Manual", runStrategy: ptr(v1.RunStrategyManual)},
		{name: "Halted", runStrategy: ptr(v1.RunStrategyHalted)},
		{name: "Once", runStrategy: ptr(v1.RunStrategyOnce)},
		{name: "running true", running: ptr(true), warnings: []string{"spec.running is deprecated, please use spec.runStrategy instead."}},
		{name: "running false", running: ptr(false), warnings: []string{"spec.running is deprecated, please use spec.runStrategy instead."}},
		{
			name: "both", running: ptr(true), runStrategy: ptr(v1.RunStrategyAlways),
			want: []want{{field.ErrorTypeInvalid, "spec.running", "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"}},
			// The deprecated field is still set, so the warning stays.
			warnings: []string{"spec.running is deprecated, please use spec.runStrategy instead."},
		},
		{
			name: "both with running false and an invalid strategy", running: ptr(false), runStrategy: ptr(v1.RunStrategy("Foo")),
			want:     []want{{field.ErrorTypeInvalid, "spec.running", "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"}},
			warnings: []string{"spec.running is deprecated, please use spec.runStrategy instead."},
		},
		{
			name: "neither",
			want: []want{{field.ErrorTypeRequired, "spec.running", "RunStrategy must be specified"}},
		},
		{
			name: "unknown strategy", runStrategy: ptr(v1.RunStrategy("Foo")),
			want: []want{{field.ErrorTypeInvalid, "spec.runStrategy", "Invalid RunStrategy (Foo)"}},
		},
		{
			name: "wrong case", runStrategy: ptr(v1.RunStrategy("always")),
			want: []want{{field.ErrorTypeInvalid, "spec.runStrategy", "Invalid RunStrategy (always)"}},
		},
		{
			name: "empty strategy", runStrategy: ptr(v1.RunStrategyUnknown),
			want: []want{{field.ErrorTypeInvalid, "spec.runStrategy", "Invalid RunStrategy ()"}},
		},
		{
			name: "WaitAsReceiver", runStrategy: ptr(v1.RunStrategyWaitAsReceiver),
			want: []want{{field.ErrorTypeInvalid, "spec.runStrategy", "Invalid RunStrategy (WaitAsReceiver): live migration is not supported yet"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := validVM()
			vm.Spec.Running, vm.Spec.RunStrategy = tc.running, tc.runStrategy
			errs, warnings := v1.ValidateVirtualMachine(vm)
			var got []want
			for _, fe := range errs {
				got = append(got, want{fe.Type, fe.Field, fe.Detail})
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
	if v1.MsgWaitAsReceiver == "" || !strings.Contains(v1.MsgWaitAsReceiver, "live migration is not supported yet") {
		t.Errorf("MsgWaitAsReceiver = %q, want it to say live migration is not supported yet", v1.MsgWaitAsReceiver)
	}
	for _, rs := range v1.ValidRunStrategies {
		vm := validVM()
		vm.Spec.RunStrategy = ptr(rs)
		if errs, _ := v1.ValidateVirtualMachine(vm); len(errs) != 0 {
			t.Errorf("ValidRunStrategies holds %s, which validation refuses: %v", rs, errs)
		}
	}
}

// TestValidateVirtualMachine covers the rules on a VM outside its template's
// spec: metadata, the template, and the status.
func TestValidateVirtualMachine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(vm *v1.VirtualMachine)
		want   []string
	}{
		{name: "valid", mutate: func(*v1.VirtualMachine) {}, want: []string{}},
		{
			name:   "missing template",
			mutate: func(vm *v1.VirtualMachine) { vm.Spec.Template = nil },
			want:   []string{"Required spec.template"},
		},
		{name: "empty name", mutate: func(vm *v1.VirtualMachine) { vm.Name = "" }, want: []string{"Required metadata.name"}},
		{name: "uppercase name", mutate: func(vm *v1.VirtualMachine) { vm.Name = "WebServer" }, want: []string{"Invalid metadata.name"}},
		{name: "name with underscore", mutate: func(vm *v1.VirtualMachine) { vm.Name = "web_1" }, want: []string{"Invalid metadata.name"}},
		{name: "name of 63 characters", mutate: func(vm *v1.VirtualMachine) { vm.Name = strings.Repeat("a", 63) }, want: []string{}},
		{name: "name of 64 characters", mutate: func(vm *v1.VirtualMachine) { vm.Name = strings.Repeat("a", 64) }, want: []string{"TooLong metadata.name"}},
		{name: "name with dots", mutate: func(vm *v1.VirtualMachine) { vm.Name = "web.example" }, want: []string{}},
		{name: "generateName", mutate: func(vm *v1.VirtualMachine) { vm.Name, vm.GenerateName = "", "web-" }, want: []string{}},
		{name: "bad generateName", mutate: func(vm *v1.VirtualMachine) { vm.Name, vm.GenerateName = "", "Web-" }, want: []string{"Invalid metadata.generateName"}},
		{name: "bad namespace", mutate: func(vm *v1.VirtualMachine) { vm.Namespace = "my.ns" }, want: []string{"Invalid metadata.namespace"}},
		{name: "no namespace", mutate: func(vm *v1.VirtualMachine) { vm.Namespace = "" }, want: []string{}},
		{
			name:   "bad label key and value",
			mutate: func(vm *v1.VirtualMachine) { vm.Labels = map[string]string{"a b": "ok", "good": "not ok!"} },
			want:   []string{"Invalid metadata.labels[a b]", "Invalid metadata.labels[good]"},
		},
		{
			name: "bad annotation key",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Annotations = map[string]string{"-bad": "x", "Vigil.dev/OK": "any value at all!"}
			},
			want: []string{"Invalid metadata.annotations[-bad]"},
		},
		{
			name:   "annotations too large",
			mutate: func(vm *v1.VirtualMachine) { vm.Annotations = map[string]string{"big": strings.Repeat("x", 256<<10)} },
			want:   []string{"TooLong metadata.annotations"},
		},
		{
			name: "bad template labels and annotations",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Spec.Template.ObjectMeta.Labels = map[string]string{"app": "a b"}
				vm.Spec.Template.ObjectMeta.Annotations = map[string]string{"x/y/z": "1"}
			},
			want: []string{"Invalid spec.template.metadata.annotations[x/y/z]", "Invalid spec.template.metadata.labels[app]"},
		},
		{
			name: "template name is ignored",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Spec.Template.ObjectMeta.Name = "Not A Name"
			},
			want: []string{},
		},
		{
			name:   "template spec is validated",
			mutate: func(vm *v1.VirtualMachine) { vm.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(int64(-1)) },
			want:   []string{"Invalid spec.template.spec.terminationGracePeriodSeconds"},
		},
		{
			name: "unknown request action",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Status.StateChangeRequests = []v1.VirtualMachineStateChangeRequest{{Action: v1.StartRequest}, {Action: "Restart"}}
			},
			want: []string{"NotSupported status.stateChangeRequests[1].action"},
		},
		{
			name:   "status with an invalid strategy",
			mutate: func(vm *v1.VirtualMachine) { vm.Status.RunStrategy = "Sometimes" },
			want:   []string{"Invalid status.runStrategy"},
		},
		{
			name: "negative fail count",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Status.StartFailure = &v1.VirtualMachineStartFailure{ConsecutiveFailCount: -1}
			},
			want: []string{"Invalid status.startFailure.consecutiveFailCount"},
		},
		{
			name: "VM conditions",
			mutate: func(vm *v1.VirtualMachine) {
				vm.Status.Conditions = []v1.VirtualMachineCondition{
					{Type: v1.VirtualMachineReady, Status: metav1.ConditionTrue},
					{Type: v1.VirtualMachineReady, Status: metav1.ConditionFalse},
					{Type: "", Status: metav1.ConditionTrue},
					{Type: v1.VirtualMachineFailure, Status: "Maybe"},
				}
			},
			want: []string{
				"Duplicate status.conditions[1].type",
				"NotSupported status.conditions[3].status",
				"Required status.conditions[2].type",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := validVM()
			tc.mutate(vm)
			errs, _ := v1.ValidateVirtualMachine(vm)
			if diff := cmp.Diff(sorted(tc.want), summary(errs, "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nall: %v", diff, errs)
			}
		})
	}

	vm := validVM()
	vm.Spec.Template = nil
	errs, _ := v1.ValidateVirtualMachine(vm)
	if len(errs) != 1 || errs[0].Detail != "missing virtual machine template." {
		t.Errorf("missing template: %v, want the detail %q", errs, "missing virtual machine template.")
	}
}

// specCases are the rules of a VMI spec. Paths are relative to the spec;
// each case runs both in a VM template (spec.template.spec.) and in a VMI
// (spec.).
var specCases = []struct {
	name   string
	mutate func(s *v1.VirtualMachineInstanceSpec)
	want   []string
}{
	{name: "valid", mutate: func(*v1.VirtualMachineInstanceSpec) {}, want: []string{}},

	// Machine, grace period, start strategy, host name, node selector.
	{name: "machine q35", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Machine = &v1.Machine{Type: "q35"} }, want: []string{}},
	{name: "machine pc", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Machine = &v1.Machine{Type: "pc"} }, want: []string{}},
	{name: "machine default", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Machine = &v1.Machine{} }, want: []string{}},
	{
		name:   "unsupported machine",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Machine = &v1.Machine{Type: "pc-q35-rhel8.6.0"} },
		want:   []string{"NotSupported domain.machine.type"},
	},
	{name: "grace period 0", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.TerminationGracePeriodSeconds = ptr(int64(0)) }, want: []string{}},
	{name: "grace period one week", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.TerminationGracePeriodSeconds = ptr(int64(7 * 24 * 3600)) }, want: []string{}},
	{
		name:   "negative grace period",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.TerminationGracePeriodSeconds = ptr(int64(-1)) },
		want:   []string{"Invalid terminationGracePeriodSeconds"},
	},
	{
		name:   "huge grace period",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.TerminationGracePeriodSeconds = ptr(int64(7*24*3600 + 1)) },
		want:   []string{"Invalid terminationGracePeriodSeconds"},
	},
	{name: "start paused", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.StartStrategy = ptr(v1.StartStrategyPaused) }, want: []string{}},
	{
		name:   "unknown start strategy",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.StartStrategy = ptr(v1.StartStrategy("Running")) },
		want:   []string{"NotSupported startStrategy"},
	},
	{name: "hostname", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Hostname = "web-1" }, want: []string{}},
	{name: "bad hostname", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Hostname = "web_1.example" }, want: []string{"Invalid hostname"}},
	{
		name: "node selector",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.NodeSelector = map[string]string{"kubernetes.io/hostname": "node-a", "gpu": ""}
		},
		want: []string{},
	},
	{
		name: "bad node selector",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.NodeSelector = map[string]string{"bad key": "a", "zone": "eu west"}
		},
		want: []string{"Invalid nodeSelector[bad key]", "Invalid nodeSelector[zone]"},
	},

	// Resources.
	{
		name: "requests and limits",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources = v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi"), v1.ResourceCPU: resource.MustParse("500m")},
				Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi"), v1.ResourceCPU: resource.MustParse("2")},
			}
		},
		want: []string{},
	},
	{
		name: "unsupported resource names",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Requests["nvidia.com/gpu"] = resource.MustParse("1")
			s.Domain.Resources.Limits = v1.ResourceList{"ephemeral-storage": resource.MustParse("1Gi")}
		},
		want: []string{"NotSupported domain.resources.limits[ephemeral-storage]", "NotSupported domain.resources.requests[nvidia.com/gpu]"},
	},
	{
		name: "zero memory",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Requests[v1.ResourceMemory] = resource.MustParse("0")
		},
		want: []string{"Invalid domain.resources.requests[memory]"},
	},
	{
		name: "negative cpu limit",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Limits = v1.ResourceList{v1.ResourceCPU: resource.MustParse("-1")}
		},
		want: []string{"Invalid domain.resources.limits[cpu]"},
	},
	{
		name: "requests above limits",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources = v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("2Gi"), v1.ResourceCPU: resource.MustParse("3")},
				Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi"), v1.ResourceCPU: resource.MustParse("2")},
			}
		},
		want: []string{"Invalid domain.resources.requests[cpu]", "Invalid domain.resources.requests[memory]"},
	},
	{
		name:   "missing memory",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Resources = v1.ResourceRequirements{} },
		want:   []string{"Required domain.resources.requests[memory]"},
	},
	{
		name: "only a cpu request",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}
		},
		want: []string{"Required domain.resources.requests[memory]"},
	},
	{
		name: "memory from the limit only",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources = v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi")}}
		},
		want: []string{},
	},
	{
		name: "memory from the guest only",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources = v1.ResourceRequirements{}
			s.Domain.Memory = &v1.Memory{Guest: ptr(resource.MustParse("128Mi"))}
		},
		want: []string{},
	},
	{
		name: "zero guest memory",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Memory = &v1.Memory{Guest: ptr(resource.MustParse("0"))}
		},
		want: []string{"Invalid domain.memory.guest"},
	},
	{
		name: "guest memory above the limit",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("128Mi")}
			s.Domain.Memory = &v1.Memory{Guest: ptr(resource.MustParse("256Mi"))}
		},
		want: []string{"Invalid domain.memory.guest"},
	},
	{name: "cpu topology", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.CPU = &v1.CPU{Cores: 4, Sockets: 2, Threads: 2} }, want: []string{}},
	{name: "512 vCPUs", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.CPU = &v1.CPU{Cores: 512} }, want: []string{}},
	{
		name:   "too many vCPUs",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.CPU = &v1.CPU{Cores: 16, Sockets: 8, Threads: 8} },
		want:   []string{"Invalid domain.cpu"},
	},
	{
		// 2^31 x 2^31 x 4 is 2^64, which a uint64 product wraps to 0.
		name: "vCPU product that overflows",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.CPU = &v1.CPU{Cores: 1 << 31, Sockets: 1 << 31, Threads: 4}
		},
		want: []string{"Invalid domain.cpu"},
	},
	{
		name: "firmware UUID",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Firmware = &v1.Firmware{UUID: "5D307CA9-b3ef-428c-8861-06e72d69f223"}
		},
		want: []string{},
	},
	{
		name:   "bad firmware UUID",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Firmware = &v1.Firmware{UUID: "my-vm,serial=x"} },
		want:   []string{"Invalid domain.firmware.uuid"},
	},

	// Kernel boot.
	{
		name: "kernel boot",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{
				KernelArgs: "console=ttyS0",
				Container:  &v1.KernelBootContainer{Image: "vigil-test", KernelPath: "/boot/vmlinuz", InitrdPath: "boot/initrd.img", ImagePullPolicy: "IfNotPresent"},
			}}
		},
		want: []string{},
	},
	{
		name:   "kernel boot without a container",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{}} },
		want:   []string{"Required domain.firmware.kernelBoot.container"},
	},
	{
		name: "kernel arguments without a kernel",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{KernelArgs: "console=ttyS0"}}
		},
		want: []string{"Required domain.firmware.kernelBoot.container"},
	},
	{
		name: "kernel boot without kernelPath",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{Container: &v1.KernelBootContainer{Image: "k", InitrdPath: "/initrd"}}}
		},
		want: []string{"Required domain.firmware.kernelBoot.container.kernelPath"},
	},
	{
		name: "kernel boot with bad paths",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{
				KernelArgs: "console=ttyS0\x00",
				Container:  &v1.KernelBootContainer{Image: "../k", KernelPath: "/boot/../../vmlinuz", InitrdPath: "..", ImagePullPolicy: "Sometimes"},
			}}
		},
		want: []string{
			"Invalid domain.firmware.kernelBoot.container.image",
			"Invalid domain.firmware.kernelBoot.container.initrdPath",
			"Invalid domain.firmware.kernelBoot.container.kernelPath",
			"Invalid domain.firmware.kernelBoot.kernelArgs",
			"NotSupported domain.firmware.kernelBoot.container.imagePullPolicy",
		},
	},

	// Volumes and disks.
	{
		name:   "volume without a disk",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Disks = s.Domain.Devices.Disks[:1] },
		want:   []string{"Required domain.devices.disks"},
	},
	{
		name:   "disk without a volume",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes = s.Volumes[:1] },
		want:   []string{"NotFound domain.devices.disks[1].name"},
	},
	{
		name: "duplicate volume names",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes = append(s.Volumes, v1.Volume{Name: "root", VolumeSource: v1.VolumeSource{ContainerDisk: &v1.ContainerDiskSource{Image: "other"}}})
		},
		want: []string{"Duplicate volumes[2].name"},
	},
	{
		name: "duplicate disk names",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks = append(s.Domain.Devices.Disks, v1.Disk{Name: "root"})
		},
		want: []string{"Duplicate domain.devices.disks[2].name"},
	},
	{
		name: "bad volume name",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].Name = "Root_Disk"
			s.Domain.Devices.Disks[0].Name = "Root_Disk"
		},
		want: []string{"Invalid volumes[0].name"},
	},
	{
		name:   "volume without a source",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].VolumeSource = v1.VolumeSource{} },
		want:   []string{"Invalid volumes[0]"},
	},
	{
		name: "volume with two sources",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].HostDisk = &v1.HostDisk{Path: "/d.img", Type: v1.HostDiskExists}
		},
		want: []string{"Invalid volumes[0]"},
	},
	{
		name:   "containerDisk image with ..",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].ContainerDisk.Image = "../../etc/shadow" },
		want:   []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name:   "containerDisk image with .. inside",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].ContainerDisk.Image = "images/../../etc/shadow" },
		want:   []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name: "absolute containerDisk image",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].ContainerDisk.Image = "/var/lib/images/cirros.qcow2"
		},
		want: []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name:   "containerDisk image that is the image directory",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].ContainerDisk.Image = "." },
		want:   []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name:   "containerDisk image with a comma",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].ContainerDisk.Image = "a.img,format=raw" },
		want:   []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name:   "empty containerDisk image",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[0].ContainerDisk.Image = "" },
		want:   []string{"Invalid volumes[0].containerDisk.image"},
	},
	{
		name: "containerDisk registry-style image and path",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].ContainerDisk = &v1.ContainerDiskSource{Image: "quay.io/containerdisks/fedora:41", Path: "/disk/fedora.qcow2", ImagePullPolicy: "Always"}
		},
		want: []string{},
	},
	{
		name: "containerDisk bad path and pull policy",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].ContainerDisk.Path = "/disk/../../x"
			s.Volumes[0].ContainerDisk.ImagePullPolicy = "always"
		},
		want: []string{"Invalid volumes[0].containerDisk.path", "NotSupported volumes[0].containerDisk.imagePullPolicy"},
	},
	{
		name: "hostDisk",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/var/data/disk.img", Type: v1.HostDiskExistsOrCreate, Capacity: ptr(resource.MustParse("1Gi")), Shared: ptr(true)}}
		},
		want: []string{},
	},
	{
		name: "hostDisk without a path",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Type: v1.HostDiskExists}}
		},
		want: []string{"Required volumes[0].hostDisk.path"},
	},
	{
		name: "hostDisk with a relative path",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "data/disk.img", Type: v1.HostDiskExists}}
		},
		want: []string{"Invalid volumes[0].hostDisk.path"},
	},
	{
		name: "hostDisk with an unclean path",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/var/data/../../etc/shadow", Type: v1.HostDiskExists}}
		},
		want: []string{"Invalid volumes[0].hostDisk.path"},
	},
	{
		name: "hostDisk path with a comma",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/d.img,readonly=off", Type: v1.HostDiskExists}}
		},
		want: []string{"Invalid volumes[0].hostDisk.path"},
	},
	{
		name: "hostDisk DiskOrCreate without capacity",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/d.img", Type: v1.HostDiskExistsOrCreate}}
		},
		want: []string{"Required volumes[0].hostDisk.capacity"},
	},
	{
		name: "hostDisk zero capacity and no type",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[0].VolumeSource = v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/d.img", Capacity: ptr(resource.MustParse("0"))}}
		},
		want: []string{"Invalid volumes[0].hostDisk.capacity", "NotSupported volumes[0].hostDisk.type"},
	},
	{
		name: "cloud-init base64 user and network data",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[1].CloudInitNoCloud = &v1.CloudInitNoCloudSource{
				UserDataBase64:    base64.StdEncoding.EncodeToString([]byte("#cloud-config\n")),
				NetworkDataBase64: base64.StdEncoding.EncodeToString([]byte("version: 2\n")),
			}
		},
		want: []string{},
	},
	{
		name: "cloud-init network data only",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[1].CloudInitNoCloud = &v1.CloudInitNoCloudSource{NetworkData: "version: 2\n"}
		},
		want: []string{},
	},
	{
		name:   "empty cloud-init",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Volumes[1].CloudInitNoCloud = &v1.CloudInitNoCloudSource{} },
		want:   []string{"Required volumes[1].cloudInitNoCloud.userData"},
	},
	{
		name: "cloud-init data given twice",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[1].CloudInitNoCloud = &v1.CloudInitNoCloudSource{UserData: "a", UserDataBase64: "YQ==", NetworkData: "b", NetworkDataBase64: "Yg=="}
		},
		want: []string{"Invalid volumes[1].cloudInitNoCloud.networkDataBase64", "Invalid volumes[1].cloudInitNoCloud.userDataBase64"},
	},
	{
		name: "bad base64",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[1].CloudInitNoCloud = &v1.CloudInitNoCloudSource{UserDataBase64: "not base64!", NetworkDataBase64: "YQ"}
		},
		want: []string{"Invalid volumes[1].cloudInitNoCloud.networkDataBase64", "Invalid volumes[1].cloudInitNoCloud.userDataBase64"},
	},
	{
		name: "cloud-init too large",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes[1].CloudInitNoCloud.UserData = strings.Repeat("x", 64<<10+1)
		},
		want: []string{"TooLong volumes[1].cloudInitNoCloud"},
	},
	{
		name: "two cloud-init volumes",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Volumes = append(s.Volumes, v1.Volume{Name: "ci2", VolumeSource: v1.VolumeSource{CloudInitNoCloud: &v1.CloudInitNoCloudSource{UserData: "x"}}})
			s.Domain.Devices.Disks = append(s.Domain.Devices.Disks, v1.Disk{Name: "ci2"})
		},
		want: []string{"Invalid volumes"},
	},
	{
		name: "disk and cdrom at once",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[1].CDRom = &v1.CDRomTarget{Bus: v1.DiskBusSATA}
		},
		want: []string{"Invalid domain.devices.disks[1]"},
	},
	{
		name: "cdrom, scsi and default bus",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[0].Disk = &v1.DiskTarget{Bus: v1.DiskBusSCSI}
			s.Domain.Devices.Disks[1] = v1.Disk{Name: "cloudinit", DiskDevice: v1.DiskDevice{CDRom: &v1.CDRomTarget{ReadOnly: ptr(true)}}}
		},
		want: []string{},
	},
	{
		name: "unsupported buses",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[0].Disk.Bus = "usb"
			s.Domain.Devices.Disks[1] = v1.Disk{Name: "cloudinit", DiskDevice: v1.DiskDevice{CDRom: &v1.CDRomTarget{Bus: "ide"}}}
		},
		want: []string{"NotSupported domain.devices.disks[0].disk.bus", "NotSupported domain.devices.disks[1].cdrom.bus"},
	},
	{
		name: "boot order",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[0].BootOrder = ptr(uint(2))
			s.Domain.Devices.Disks[1].BootOrder = ptr(uint(1))
		},
		want: []string{},
	},
	{
		name: "bad boot orders",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[0].BootOrder = ptr(uint(0))
			s.Domain.Devices.Disks[1].BootOrder = ptr(uint(0))
		},
		want: []string{"Invalid domain.devices.disks[0].bootOrder", "Invalid domain.devices.disks[1].bootOrder"},
	},
	{
		name: "duplicate boot order",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Disks[0].BootOrder = ptr(uint(1))
			s.Domain.Devices.Disks[1].BootOrder = ptr(uint(1))
		},
		want: []string{"Duplicate domain.devices.disks[1].bootOrder"},
	},
	{name: "serial", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Disks[0].Serial = "os-disk_1.0+a" }, want: []string{}},
	{
		name:   "serial with a comma",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Disks[0].Serial = "abc,drive=x" },
		want:   []string{"Invalid domain.devices.disks[0].serial"},
	},
	{
		name:   "serial too long",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Disks[0].Serial = strings.Repeat("a", 37) },
		want:   []string{"Invalid domain.devices.disks[0].serial"},
	},

	// Networks and interfaces.
	{
		name: "no network at all",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Networks, s.Domain.Devices.Interfaces = nil, nil
		},
		want: []string{},
	},
	{
		name: "two networks and two interfaces",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Networks = append(s.Networks, v1.Network{Name: "second", NetworkSource: v1.NetworkSource{Pod: &v1.PodNetwork{}}})
			s.Domain.Devices.Interfaces = append(s.Domain.Devices.Interfaces, v1.Interface{Name: "second", InterfaceBindingMethod: v1.InterfaceBindingMethod{Masquerade: &v1.InterfaceMasquerade{}}})
		},
		want: []string{"TooMany domain.devices.interfaces", "TooMany networks"},
	},
	{
		name:   "network without pod",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks[0].Pod = nil },
		want:   []string{"Required networks[0].pod"},
	},
	{
		name: "bad network name",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Networks[0].Name = "Default"
			s.Domain.Devices.Interfaces[0].Name = "Default"
		},
		want: []string{"Invalid networks[0].name"},
	},
	{name: "vm network CIDR", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks[0].Pod.VMNetworkCIDR = "10.11.12.0/24" }, want: []string{}},
	{
		name:   "bad vm network CIDR",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks[0].Pod.VMNetworkCIDR = "10.11.12.0" },
		want:   []string{"Invalid networks[0].pod.vmNetworkCIDR"},
	},
	{
		name:   "IPv6 vm network CIDR",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks[0].Pod.VMNetworkCIDR = "fd10::/64" },
		want:   []string{"Invalid networks[0].pod.vmNetworkCIDR"},
	},
	{
		name:   "vm network CIDR too small",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks[0].Pod.VMNetworkCIDR = "10.0.0.0/31" },
		want:   []string{"Invalid networks[0].pod.vmNetworkCIDR"},
	},
	{
		name:   "network without an interface",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Interfaces = nil },
		want:   []string{"Required domain.devices.interfaces"},
	},
	{
		name:   "interface without a network",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Networks = nil },
		want:   []string{"NotFound domain.devices.interfaces[0].name"},
	},
	{
		name:   "non-masquerade interface",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Interfaces[0].Masquerade = nil },
		want:   []string{"Required domain.devices.interfaces[0].masquerade"},
	},
	{name: "e1000 model", mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Interfaces[0].Model = "e1000" }, want: []string{}},
	{
		name:   "unsupported model",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Interfaces[0].Model = "rtl8139" },
		want:   []string{"NotSupported domain.devices.interfaces[0].model"},
	},
	{name: "MAC address", mutate: func(s *v1.VirtualMachineInstanceSpec) {
		s.Domain.Devices.Interfaces[0].MacAddress = "02:00:00:0A:0B:0C"
	}, want: []string{}},
	{
		name:   "bad MAC address",
		mutate: func(s *v1.VirtualMachineInstanceSpec) { s.Domain.Devices.Interfaces[0].MacAddress = "02:00:00:0a:0b" },
		want:   []string{"Invalid domain.devices.interfaces[0].macAddress"},
	},
	{
		name: "64-bit MAC address",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Interfaces[0].MacAddress = "02:00:00:00:00:00:00:01"
		},
		want: []string{"Invalid domain.devices.interfaces[0].macAddress"},
	},
	{
		name: "multicast MAC address",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Interfaces[0].MacAddress = "01:00:5e:00:00:01"
		},
		want: []string{"Invalid domain.devices.interfaces[0].macAddress"},
	},
	{
		name: "ports",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Interfaces[0].Ports = []v1.Port{
				{Port: 22}, {Name: "http", Port: 80, Protocol: "TCP"}, {Name: "dns", Port: 53, Protocol: "udp"}, {Port: 53, Protocol: "TCP"}, {Port: 65535},
			}
		},
		want: []string{},
	},
	{
		name: "bad ports",
		mutate: func(s *v1.VirtualMachineInstanceSpec) {
			s.Domain.Devices.Interfaces[0].Ports = []v1.Port{
				{Port: 0},
				{Port: 65536},
				{Port: 80, Protocol: "SCTP"},
				{Port: 443, Name: "Web_Secure"},
				{Port: 8080},
				{Port: 8080, Protocol: "tcp"},
			}
		},
		want: []string{
			"Duplicate domain.devices.interfaces[0].ports[5]",
			"Invalid domain.devices.interfaces[0].ports[0].port",
			"Invalid domain.devices.interfaces[0].ports[1].port",
			"Invalid domain.devices.interfaces[0].ports[3].name",
			"NotSupported domain.devices.interfaces[0].ports[2].protocol",
		},
	},
}

func TestValidateVirtualMachineInstanceSpec(t *testing.T) {
	for _, tc := range specCases {
		t.Run(tc.name, func(t *testing.T) {
			vm := validVM()
			tc.mutate(&vm.Spec.Template.Spec)
			errs, _ := v1.ValidateVirtualMachine(vm)
			const vmPrefix = "spec.template.spec."
			for _, fe := range errs {
				if !strings.HasPrefix(fe.Field, vmPrefix) {
					t.Errorf("VM: error outside the template spec: %v", fe)
				}
			}
			if diff := cmp.Diff(sorted(tc.want), summary(errs, vmPrefix)); diff != "" {
				t.Errorf("VM template: errors (-want +got):\n%s\nall: %v", diff, errs)
			}

			vmi := validVMI()
			tc.mutate(&vmi.Spec)
			errs = v1.ValidateVirtualMachineInstance(vmi)
			if diff := cmp.Diff(sorted(tc.want), summary(errs, "spec.")); diff != "" {
				t.Errorf("VMI: errors (-want +got):\n%s\nall: %v", diff, errs)
			}
		})
	}
}

func TestValidateVirtualMachineInstanceStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status v1.VirtualMachineInstanceStatus
		want   []string
	}{
		{
			name: "valid",
			status: v1.VirtualMachineInstanceStatus{
				Phase: v1.Running, NodeName: "node-a",
				Conditions: []v1.VirtualMachineInstanceCondition{
					{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue},
					{Type: v1.VirtualMachineInstancePaused, Status: metav1.ConditionFalse},
				},
				ActionRequests: []v1.VirtualMachineInstanceActionRequest{{Action: v1.VMIActionPause, ID: "1"}, {Action: v1.VMIActionSoftReboot, ID: "2"}},
			},
			want: []string{},
		},
		{name: "every phase", status: v1.VirtualMachineInstanceStatus{Phase: v1.Unknown}, want: []string{}},
		{name: "bad phase", status: v1.VirtualMachineInstanceStatus{Phase: "Migrating"}, want: []string{"NotSupported status.phase"}},
		{
			name: "conditions",
			status: v1.VirtualMachineInstanceStatus{Conditions: []v1.VirtualMachineInstanceCondition{
				{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionTrue},
				{Type: v1.VirtualMachineInstanceReady, Status: metav1.ConditionFalse},
				{Status: metav1.ConditionTrue},
				{Type: v1.VirtualMachineInstanceSynchronized, Status: "false"},
			}},
			want: []string{"Duplicate status.conditions[1].type", "NotSupported status.conditions[3].status", "Required status.conditions[2].type"},
		},
		{
			name: "action requests",
			status: v1.VirtualMachineInstanceStatus{ActionRequests: []v1.VirtualMachineInstanceActionRequest{
				{Action: v1.VMIActionUnpause},
				{Action: "Reset", ID: "2"},
			}},
			want: []string{"NotSupported status.actionRequests[1].action", "Required status.actionRequests[0].id"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vmi := validVMI()
			vmi.Status = tc.status
			errs := v1.ValidateVirtualMachineInstance(vmi)
			if diff := cmp.Diff(sorted(tc.want), summary(errs, "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nall: %v", diff, errs)
			}
			if diff := cmp.Diff(sorted(tc.want), summary(v1.ValidateVirtualMachineInstanceStatus(&vmi.Status, field.NewPath("status")), "")); diff != "" {
				t.Errorf("ValidateVirtualMachineInstanceStatus: errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateVirtualMachineInstanceUpdate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(vmi *v1.VirtualMachineInstance)
		want   []string
	}{
		{name: "no change", mutate: func(*v1.VirtualMachineInstance) {}, want: []string{}},
		{
			name:   "shorter grace period",
			mutate: func(vmi *v1.VirtualMachineInstance) { vmi.Spec.TerminationGracePeriodSeconds = ptr(int64(1)) },
			want:   []string{},
		},
		{
			name: "labels, annotations and status",
			mutate: func(vmi *v1.VirtualMachineInstance) {
				vmi.Labels = map[string]string{"a": "b"}
				vmi.Annotations = map[string]string{"sim.vigil.dev/action": "shutdown"}
				vmi.Status.Phase = v1.Running
			},
			want: []string{},
		},
		{
			name:   "spec change",
			mutate: func(vmi *v1.VirtualMachineInstance) { vmi.Spec.Domain.CPU = &v1.CPU{Cores: 2} },
			want:   []string{"Forbidden spec"},
		},
		{
			name: "spec change with a grace period change",
			mutate: func(vmi *v1.VirtualMachineInstance) {
				vmi.Spec.TerminationGracePeriodSeconds = ptr(int64(0))
				vmi.Spec.Volumes[0].ContainerDisk.Image = "other.qcow2"
			},
			want: []string{"Forbidden spec"},
		},
		{
			name:   "negative grace period",
			mutate: func(vmi *v1.VirtualMachineInstance) { vmi.Spec.TerminationGracePeriodSeconds = ptr(int64(-5)) },
			want:   []string{"Invalid spec.terminationGracePeriodSeconds"},
		},
		{
			name:   "invalid status",
			mutate: func(vmi *v1.VirtualMachineInstance) { vmi.Status.Phase = "Exploded" },
			want:   []string{"NotSupported status.phase"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := validVMI()
			old.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
			updated := old.DeepCopy()
			tc.mutate(updated)
			errs := v1.ValidateVirtualMachineInstanceUpdate(updated, old)
			if diff := cmp.Diff(sorted(tc.want), summary(errs, "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nall: %v", diff, errs)
			}
		})
	}
}

func TestValidateNode(t *testing.T) {
	valid := func() *v1.Node {
		return &v1.Node{
			TypeMeta:   v1.TypeMetaFor(v1.KindNode),
			ObjectMeta: metav1.ObjectMeta{Name: "node-a.example.com", Labels: map[string]string{v1.LabelRuntime: "sim"}},
			Status: v1.NodeStatus{
				Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi")},
				Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("0"), v1.ResourceMemory: resource.MustParse("7Gi")},
				Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: metav1.ConditionUnknown}},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(n *v1.Node)
		want   []string
	}{
		{name: "valid", mutate: func(*v1.Node) {}, want: []string{}},
		{name: "long name", mutate: func(n *v1.Node) { n.Name = strings.Repeat("n", 100) }, want: []string{}},
		{name: "no name", mutate: func(n *v1.Node) { n.Name = "" }, want: []string{"Required metadata.name"}},
		{name: "bad name", mutate: func(n *v1.Node) { n.Name = "Node_A" }, want: []string{"Invalid metadata.name"}},
		{name: "namespace", mutate: func(n *v1.Node) { n.Namespace = "default" }, want: []string{"Forbidden metadata.namespace"}},
		{
			name:   "negative capacity",
			mutate: func(n *v1.Node) { n.Status.Capacity[v1.ResourceCPU] = resource.MustParse("-1") },
			want:   []string{"Invalid status.capacity[cpu]"},
		},
		{
			name:   "negative allocatable",
			mutate: func(n *v1.Node) { n.Status.Allocatable[v1.ResourceMemory] = resource.MustParse("-1Gi") },
			want:   []string{"Invalid status.allocatable[memory]"},
		},
		{
			name: "conditions",
			mutate: func(n *v1.Node) {
				n.Status.Conditions = append(n.Status.Conditions, v1.NodeCondition{Type: v1.NodeReady, Status: "Lost"})
			},
			want: []string{"Duplicate status.conditions[1].type", "NotSupported status.conditions[1].status"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := valid()
			tc.mutate(n)
			if diff := cmp.Diff(sorted(tc.want), summary(v1.ValidateNode(n), "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateLease(t *testing.T) {
	valid := func() *v1.Lease {
		return &v1.Lease{
			TypeMeta:   v1.TypeMetaFor(v1.KindLease),
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", Namespace: v1.NodeLeaseNamespace},
			Spec:       v1.LeaseSpec{HolderIdentity: ptr("node-a"), LeaseDurationSeconds: ptr(int32(8))},
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(l *v1.Lease)
		want   []string
	}{
		{name: "valid", mutate: func(*v1.Lease) {}, want: []string{}},
		{name: "no duration", mutate: func(l *v1.Lease) { l.Spec.LeaseDurationSeconds = nil }, want: []string{}},
		{name: "zero duration", mutate: func(l *v1.Lease) { l.Spec.LeaseDurationSeconds = ptr(int32(0)) }, want: []string{"Invalid spec.leaseDurationSeconds"}},
		{name: "negative duration", mutate: func(l *v1.Lease) { l.Spec.LeaseDurationSeconds = ptr(int32(-8)) }, want: []string{"Invalid spec.leaseDurationSeconds"}},
		{name: "no name", mutate: func(l *v1.Lease) { l.Name = "" }, want: []string{"Required metadata.name"}},
		{name: "bad namespace", mutate: func(l *v1.Lease) { l.Namespace = "Vigil" }, want: []string{"Invalid metadata.namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := valid()
			tc.mutate(l)
			if diff := cmp.Diff(sorted(tc.want), summary(v1.ValidateLease(l), "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateEvent(t *testing.T) {
	valid := func() *v1.Event {
		return &v1.Event{
			TypeMeta:       v1.TypeMetaFor(v1.KindEvent),
			ObjectMeta:     metav1.ObjectMeta{Name: "web.17c5a9f1", Namespace: "default"},
			InvolvedObject: v1.ObjectReference{Kind: v1.KindVirtualMachine, Namespace: "default", Name: "web"},
			Reason:         "SuccessfulCreate",
			Type:           v1.EventTypeNormal,
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(e *v1.Event)
		want   []string
	}{
		{name: "valid", mutate: func(*v1.Event) {}, want: []string{}},
		{name: "warning", mutate: func(e *v1.Event) { e.Type = v1.EventTypeWarning }, want: []string{}},
		{name: "no type", mutate: func(e *v1.Event) { e.Type = "" }, want: []string{}},
		{name: "bad type", mutate: func(e *v1.Event) { e.Type = "Error" }, want: []string{"NotSupported type"}},
		{name: "no object", mutate: func(e *v1.Event) { e.InvolvedObject = v1.ObjectReference{} }, want: []string{"Required involvedObject.name"}},
		{name: "no reason", mutate: func(e *v1.Event) { e.Reason = "" }, want: []string{"Required reason"}},
		{name: "bad name", mutate: func(e *v1.Event) { e.Name = "web event" }, want: []string{"Invalid metadata.name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := valid()
			tc.mutate(e)
			if diff := cmp.Diff(sorted(tc.want), summary(v1.ValidateEvent(e), "")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidManifestsValidate: every manifest in testdata/valid passes
// validation, with the deprecation warning only where spec.running is used.
func TestValidManifestsValidate(t *testing.T) {
	for _, path := range manifests(t, "valid") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			obj, _, err := decodeFile(t, path)
			if err != nil {
				t.Fatal(err)
			}
			switch obj := obj.(type) {
			case *v1.VirtualMachine:
				errs, warnings := v1.ValidateVirtualMachine(obj)
				if len(errs) != 0 {
					t.Errorf("errors: %v", errs)
				}
				var want []string
				if obj.Spec.Running != nil {
					want = []string{v1.WarningRunningDeprecated}
				}
				if diff := cmp.Diff(want, warnings); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
			case *v1.VirtualMachineInstance:
				if errs := v1.ValidateVirtualMachineInstance(obj); len(errs) != 0 {
					t.Errorf("errors: %v", errs)
				}
			default:
				t.Fatalf("no validation for %T", obj)
			}
		})
	}
}
