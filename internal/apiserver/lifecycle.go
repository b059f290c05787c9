package apiserver

import (
	"context"
	"io"
	"net/http"
	"slices"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/runstrategy"
	"github.com/vigil-vm/vigil/internal/vmstate"
)

// The lifecycle subresources (spec/lifecycle.md section 4). Each handler
// reads the VM and its VMI, asks the runstrategy core for a decision, and
// applies an accepted Change; a refusal is answered with the core's code and
// message and writes nothing. Writes re-read and re-decide on a conflict, so
// a decision is always made on the state it is applied to.

// lifecycleBody decodes an optional options body, with KubeVirt's message.
func lifecycleBody(req *http.Request, into any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, maxBodyBytes))
	if err != nil {
		return badRequest("Can not unmarshal Request body to struct, error: %v", err)
	}
	if len(body) == 0 {
		return nil
	}
	if err := v1.Decode(body, into); err != nil {
		return badRequest("Can not unmarshal Request body to struct, error: %v", err)
	}
	return nil
}

func dryRunOf(req *http.Request, body []string) (bool, error) {
	q, err := dryRun(req)
	if err != nil {
		return false, err
	}
	for _, d := range body {
		if d != metav1.DryRunAll {
			return false, badRequest("unsupported dryRun value %q: the only supported value is All", d)
		}
	}
	return q || len(body) > 0, nil
}

func (s *Server) resource(group, plural string) *resource { return s.byPath[group+"/"+plural] }

func (s *Server) vmRes() *resource  { return s.resource(v1.GroupName, "virtualmachines") }
func (s *Server) vmiRes() *resource { return s.resource(v1.GroupName, "virtualmachineinstances") }

