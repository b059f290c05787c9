// Package vmstate converts between the API objects of api/v1 and the
// runstrategy core's model, and applies the core's decisions back onto API
// objects. It is the only bridge between the two, so that the core's import
// graph never reaches the API machinery.
package vmstate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/runstrategy"
)

// VM returns the core's view of vm.
func VM(vm *v1.VirtualMachine) runstrategy.VM {
	out := runstrategy.VM{
		UID:          string(vm.UID),
		Generation:   vm.Generation,
		Deleting:     vm.DeletionTimestamp != nil,
		HasFinalizer: slices.Contains(vm.Finalizers, v1.VirtualMachineControllerFinalizer),
		Status:       status(&vm.Status),
	}
	if vm.Spec.Running != nil {
		r := *vm.Spec.Running
		out.Running = &r
	}
	if vm.Spec.RunStrategy != nil {
		s := runstrategy.Strategy(*vm.Spec.RunStrategy)
		out.RunStrategy = &s
	}
	return out
}

func status(s *v1.VirtualMachineStatus) runstrategy.Status {
	out := runstrategy.Status{
		Created:            s.Created,
		Ready:              s.Ready,
		PrintableStatus:    string(s.PrintableStatus),
		RunStrategy:        runstrategy.Strategy(s.RunStrategy),
		OnceStarted:        s.OnceStarted,
		ObservedGeneration: s.ObservedGeneration,
		DesiredGeneration:  s.DesiredGeneration,
	}
	for _, c := range s.Conditions {
		out.Conditions = append(out.Conditions, runstrategy.Condition{
			Type: string(c.Type), Status: runstrategy.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message,
			LastProbeTime: c.LastProbeTime.Time, LastTransitionTime: c.LastTransitionTime.Time,
		})
	}
	for _, r := range s.StateChangeRequests {
		out.Requests = append(out.Requests, request(r))
	}
	if sf := s.StartFailure; sf != nil {
		out.StartFailure = &runstrategy.StartFailure{Count: sf.ConsecutiveFailCount, LastFailedUID: string(sf.LastFailedVMIUID)}
		if sf.RetryAfterTimestamp != nil {
			out.StartFailure.RetryAfter = sf.RetryAfterTimestamp.Time
		}
	}
	return out
}

func request(r v1.VirtualMachineStateChangeRequest) runstrategy.Request {
	out := runstrategy.Request{Action: runstrategy.RequestAction(r.Action)}
	if r.UID != nil {
		out.UID = string(*r.UID)
	}
	if r.Data != nil {
		out.Data = make(map[string]string, len(r.Data))
		for k, v := range r.Data {
			out.Data[k] = v
		}
	}
	return out
}

// Instance returns the core's view of vmi, judged against the VM that owns
// it (for TemplateCurrent), or nil when vmi is nil.
func Instance(vmi *v1.VirtualMachineInstance, vm *v1.VirtualMachine) *runstrategy.Instance {
	if vmi == nil {
		return nil
	}
	out := &runstrategy.Instance{
		UID:          string(vmi.UID),
		Phase:        runstrategy.Phase(vmi.Status.Phase),
		Deleting:     vmi.DeletionTimestamp != nil,
		HasFinalizer: slices.Contains(vmi.Finalizers, v1.VirtualMachineControllerFinalizer),
		EverRunning:  EverRunning(vmi),
		ACPIDisabled: acpiDisabled(&vmi.Spec),
	}
	if g := vmi.Spec.TerminationGracePeriodSeconds; g != nil {
		gp := *g
		out.GracePeriod = &gp
	}
	for _, c := range vmi.Status.Conditions {
		out.Conditions = append(out.Conditions, runstrategy.Condition{
			Type: string(c.Type), Status: runstrategy.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message,
			LastProbeTime: c.LastProbeTime.Time, LastTransitionTime: c.LastTransitionTime.Time,
		})
	}
	for _, a := range vmi.Status.ActionRequests {
		out.PendingActions = append(out.PendingActions, runstrategy.InstanceAction(a.Action))
	}
	if vm != nil && vm.Spec.Template != nil {
		out.TemplateCurrent = vmi.Annotations[v1.TemplateHashAnnotation] == TemplateHash(vm.Spec.Template)
	} else {
		out.TemplateCurrent = true
	}
	if g, ok := vmi.Annotations[v1.VMGenerationAnnotation]; ok {
		var n int64
		if err := json.Unmarshal([]byte(g), &n); err == nil {
			out.Generation = n
		}
	}
	return out
}

// EverRunning reports whether vmi has been Running at some point.
func EverRunning(vmi *v1.VirtualMachineInstance) bool {
	if vmi.Status.Phase == v1.Running {
		return true
	}
	for _, t := range vmi.Status.PhaseTransitionTimestamps {
		if t.Phase == v1.Running {
			return true
		}
	}
	return false
}

func acpiDisabled(s *v1.VirtualMachineInstanceSpec) bool {
	f := s.Domain.Features
	return f != nil && f.ACPI.Enabled != nil && !*f.ACPI.Enabled
}

