// Package apiserver is Vigil's HTTP API: Kubernetes-style REST over etcd for
// VirtualMachines, VirtualMachineInstances, Nodes, Leases and Events, with
// KubeVirt's paths and lifecycle subresources.
//
// It is the only part of Vigil that touches the store. Every write goes
// through one path per verb (create, update, patch, delete, and the status
// subresource) that decodes strictly, keeps spec and status apart, bumps
// metadata.generation on spec changes, validates, and writes with
// compare-and-swap on the resourceVersion (the etcd revision). Lists and
// watches are served from a watch cache (package watchcache) that follows
// etcd. Lifecycle subresources (start, stop, restart, pause, unpause,
// softreboot) ask the pure runstrategy core for a decision and only apply
// it. Errors become Kubernetes Status objects in one place (errors.go).
package apiserver
