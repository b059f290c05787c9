// Package v1 holds Vigil's wire types: the KubeVirt resources VirtualMachine and
// VirtualMachineInstance (group kubevirt.io, version v1) with the field names and
// JSON of KubeVirt, and the Kubernetes-shaped Node, Lease and Event that Vigil
// serves for its own nodes.
//
// Only the fields Vigil implements are declared. Decode refuses a document that
// sets any other field, repeats a key or holds a value of the wrong type, and
// names every such field path, so that a manifest is never silently
// half-applied; Validate* apply the admission rules of spec/lifecycle.md
// section 3 and the project's own decisions.
//
// Object metadata, times, conditions and quantities come from
// k8s.io/apimachinery, so a KubeVirt manifest that uses only supported
// features decodes and encodes unchanged.
//
// +k8s:deepcopy-gen=package
package v1