// TemplateHash is a stable digest of a VM template; a VMI records the hash
// of the template it was created from.
func TemplateHash(t *v1.VirtualMachineInstanceTemplateSpec) string {
	b, err := json.Marshal(struct {
		Labels      map[string]string             `json:"labels,omitempty"`
		Annotations map[string]string             `json:"annotations,omitempty"`
		Spec        v1.VirtualMachineInstanceSpec `json:"spec"`
	}{t.ObjectMeta.Labels, t.ObjectMeta.Annotations, t.Spec})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ApplyStatus writes the core's status into vm.Status. Times are stored with
// the one-second precision of their JSON form, so that a status read back
// compares equal to the one written.
func ApplyStatus(vm *v1.VirtualMachine, st runstrategy.Status) {
	s := &vm.Status
	s.Created = st.Created
	s.Ready = st.Ready
	s.PrintableStatus = v1.VirtualMachinePrintableStatus(st.PrintableStatus)
	s.RunStrategy = v1.RunStrategy(st.RunStrategy)
	s.OnceStarted = st.OnceStarted
	s.ObservedGeneration = st.ObservedGeneration
	s.DesiredGeneration = st.DesiredGeneration
	s.Conditions = nil
	for _, c := range st.Conditions {
		s.Conditions = append(s.Conditions, v1.VirtualMachineCondition{
			Type: v1.VirtualMachineConditionType(c.Type), Status: metav1.ConditionStatus(c.Status),
			Reason: c.Reason, Message: c.Message,
			LastProbeTime: wireTime(c.LastProbeTime), LastTransitionTime: wireTime(c.LastTransitionTime),
		})
	}
	s.StateChangeRequests = Requests(st.Requests)
	s.StartFailure = nil
	if sf := st.StartFailure; sf != nil {
		s.StartFailure = &v1.VirtualMachineStartFailure{ConsecutiveFailCount: sf.Count, LastFailedVMIUID: types.UID(sf.LastFailedUID)}
		if !sf.RetryAfter.IsZero() {
			t := wireTime(sf.RetryAfter)
			s.StartFailure.RetryAfterTimestamp = &t
		}
	}
}

// Requests converts core requests to API requests.
func Requests(q []runstrategy.Request) []v1.VirtualMachineStateChangeRequest {
	if len(q) == 0 {
		return nil
	}
	out := make([]v1.VirtualMachineStateChangeRequest, len(q))
	for i, r := range q {
		out[i].Action = v1.StateChangeRequestAction(r.Action)
		if r.UID != "" {
			uid := types.UID(r.UID)
			out[i].UID = &uid
		}
		if r.Data != nil {
			out[i].Data = make(map[string]string, len(r.Data))
			for k, v := range r.Data {
				out[i].Data[k] = v
			}
		}
	}
	return out
}

// wireTime is t as it reads back from its JSON form: whole seconds, in the
// local time zone (metav1.Time decodes to local time), without a monotonic
// clock reading. A status written with it is then not merely equal but
// deeply equal to the same status read back, so a controller that compares
// the two never rewrites an unchanged status.
func wireTime(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(t.Unix(), 0))
}

// ApplyChange writes an accepted lifecycle change's VM part into vm: the
// desired strategy (spec) and the request queue and crash-loop record
// (status). The VMI part (grace period, action) is written by the caller.
func ApplyChange(vm *v1.VirtualMachine, c runstrategy.Change) {
	if w := c.Strategy; w != nil {
		if w.UseRunning {
			running := w.Strategy == runstrategy.Always
			vm.Spec.Running = &running
		} else {
			rs := v1.RunStrategy(w.Strategy)
			vm.Spec.RunStrategy = &rs
		}
	}
	if c.SetRequests {
		vm.Status.StateChangeRequests = Requests(c.Requests)
	}
	if c.ClearStartFailure {
		vm.Status.StartFailure = nil
	}
}

// NewInstance builds the VMI of one run of vm (section 1.8): named after the
// VM, owned by it, carrying the template's labels and annotations, the
// controller finalizer, the template hash and the VM generation, and a
// firmware UUID derived from the VM's name unless the template pins one.
func NewInstance(vm *v1.VirtualMachine, paused bool) *v1.VirtualMachineInstance {
	tpl := vm.Spec.Template
	vmi := &v1.VirtualMachineInstance{
		TypeMeta: v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{
			Name:        vm.Name,
			Namespace:   vm.Namespace,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
			Finalizers:  []string{v1.VirtualMachineControllerFinalizer},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.KubeVirtAPIVersion, Kind: v1.KindVirtualMachine, Name: vm.Name, UID: vm.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		Spec: *tpl.Spec.DeepCopy(),
	}
	for k, v := range tpl.ObjectMeta.Labels {
		vmi.Labels[k] = v
	}
	for k, v := range tpl.ObjectMeta.Annotations {
		vmi.Annotations[k] = v
	}
	vmi.Labels[v1.CreatedByLabel] = string(vm.UID)
	vmi.Annotations[v1.TemplateHashAnnotation] = TemplateHash(tpl)
	gen, _ := json.Marshal(vm.Generation)
	vmi.Annotations[v1.VMGenerationAnnotation] = string(gen)
	if vmi.Spec.Domain.Firmware == nil {
		vmi.Spec.Domain.Firmware = &v1.Firmware{}
	}
	if vmi.Spec.Domain.Firmware.UUID == "" {
		vmi.Spec.Domain.Firmware.UUID = FirmwareUUID(vm.Namespace, vm.Name)
	}
	if paused {
		p := v1.StartStrategyPaused
		vmi.Spec.StartStrategy = &p
	}
	return vmi
}

// FirmwareUUID derives a stable firmware UUID from a VM's namespace and name
// (a name-based, version 5 style UUID), so a VM keeps its UUID across runs.
func FirmwareUUID(namespace, name string) types.UID {
	sum := sha256.Sum256([]byte("vigil.dev/firmware/" + namespace + "/" + name))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return types.UID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

func ptr[T any](v T) *T { return &v }
