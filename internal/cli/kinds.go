package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// objEvent is one watch event of any kind.
type objEvent struct {
	Type   client.EventType
	Object client.Object
}

// kind is everything the generic verbs need to know about one resource.
type kind struct {
	// display is the resource's full name, as kubectl prints it
	// ("virtualmachine.kubevirt.io").
	display    string
	kindName   string
	aliases    []string
	namespaced bool

	get    func(ctx context.Context, c *client.Client, ns, name string) (client.Object, error)
	list   func(ctx context.Context, c *client.Client, ns string, o client.ListOptions) ([]client.Object, string, error)
	watch  func(ctx context.Context, c *client.Client, ns string, o client.ListOptions) (<-chan objEvent, func(), error)
	delete func(ctx context.Context, c *client.Client, ns, name string, o client.DeleteOptions) error
	create func(ctx context.Context, c *client.Client, ns string, body []byte, dry bool) (client.Object, error)
	update func(ctx context.Context, c *client.Client, ns, name string, body []byte) (client.Object, error)
	patch  func(ctx context.Context, c *client.Client, ns, name string, patch []byte) (client.Object, error)

	headers, wideHeaders []string
	row                  func(obj client.Object, rc rowContext, wide bool) []string
}

// typed builds a kind's closures from a typed resource client.
func typed[T client.Object](k *kind, res func(c *client.Client, ns string) *client.Resource[T]) *kind {
	k.get = func(ctx context.Context, c *client.Client, ns, name string) (client.Object, error) {
		return res(c, ns).Get(ctx, name)
	}
	k.list = func(ctx context.Context, c *client.Client, ns string, o client.ListOptions) ([]client.Object, string, error) {
		l, err := res(c, ns).List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		out := make([]client.Object, len(l.Items))
		for i, it := range l.Items {
			out[i] = it
		}
		return out, l.ResourceVersion, nil
	}
	k.watch = func(ctx context.Context, c *client.Client, ns string, o client.ListOptions) (<-chan objEvent, func(), error) {
		w, err := res(c, ns).Watch(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		out := make(chan objEvent)
		done := make(chan struct{})
		go func() {
			defer close(out)
			for ev := range w.C {
				if ev.Type == client.Bookmark {
					continue
				}
				if ev.Type == client.Error {
					return
				}
				select {
				case out <- objEvent{Type: ev.Type, Object: ev.Object}:
				case <-done:
					return
				}
			}
		}()
		return out, func() { close(done); w.Stop() }, nil
	}
	k.delete = func(ctx context.Context, c *client.Client, ns, name string, o client.DeleteOptions) error {
		_, err := res(c, ns).Delete(ctx, name, o)
		return err
	}
	// Documents go to the server as written, so its strict decoding sees
	// every field.
	k.create = func(ctx context.Context, c *client.Client, ns string, body []byte, dry bool) (client.Object, error) {
		return res(c, ns).CreateRaw(ctx, body, client.WriteOptions{DryRun: dry})
	}
	k.update = func(ctx context.Context, c *client.Client, ns, name string, body []byte) (client.Object, error) {
		return res(c, ns).UpdateRaw(ctx, name, body, client.WriteOptions{})
	}
	k.patch = func(ctx context.Context, c *client.Client, ns, name string, patch []byte) (client.Object, error) {
		return res(c, ns).Patch(ctx, name, client.MergePatch, patch, "", client.WriteOptions{})
	}
	return k
}

func kinds() []*kind {
	return []*kind{
		typed(&kind{
			display: "virtualmachine.kubevirt.io", kindName: v1.KindVirtualMachine, namespaced: true,
			aliases: []string{"vm", "vms", "virtualmachine", "virtualmachines", "virtualmachine.kubevirt.io", "virtualmachines.kubevirt.io"},
			headers: []string{"NAME", "AGE", "STATUS", "READY"}, wideHeaders: []string{"RUNSTRATEGY", "NODE"},
			row: vmRow,
		}, func(c *client.Client, ns string) *client.Resource[*v1.VirtualMachine] {
			return c.VirtualMachines(ns).Resource
		}),
		typed(&kind{
			display: "virtualmachineinstance.kubevirt.io", kindName: v1.KindVirtualMachineInstance, namespaced: true,
			aliases: []string{"vmi", "vmis", "virtualmachineinstance", "virtualmachineinstances", "virtualmachineinstance.kubevirt.io", "virtualmachineinstances.kubevirt.io"},
			headers: []string{"NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"}, wideHeaders: []string{"PAUSED", "REASON"},
			row: vmiRow,
		}, func(c *client.Client, ns string) *client.Resource[*v1.VirtualMachineInstance] {
			return c.VirtualMachineInstances(ns).Resource
		}),
		typed(&kind{
			display: "node", kindName: v1.KindNode, namespaced: false,
			aliases: []string{"node", "nodes", "no"},
			headers: []string{"NAME", "STATUS", "HEARTBEAT", "AGE", "RUNTIME"}, wideHeaders: []string{"ACCELERATOR", "CPU", "MEMORY", "REASON"},
			row: nodeRow,
		}, func(c *client.Client, _ string) *client.Resource[*v1.Node] { return c.Nodes() }),
		typed(&kind{
			display: "event", kindName: v1.KindEvent, namespaced: true,
			aliases: []string{"event", "events", "ev"},
			headers: []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}, wideHeaders: []string{"SOURCE", "COUNT"},
			row: eventRow,
		}, func(c *client.Client, ns string) *client.Resource[*v1.Event] { return c.Events(ns) }),
		typed(&kind{
			display: "lease.coordination.k8s.io", kindName: v1.KindLease, namespaced: true,
			aliases: []string{"lease", "leases"},
			headers: []string{"NAME", "HOLDER", "AGE"},
			row:     leaseRow,
		}, func(c *client.Client, ns string) *client.Resource[*v1.Lease] { return c.Leases(ns) }),
		typed(&kind{
			display: "heartbeatdigest.vigil.dev", kindName: v1.KindHeartbeatDigest, namespaced: false,
			aliases: []string{"heartbeatdigest", "heartbeatdigests", "heartbeatdigest.vigil.dev", "heartbeatdigests.vigil.dev"},
			headers: []string{"NAME", "NODES", "AGE"},
			row:     digestRow,
		}, func(c *client.Client, _ string) *client.Resource[*v1.HeartbeatDigest] { return c.HeartbeatDigests() }),
	}
}

