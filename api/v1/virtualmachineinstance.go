package v1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineInstance is one run of a virtual machine, bound to one node.
type VirtualMachineInstance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VirtualMachineInstanceSpec   `json:"spec"`
	Status            VirtualMachineInstanceStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineInstanceList is a list of VirtualMachineInstances.
type VirtualMachineInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualMachineInstance `json:"items"`
}

// StartStrategy says how a VMI starts; "Paused" creates it with vCPUs stopped.
type StartStrategy string

// StartStrategyPaused starts the guest paused.
const StartStrategyPaused StartStrategy = "Paused"

// VirtualMachineInstanceSpec is the desired state of one run.
type VirtualMachineInstanceSpec struct {
	Domain DomainSpec `json:"domain"`
	// NodeSelector restricts scheduling to nodes carrying all these labels.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// StartStrategy "Paused" starts the guest paused.
	StartStrategy *StartStrategy `json:"startStrategy,omitempty"`
	// TerminationGracePeriodSeconds is the time the guest gets to power off
	// after an ACPI request before it is killed (default 30).
	TerminationGracePeriodSeconds *int64    `json:"terminationGracePeriodSeconds,omitempty"`
	Volumes                       []Volume  `json:"volumes,omitempty"`
	Networks                      []Network `json:"networks,omitempty"`
	// Hostname is the guest's host name (given to cloud-init); default the VMI name.
	Hostname string `json:"hostname,omitempty"`
}

// DomainSpec describes the virtual hardware.
type DomainSpec struct {
	Resources ResourceRequirements `json:"resources,omitempty"`
	CPU       *CPU                 `json:"cpu,omitempty"`
	Memory    *Memory              `json:"memory,omitempty"`
	Machine   *Machine             `json:"machine,omitempty"`
	Firmware  *Firmware            `json:"firmware,omitempty"`
	Features  *Features            `json:"features,omitempty"`
	Devices   Devices              `json:"devices"`
}

// ResourceName is "cpu" or "memory".
type ResourceName string

// Resource names.
const (
	ResourceCPU    ResourceName = "cpu"
	ResourceMemory ResourceName = "memory"
)

// ResourceList maps resource names to quantities.
type ResourceList map[ResourceName]resource.Quantity

// ResourceRequirements are the requests the scheduler reserves and the limits.
type ResourceRequirements struct {
	Requests ResourceList `json:"requests,omitempty"`
	Limits   ResourceList `json:"limits,omitempty"`
}

// CPU is the guest CPU topology.
type CPU struct {
	Cores   uint32 `json:"cores,omitempty"`
	Sockets uint32 `json:"sockets,omitempty"`
	Threads uint32 `json:"threads,omitempty"`
}

// Memory is the guest memory.
type Memory struct {
	// Guest is the memory the guest sees; default the memory request.
	Guest *resource.Quantity `json:"guest,omitempty"`
}

// Machine is the emulated machine type, "q35" (default) or "pc".
type Machine struct {
	Type string `json:"type"`
}

// Firmware holds the firmware UUID and direct kernel boot.
type Firmware struct {
	// UUID is the firmware (SMBIOS) UUID; derived from the VM name when unset.
	UUID       types.UID   `json:"uuid,omitempty"`
	KernelBoot *KernelBoot `json:"kernelBoot,omitempty"`
}

// KernelBoot boots a kernel and initrd directly.
type KernelBoot struct {
	KernelArgs string               `json:"kernelArgs,omitempty"`
	Container  *KernelBootContainer `json:"container,omitempty"`
}

// KernelBootContainer names the kernel and initrd. In Vigil, Image names a
// directory of the node's image directory and the paths are inside it.
type KernelBootContainer struct {
	Image           string `json:"image"`
	KernelPath      string `json:"kernelPath,omitempty"`
	InitrdPath      string `json:"initrdPath,omitempty"`
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"`
}

// Features toggles hypervisor features.
type Features struct {
	ACPI FeatureState `json:"acpi,omitempty"`
}

// FeatureState enables or disables a feature; unset means enabled.
type FeatureState struct {
	Enabled *bool `json:"enabled,omitempty"`
}

