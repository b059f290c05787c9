// Package nodehealth is the node-health controller: it watches every node's
// Lease and the API servers' heartbeat digests (either renews a node),
// measures the time since each renewal on its own monotonic clock,
// and declares a node lost when its agent has not renewed for
// NodeLostAfter. A lost node is marked Ready=Unknown, fenced by the
// configured fence command (when there is one), and then its VMIs are
// failed with reason NodeLost, so that the RunStrategies recover them
// elsewhere.
//
// The guarantee that no VM runs twice rests on timing: an agent that cannot
// renew kills its own guests after --fence-after, and NodeLostAfter exceeds
// that by a safety margin, measured here from the last renewal this
// controller saw, never from timestamps written by the node (docs/ha.md).
// Nothing is declared lost before this controller has itself watched a
// node for a full NodeLostAfter: a new leader starts counting afresh.
package nodehealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/controller"
	"github.com/vigil-vm/vigil/internal/controller/caches"
)

// Defaults.
const (
	DefaultNodeLostAfter = 8 * time.Second
	DefaultFenceTimeout  = 60 * time.Second
)

// Condition reasons and event reasons of this controller.
const (
	ReasonNodeStatusUnknown = "NodeStatusUnknown"
	ReasonNodeReady         = "NodeReady"
	ReasonFenceFailed       = "FenceFailed"
	ReasonFenced            = "Fenced"
)

// Config configures the controller.
type Config struct {
	Client   *client.Client
	Recorder *record.Recorder
	// NodeLostAfter is how long a node may go without a lease renewal
	// before it is declared lost.
	NodeLostAfter time.Duration
	// FenceCommand, when set, is run (argv, no shell) before a lost node's
	// VMIs are failed; recovery waits until it succeeds. It gets the node
	// in $VIGIL_NODE and its address in $VIGIL_NODE_ADDRESS.
	FenceCommand []string
	FenceTimeout time.Duration
	Log          *slog.Logger
	// Now is the controller's clock; it must be monotonic (time.Now is).
	Now func() time.Time
	// Caches are the informers shared with the other controllers, run by
	// the caller; nil: the controller makes and runs its own.
	Caches *caches.Caches
}

// Controller is the node-health controller.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	nodes  *informer.Informer[*v1.Node]
	leases *informer.Informer[*v1.Lease]
	vmis   *informer.Informer[*v1.VirtualMachineInstance]
	ctrl   *controller.Controller

	caches    *caches.Caches
	ownCaches bool

	mu    sync.Mutex
	nodeS map[string]*nodeState
}

// nodeState is what the controller has observed of one node.
type nodeState struct {
	// leaseRV is the Lease's resourceVersion at the last renewal seen, and
	// renewedAt when this controller saw it (its own clock).
	leaseRV   string
	renewedAt time.Time
	// renewals counts the renewals seen; lostAt is its value when the node
	// was declared lost, so that a later renewal shows it came back.
	renewals int
	lost     bool
	lostAt   int
	fenced   bool
}

// New builds the controller and its informers.
func New(cfg Config) *Controller {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NodeLostAfter <= 0 {
		cfg.NodeLostAfter = DefaultNodeLostAfter
	}
	if cfg.FenceTimeout <= 0 {
		cfg.FenceTimeout = DefaultFenceTimeout
	}
	c := &Controller{cfg: cfg, log: cfg.Log.With("controller", "node-health"), nodeS: map[string]*nodeState{}}
	c.caches = cfg.Caches
	if c.caches == nil {
		c.caches, c.ownCaches = caches.New(cfg.Client, cfg.Log), true
	}
	c.nodes, c.leases, c.vmis = c.caches.Nodes, c.caches.Leases, c.caches.VMIs
	c.vmis.AddIndex("node", func(vmi *v1.VirtualMachineInstance) []string {
		if vmi.Status.NodeName == "" {
			return nil
		}
		return []string{vmi.Status.NodeName}
	})
	c.ctrl = controller.New("node-health", c.reconcile, controller.Options{Workers: 2, Log: cfg.Log})
	c.nodes.AddHandler(informer.Handler[*v1.Node]{
		OnAdd:    func(n *v1.Node) { c.ctrl.Enqueue(n.Name) },
		OnUpdate: func(_, n *v1.Node) { c.ctrl.Enqueue(n.Name) },
		OnDelete: func(n *v1.Node) { c.forget(n.Name) },
	})
	c.leases.AddHandler(informer.Handler[*v1.Lease]{
		OnAdd:    c.renewed,
		OnUpdate: func(_, l *v1.Lease) { c.renewed(l) },
	})
	// The agents' streamed heartbeats, committed in the API servers'
	// digests, are renewals as Lease updates are.
	c.caches.Digests.AddHandler(informer.Handler[*v1.HeartbeatDigest]{
		OnAdd: func(d *v1.HeartbeatDigest) {
			// In the first list a digest may be old: not a renewal. Later
			// a digest appears when a server first commits one, with
			// beats it has just acknowledged.
			fresh := c.caches.Digests.HasSynced()
			for node := range d.Nodes {
				c.beat(node, fresh)
			}
		},
		OnUpdate: func(old, d *v1.HeartbeatDigest) {
			caches.BeatsChanged(old, d, func(node string) { c.beat(node, true) })
		},
	})
	return c
}

