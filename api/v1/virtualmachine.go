package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachine is the owner's intent for one virtual machine: whether it
// should run (spec.runStrategy) and what to run (spec.template).
type VirtualMachine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VirtualMachineSpec   `json:"spec"`
	Status            VirtualMachineStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// VirtualMachineList is a list of VirtualMachines.
type VirtualMachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualMachine `json:"items"`
}

// RunStrategy says when a VirtualMachine should have a running instance.
type RunStrategy string

// The RunStrategies (spec/lifecycle.md section 2.4).
const (
	RunStrategyAlways         RunStrategy = "Always"
	RunStrategyRerunOnFailure RunStrategy = "RerunOnFailure"
	RunStrategyManual         RunStrategy = "Manual"
	RunStrategyHalted         RunStrategy = "Halted"
	RunStrategyOnce           RunStrategy = "Once"
	// RunStrategyWaitAsReceiver exists in KubeVirt for live migration; Vigil
	// refuses it at validation.
	RunStrategyWaitAsReceiver RunStrategy = "WaitAsReceiver"
	// RunStrategyUnknown is the placeholder for "could not be determined".
	RunStrategyUnknown RunStrategy = ""
)

// VirtualMachineSpec is the desired state of a VirtualMachine.
type VirtualMachineSpec struct {
	// Running is deprecated: true means Always, false means Halted. It is
	// mutually exclusive with RunStrategy.
	Running *bool `json:"running,omitempty"`
	// RunStrategy says when the VM should run.
	RunStrategy *RunStrategy `json:"runStrategy,omitempty"`
	// Template is the VirtualMachineInstance created for each run.
	Template *VirtualMachineInstanceTemplateSpec `json:"template"`
}

// VirtualMachineInstanceTemplateSpec is the template of the VMI of each run.
type VirtualMachineInstanceTemplateSpec struct {
	ObjectMeta metav1.ObjectMeta          `json:"metadata,omitempty"`
	Spec       VirtualMachineInstanceSpec `json:"spec,omitempty"`
}

// VirtualMachinePrintableStatus is the one-word summary shown in tables.
type VirtualMachinePrintableStatus string

// The printable statuses Vigil produces (spec/lifecycle.md section 5).
const (
	VirtualMachineStatusStopped            VirtualMachinePrintableStatus = "Stopped"
	VirtualMachineStatusProvisioning       VirtualMachinePrintableStatus = "Provisioning"
	VirtualMachineStatusStarting           VirtualMachinePrintableStatus = "Starting"
	VirtualMachineStatusRunning            VirtualMachinePrintableStatus = "Running"
	VirtualMachineStatusPaused             VirtualMachinePrintableStatus = "Paused"
	VirtualMachineStatusStopping           VirtualMachinePrintableStatus = "Stopping"
	VirtualMachineStatusTerminating        VirtualMachinePrintableStatus = "Terminating"
	VirtualMachineStatusCrashLoopBackOff   VirtualMachinePrintableStatus = "CrashLoopBackOff"
	VirtualMachineStatusMigrating          VirtualMachinePrintableStatus = "Migrating"
	VirtualMachineStatusUnknown            VirtualMachinePrintableStatus = "Unknown"
	VirtualMachineStatusUnschedulable      VirtualMachinePrintableStatus = "ErrorUnschedulable"
	VirtualMachineStatusErrorDiskNotFound  VirtualMachinePrintableStatus = "ErrorDiskNotFound"
	VirtualMachineStatusWaitingForReceiver VirtualMachinePrintableStatus = "WaitingForReceiver"
)