// readVMI reads a VMI, or nil when there is none.
func (s *Server) readVMI(ctx context.Context, ns, name string) (*v1.VirtualMachineInstance, error) {
	obj, _, err := s.read(ctx, s.vmiRes(), ns, name)
	if isNotFoundStatus(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj.(*v1.VirtualMachineInstance), nil
}

// decideFunc asks the core about one VM and its VMI.
type decideFunc func(vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance) (runstrategy.Change, *runstrategy.Refusal)

// applyVMChange decides and applies the VM part of a lifecycle request (spec
// strategy, request queue, crash-loop record) in one write. It first
// applies the VMI part (grace period) when the decision has one, and undoes
// it if the VM write then fails.
func (s *Server) applyVMChange(ctx context.Context, ns, name string, dry bool, decide decideFunc) error {
	vmObj, _, err := s.read(ctx, s.vmRes(), ns, name)
	if err != nil {
		return err
	}
	vmi, err := s.readVMI(ctx, ns, name)
	if err != nil {
		return err
	}
	change, ref := decide(vmObj.(*v1.VirtualMachine), vmi)
	if ref != nil {
		return ref
	}
	var restoreGrace func()
	var oldGrace *int64
	if g := change.InstanceGracePeriod; g != nil && vmi != nil {
		oldGrace = vmi.Spec.TerminationGracePeriodSeconds
		if err := s.setVMIGrace(ctx, vmi, g, dry); err != nil {
			return err
		}
		restoreGrace = func() { _ = s.setVMIGrace(context.WithoutCancel(ctx), vmi, oldGrace, false) }
	}
	first := vmi
	_, _, err = s.updateObject(ctx, s.vmRes(), ns, name, specAndStatus, dry, func(cur object) (object, error) {
		vm := cur.(*v1.VirtualMachine)
		vmi, err := s.readVMI(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		if restoreGrace != nil && vmi != nil && vmi.UID == first.UID {
			// Decide again on the VMI as it was before this request changed
			// its grace period, or the request would be judged on its own
			// effect (a Halted stop "with a shorter grace period" would no
			// longer be shorter).
			vmi.Spec.TerminationGracePeriodSeconds = oldGrace
		}
		c, ref := decide(vm, vmi)
		if ref != nil {
			return nil, ref
		}
		vmstate.ApplyChange(vm, c)
		return vm, nil
	})
	if err != nil && restoreGrace != nil && !dry {
		restoreGrace()
	}
	return err
}

// setVMIGrace sets a VMI's terminationGracePeriodSeconds.
func (s *Server) setVMIGrace(ctx context.Context, vmi *v1.VirtualMachineInstance, g *int64, dry bool) error {
	_, _, err := s.updateObject(ctx, s.vmiRes(), vmi.Namespace, vmi.Name, mainResource, dry, func(cur object) (object, error) {
		c := cur.(*v1.VirtualMachineInstance)
		if c.UID != vmi.UID {
			return nil, conflict(s.vmiRes(), vmi.Name, "the VMI was replaced meanwhile")
		}
		c.Spec.TerminationGracePeriodSeconds = g
		return c, nil
	})
	return err
}

func (s *Server) start(w http.ResponseWriter, req *http.Request) error {
	ns, name := req.PathValue("namespace"), req.PathValue("name")
	var opts v1.StartOptions
	bodyErr := lifecycleBody(req, &opts)
	dry, err := dryRunOf(req, opts.DryRun)
	if err != nil {
		return err
	}
	decide := func(vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance) (runstrategy.Change, *runstrategy.Refusal) {
		return runstrategy.Start(vmstate.VM(vm), vmstate.Instance(vmi, vm), runstrategy.StartOptions{Paused: opts.Paused})
	}
	if bodyErr != nil {
		// KubeVirt checks "already running" before it decodes the body.
		vmObj, _, err := s.read(req.Context(), s.vmRes(), ns, name)
		if err != nil {
			return err
		}
		vmi, err := s.readVMI(req.Context(), ns, name)
		if err != nil {
			return err
		}
		if _, ref := decide(vmObj.(*v1.VirtualMachine), vmi); ref != nil && ref.Message == runstrategy.MsgAlreadyRunning {
			return ref
		}
		return bodyErr
	}
	if err := s.applyVMChange(req.Context(), ns, name, dry, decide); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) stop(w http.ResponseWriter, req *http.Request) error {
	ns, name := req.PathValue("namespace"), req.PathValue("name")
	var opts v1.StopOptions
	if err := lifecycleBody(req, &opts); err != nil {
		return err
	}
	dry, err := dryRunOf(req, opts.DryRun)
	if err != nil {
		return err
	}
	if g := opts.GracePeriod; g != nil && *g < 0 {
		return badRequest("gracePeriod has to be greater or equal to 0")
	}
	err = s.applyVMChange(req.Context(), ns, name, dry, func(vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance) (runstrategy.Change, *runstrategy.Refusal) {
		return runstrategy.Stop(vmstate.VM(vm), vmstate.Instance(vmi, vm), runstrategy.StopOptions{GracePeriod: opts.GracePeriod})
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) restart(w http.ResponseWriter, req *http.Request) error {
	ns, name := req.PathValue("namespace"), req.PathValue("name")
	var opts v1.RestartOptions
	if err := lifecycleBody(req, &opts); err != nil {
		return err
	}
	dry, err := dryRunOf(req, opts.DryRun)
	if err != nil {
		return err
	}
	ro := runstrategy.RestartOptions{GracePeriodSeconds: opts.GracePeriodSeconds}
	// The grace-period checks come before the VM lookup (section 4.4).
	if _, ref := runstrategy.Restart(runstrategy.VM{}, nil, ro); ref != nil && ref.Code == http.StatusBadRequest {
		return ref
	}
	err = s.applyVMChange(req.Context(), ns, name, dry, func(vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance) (runstrategy.Change, *runstrategy.Refusal) {
		return runstrategy.Restart(vmstate.VM(vm), vmstate.Instance(vmi, vm), ro)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// vmiAction decides a VMI action and queues it on the VMI's status for its
// node agent, which carries it out and removes it.
func (s *Server) vmiAction(w http.ResponseWriter, req *http.Request, dryRunBody bool, decide func(runstrategy.Instance) (runstrategy.Change, *runstrategy.Refusal)) error {
	ns, name := req.PathValue("namespace"), req.PathValue("name")
	// KubeVirt's soft reboot has no options body; a dryRun query parameter
	// is still honoured, as on every write.
	var opts v1.PauseOptions
	if dryRunBody {
		if err := lifecycleBody(req, &opts); err != nil {
			return err
		}
	}
	dry, err := dryRunOf(req, opts.DryRun)
	if err != nil {
		return err
	}
	_, _, err = s.updateObject(req.Context(), s.vmiRes(), ns, name, statusResource, dry, func(cur object) (object, error) {
		vmi := cur.(*v1.VirtualMachineInstance)
		inst := vmstate.Instance(vmi, nil)
		c, ref := decide(*inst)
		if ref != nil {
			return nil, ref
		}
		vmi.Status.ActionRequests = append(slices.Clone(vmi.Status.ActionRequests), v1.VirtualMachineInstanceActionRequest{
			Action: v1.VMIAction(c.InstanceAction), ID: uuid.NewString(), RequestTime: metav1.NewTime(s.now()).Rfc3339Copy(),
		})
		return vmi, nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) pause(w http.ResponseWriter, req *http.Request) error {
	return s.vmiAction(w, req, true, runstrategy.Pause)
}

func (s *Server) unpause(w http.ResponseWriter, req *http.Request) error {
	return s.vmiAction(w, req, true, runstrategy.Unpause)
}

func (s *Server) softReboot(w http.ResponseWriter, req *http.Request) error {
	return s.vmiAction(w, req, false, runstrategy.SoftReboot)
}