// Devices lists disks and network interfaces.
type Devices struct {
	Disks      []Disk      `json:"disks,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	// AutoattachSerialConsole adds the serial console (default true).
	AutoattachSerialConsole *bool `json:"autoattachSerialConsole,omitempty"`
	// Rng adds a virtio random number generator.
	Rng *Rng `json:"rng,omitempty"`
}

// Rng is a virtio RNG device.
type Rng struct{}

// Disk attaches a volume of the same name.
type Disk struct {
	Name       string `json:"name"`
	DiskDevice `json:",inline"`
	BootOrder  *uint  `json:"bootOrder,omitempty"`
	Serial     string `json:"serial,omitempty"`
}

// DiskDevice is the device a disk appears as; at most one is set.
type DiskDevice struct {
	Disk  *DiskTarget  `json:"disk,omitempty"`
	CDRom *CDRomTarget `json:"cdrom,omitempty"`
}

// DiskBus is the bus of a disk.
type DiskBus string

// Disk buses Vigil supports.
const (
	DiskBusVirtio DiskBus = "virtio"
	DiskBusSATA   DiskBus = "sata"
	DiskBusSCSI   DiskBus = "scsi"
)

// DiskTarget is a hard disk.
type DiskTarget struct {
	Bus      DiskBus `json:"bus,omitempty"`
	ReadOnly bool    `json:"readonly,omitempty"`
}

// CDRomTarget is a CD-ROM drive.
type CDRomTarget struct {
	Bus      DiskBus `json:"bus,omitempty"`
	ReadOnly *bool   `json:"readonly,omitempty"`
}

// Volume is a source of disk content, attached by a Disk of the same name.
type Volume struct {
	Name         string `json:"name"`
	VolumeSource `json:",inline"`
}

// VolumeSource says where a volume comes from; exactly one is set.
type VolumeSource struct {
	ContainerDisk    *ContainerDiskSource    `json:"containerDisk,omitempty"`
	HostDisk         *HostDisk               `json:"hostDisk,omitempty"`
	CloudInitNoCloud *CloudInitNoCloudSource `json:"cloudInitNoCloud,omitempty"`
}

// ContainerDiskSource names a base image in the node's image directory; the
// VMI writes to a copy-on-write overlay that is discarded with it.
type ContainerDiskSource struct {
	Image           string `json:"image"`
	Path            string `json:"path,omitempty"`
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"`
}

// HostDiskType is Disk or DiskOrCreate.
type HostDiskType string

// Host disk types.
const (
	HostDiskExists         HostDiskType = "Disk"
	HostDiskExistsOrCreate HostDiskType = "DiskOrCreate"
)

// HostDisk is a persistent disk image file on the node (or shared storage).
type HostDisk struct {
	Path     string             `json:"path"`
	Type     HostDiskType       `json:"type"`
	Capacity *resource.Quantity `json:"capacity,omitempty"`
	Shared   *bool              `json:"shared,omitempty"`
}

// CloudInitNoCloudSource is cloud-init user and network data given to the
// guest on a NoCloud seed disk (label "cidata").
type CloudInitNoCloudSource struct {
	UserData          string `json:"userData,omitempty"`
	UserDataBase64    string `json:"userDataBase64,omitempty"`
	NetworkData       string `json:"networkData,omitempty"`
	NetworkDataBase64 string `json:"networkDataBase64,omitempty"`
}

// Interface is a guest network interface.
type Interface struct {
	Name string `json:"name"`
	// Model is the device model, "virtio" (default) or "e1000".
	Model                  string `json:"model,omitempty"`
	InterfaceBindingMethod `json:",inline"`
	Ports                  []Port `json:"ports,omitempty"`
	MacAddress             string `json:"macAddress,omitempty"`
}

// InterfaceBindingMethod says how the interface connects; Vigil supports masquerade.
type InterfaceBindingMethod struct {
	Masquerade *InterfaceMasquerade `json:"masquerade,omitempty"`
}

// InterfaceMasquerade is NAT to the node's network.
type InterfaceMasquerade struct{}

// Port is a guest port forwarded from a node port.
type Port struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int32  `json:"port"`
}

// Network is a network an interface attaches to.
type Network struct {
	Name          string `json:"name"`
	NetworkSource `json:",inline"`
}

// NetworkSource says which network; Vigil supports the default ("pod") network.
type NetworkSource struct {
	Pod *PodNetwork `json:"pod,omitempty"`
}

// PodNetwork is the node's default network.
type PodNetwork struct {
	VMNetworkCIDR string `json:"vmNetworkCIDR,omitempty"`
}

