package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// LifecycleOptions holds the flags of start, stop and restart, as virtctl has them.
type LifecycleOptions struct {
	f       *Factory
	streams Streams
	action  string

	Paused      bool
	DryRun      bool
	Force       bool
	GracePeriod int64

	name string
}

func newLifecycleCmd(f *Factory, streams Streams, action, short, example string) (*cobra.Command, *LifecycleOptions) {
	o := &LifecycleOptions{f: f, streams: streams, action: action}
	cmd := &cobra.Command{
		Use:     action + " VM",
		Short:   short,
		Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "validate the request without changing anything")
	return cmd, o
}

// NewStartCmd returns `vigil start`.
func NewStartCmd(f *Factory, streams Streams) *cobra.Command {
	cmd, o := newLifecycleCmd(f, streams, "start", "Start a VM", "  vigil start myvm\n  vigil start myvm --paused")
	cmd.Flags().BoolVar(&o.Paused, "paused", false, "start the VM with its vCPUs paused")
	return cmd
}

// NewStopCmd returns `vigil stop`.
func NewStopCmd(f *Factory, streams Streams) *cobra.Command {
	cmd, o := newLifecycleCmd(f, streams, "stop", "Stop a VM", "  vigil stop myvm\n  vigil stop myvm --force --grace-period=0")
	cmd.Flags().BoolVar(&o.Force, "force", false, "use the given --grace-period instead of the VMI's own")
	cmd.Flags().Int64Var(&o.GracePeriod, "grace-period", -1, "seconds the guest gets to shut down (needs --force)")
	return cmd
}

// NewRestartCmd returns `vigil restart`.
func NewRestartCmd(f *Factory, streams Streams) *cobra.Command {
	cmd, o := newLifecycleCmd(f, streams, "restart", "Restart a VM", "  vigil restart myvm\n  vigil restart myvm --force --grace-period=0")
	cmd.Flags().BoolVar(&o.Force, "force", false, "restart at once (with --grace-period=0)")
	cmd.Flags().Int64Var(&o.GracePeriod, "grace-period", -1, "only 0 is supported (needs --force)")
	return cmd
}

// Complete checks the arguments and virtctl's flag rules.
func (o *LifecycleOptions) Complete(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s takes exactly one VM name", o.action)
	}
	o.name = args[0]
	if o.action == "stop" || o.action == "restart" {
		graceSet := cmd.Flags().Changed("grace-period")
		if o.Force != graceSet || (o.Force && o.GracePeriod < 0) {
			return usagef("Must both use --force=true and set --grace-period.")
		}
	}
	return nil
}

// Run sends the request.
func (o *LifecycleOptions) Run(ctx context.Context) error {
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	vms := c.VirtualMachines(o.f.Namespace)
	var dry []string
	if o.DryRun {
		dry = []string{metav1.DryRunAll}
	}
	switch o.action {
	case "start":
		err = vms.Start(ctx, o.name, v1.StartOptions{Paused: o.Paused, DryRun: dry})
	case "stop":
		opts := v1.StopOptions{DryRun: dry}
		if o.Force {
			g := o.GracePeriod
			opts.GracePeriod = &g
		}
		err = vms.Stop(ctx, o.name, opts)
	case "restart":
		opts := v1.RestartOptions{DryRun: dry}
		if o.Force {
			g := o.GracePeriod
			opts.GracePeriodSeconds = &g
		}
		err = vms.Restart(ctx, o.name, opts)
	}
	if err != nil {
		return fmt.Errorf("Error %sing VirtualMachine %s: %s", o.action, o.name, message(err))
	}
	fmt.Fprintf(o.streams.Out, "VM %s was scheduled to %s\n", o.name, o.action)
	return nil
}

// PauseOptions holds the flags of pause and unpause.
type PauseOptions struct {
	f       *Factory
	streams Streams
	pause   bool
	DryRun  bool

	target, name string
}

// NewPauseCmd returns `vigil pause` (pause true) or `vigil unpause`.
func NewPauseCmd(f *Factory, streams Streams, pause bool) *cobra.Command {
	o := &PauseOptions{f: f, streams: streams, pause: pause}
	verb := "unpause"
	if pause {
		verb = "pause"
	}
	cmd := &cobra.Command{
		Use:     verb + " (vm|vmi) NAME",
		Short:   map[bool]string{true: "Pause a VM's guest (its vCPUs stop)", false: "Resume a paused VM's guest"}[pause],
		Example: fmt.Sprintf("  vigil %s vm myvm\n  vigil %s vmi myvm", verb, verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "validate the request without changing anything")
	return cmd
}

// Complete checks the arguments.
func (o *PauseOptions) Complete(args []string) error {
	if len(args) != 2 || (args[0] != "vm" && args[0] != "vmi") {
		return usagef("usage: vigil %s (vm|vmi) NAME", o.verb())
	}
	o.target, o.name = args[0], args[1]
	return nil
}

func (o *PauseOptions) verb() string {
	if o.pause {
		return "pause"
	}
	return "unpause"
}

// Run sends the request. For `vm`, a VM without a VMI is explained.
func (o *PauseOptions) Run(ctx context.Context) error {
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	if o.target == "vm" {
		vm, err := c.VirtualMachines(o.f.Namespace).Get(ctx, o.name)
		if err != nil {
			return notFoundMessage(err, &kind{display: "virtualmachine.kubevirt.io"}, o.name)
		}
		if _, err := c.VirtualMachineInstances(o.f.Namespace).Get(ctx, o.name); apierrors.IsNotFound(err) {
			if halted(vm) {
				return fmt.Errorf("VM %s is not set to run (its runStrategy is Halted): start it first", o.name)
			}
			return fmt.Errorf("VM %s is not running: it has no VMI", o.name)
		}
	}
	var dry []string
	if o.DryRun {
		dry = []string{metav1.DryRunAll}
	}
	vmis := c.VirtualMachineInstances(o.f.Namespace)
	if o.pause {
		err = vmis.Pause(ctx, o.name, v1.PauseOptions{DryRun: dry})
	} else {
		err = vmis.Unpause(ctx, o.name, v1.UnpauseOptions{DryRun: dry})
	}
	if err != nil {
		return fmt.Errorf("Error %sing VirtualMachineInstance %s: %s", o.verb(), o.name, message(err))
	}
	fmt.Fprintf(o.streams.Out, "VMI %s was scheduled to %s\n", o.name, o.verb())
	return nil
}

func halted(vm *v1.VirtualMachine) bool {
	switch {
	case vm.Spec.RunStrategy != nil:
		return *vm.Spec.RunStrategy == v1.RunStrategyHalted
	case vm.Spec.Running != nil:
		return !*vm.Spec.Running
	}
	return true
}

// NewSoftRebootCmd returns `vigil soft-reboot`.
func NewSoftRebootCmd(f *Factory, streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:     "soft-reboot VMI",
		Short:   "Ask a VMI's guest to reboot (ACPI); the VMI stays the same",
		Example: "  vigil soft-reboot myvm",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("soft-reboot takes exactly one VMI name")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			if err := c.VirtualMachineInstances(f.Namespace).SoftReboot(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("Error soft rebooting VirtualMachineInstance %s: %s", args[0], message(err))
			}
			fmt.Fprintf(streams.Out, "VMI %s was scheduled to softreboot\n", args[0])
			return nil
		},
	}
}
