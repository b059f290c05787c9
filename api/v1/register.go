package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group and version names of the API groups Vigil serves.
const (
	// GroupName is KubeVirt's API group, for VirtualMachine and VirtualMachineInstance.
	GroupName = "kubevirt.io"
	// SubresourceGroupName is the group of the lifecycle subresources (start, stop, ...).
	SubresourceGroupName = "subresources.kubevirt.io"
	// CoordinationGroupName is the group of node Leases.
	CoordinationGroupName = "coordination.k8s.io"
	// VigilGroupName is the group of Vigil's own resources (HeartbeatDigest).
	VigilGroupName = "vigil.dev"
	// Version is the only version of every group.
	Version = "v1"
)

// apiVersion strings as they appear in documents.
const (
	KubeVirtAPIVersion     = GroupName + "/" + Version
	CoreAPIVersion         = Version
	CoordinationAPIVersion = CoordinationGroupName + "/" + Version
	VigilAPIVersion        = VigilGroupName + "/" + Version
)

// Kinds.
const (
	KindVirtualMachine             = "VirtualMachine"
	KindVirtualMachineInstance     = "VirtualMachineInstance"
	KindVirtualMachineList         = "VirtualMachineList"
	KindVirtualMachineInstanceList = "VirtualMachineInstanceList"
	KindNode                       = "Node"
	KindNodeList                   = "NodeList"
	KindLease                      = "Lease"
	KindLeaseList                  = "LeaseList"
	KindEvent                      = "Event"
	KindEventList                  = "EventList"
	KindHeartbeatDigest            = "HeartbeatDigest"
	KindHeartbeatDigestList        = "HeartbeatDigestList"
)

// Well-known names.
const (
	// NodeLeaseNamespace is the namespace that holds one Lease per node.
	NodeLeaseNamespace = "vigil-node-lease"
	// DefaultNamespace is used when a request or manifest names none.
	DefaultNamespace = "default"

	// VirtualMachineControllerFinalizer is put on every VM and on every VMI
	// the VM controller creates, so the controller sees final states before
	// the objects disappear (spec/lifecycle.md section 1.8).
	VirtualMachineControllerFinalizer = "kubevirt.io/virtualMachineControllerFinalize"
	// AgentFinalizer is put on every VMI bound to a node; the node agent removes
	// it only when the guest is gone, so a deleted VMI disappears only after
	// its guest has stopped.
	AgentFinalizer = "vigil.dev/agent"

	// CreatedByLabel names the UID of the VM that created a VMI.
	CreatedByLabel = "kubevirt.io/created-by"
	// TemplateHashAnnotation records, on a VMI, a hash of the VM template it
	// was created from; the VM controller compares it with the current
	// template to set RestartRequired.
	TemplateHashAnnotation = "vigil.dev/template-hash"
	// VMGenerationAnnotation records the VM generation a VMI was created from.
	VMGenerationAnnotation = "kubevirt.io/vm-generation"

	// DefaultGracePeriodSeconds is the grace period of a VMI that sets none.
	DefaultGracePeriodSeconds int64 = 30
)

// TypeMetaFor returns the TypeMeta of a kind.
func TypeMetaFor(kind string) metav1.TypeMeta {
	switch kind {
	case KindVirtualMachine, KindVirtualMachineInstance, KindVirtualMachineList, KindVirtualMachineInstanceList:
		return metav1.TypeMeta{APIVersion: KubeVirtAPIVersion, Kind: kind}
	case KindLease, KindLeaseList:
		return metav1.TypeMeta{APIVersion: CoordinationAPIVersion, Kind: kind}
	case KindHeartbeatDigest, KindHeartbeatDigestList:
		return metav1.TypeMeta{APIVersion: VigilAPIVersion, Kind: kind}
	default:
		return metav1.TypeMeta{APIVersion: CoreAPIVersion, Kind: kind}
	}
}
