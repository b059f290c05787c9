package v1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Node is a machine that runs VMIs through its node agent. Its shape follows
// Kubernetes' core/v1 Node.
type Node struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NodeSpec   `json:"spec,omitempty"`
	Status            NodeStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// NodeList is a list of Nodes.
type NodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Node `json:"items"`
}

// NodeSpec is the operator's intent for a node.
type NodeSpec struct {
	// Unschedulable keeps the scheduler from binding new VMIs to the node.
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// NodeStatus is reported by the node agent and the node-health controller.
type NodeStatus struct {
	Capacity    ResourceList    `json:"capacity,omitempty"`
	Allocatable ResourceList    `json:"allocatable,omitempty"`
	Conditions  []NodeCondition `json:"conditions,omitempty"`
	Addresses   []NodeAddress   `json:"addresses,omitempty"`
	// DaemonEndpoints says where the agent serves consoles.
	DaemonEndpoints NodeDaemonEndpoints `json:"daemonEndpoints,omitempty"`
	NodeInfo        NodeSystemInfo      `json:"nodeInfo,omitempty"`
}

// NodeConditionType names a node condition.
type NodeConditionType string

// Node condition types.
const (
	NodeReady NodeConditionType = "Ready"
)

// NodeCondition is one condition of a node.
type NodeCondition struct {
	Type               NodeConditionType      `json:"type"`
	Status             metav1.ConditionStatus `json:"status"`
	LastHeartbeatTime  metav1.Time            `json:"lastHeartbeatTime,omitempty"`
	LastTransitionTime metav1.Time            `json:"lastTransitionTime,omitempty"`
	Reason             string                 `json:"reason,omitempty"`
	Message            string                 `json:"message,omitempty"`
}

// NodeAddress is an address of the node.
type NodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// NodeDaemonEndpoints lists the ports of the node's daemons.
type NodeDaemonEndpoints struct {
	AgentEndpoint DaemonEndpoint `json:"kubeletEndpoint,omitempty"`
}

// DaemonEndpoint is one daemon port.
type DaemonEndpoint struct {
	Port int32 `json:"Port"`
}

// NodeSystemInfo describes the node.
type NodeSystemInfo struct {
	MachineID       string `json:"machineID,omitempty"`
	BootID          string `json:"bootID,omitempty"`
	KernelVersion   string `json:"kernelVersion,omitempty"`
	OSImage         string `json:"osImage,omitempty"`
	OperatingSystem string `json:"operatingSystem,omitempty"`
	Architecture    string `json:"architecture,omitempty"`
	// AgentVersion is the version of the vigil agent.
	AgentVersion string `json:"kubeletVersion,omitempty"`
	// Runtime is "qemu" or "sim", with a version: "qemu://7.2.0".
	Runtime string `json:"containerRuntimeVersion,omitempty"`
	// Accelerator is a Vigil field: "kvm", "tcg" or "sim".
	Accelerator string `json:"accelerator,omitempty"`
}

// Node labels the agent sets.
const (
	LabelRuntime     = "vigil.dev/runtime"
	LabelAccelerator = "vigil.dev/accelerator"
	LabelHostname    = "kubernetes.io/hostname"
)

// Condition returns the node condition of type t, or nil.
func (s *NodeStatus) Condition(t NodeConditionType) *NodeCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Lease is a node's heartbeat, renewed by its agent (coordination.k8s.io/v1).
type Lease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              LeaseSpec `json:"spec,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// LeaseList is a list of Leases.
type LeaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Lease `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HeartbeatDigest is one API server's record of the node agents that
// stream heartbeats to it (vigil.dev/v1, cluster-scoped, named after the
// server). The server commits it a few times a second, with every beat that
// arrived since, and acknowledges a beat to its agent only once the digest
// holding it is committed. The node-health controller and the scheduler
// count a node's entry changing as a renewal, as they count a Lease update:
// one etcd write carries the heartbeats of every node of a server instead
// of one write per node and second (docs/ha.md).
type HeartbeatDigest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Nodes maps each node whose agent streams its heartbeat to this server
	// to its latest beat. A node leaves the map a minute after its last
	// stream ended.
	Nodes map[string]NodeBeat `json:"nodes,omitempty"`
}

// NodeBeat is a node's latest heartbeat in a HeartbeatDigest.
type NodeBeat struct {
	// Serial changes with every beat; it means nothing else.
	Serial int64 `json:"serial"`
	// Time is when the server received the beat, on the server's clock;
	// only for display: liveness is judged on the observer's own clock.
	Time metav1.MicroTime `json:"time"`
}

// LatestBeats returns, for every node in any of the digests, the latest
// time a server recorded a beat of it (servers' clocks: for display).
func LatestBeats(digests []*HeartbeatDigest) map[string]time.Time {
	out := map[string]time.Time{}
	for _, d := range digests {
		for node, b := range d.Nodes {
			if b.Time.After(out[node]) {
				out[node] = b.Time.Time
			}
		}
	}
	return out
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HeartbeatDigestList is a list of HeartbeatDigests.
type HeartbeatDigestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HeartbeatDigest `json:"items"`
}

// LeaseSpec is the state of a lease.
type LeaseSpec struct {
	HolderIdentity       *string           `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds *int32            `json:"leaseDurationSeconds,omitempty"`
	AcquireTime          *metav1.MicroTime `json:"acquireTime,omitempty"`
	RenewTime            *metav1.MicroTime `json:"renewTime,omitempty"`
	LeaseTransitions     *int32            `json:"leaseTransitions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Event records something that happened to an object (core/v1 Event).
type Event struct {
	metav1.TypeMeta     `json:",inline"`
	metav1.ObjectMeta   `json:"metadata"`
	InvolvedObject      ObjectReference  `json:"involvedObject"`
	Reason              string           `json:"reason,omitempty"`
	Message             string           `json:"message,omitempty"`
	Source              EventSource      `json:"source,omitempty"`
	FirstTimestamp      metav1.Time      `json:"firstTimestamp,omitempty"`
	LastTimestamp       metav1.Time      `json:"lastTimestamp,omitempty"`
	Count               int32            `json:"count,omitempty"`
	Type                string           `json:"type,omitempty"`
	EventTime           metav1.MicroTime `json:"eventTime,omitempty"`
	ReportingController string           `json:"reportingComponent"`
	ReportingInstance   string           `json:"reportingInstance"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// EventList is a list of Events.
type EventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Event `json:"items"`
}

// Event types.
const (
	EventTypeNormal  = "Normal"
	EventTypeWarning = "Warning"
)

// ObjectReference points at an object.
type ObjectReference struct {
	Kind            string    `json:"kind,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name,omitempty"`
	UID             types.UID `json:"uid,omitempty"`
	APIVersion      string    `json:"apiVersion,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
}

// EventSource is the component that reported an event.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}