// VirtualMachineInstancePhase is the phase of a VMI.
type VirtualMachineInstancePhase string

// VMI phases (spec/lifecycle.md section 1.6).
const (
	VmPhaseUnset VirtualMachineInstancePhase = ""
	Pending      VirtualMachineInstancePhase = "Pending"
	Scheduling   VirtualMachineInstancePhase = "Scheduling"
	Scheduled    VirtualMachineInstancePhase = "Scheduled"
	Running      VirtualMachineInstancePhase = "Running"
	Succeeded    VirtualMachineInstancePhase = "Succeeded"
	Failed       VirtualMachineInstancePhase = "Failed"
	Unknown      VirtualMachineInstancePhase = "Unknown"
)

// IsFinal reports whether p is Succeeded or Failed.
func (p VirtualMachineInstancePhase) IsFinal() bool { return p == Succeeded || p == Failed }

// Reasons a VMI ended or waits, in status.reason.
const (
	ReasonGuestShutdown      = "GuestShutdown"      // Succeeded: the guest powered off
	ReasonStopped            = "Stopped"            // Succeeded: graceful or forced stop completed
	ReasonCrashed            = "Crashed"            // Failed: the hypervisor died
	ReasonGuestPanicked      = "GuestPanicked"      // Failed: guest panic device fired
	ReasonStartFailed        = "StartFailed"        // Failed: never reached Running
	ReasonGracePeriodExpired = "GracePeriodExpired" // Failed: killed after the grace period
	ReasonVanished           = "Vanished"           // Failed: the agent found the guest gone
	ReasonNodeLost           = "NodeLost"           // Failed: its node was lost and fenced
	ReasonDeletedBeforeStart = "DeletedBeforeStart" // Failed: deleted before it ever ran
	ReasonDiskNotFound       = "DiskNotFound"       // Failed: a disk image or kernel is missing
)

// VirtualMachineInstanceConditionType names a VMI condition.
type VirtualMachineInstanceConditionType string

// VMI condition types.
const (
	VirtualMachineInstanceReady          VirtualMachineInstanceConditionType = "Ready"
	VirtualMachineInstancePaused         VirtualMachineInstanceConditionType = "Paused"
	VirtualMachineInstanceSynchronized   VirtualMachineInstanceConditionType = "Synchronized"
	VirtualMachineInstanceAgentConnected VirtualMachineInstanceConditionType = "AgentConnected"
	// VirtualMachineInstancePodScheduled keeps KubeVirt's name for the
	// scheduling condition, so that Unschedulable reads the same.
	VirtualMachineInstancePodScheduled VirtualMachineInstanceConditionType = "PodScheduled"
)

// Condition reasons.
const (
	PausedByUserReason    = "PausedByUser"
	UnschedulableReason   = "Unschedulable"
	DiskNotFoundReason    = "DiskNotFound"
	GuestNotRunningReason = "GuestNotRunning"
)

// VirtualMachineInstanceCondition is one condition of a VMI.
type VirtualMachineInstanceCondition struct {
	Type               VirtualMachineInstanceConditionType `json:"type"`
	Status             metav1.ConditionStatus              `json:"status"`
	LastProbeTime      metav1.Time                         `json:"lastProbeTime,omitempty"`
	LastTransitionTime metav1.Time                         `json:"lastTransitionTime,omitempty"`
	Reason             string                              `json:"reason,omitempty"`
	Message            string                              `json:"message,omitempty"`
}

// VirtualMachineInstanceStatus is what the scheduler and the node agent report.
type VirtualMachineInstanceStatus struct {
	NodeName                  string                                           `json:"nodeName,omitempty"`
	Reason                    string                                           `json:"reason,omitempty"`
	Message                   string                                           `json:"message,omitempty"`
	Phase                     VirtualMachineInstancePhase                      `json:"phase,omitempty"`
	Conditions                []VirtualMachineInstanceCondition                `json:"conditions,omitempty"`
	PhaseTransitionTimestamps []VirtualMachineInstancePhaseTransitionTimestamp `json:"phaseTransitionTimestamps,omitempty"`
	Interfaces                []VirtualMachineInstanceNetworkInterface         `json:"interfaces,omitempty"`
	// PortForwards is a Vigil field: the node ports forwarded to guest ports.
	PortForwards []PortForward `json:"portForwards,omitempty"`
	// ActionRequests is a Vigil field: pause, unpause and soft-reboot requests
	// accepted by the API server and not yet carried out by the node agent,
	// oldest first. The agent removes each one when it has acted on it.
	ActionRequests []VirtualMachineInstanceActionRequest `json:"actionRequests,omitempty"`
	// Accelerator is a Vigil field: "kvm" or "tcg" for a QEMU guest.
	Accelerator string `json:"accelerator,omitempty"`
}