// Run runs the workers (and the informers, when they are the controller's
// own) until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.caches.RunWith(ctx, c.ownCaches, c.ctrl.Run)
}

// state returns the node's state, starting its clock now if it is new.
func (c *Controller) state(node string) *nodeState {
	st, ok := c.nodeS[node]
	if !ok {
		st = &nodeState{renewedAt: c.cfg.Now()}
		c.nodeS[node] = st
	}
	return st
}

// renewed notes a lease renewal, on this controller's clock.
func (c *Controller) renewed(l *v1.Lease) {
	c.mu.Lock()
	st := c.state(l.Name)
	renewal := false
	if st.leaseRV != l.ResourceVersion {
		first := st.leaseRV == ""
		st.leaseRV = l.ResourceVersion
		if !first {
			// The first sight of a lease is not a renewal: it may be old.
			st.renewedAt = c.cfg.Now()
			st.renewals++
			renewal = true
		}
	}
	c.mu.Unlock()
	c.afterRenewal(l.Name, renewal)
}

// afterRenewal enqueues a node after a renewal, or the first sight of one,
// when the renewal may change something: the node is lost, not Ready, or
// not seen before. A healthy node's renewals change nothing now; its
// reconcile is already due when its silence would reach NodeLostAfter
// (each reconcile requeues it for then), and that reconcile sees the
// renewal. So a hundred nodes beating every second cost no reconciles.
func (c *Controller) afterRenewal(node string, renewal bool) {
	if renewal {
		c.mu.Lock()
		st := c.nodeS[node]
		quiet := st != nil && !st.lost && st.renewals > 1
		c.mu.Unlock()
		if n, ok := c.nodes.Get(node); quiet && ok && isReady(n) {
			return
		}
	}
	c.ctrl.Enqueue(node)
}

// beat notes a node's heartbeat seen in a digest: a renewal, or only the
// first sight of the node.
func (c *Controller) beat(node string, renewal bool) {
	c.mu.Lock()
	st := c.state(node)
	if renewal {
		st.renewedAt = c.cfg.Now()
		st.renewals++
	}
	c.mu.Unlock()
	c.afterRenewal(node, renewal)
}

func (c *Controller) forget(node string) {
	c.mu.Lock()
	delete(c.nodeS, node)
	c.mu.Unlock()
}

func (c *Controller) reconcile(ctx context.Context, name string) (controller.Result, error) {
	node, ok := c.nodes.Get(name)
	if !ok {
		return controller.Result{}, nil
	}
	c.mu.Lock()
	st := c.state(name)
	silent := c.cfg.Now().Sub(st.renewedAt)
	back := st.lost && st.renewals > st.lostAt
	if back {
		st.lost, st.fenced = false, false
	}
	lost, fenced, renewals := st.lost, st.fenced, st.renewals
	c.mu.Unlock()

	if silent < c.cfg.NodeLostAfter {
		renewing := back || (renewals > 0 && readyReason(node) == ReasonNodeStatusUnknown)
		if !lost && !isReady(node) && renewing {
			// Renewals resumed after the node was lost: it may take
			// VMIs again (its old ones were failed and replaced).
			if err := c.setReady(ctx, node, metav1.ConditionTrue, ReasonNodeReady, "the node agent beats again"); err != nil {
				return controller.Result{}, err
			}
			c.cfg.Recorder.Eventf(node, v1.EventTypeNormal, ReasonNodeReady, "Node %s is Ready again: its agent beats again", name)
		}
		return controller.Result{RequeueAfter: c.cfg.NodeLostAfter - silent}, nil
	}

	// Lost: no renewal for NodeLostAfter, as this controller measured it.
	if !lost {
		c.log.Warn("node lost", "node", name, "silent", silent.Round(time.Millisecond))
		c.mu.Lock()
		st.lost, st.lostAt = true, st.renewals
		c.mu.Unlock()
	}
	if readyReason(node) != ReasonNodeStatusUnknown {
		msg := fmt.Sprintf("the node agent has sent no heartbeat for %s", silent.Round(time.Second))
		if err := c.setReady(ctx, node, metav1.ConditionUnknown, ReasonNodeStatusUnknown, msg); err != nil {
			return controller.Result{}, err
		}
		c.cfg.Recorder.Eventf(node, v1.EventTypeWarning, "NodeNotReady", "Node %s is lost: %s", name, msg)
	}
	if !fenced {
		if err := c.fence(ctx, node); err != nil {
			c.cfg.Recorder.Eventf(node, v1.EventTypeWarning, ReasonFenceFailed, "Fencing node %s failed, its VMs wait: %v", name, err)
			return controller.Result{}, err
		}
		c.mu.Lock()
		if st.lost {
			st.fenced = true
		}
		c.mu.Unlock()
	}
	return controller.Result{}, c.failVMIs(ctx, name, silent)
}

