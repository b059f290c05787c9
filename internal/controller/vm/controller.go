package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/controller"
	"github.com/vigil-vm/vigil/internal/controller/caches"
	"github.com/vigil-vm/vigil/internal/runstrategy"
	"github.com/vigil-vm/vigil/internal/vmstate"
)

// Config configures the VM controller.
type Config struct {
	Client   *client.Client
	Recorder *record.Recorder
	// BackoffBase and BackoffMax are the crash-loop parameters (defaults 10s and 300s).
	BackoffBase, BackoffMax time.Duration
	Workers                 int
	Log                     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Caches are the informers shared with the other controllers, run by
	// the caller; nil: the controller makes and runs its own.
	Caches *caches.Caches
	// Placer, when set, places a new VMI before it is created, so that it
	// is created already scheduled (one write instead of two).
	Placer Placer
	// StartingHold is how long the status write that would only say a VM is
	// Starting may wait for its new VMI to run, saving a write per start
	// (0 or negative: never wait, KubeVirt's behaviour and the default).
	StartingHold time.Duration
}

// Placer chooses a node for a new VMI and holds its room until told how the
// create went (the scheduler).
type Placer interface {
	// Place returns the node for vmi, its room reserved, or "" when none
	// fits now (the VMI is then created unscheduled, for the scheduler).
	Place(vmi *v1.VirtualMachineInstance) string
	// Placed reports the create of a VMI that Place placed on node: err
	// nil, the VMI exists bound to node; otherwise its room is given back.
	Placed(vmi *v1.VirtualMachineInstance, node string, err error)
}

// Controller is the VM controller.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	vms  *informer.Informer[*v1.VirtualMachine]
	vmis *informer.Informer[*v1.VirtualMachineInstance]
	ctrl *controller.Controller
	exp  *expectations
	own  written
	hold startHold

	caches    *caches.Caches
	ownCaches bool
}

// New builds the controller and its informers.
func New(cfg Config) *Controller {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Controller{cfg: cfg, log: cfg.Log.With("controller", "vm"), exp: newExpectations(), caches: cfg.Caches,
		hold: startHold{hold: cfg.StartingHold}}
	if c.caches == nil {
		c.caches, c.ownCaches = caches.New(cfg.Client, cfg.Log), true
	}
	c.vms, c.vmis = c.caches.VMs, c.caches.VMIs
	c.ctrl = controller.New("vm", c.reconcile, controller.Options{Workers: cfg.Workers, Log: cfg.Log})
	enqueueVM := func(vm *v1.VirtualMachine) {
		c.own.seen(informer.Key(vm), vm)
		c.ctrl.Enqueue(informer.Key(vm))
	}
	c.vms.AddHandler(informer.Handler[*v1.VirtualMachine]{
		OnAdd:    enqueueVM,
		OnUpdate: func(_, vm *v1.VirtualMachine) { enqueueVM(vm) },
		OnDelete: func(vm *v1.VirtualMachine) {
			c.exp.forget(informer.Key(vm))
			c.own.forget(informer.Key(vm))
			c.hold.forget(informer.Key(vm))
			c.ctrl.Enqueue(informer.Key(vm))
		},
	})
	onVMI := func(vmi *v1.VirtualMachineInstance, gone bool) {
		key := informer.Key(vmi)
		c.exp.observed(key, vmi.UID, vmi.DeletionTimestamp != nil, gone)
		c.ctrl.Enqueue(key)
	}
	c.vmis.AddHandler(informer.Handler[*v1.VirtualMachineInstance]{
		OnAdd:    func(vmi *v1.VirtualMachineInstance) { onVMI(vmi, false) },
		OnUpdate: func(_, vmi *v1.VirtualMachineInstance) { onVMI(vmi, false) },
		OnDelete: func(vmi *v1.VirtualMachineInstance) { onVMI(vmi, true) },
	})
	return c
}

// Run runs the workers (and the informers, when they are the controller's
// own) until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.caches.RunWith(ctx, c.ownCaches, c.ctrl.Run)
}

func (c *Controller) backoff() runstrategy.Backoff {
	return runstrategy.Backoff{Base: c.cfg.BackoffBase, Max: c.cfg.BackoffMax, Jitter: func(n int64) int64 {
		if n <= 0 {
			return 0
		}
		return rand.Int64N(n + 1)
	}}
}

// controlledBy reports whether vm is vmi's controller.
func controlledBy(vmi *v1.VirtualMachineInstance, vm *v1.VirtualMachine) bool {
	for _, o := range vmi.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.UID == vm.UID
		}
	}
	return false
}