// VirtualMachineInstancePhaseTransitionTimestamp records when a phase began.
type VirtualMachineInstancePhaseTransitionTimestamp struct {
	Phase                    VirtualMachineInstancePhase `json:"phase,omitempty"`
	PhaseTransitionTimestamp metav1.Time                 `json:"phaseTransitionTimestamp,omitempty"`
}

// VirtualMachineInstanceNetworkInterface is the observed state of an interface.
type VirtualMachineInstanceNetworkInterface struct {
	Name       string   `json:"name,omitempty"`
	IP         string   `json:"ipAddress,omitempty"`
	IPs        []string `json:"ipAddresses,omitempty"`
	MAC        string   `json:"mac,omitempty"`
	InfoSource string   `json:"infoSource,omitempty"`
}

// PortForward is one node port forwarded to a guest port.
type PortForward struct {
	Name      string `json:"name,omitempty"`
	Protocol  string `json:"protocol"`
	GuestPort int32  `json:"guestPort"`
	HostIP    string `json:"hostIP,omitempty"`
	HostPort  int32  `json:"hostPort"`
}

// VMIAction is a request carried out by the node agent.
type VMIAction string

// VMI actions.
const (
	VMIActionPause      VMIAction = "Pause"
	VMIActionUnpause    VMIAction = "Unpause"
	VMIActionSoftReboot VMIAction = "SoftReboot"
)

// VirtualMachineInstanceActionRequest is one accepted, pending VMI action.
type VirtualMachineInstanceActionRequest struct {
	Action VMIAction `json:"action"`
	// ID identifies the request, so that the agent removes exactly the one it did.
	ID          string      `json:"id"`
	RequestTime metav1.Time `json:"requestTime,omitempty"`
}

// IsFinal reports whether the VMI has ended.
func (vmi *VirtualMachineInstance) IsFinal() bool { return vmi.Status.Phase.IsFinal() }

// GracePeriodSeconds returns the VMI's grace period, or the default.
func (vmi *VirtualMachineInstance) GracePeriodSeconds() int64 {
	if g := vmi.Spec.TerminationGracePeriodSeconds; g != nil {
		return *g
	}
	return DefaultGracePeriodSeconds
}

// Condition returns the condition of type t, or nil.
func (s *VirtualMachineInstanceStatus) Condition(t VirtualMachineInstanceConditionType) *VirtualMachineInstanceCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// SetPhase moves the VMI to phase p, recording when it did; setting the
// current phase again changes nothing.
func (s *VirtualMachineInstanceStatus) SetPhase(p VirtualMachineInstancePhase, now metav1.Time) {
	if s.Phase == p {
		return
	}
	s.Phase = p
	s.PhaseTransitionTimestamps = append(s.PhaseTransitionTimestamps, VirtualMachineInstancePhaseTransitionTimestamp{Phase: p, PhaseTransitionTimestamp: now})
}

// SetCondition sets a condition, replacing one of the same type. Its
// LastTransitionTime is now when its status changed and kept otherwise.
func (s *VirtualMachineInstanceStatus) SetCondition(c VirtualMachineInstanceCondition, now metav1.Time) {
	for i := range s.Conditions {
		old := &s.Conditions[i]
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = now
		}
		c.LastProbeTime = old.LastProbeTime
		*old = c
		return
	}
	c.LastTransitionTime = now
	s.Conditions = append(s.Conditions, c)
}

// Bind records that the VMI was scheduled to node: the scheduler's binding,
// which the node's agent acts on.
func (s *VirtualMachineInstanceStatus) Bind(node string, now metav1.Time) {
	s.NodeName = node
	s.SetPhase(Scheduling, now)
	s.SetCondition(VirtualMachineInstanceCondition{Type: VirtualMachineInstancePodScheduled, Status: metav1.ConditionTrue}, now)
}
