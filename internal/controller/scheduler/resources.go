package scheduler

import (
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// request is what a VMI reserves on its node: millicores and bytes.
type request struct {
	cpu, mem int64
}

func (r request) add(o request) request { return request{cpu: r.cpu + o.cpu, mem: r.mem + o.mem} }
func (r request) sub(o request) request { return request{cpu: r.cpu - o.cpu, mem: r.mem - o.mem} }

// DefaultMilliCPUPerVCPU is the CPU a vCPU reserves when the VMI requests
// none: a tenth of a core, KubeVirt's default CPU allocation ratio of 10.
const DefaultMilliCPUPerVCPU = 100

// requestOf returns a VMI's reservation: its requests, else its limits,
// else 100m per vCPU and its guest memory.
func requestOf(vmi *v1.VirtualMachineInstance) request {
	res := vmi.Spec.Domain.Resources
	var r request
	if q, ok := res.Requests[v1.ResourceCPU]; ok {
		r.cpu = q.MilliValue()
	} else if q, ok := res.Limits[v1.ResourceCPU]; ok {
		r.cpu = q.MilliValue()
	} else {
		vcpus := int64(1)
		if c := vmi.Spec.Domain.CPU; c != nil {
			vcpus = int64(max(c.Cores, 1)) * int64(max(c.Sockets, 1)) * int64(max(c.Threads, 1))
		}
		r.cpu = vcpus * DefaultMilliCPUPerVCPU
	}
	if q, ok := res.Requests[v1.ResourceMemory]; ok {
		r.mem = q.Value()
	} else if q, ok := res.Limits[v1.ResourceMemory]; ok {
		r.mem = q.Value()
	} else if m := vmi.Spec.Domain.Memory; m != nil && m.Guest != nil {
		r.mem = m.Guest.Value()
	}
	return r
}

// allocatable is what a node offers: its allocatable, else its capacity.
func allocatable(n *v1.Node) request {
	get := func(name v1.ResourceName) resource.Quantity {
		if q, ok := n.Status.Allocatable[name]; ok {
			return q
		}
		return n.Status.Capacity[name]
	}
	cpu, mem := get(v1.ResourceCPU), get(v1.ResourceMemory)
	return request{cpu: cpu.MilliValue(), mem: mem.Value()}
}
