package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vigil-vm/vigil/client"
)

// DeleteOptions holds the flags of `vigil delete`.
type DeleteOptions struct {
	f       *Factory
	streams Streams

	Files          []string
	GracePeriod    int64
	Force          bool
	IgnoreNotFound bool
	Orphan         bool
	DryRun         bool

	targets []deleteTarget
}

type deleteTarget struct {
	kind     *kind
	ns, name string
}

// NewDeleteCmd returns `vigil delete`.
func NewDeleteCmd(f *Factory, streams Streams) *cobra.Command {
	o := &DeleteOptions{f: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "delete (TYPE NAME... | -f FILE)",
		Short: "Delete objects (a VM's VMI goes with it)",
		Example: `  vigil delete vm myvm
  vigil delete vmi myvm --grace-period=0 --force
  vigil delete -f examples/`,
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
	cmd.Flags().StringSliceVarP(&o.Files, "filename", "f", nil, "delete the objects of these manifests")
	cmd.Flags().Int64Var(&o.GracePeriod, "grace-period", -1, "seconds a VMI's guest gets to shut down (-1: its own; 0 with --force: at once)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "with --grace-period=0, kill the guest at once")
	cmd.Flags().BoolVar(&o.IgnoreNotFound, "ignore-not-found", false, "treat missing objects as deleted")
	cmd.Flags().BoolVar(&o.Orphan, "orphan", false, "leave the object's dependents (a VM's VMI) in place")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "validate on the server without deleting")
	return cmd
}

// Complete resolves what to delete.
func (o *DeleteOptions) Complete(args []string) error {
	if len(o.Files) > 0 {
		if len(args) > 0 {
			return usagef("give either TYPE NAME... or -f, not both")
		}
		ms, err := readManifests(o.Files, o.streams.In, o.f.Namespace)
		if err != nil {
			return err
		}
		for _, m := range ms {
			o.targets = append(o.targets, deleteTarget{kind: m.kind, ns: m.ns, name: m.name})
		}
		return nil
	}
	if len(args) < 2 {
		return usagef("you must give a type and at least one name, e.g. vigil delete vm myvm")
	}
	k, err := kindByName(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	ns := o.f.Namespace
	if !k.namespaced {
		ns = ""
	}
	for _, n := range args[1:] {
		o.targets = append(o.targets, deleteTarget{kind: k, ns: ns, name: n})
	}
	return nil
}

// Validate checks flag rules.
func (o *DeleteOptions) Validate() error {
	if o.GracePeriod == 0 && !o.Force {
		return usagef("--grace-period=0 kills the guest at once: confirm with --force")
	}
	if o.GracePeriod < -1 {
		return usagef("--grace-period must be -1 (the object's own) or more")
	}
	return nil
}

// Run deletes the targets.
func (o *DeleteOptions) Run(ctx context.Context) error {
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	opts := client.DeleteOptions{Orphan: o.Orphan, DryRun: o.DryRun}
	if o.GracePeriod >= 0 {
		g := o.GracePeriod
		opts.GracePeriodSeconds = &g
	}
	for _, t := range o.targets {
		err := t.kind.delete(ctx, c, t.ns, t.name, opts)
		if apierrors.IsNotFound(err) {
			if o.IgnoreNotFound {
				continue
			}
			return fmt.Errorf("%s %q not found", t.kind.display, t.name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(o.streams.Out, "%s %q deleted\n", t.kind.display, t.name)
	}
	return nil
}