// kindByName finds a kind by any of its names.
func kindByName(name string) (*kind, error) {
	n := strings.ToLower(name)
	var all []string
	for _, k := range kinds() {
		for _, a := range k.aliases {
			if a == n {
				return k, nil
			}
		}
		all = append(all, k.aliases[0])
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q (known: %s)", name, strings.Join(all, ", "))
}

// kindOf finds the kind of a manifest by its kind field.
func kindOf(kindName string) (*kind, error) {
	for _, k := range kinds() {
		if k.kindName == kindName {
			return k, nil
		}
	}
	return nil, fmt.Errorf("kind %q is not served by vigil (VirtualMachine, VirtualMachineInstance, Node, Event, Lease)", kindName)
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func vmRow(o client.Object, rc rowContext, wide bool) []string {
	now := rc.now
	vm := o.(*v1.VirtualMachine)
	status := string(vm.Status.PrintableStatus)
	if status == "" {
		status = string(v1.VirtualMachineStatusStopped)
	}
	row := []string{vm.Name, age(vm.CreationTimestamp, now), status, fmt.Sprint(vm.Status.Ready)}
	if wide {
		rs := "Halted"
		switch {
		case vm.Spec.RunStrategy != nil:
			rs = string(*vm.Spec.RunStrategy)
		case vm.Spec.Running != nil && *vm.Spec.Running:
			rs = "Always (running: true)"
		case vm.Spec.Running != nil:
			rs = "Halted (running: false)"
		}
		row = append(row, rs, "<none>")
	}
	return row
}

func vmiRow(o client.Object, rc rowContext, wide bool) []string {
	now := rc.now
	vmi := o.(*v1.VirtualMachineInstance)
	ip := ""
	if len(vmi.Status.Interfaces) > 0 {
		ip = vmi.Status.Interfaces[0].IP
	}
	ready := "False"
	if c := vmi.Status.Condition(v1.VirtualMachineInstanceReady); c != nil {
		ready = string(c.Status)
	}
	row := []string{vmi.Name, age(vmi.CreationTimestamp, now), string(vmi.Status.Phase), ip, vmi.Status.NodeName, ready}
	if wide {
		paused := "False"
		if c := vmi.Status.Condition(v1.VirtualMachineInstancePaused); c != nil {
			paused = string(c.Status)
		}
		row = append(row, paused, vmi.Status.Reason)
	}
	return row
}

// rowContext is what a table row may need beyond its object.
type rowContext struct {
	now time.Time
	// leaseRenewed returns when a node's agent last renewed its heartbeat
	// (see heartbeats); nil when nodes are not being printed.
	leaseRenewed func(node string) (time.Time, bool)
}

// nodeRow shows a node's health: STATUS is its Ready condition, HEARTBEAT
// the time since its agent's last heartbeat (it beats every second; the
// node is declared lost after --node-lost-after, 8 s).
func nodeRow(o client.Object, rc rowContext, wide bool) []string {
	n := o.(*v1.Node)
	now := rc.now
	status := "Unknown"
	if c := n.Status.Condition(v1.NodeReady); c != nil {
		switch c.Status {
		case metav1.ConditionTrue:
			status = "Ready"
		case metav1.ConditionFalse:
			status = "NotReady"
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	lease := "<none>"
	if rc.leaseRenewed != nil {
		if t, ok := rc.leaseRenewed(n.Name); ok {
			lease = sinceRenewal(now.Sub(t))
		}
	}
	row := []string{n.Name, status, lease, age(n.CreationTimestamp, now), n.Status.NodeInfo.Runtime}
	if wide {
		cpu, mem := n.Status.Capacity[v1.ResourceCPU], n.Status.Capacity[v1.ResourceMemory]
		reason := ""
		if c := n.Status.Condition(v1.NodeReady); c != nil {
			reason = c.Reason
		}
		row = append(row, n.Status.NodeInfo.Accelerator, cpu.String(), mem.String(), reason)
	}
	return row
}

// sinceRenewal formats the time since a lease renewal: to a tenth of a
// second while it matters for failure detection, as an age after that.
func sinceRenewal(d time.Duration) string {
	if d < 0 {
		d = 0 // the agent's clock is ahead of this one
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return duration.HumanDuration(d)
}

func eventRow(o client.Object, rc rowContext, wide bool) []string {
	now := rc.now
	e := o.(*v1.Event)
	last := e.LastTimestamp
	if last.IsZero() {
		last = e.CreationTimestamp
	}
	obj := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
	row := []string{age(last, now), e.Type, e.Reason, obj, e.Message}
	if wide {
		row = append(row, e.Source.Component, fmt.Sprint(e.Count))
	}
	return row
}

func leaseRow(o client.Object, rc rowContext, _ bool) []string {
	now := rc.now
	l := o.(*v1.Lease)
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []string{l.Name, holder, age(l.CreationTimestamp, now)}
}

// digestRow shows an API server's heartbeat digest: how many nodes beat
// through that server.
func digestRow(o client.Object, rc rowContext, _ bool) []string {
	d := o.(*v1.HeartbeatDigest)
	return []string{d.Name, strconv.Itoa(len(d.Nodes)), age(d.CreationTimestamp, rc.now)}
}

// sortObjects orders objects by namespace, then name.
func sortObjects(objs []client.Object) {
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].GetNamespace() != objs[j].GetNamespace() {
			return objs[i].GetNamespace() < objs[j].GetNamespace()
		}
		return objs[i].GetName() < objs[j].GetName()
	})
}
