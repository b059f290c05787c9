package cli

import (
	"context"
	"fmt"

	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// NewDescribeCmd returns `vigil describe`.
func NewDescribeCmd(f *Factory, streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "describe (vm|vmi|node) NAME",
		Short: "Show an object's state, conditions and recent events",
		Example: `  vigil describe vm myvm
  vigil describe node node-1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("usage: vigil describe (vm|vmi|node) NAME")
			}
			k, err := kindByName(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			ns := f.Namespace
			if !k.namespaced {
				ns = ""
			}
			obj, err := k.get(cmd.Context(), c, ns, args[1])
			if err != nil {
				return notFoundMessage(err, k, args[1])
			}
			d := &describer{w: tabwriter.NewWriter(streams.Out, 0, 8, 2, ' ', 0), now: f.now()}
			switch o := obj.(type) {
			case *v1.VirtualMachine:
				vmi, err := c.VirtualMachineInstances(ns).Get(cmd.Context(), o.Name)
				if err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				if apierrors.IsNotFound(err) {
					vmi = nil
				}
				d.vm(o, vmi)
			case *v1.VirtualMachineInstance:
				d.vmi(o)
			case *v1.Node:
				d.node(o)
			default:
				d.meta(obj)
			}
			d.events(cmd.Context(), c, obj, k.kindName)
			return d.w.Flush()
		},
	}
}

type describer struct {
	w   *tabwriter.Writer
	now time.Time
}

func (d *describer) line(indent int, key string, val any) {
	fmt.Fprintf(d.w, "%s%s:\t%v\n", strings.Repeat("  ", indent), key, val)
}

func (d *describer) meta(o client.Object) {
	d.line(0, "Name", o.GetName())
	if o.GetNamespace() != "" {
		d.line(0, "Namespace", o.GetNamespace())
	}
	d.line(0, "Labels", mapString(o.GetLabels()))
	ann := map[string]string{}
	for k, v := range o.GetAnnotations() {
		if k != LastAppliedAnnotation {
			ann[k] = v
		}
	}
	d.line(0, "Annotations", mapString(ann))
	d.line(0, "Created", fmt.Sprintf("%s (%s ago)", o.GetCreationTimestamp().UTC().Format(time.RFC3339), age(o.GetCreationTimestamp(), d.now)))
	if ts := o.GetDeletionTimestamp(); ts != nil {
		d.line(0, "Deleting since", ts.UTC().Format(time.RFC3339))
	}
}

func mapString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (d *describer) vm(vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance) {
	d.meta(vm)
	rs := "Halted (neither set)"
	switch {
	case vm.Spec.RunStrategy != nil:
		rs = string(*vm.Spec.RunStrategy)
	case vm.Spec.Running != nil:
		rs = fmt.Sprintf("running: %v (deprecated)", *vm.Spec.Running)
	}
	d.line(0, "Run Strategy", rs)
	st := vm.Status
	status := string(st.PrintableStatus)
	if status == "" {
		status = "Stopped"
	}
	d.line(0, "Status", status)
	d.line(0, "Ready", st.Ready)
	if t := vm.Spec.Template; t != nil {
		d.template(&t.Spec)
	}
	if vmi != nil {
		fmt.Fprintln(d.w, "Instance:")
		d.line(1, "UID", vmi.UID)
		d.line(1, "Phase", vmi.Status.Phase)
		if vmi.Status.Reason != "" {
			d.line(1, "Reason", vmi.Status.Reason)
		}
		if vmi.Status.Message != "" {
			d.line(1, "Message", vmi.Status.Message)
		}
		d.line(1, "Node", orNone(vmi.Status.NodeName))
	} else {
		d.line(0, "Instance", "<none>")
	}
	if len(st.StateChangeRequests) > 0 {
		fmt.Fprintln(d.w, "Pending Requests:")
		for _, r := range st.StateChangeRequests {
			desc := string(r.Action)
			if r.UID != nil {
				desc += " (VMI " + string(*r.UID) + ")"
			}
			if r.Data["paused"] == "true" {
				desc += " paused"
			}
			fmt.Fprintf(d.w, "  %s\n", desc)
		}
	}
	if sf := st.StartFailure; sf != nil {
		fmt.Fprintln(d.w, "Start Failures:")
		d.line(1, "Consecutive", sf.ConsecutiveFailCount)
		if sf.RetryAfterTimestamp != nil {
			d.line(1, "Retry After", sf.RetryAfterTimestamp.UTC().Format(time.RFC3339))
		}
	}
	var conds [][]string
	for _, c := range st.Conditions {
		conds = append(conds, []string{string(c.Type), string(c.Status), c.Reason, c.Message, age(c.LastTransitionTime, d.now)})
	}
	d.conditions(conds)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func (d *describer) template(s *v1.VirtualMachineInstanceSpec) {
	fmt.Fprintln(d.w, "Template:")
	cpu := "1"
	if c := s.Domain.CPU; c != nil {
		cpu = fmt.Sprintf("%d socket(s) x %d core(s) x %d thread(s)", max(c.Sockets, 1), max(c.Cores, 1), max(c.Threads, 1))
	}
	d.line(1, "CPU", cpu)
	mem := "<none>"
	if q, ok := s.Domain.Resources.Requests[v1.ResourceMemory]; ok {
		mem = q.String()
	}
	if s.Domain.Memory != nil && s.Domain.Memory.Guest != nil {
		mem = s.Domain.Memory.Guest.String() + " (guest)"
	}
	d.line(1, "Memory", mem)
	for _, v := range s.Volumes {
		src := "?"
		switch {
		case v.ContainerDisk != nil:
			src = "containerDisk " + v.ContainerDisk.Image
		case v.HostDisk != nil:
			src = "hostDisk " + v.HostDisk.Path
		case v.CloudInitNoCloud != nil:
			src = "cloudInitNoCloud"
		}
		d.line(1, "Volume "+v.Name, src)
	}
	if fw := s.Domain.Firmware; fw != nil && fw.KernelBoot != nil && fw.KernelBoot.Container != nil {
		d.line(1, "Kernel", fw.KernelBoot.Container.Image+":"+fw.KernelBoot.Container.KernelPath)
	}
	grace := v1.DefaultGracePeriodSeconds
	if s.TerminationGracePeriodSeconds != nil {
		grace = *s.TerminationGracePeriodSeconds
	}
	d.line(1, "Grace Period", fmt.Sprintf("%ds", grace))
}

func (d *describer) vmi(vmi *v1.VirtualMachineInstance) {
	d.meta(vmi)
	d.line(0, "Phase", vmi.Status.Phase)
	if vmi.Status.Reason != "" {
		d.line(0, "Reason", vmi.Status.Reason)
	}
	if vmi.Status.Message != "" {
		d.line(0, "Message", vmi.Status.Message)
	}
	d.line(0, "Node", orNone(vmi.Status.NodeName))
	for _, in := range vmi.Status.Interfaces {
		d.line(0, "Interface "+in.Name, fmt.Sprintf("%s %s", in.IP, in.MAC))
	}
	for _, p := range vmi.Status.PortForwards {
		d.line(0, "Port "+p.Name, fmt.Sprintf("%s:%d -> %d/%s", p.HostIP, p.HostPort, p.GuestPort, p.Protocol))
	}
	if len(vmi.Status.PhaseTransitionTimestamps) > 0 {
		fmt.Fprintln(d.w, "Phase History:")
		for _, t := range vmi.Status.PhaseTransitionTimestamps {
			fmt.Fprintf(d.w, "  %s\t%s\n", t.Phase, t.PhaseTransitionTimestamp.UTC().Format(time.RFC3339))
		}
	}
	d.template(&vmi.Spec)
	var conds [][]string
	for _, c := range vmi.Status.Conditions {
		conds = append(conds, []string{string(c.Type), string(c.Status), c.Reason, c.Message, age(c.LastTransitionTime, d.now)})
	}
	d.conditions(conds)
}

func (d *describer) node(n *v1.Node) {
	d.meta(n)
	d.line(0, "Unschedulable", n.Spec.Unschedulable)
	d.line(0, "Runtime", orNone(n.Status.NodeInfo.Runtime))
	d.line(0, "Accelerator", orNone(n.Status.NodeInfo.Accelerator))
	cpu, mem := n.Status.Capacity[v1.ResourceCPU], n.Status.Capacity[v1.ResourceMemory]
	d.line(0, "Capacity", fmt.Sprintf("cpu %s, memory %s", cpu.String(), mem.String()))
	for _, a := range n.Status.Addresses {
		d.line(0, "Address "+a.Type, a.Address)
	}
	var conds [][]string
	for _, c := range n.Status.Conditions {
		conds = append(conds, []string{string(c.Type), string(c.Status), c.Reason, c.Message, age(c.LastTransitionTime, d.now)})
	}
	d.conditions(conds)
}

func (d *describer) conditions(rows [][]string) {
	if len(rows) == 0 {
		d.line(0, "Conditions", "<none>")
		return
	}
	fmt.Fprintln(d.w, "Conditions:")
	fmt.Fprintln(d.w, "  TYPE\tSTATUS\tREASON\tMESSAGE\tSINCE")
	for _, r := range rows {
		fmt.Fprintf(d.w, "  %s\n", strings.Join(r, "\t"))
	}
}

func (d *describer) events(ctx context.Context, c *client.Client, obj client.Object, kindName string) {
	sel := "involvedObject.name=" + obj.GetName() + ",involvedObject.kind=" + kindName
	l, err := c.Events(obj.GetNamespace()).List(ctx, client.ListOptions{FieldSelector: sel})
	if err != nil || len(l.Items) == 0 {
		d.line(0, "Events", "<none>")
		return
	}
	sort.Slice(l.Items, func(i, j int) bool { return eventTime(l.Items[i]).Before(eventTime(l.Items[j])) })
	fmt.Fprintln(d.w, "Events:")
	fmt.Fprintln(d.w, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
	for _, e := range l.Items {
		a := age(metav1.NewTime(eventTime(e)), d.now)
		if e.Count > 1 {
			a += fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(d.w, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, a, e.Source.Component, e.Message)
	}
}

func eventTime(e *v1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