// fence runs the fence command for a node, if there is one.
func (c *Controller) fence(ctx context.Context, node *v1.Node) error {
	if len(c.cfg.FenceCommand) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FenceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cfg.FenceCommand[0], c.cfg.FenceCommand[1:]...)
	cmd.Env = append(os.Environ(), "VIGIL_NODE="+node.Name, "VIGIL_NODE_ADDRESS="+nodeAddress(node))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("fence command %s: %w: %s", strings.Join(c.cfg.FenceCommand, " "), err, strings.TrimSpace(lastLine(string(out))))
	}
	c.cfg.Recorder.Eventf(node, v1.EventTypeNormal, ReasonFenced, "Node %s was fenced by %s", node.Name, c.cfg.FenceCommand[0])
	return nil
}

// failVMIs ends every VMI still on a lost node: Failed with NodeLost, and
// its agent finalizer removed, since that agent will never remove it.
// failConcurrency bounds the VMIs of one lost node failed at once: each
// costs a few writes, and a node may host hundreds.
const failConcurrency = 16

func (c *Controller) failVMIs(ctx context.Context, node string, silent time.Duration) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, failConcurrency)
	for _, vmi := range c.vmis.ByIndex("node", node) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.failVMI(ctx, vmi, node, silent); err != nil && !apierrors.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Controller) failVMI(ctx context.Context, vmi *v1.VirtualMachineInstance, node string, silent time.Duration) error {
	vmis := c.cfg.Client.VirtualMachineInstances(vmi.Namespace)
	if !vmi.Status.Phase.IsFinal() {
		next := vmi.DeepCopy()
		now := metav1.NewTime(time.Now()).Rfc3339Copy()
		next.Status.Phase = v1.Failed
		next.Status.Reason = v1.ReasonNodeLost
		next.Status.Message = fmt.Sprintf("node %s was lost (no heartbeat for %s) and fenced", node, silent.Round(time.Second))
		next.Status.PhaseTransitionTimestamps = append(next.Status.PhaseTransitionTimestamps,
			v1.VirtualMachineInstancePhaseTransitionTimestamp{Phase: v1.Failed, PhaseTransitionTimestamp: now})
		for i := range next.Status.Conditions {
			if next.Status.Conditions[i].Type == v1.VirtualMachineInstanceReady {
				next.Status.Conditions[i].Status = metav1.ConditionFalse
				next.Status.Conditions[i].Reason = v1.ReasonNodeLost
				next.Status.Conditions[i].Message = next.Status.Message
				next.Status.Conditions[i].LastTransitionTime = now
			}
		}
		updated, err := vmis.UpdateStatus(ctx, next, client.WriteOptions{})
		if err != nil {
			return fmt.Errorf("failing VMI %s/%s of lost node %s: %w", vmi.Namespace, vmi.Name, node, err)
		}
		c.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, v1.ReasonNodeLost, "VirtualMachineInstance failed: %s", next.Status.Message)
		vmi = updated
	}
	if !slices.Contains(vmi.Finalizers, v1.AgentFinalizer) {
		return nil
	}
	i := slices.Index(vmi.Finalizers, v1.AgentFinalizer)
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`, i, v1.AgentFinalizer, i)
	if _, err := vmis.Patch(ctx, vmi.Name, client.JSONPatch, []byte(patch), "", client.WriteOptions{}); err != nil {
		return fmt.Errorf("releasing VMI %s/%s of lost node %s: %w", vmi.Namespace, vmi.Name, node, err)
	}
	return nil
}

func (c *Controller) setReady(ctx context.Context, node *v1.Node, status metav1.ConditionStatus, reason, msg string) error {
	next := node.DeepCopy()
	now := metav1.NewTime(time.Now()).Rfc3339Copy()
	cond := v1.NodeCondition{Type: v1.NodeReady, Status: status, Reason: reason, Message: msg, LastTransitionTime: now, LastHeartbeatTime: now}
	if c := next.Status.Condition(v1.NodeReady); c != nil {
		*c = cond
	} else {
		next.Status.Conditions = append(next.Status.Conditions, cond)
	}
	if _, err := c.cfg.Client.Nodes().UpdateStatus(ctx, next, client.WriteOptions{}); err != nil {
		return fmt.Errorf("setting node %s Ready=%s: %w", node.Name, status, err)
	}
	return nil
}

func isReady(n *v1.Node) bool {
	c := n.Status.Condition(v1.NodeReady)
	return c != nil && c.Status == metav1.ConditionTrue
}

func readyReason(n *v1.Node) string {
	if c := n.Status.Condition(v1.NodeReady); c != nil {
		return c.Reason
	}
	return ""
}

func nodeAddress(n *v1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	return ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
