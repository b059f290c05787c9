package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// GetOptions holds the flags of `vigil get`.
type GetOptions struct {
	f       *Factory
	streams Streams

	Output        string
	Watch         bool
	WatchOnly     bool
	Selector      string
	FieldSelector string
	AllNamespaces bool

	kind   *kind
	names  []string
	format outputFormat
}

// NewGetCmd returns `vigil get`.
func NewGetCmd(f *Factory, streams Streams) *cobra.Command {
	o := &GetOptions{f: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "get TYPE [NAME...]",
		Short: "Show VMs, VMIs, nodes, events or leases",
		Example: `  vigil get vms
  vigil get vmi myvm -o yaml
  vigil get vms -w
  vigil get events -A`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: yaml, json, wide or name")
	cmd.Flags().BoolVarP(&o.Watch, "watch", "w", false, "after listing, watch for changes")
	cmd.Flags().BoolVar(&o.WatchOnly, "watch-only", false, "watch for changes without listing first")
	cmd.Flags().StringVarP(&o.Selector, "selector", "l", "", "label selector, e.g. app=web,tier!=db")
	cmd.Flags().StringVar(&o.FieldSelector, "field-selector", "", "field selector, e.g. status.phase=Running")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list across all namespaces")
	return cmd
}

// Complete fills the options from the arguments.
func (o *GetOptions) Complete(args []string) error {
	if len(args) == 0 {
		return usagef("you must say what to get: vms, vmis, nodes, events or leases")
	}
	k, err := kindByName(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	o.kind, o.names = k, args[1:]
	o.format, err = parseOutput(o.Output)
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}

// Validate checks flag combinations.
func (o *GetOptions) Validate() error {
	if (o.Watch || o.WatchOnly) && len(o.names) > 1 {
		return usagef("--watch works with one name or none")
	}
	if len(o.names) > 0 && (o.Selector != "" || o.FieldSelector != "") {
		return usagef("names and selectors cannot be combined")
	}
	return nil
}

func (o *GetOptions) namespace() string {
	if o.AllNamespaces || !o.kind.namespaced {
		return ""
	}
	return o.f.Namespace
}

// Run lists (or gets) and optionally watches.
func (o *GetOptions) Run(ctx context.Context) error {
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	p := newPrinter(o.streams.Out, o.format, o.kind, o.f.now(), o.AllNamespaces)
	nodeTable := o.kind.kindName == v1.KindNode && (o.format == outputTable || o.format == outputWide)
	lo := client.ListOptions{LabelSelector: o.Selector, FieldSelector: o.FieldSelector}
	if len(o.names) == 1 {
		lo.FieldSelector = "metadata.name=" + o.names[0]
	}
	rv := ""
	if !o.WatchOnly {
		var objs []client.Object
		if len(o.names) > 0 {
			for _, n := range o.names {
				obj, err := o.kind.get(ctx, c, o.namespace(), n)
				if err != nil {
					return notFoundMessage(err, o.kind, n)
				}
				objs = append(objs, obj)
				rv = obj.GetResourceVersion()
			}
		} else {
			objs, rv, err = o.kind.list(ctx, c, o.namespace(), lo)
			if err != nil {
				return err
			}
			sortObjects(objs)
		}
		if len(objs) == 0 && !o.Watch && o.format != outputJSON && o.format != outputYAML {
			if o.kind.namespaced && !o.AllNamespaces {
				fmt.Fprintf(o.streams.ErrOut, "No resources found in %s namespace.\n", o.f.Namespace)
			} else {
				fmt.Fprintln(o.streams.ErrOut, "No resources found")
			}
			return nil
		}
		if nodeTable {
			renewed, err := heartbeats(ctx, c)
			if err != nil {
				return err
			}
			p.leaseRenewed = func(node string) (time.Time, bool) { t, ok := renewed[node]; return t, ok }
		}
		if err := p.printList(objs); err != nil {
			return err
		}
	}
	if !o.Watch && !o.WatchOnly {
		return nil
	}
	// Watch from what was listed; --watch-only starts from now.
	lo.ResourceVersion = rv
	events, stop, err := o.kind.watch(ctx, c, o.namespace(), lo)
	if err != nil {
		return err
	}
	defer stop()
	if nodeTable {
		// A watched node's row shows its heartbeat as it is when printed.
		p.leaseRenewed = func(node string) (time.Time, bool) {
			renewed, err := heartbeats(ctx, c)
			if err != nil {
				return time.Time{}, false
			}
			t, ok := renewed[node]
			return t, ok
		}
	}
	for ev := range events {
		p.now = o.f.now()
		if err := p.printOne(ev.Object); err != nil {
			return err
		}
		if err := p.flush(); err != nil {
			return err
		}
	}
	return nil
}

// heartbeats reads when each node's agent last renewed its heartbeat: the
// later of its Lease's renewTime and its beat in the API servers'
// heartbeat digests (both written by the control plane's clocks or the
// node's, so only a guide; liveness is judged by the node-health
// controller on its own clock).
func heartbeats(ctx context.Context, c *client.Client) (map[string]time.Time, error) {
	leases, err := c.Leases(v1.NodeLeaseNamespace).List(ctx, client.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the node leases: %w", err)
	}
	digests, err := c.HeartbeatDigests().List(ctx, client.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the heartbeat digests: %w", err)
	}
	out := v1.LatestBeats(digests.Items)
	for _, l := range leases.Items {
		if l.Spec.RenewTime != nil && l.Spec.RenewTime.After(out[l.Name]) {
			out[l.Name] = l.Spec.RenewTime.Time
		}
	}
	return out, nil
}

// notFoundMessage rewords a 404 like kubectl does.
func notFoundMessage(err error, k *kind, name string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %q not found", k.display, name)
	}
	return err
}