func (c *Controller) reconcile(ctx context.Context, key string) (controller.Result, error) {
	vm, ok := c.vms.Get(key)
	if !ok {
		c.exp.forget(key)
		c.own.forget(key)
		c.hold.forget(key)
		return controller.Result{}, nil
	}
	vm = c.own.fresher(key, vm)
	vmi, _ := c.vmis.Get(key)
	foreign := false
	if vmi != nil && !controlledBy(vmi, vm) {
		vmi, foreign = nil, true
	}
	now := c.cfg.Now()
	createPending, deletePending := c.exp.pending(key, now)
	pass := runstrategy.Pass{
		VM: vmstate.VM(vm), Instance: vmstate.Instance(vmi, vm),
		CreatePending: createPending, DeletePending: deletePending, Now: now, Backoff: c.backoff(),
	}
	d := runstrategy.Reconcile(pass)
	// rv guards the status write: the cached VM's, or the one the finalizer
	// patch below made (guarded by the cached one, so the status is the same).
	rv := vm.ResourceVersion
	if d.AddVMFinalizer {
		patched, err := c.setVMFinalizer(ctx, vm, true)
		if err != nil {
			return controller.Result{}, err
		}
		c.own.record(key, patched)
		rv = patched.ResourceVersion
	}
	var out runstrategy.Outcome
	var deleted *v1.VirtualMachineInstance // the VMI as this pass's delete left it
	switch d.Action {
	case runstrategy.CreateInstance:
		out.Err = c.createVMI(ctx, key, vm, d, foreign, now)
	case runstrategy.DeleteInstance:
		deleted, out.Err = c.deleteVMI(ctx, key, vm, vmi, d, now)
	case runstrategy.RemoveVMFinalizer:
		_, err := c.setVMFinalizer(ctx, vm, false)
		return controller.Result{}, err
	}
	st := runstrategy.NextStatus(pass, d, out)
	next := vm.DeepCopy()
	next.ResourceVersion = rv
	vmstate.ApplyStatus(next, st)
	var held time.Duration
	if !equality.Semantic.DeepEqual(next.Status, vm.Status) {
		held = c.hold.wait(key, &vm.Status, &next.Status, now)
	}
	if held == 0 && !equality.Semantic.DeepEqual(next.Status, vm.Status) {
		stored, err := c.cfg.Client.VirtualMachines(vm.Namespace).UpdateStatus(ctx, next, client.WriteOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return controller.Result{}, nil
			}
			return controller.Result{}, fmt.Errorf("writing the status of VM %s: %w", key, err)
		}
		c.own.record(key, stored)
	}
	if d.RemoveInstanceFinalizer && vmi != nil {
		// A delete of this pass set the deletion timestamp, a new
		// resourceVersion: patch what it returned, not the cached VMI.
		if deleted != nil && deleted.UID == vmi.UID && deleted.ResourceVersion != "" {
			vmi = deleted
		}
		if err := c.removeVMIFinalizer(ctx, vmi); err != nil {
			return controller.Result{}, err
		}
	}
	if d.Err != nil {
		c.cfg.Recorder.Eventf(vm, v1.EventTypeWarning, d.Err.Reason, "%s", d.Err.Message)
		return controller.Result{}, fmt.Errorf("VM %s: %s", key, d.Err.Message)
	}
	if out.Err != nil {
		return controller.Result{}, fmt.Errorf("VM %s: %s", key, out.Err.Message)
	}
	res := controller.Result{RequeueAfter: d.RequeueAfter}
	if held > 0 && (res.RequeueAfter == 0 || held < res.RequeueAfter) {
		res.RequeueAfter = held
	}
	return res, nil
}

func (c *Controller) createVMI(ctx context.Context, key string, vm *v1.VirtualMachine, d runstrategy.Decision, foreign bool, now time.Time) *runstrategy.Failure {
	if foreign {
		msg := fmt.Sprintf("Failure while starting VMI: a VirtualMachineInstance named %s exists and is not owned by this VM", vm.Name)
		c.cfg.Recorder.Eventf(vm, v1.EventTypeWarning, runstrategy.ReasonFailedCreate, "%s", msg)
		return &runstrategy.Failure{Reason: runstrategy.ReasonFailedCreate, Message: msg}
	}
	vmi := vmstate.NewInstance(vm, d.StartPaused)
	c.exp.expectCreate(key, now)
	err := c.create(ctx, vmi)
	switch {
	case err == nil:
		c.hold.created(key, now)
		c.log.Debug("created VMI", "vm", key, "why", d.Why)
		c.cfg.Recorder.Eventf(vm, v1.EventTypeNormal, "SuccessfulCreate", "Started the virtual machine by creating the new virtual machine instance %s", vm.Name)
		return nil
	case apierrors.IsAlreadyExists(err):
		return nil // ours, from an earlier pass; the cache will show it
	default:
		c.exp.forget(key)
		msg := fmt.Sprintf("Failure while starting VMI: %s", errMessage(err))
		c.cfg.Recorder.Eventf(vm, v1.EventTypeWarning, runstrategy.ReasonFailedCreate, "Error creating virtual machine instance: %s", errMessage(err))
		return &runstrategy.Failure{Reason: runstrategy.ReasonFailedCreate, Message: msg}
	}
}