// VirtualMachineStatus is what the VM controller observed and decided.
type VirtualMachineStatus struct {
	// Created is true while a VMI of this VM exists.
	Created bool `json:"created,omitempty"`
	// Ready is true while that VMI has Ready=True.
	Ready bool `json:"ready,omitempty"`
	// PrintableStatus is the human summary (section 5 of the lifecycle spec).
	PrintableStatus VirtualMachinePrintableStatus `json:"printableStatus,omitempty"`
	// Conditions: Ready, Failure, Paused, RestartRequired and the VMI's conditions.
	Conditions []VirtualMachineCondition `json:"conditions,omitempty"`
	// StateChangeRequests is the queue of pending start/stop requests; only
	// the head is acted on.
	StateChangeRequests []VirtualMachineStateChangeRequest `json:"stateChangeRequests,omitempty"`
	// StartFailure tracks consecutive runs that ended before reaching Running.
	StartFailure *VirtualMachineStartFailure `json:"startFailure,omitempty"`
	// RunStrategy is the last effective strategy the controller recorded.
	RunStrategy RunStrategy `json:"runStrategy,omitempty"`
	// OnceStarted is a Vigil field: true once a VM with runStrategy Once has
	// started its one run. While it is set no further VMI is created, even if
	// the first one is deleted. It is cleared when the strategy changes away
	// from Once.
	OnceStarted bool `json:"onceStarted,omitempty"`
	// ObservedGeneration is the VM generation the current VMI reflects.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// DesiredGeneration is the current VM generation, while a VMI exists.
	DesiredGeneration int64 `json:"desiredGeneration,omitempty"`
}

// VirtualMachineConditionType names a VM condition.
type VirtualMachineConditionType string

// VM condition types owned by the VM controller; VMI conditions are mirrored
// under their own types.
const (
	VirtualMachineReady           VirtualMachineConditionType = "Ready"
	VirtualMachineFailure         VirtualMachineConditionType = "Failure"
	VirtualMachinePaused          VirtualMachineConditionType = "Paused"
	VirtualMachineRestartRequired VirtualMachineConditionType = "RestartRequired"
)

// VirtualMachineCondition is one condition of a VM.
type VirtualMachineCondition struct {
	Type               VirtualMachineConditionType `json:"type"`
	Status             metav1.ConditionStatus      `json:"status"`
	LastProbeTime      metav1.Time                 `json:"lastProbeTime,omitempty"`
	LastTransitionTime metav1.Time                 `json:"lastTransitionTime,omitempty"`
	Reason             string                      `json:"reason,omitempty"`
	Message            string                      `json:"message,omitempty"`
}

// StateChangeRequestAction is Start or Stop.
type StateChangeRequestAction string

// State change request actions.
const (
	StartRequest StateChangeRequestAction = "Start"
	StopRequest  StateChangeRequestAction = "Stop"
)

// StartRequestDataPausedKey is the data key of a Start request that starts paused.
const StartRequestDataPausedKey = "paused"

// VirtualMachineStateChangeRequest is one queued lifecycle request.
type VirtualMachineStateChangeRequest struct {
	Action StateChangeRequestAction `json:"action"`
	// Data carries options; only "paused": "true" on Start is used.
	Data map[string]string `json:"data,omitempty"`
	// UID is the VMI a Stop targets.
	UID *types.UID `json:"uid,omitempty"`
}

// VirtualMachineStartFailure is the crash-loop record.
type VirtualMachineStartFailure struct {
	ConsecutiveFailCount int          `json:"consecutiveFailCount,omitempty"`
	LastFailedVMIUID     types.UID    `json:"lastFailedVMIUID,omitempty"`
	RetryAfterTimestamp  *metav1.Time `json:"retryAfterTimestamp,omitempty"`
}

// StartOptions is the body of the start subresource.
type StartOptions struct {
	metav1.TypeMeta `json:",inline"`
	Paused          bool     `json:"paused,omitempty"`
	DryRun          []string `json:"dryRun,omitempty"`
}

// StopOptions is the body of the stop subresource.
type StopOptions struct {
	metav1.TypeMeta `json:",inline"`
	GracePeriod     *int64   `json:"gracePeriod,omitempty"`
	DryRun          []string `json:"dryRun,omitempty"`
}

// RestartOptions is the body of the restart subresource.
type RestartOptions struct {
	metav1.TypeMeta    `json:",inline"`
	GracePeriodSeconds *int64   `json:"gracePeriodSeconds,omitempty"`
	DryRun             []string `json:"dryRun,omitempty"`
}

// PauseOptions is the body of the pause subresource.
type PauseOptions struct {
	metav1.TypeMeta `json:",inline"`
	DryRun          []string `json:"dryRun,omitempty"`
}

// UnpauseOptions is the body of the unpause subresource.
type UnpauseOptions struct {
	metav1.TypeMeta `json:",inline"`
	DryRun          []string `json:"dryRun,omitempty"`
}
