// Package caches holds the informers that Vigil's controllers share: one
// list and one watch per resource for the VM controller, the scheduler and
// the node-health controller together, instead of one each. Sharing saves
// memory (a cached VMI is held once, not three times) and gives every
// controller the same view in the same order: when the VM controller has
// seen a VMI go, so has the scheduler.
package caches

import (
	"context"
	"log/slog"
	"sync"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
)

// Caches are the shared informers. Build them with New, let every
// controller add its handlers and indexes, then Run them.
type Caches struct {
	VMs    *informer.Informer[*v1.VirtualMachine]
	VMIs   *informer.Informer[*v1.VirtualMachineInstance]
	Nodes  *informer.Informer[*v1.Node]
	Leases *informer.Informer[*v1.Lease]
	// Digests are the API servers' HeartbeatDigests: the node agents'
	// heartbeats, as Lease updates are (see BeatsChanged).
	Digests *informer.Informer[*v1.HeartbeatDigest]
}

// New builds the informers of every resource the controllers read.
func New(c *client.Client, log *slog.Logger) *Caches {
	return &Caches{
		VMs:     informer.New[*v1.VirtualMachine](c.VirtualMachines("").Resource, client.ListOptions{}, log),
		VMIs:    informer.New[*v1.VirtualMachineInstance](c.VirtualMachineInstances("").Resource, client.ListOptions{}, log),
		Nodes:   informer.New[*v1.Node](c.Nodes(), client.ListOptions{}, log),
		Leases:  informer.New[*v1.Lease](c.Leases(v1.NodeLeaseNamespace), client.ListOptions{}, log),
		Digests: informer.New[*v1.HeartbeatDigest](c.HeartbeatDigests(), client.ListOptions{}, log),
	}
}

// Run runs every informer until ctx ends.
func (cs *Caches) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){cs.VMs.Run, cs.VMIs.Run, cs.Nodes.Run, cs.Leases.Run, cs.Digests.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	wg.Wait()
}

// WaitForSync waits until every informer has loaded its first list.
func (cs *Caches) WaitForSync(ctx context.Context) error {
	for _, wait := range []func(context.Context) error{cs.VMs.WaitForSync, cs.VMIs.WaitForSync, cs.Nodes.WaitForSync, cs.Leases.WaitForSync, cs.Digests.WaitForSync} {
		if err := wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// RunWith runs ctrl once the caches have synced, and the caches too when
// owned (a controller that made its own caches, in tests); it returns when
// ctx ends and everything it started has stopped.
func (cs *Caches) RunWith(ctx context.Context, owned bool, ctrl func(context.Context)) {
	var wg sync.WaitGroup
	if owned {
		wg.Add(1)
		go func() { defer wg.Done(); cs.Run(ctx) }()
	}
	if cs.WaitForSync(ctx) == nil {
		ctrl(ctx)
	}
	wg.Wait()
}

// BeatsChanged calls renewed with every node whose heartbeat in a digest
// changed from old to cur: a beat committed since, a renewal. A node that
// joined the digest has just beaten. A node that left it did not: the
// server drops a node a while after its last stream ended, its last beat
// kept unchanged until then, so an observer that relisted meanwhile still
// saw that beat's serial change.
func BeatsChanged(old, cur *v1.HeartbeatDigest, renewed func(node string)) {
	for node, b := range cur.Nodes {
		if prev, ok := old.Nodes[node]; !ok || prev.Serial != b.Serial {
			renewed(node)
		}
	}
}