// create creates vmi, already scheduled when the placer finds it a node.
func (c *Controller) create(ctx context.Context, vmi *v1.VirtualMachineInstance) error {
	vmis := c.cfg.Client.VirtualMachineInstances(vmi.Namespace)
	node := ""
	if c.cfg.Placer != nil {
		node = c.cfg.Placer.Place(vmi)
	}
	if node == "" {
		_, err := vmis.Create(ctx, vmi, client.WriteOptions{})
		return err
	}
	created, err := vmis.CreateOnNode(ctx, vmi, node, client.WriteOptions{})
	if err != nil {
		created = vmi
	}
	c.cfg.Placer.Placed(created, node, err)
	return err
}

// deleteVMI deletes the VM's VMI and returns it as the delete left it,
// when it still exists (it has finalizers), or nil.
func (c *Controller) deleteVMI(ctx context.Context, key string, vm *v1.VirtualMachine, vmi *v1.VirtualMachineInstance, d runstrategy.Decision, now time.Time) (*v1.VirtualMachineInstance, *runstrategy.Failure) {
	c.exp.expectDelete(key, vmi.UID, now)
	left, err := c.cfg.Client.VirtualMachineInstances(vmi.Namespace).Delete(ctx, vmi.Name, client.DeleteOptions{UID: string(vmi.UID)})
	if left != nil && (left.UID != vmi.UID || left.DeletionTimestamp == nil) {
		left = nil // not the object (a Status, say)
	}
	switch {
	case err == nil, apierrors.IsNotFound(err):
		c.log.Debug("deleted VMI", "vm", key, "why", d.Why)
		why := d.Why
		if vmi.Status.Phase.IsFinal() && vmi.Status.Reason != "" {
			// Say how the VMI ended, so that the VM's events tell why it
			// was restarted or moved (e.g. NodeLost).
			why += fmt.Sprintf("; it ended with %s: %s", vmi.Status.Reason, vmi.Status.Message)
		}
		c.cfg.Recorder.Eventf(vm, v1.EventTypeNormal, "SuccessfulDelete", "Stopped the virtual machine by deleting the virtual machine instance %s: %s", vmi.Name, why)
		return left, nil
	default:
		c.exp.forget(key)
		msg := fmt.Sprintf("Failure attempting to delete VMI: %s", errMessage(err))
		c.cfg.Recorder.Eventf(vm, v1.EventTypeWarning, runstrategy.ReasonFailedDelete, "Error deleting virtual machine instance %s: %s", vmi.Name, errMessage(err))
		return nil, &runstrategy.Failure{Reason: runstrategy.ReasonFailedDelete, Message: msg}
	}
}

func errMessage(err error) string {
	if se, ok := err.(*apierrors.StatusError); ok {
		return se.ErrStatus.Message
	}
	return err.Error()
}

// finalizerPatch is a merge patch of an object's finalizers, guarded by its
// resourceVersion so that a concurrent change of the list is a conflict.
func finalizerPatch(rv string, finalizers []string) []byte {
	if finalizers == nil {
		finalizers = []string{}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": rv, "finalizers": finalizers}})
	return b
}

// setVMFinalizer puts the controller finalizer on vm or takes it off, and
// returns the VM as stored after that (vm itself when nothing was written).
func (c *Controller) setVMFinalizer(ctx context.Context, vm *v1.VirtualMachine, present bool) (*v1.VirtualMachine, error) {
	has := slices.Contains(vm.Finalizers, v1.VirtualMachineControllerFinalizer)
	if has == present {
		return vm, nil
	}
	fins := slices.DeleteFunc(slices.Clone(vm.Finalizers), func(f string) bool { return f == v1.VirtualMachineControllerFinalizer })
	if present {
		fins = append(fins, v1.VirtualMachineControllerFinalizer)
	}
	out, err := c.cfg.Client.VirtualMachines(vm.Namespace).Patch(ctx, vm.Name, client.MergePatch, finalizerPatch(vm.ResourceVersion, fins), "", client.WriteOptions{})
	if apierrors.IsNotFound(err) {
		return vm, nil
	}
	if err != nil {
		return nil, fmt.Errorf("updating the finalizers of VM %s/%s: %w", vm.Namespace, vm.Name, err)
	}
	return out, nil
}

func (c *Controller) removeVMIFinalizer(ctx context.Context, vmi *v1.VirtualMachineInstance) error {
	if !slices.Contains(vmi.Finalizers, v1.VirtualMachineControllerFinalizer) {
		return nil
	}
	// A JSON patch that tests the finalizer is where it was seen: a
	// concurrent status write (the agent reporting the guest's end) does
	// not conflict with it; a change of the finalizers does.
	i := slices.Index(vmi.Finalizers, v1.VirtualMachineControllerFinalizer)
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/uid","value":%q},{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
		vmi.UID, i, v1.VirtualMachineControllerFinalizer, i)
	_, err := c.cfg.Client.VirtualMachineInstances(vmi.Namespace).Patch(ctx, vmi.Name, client.JSONPatch, []byte(patch), "", client.WriteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the finalizer of VMI %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	return nil
}
