package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
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

// Config configures the scheduler.
type Config struct {
	Client   *client.Client
	Recorder *record.Recorder
	Workers  int
	Log      *slog.Logger
	Now      func() time.Time
	// SilentAfter: a node whose lease the scheduler has not seen renewed
	// for this long gets no new VMIs, though it is still Ready: it may be
	// about to be declared lost, and a VMI bound to it would fail with it
	// (default 3s, three renew intervals).
	SilentAfter time.Duration
	// Caches are the informers shared with the other controllers, run by
	// the caller; nil: the scheduler makes and runs its own.
	Caches *caches.Caches
}

// Scheduler is the VMI scheduler.
type Scheduler struct {
	cfg   Config
	log   *slog.Logger
	vmis  *informer.Informer[*v1.VirtualMachineInstance]
	nodes *informer.Informer[*v1.Node]
	ctrl  *controller.Controller

	// mu guards used, assumed and waiting, which the informer handlers and
	// the workers share. pickMu serialises picking and assuming, so two
	// workers never fill the same room twice.
	mu     sync.Mutex
	pickMu sync.Mutex
	// used is the reservation on each node of its live VMIs, as the cache
	// shows them, plus the assumed bindings.
	used map[string]request
	// assumed are bindings written but not seen in the cache yet.
	assumed map[string]assumption
	// waiting holds the keys of VMIs that fit nowhere, retried when room appears.
	waiting map[string]struct{}
	// roomChanges counts retryWaiting calls, so that a VMI found to fit
	// nowhere while room appeared is retried, not left waiting.
	roomChanges uint64
	// renewed is when each node's lease renewal was last seen, on this
	// scheduler's clock (guarded by mu).
	renewed map[string]time.Time
	leases  *informer.Informer[*v1.Lease]

	caches    *caches.Caches
	ownCaches bool
}

type assumption struct {
	node string
	req  request
}

// New builds the scheduler and its informers.
func New(cfg Config) *Scheduler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SilentAfter <= 0 {
		cfg.SilentAfter = 3 * time.Second
	}
	s := &Scheduler{cfg: cfg, log: cfg.Log.With("controller", "scheduler"),
		used: map[string]request{}, assumed: map[string]assumption{}, waiting: map[string]struct{}{}, renewed: map[string]time.Time{}}
	s.caches = cfg.Caches
	if s.caches == nil {
		s.caches, s.ownCaches = caches.New(cfg.Client, cfg.Log), true
	}
	s.leases, s.vmis, s.nodes = s.caches.Leases, s.caches.VMIs, s.caches.Nodes
	s.leases.AddHandler(informer.Handler[*v1.Lease]{
		OnAdd:    func(l *v1.Lease) { s.leaseRenewed(l.Name) },
		OnUpdate: func(_, l *v1.Lease) { s.leaseRenewed(l.Name) },
		OnDelete: func(l *v1.Lease) { s.mu.Lock(); delete(s.renewed, l.Name); s.mu.Unlock() },
	})
	// A heartbeat committed in a digest is a renewal too; a digest seen for
	// the first time counts as a lease seen for the first time does.
	s.caches.Digests.AddHandler(informer.Handler[*v1.HeartbeatDigest]{
		OnAdd: func(d *v1.HeartbeatDigest) {
			for node := range d.Nodes {
				s.leaseRenewed(node)
			}
		},
		OnUpdate: func(old, d *v1.HeartbeatDigest) { caches.BeatsChanged(old, d, s.leaseRenewed) },
	})
	s.ctrl = controller.New("scheduler", s.reconcile, controller.Options{Workers: cfg.Workers, Log: cfg.Log})
	s.vmis.AddHandler(informer.Handler[*v1.VirtualMachineInstance]{
		OnAdd:    func(vmi *v1.VirtualMachineInstance) { s.account(nil, vmi) },
		OnUpdate: func(old, vmi *v1.VirtualMachineInstance) { s.account(old, vmi) },
		OnDelete: func(vmi *v1.VirtualMachineInstance) { s.account(vmi, nil) },
	})
	s.nodes.AddHandler(informer.Handler[*v1.Node]{
		OnAdd:    func(*v1.Node) { s.retryWaiting() },
		OnUpdate: func(old, n *v1.Node) { s.nodeChanged(old, n) },
		OnDelete: func(*v1.Node) {},
	})
	return s
}

// Run runs the workers (and the informers, when they are the scheduler's
// own) until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	s.caches.RunWith(ctx, s.ownCaches, s.ctrl.Run)
}

// live reports whether a VMI holds a reservation on its node.
func live(vmi *v1.VirtualMachineInstance) bool {
	return vmi != nil && vmi.Status.NodeName != "" && !vmi.Status.Phase.IsFinal()
}

// needsScheduler reports whether a VMI waits for a binding or for release.
func needsScheduler(vmi *v1.VirtualMachineInstance) bool {
	return vmi.Status.NodeName == "" && !vmi.Status.Phase.IsFinal()
}

// account keeps the per-node reservations current as the cache changes, and
// queues the VMIs that need the scheduler.
func (s *Scheduler) account(old, cur *v1.VirtualMachineInstance) {
	freed := false
	s.mu.Lock()
	if live(old) {
		s.used[old.Status.NodeName] = s.used[old.Status.NodeName].sub(requestOf(old))
		freed = !live(cur)
	}
	if cur != nil {
		key := informer.Key(cur)
		if a, ok := s.assumed[key]; ok && (cur.Status.NodeName != "" || cur.Status.Phase.IsFinal()) {
			s.used[a.node] = s.used[a.node].sub(a.req)
			delete(s.assumed, key)
		}
		if live(cur) {
			s.used[cur.Status.NodeName] = s.used[cur.Status.NodeName].add(requestOf(cur))
		}
		if !needsScheduler(cur) {
			delete(s.waiting, key)
		}
	} else if old != nil {
		key := informer.Key(old)
		if a, ok := s.assumed[key]; ok {
			s.used[a.node] = s.used[a.node].sub(a.req)
			delete(s.assumed, key)
		}
		delete(s.waiting, key)
	}
	s.mu.Unlock()
	if cur != nil && needsScheduler(cur) {
		s.ctrl.Enqueue(informer.Key(cur))
	}
	if freed {
		s.retryWaiting()
	}
}

// leaseRenewed notes a node's lease renewal or heartbeat; a node that was silent and
// renews again may take the VMIs that waited.
func (s *Scheduler) leaseRenewed(node string) {
	now := s.cfg.Now()
	s.mu.Lock()
	last, seen := s.renewed[node]
	s.renewed[node] = now
	s.mu.Unlock()
	if seen && now.Sub(last) > s.cfg.SilentAfter {
		s.retryWaiting()
	}
}

// silentLocked lists the nodes whose lease has not been seen renewed for
// SilentAfter. A node whose lease was never seen is not silent: its lease
// is the node-health controller's business.
func (s *Scheduler) silentLocked(now time.Time) map[string]bool {
	var out map[string]bool
	for n, t := range s.renewed {
		if now.Sub(t) > s.cfg.SilentAfter {
			if out == nil {
				out = map[string]bool{}
			}
			out[n] = true
		}
	}
	return out
}

func (s *Scheduler) nodeChanged(old, n *v1.Node) {
	if ready(old) != ready(n) || old.Spec.Unschedulable != n.Spec.Unschedulable ||
		allocatable(old) != allocatable(n) || !maps(old.Labels, n.Labels) {
		s.retryWaiting()
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (s *Scheduler) retryWaiting() {
	s.mu.Lock()
	s.roomChanges++
	keys := make([]string, 0, len(s.waiting))
	for k := range s.waiting {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.ctrl.Enqueue(k)
	}
}

func ready(n *v1.Node) bool {
	c := n.Status.Condition(v1.NodeReady)
	return c != nil && c.Status == metav1.ConditionTrue
}

func (s *Scheduler) reconcile(ctx context.Context, key string) (controller.Result, error) {
	vmi, ok := s.vmis.Get(key)
	if !ok || !needsScheduler(vmi) {
		return controller.Result{}, nil
	}
	if vmi.DeletionTimestamp != nil {
		return controller.Result{}, s.release(ctx, vmi)
	}
	// pickMu covers choosing a node and reserving room on it, not the
	// writes that follow: those run concurrently, each VMI's room already
	// assumed, so binding is not serialised on the API's write latency.
	s.pickMu.Lock()
	s.mu.Lock()
	_, inFlight := s.assumed[key]
	s.mu.Unlock()
	if inFlight {
		s.pickMu.Unlock()
		return controller.Result{}, nil // bound; the cache has not caught up
	}
	req := requestOf(vmi)
	s.mu.Lock()
	changes := s.roomChanges
	s.mu.Unlock()
	node, why := s.pick(vmi, req)
	if node == "" {
		s.mu.Lock()
		s.waiting[key] = struct{}{}
		missed := s.roomChanges != changes
		s.mu.Unlock()
		s.pickMu.Unlock()
		if missed {
			// Room appeared while this VMI was being placed: retry.
			s.ctrl.Enqueue(key)
		}
		return controller.Result{}, s.markUnschedulable(ctx, vmi, why)
	}
	s.mu.Lock()
	s.assumed[key] = assumption{node: node, req: req}
	s.used[node] = s.used[node].add(req)
	delete(s.waiting, key)
	s.mu.Unlock()
	s.pickMu.Unlock()
	if err := s.bind(ctx, vmi, node); err != nil {
		s.mu.Lock()
		if a, ok := s.assumed[key]; ok {
			s.used[a.node] = s.used[a.node].sub(a.req)
			delete(s.assumed, key)
		}
		s.mu.Unlock()
		if apierrors.IsNotFound(err) {
			return controller.Result{}, nil
		}
		return controller.Result{}, err
	}
	return controller.Result{}, nil
}

// Place chooses a node for a VMI about to be created and reserves its room,
// as a binding would; "" when none fits now. The VM controller creates the
// VMI already bound to that node and reports back with Placed. Until the
// cache shows the VMI, the reservation is an assumption like any binding.
func (s *Scheduler) Place(vmi *v1.VirtualMachineInstance) string {
	key := informer.Key(vmi)
	req := requestOf(vmi)
	s.pickMu.Lock()
	defer s.pickMu.Unlock()
	s.mu.Lock()
	_, inFlight := s.assumed[key]
	s.mu.Unlock()
	if inFlight {
		return "" // a binding of an earlier VMI of that name is in flight
	}
	node, _ := s.pick(vmi, req)
	if node == "" {
		return "" // created unbound, the VMI is this scheduler's to place or report
	}
	s.mu.Lock()
	s.assumed[key] = assumption{node: node, req: req}
	s.used[node] = s.used[node].add(req)
	s.mu.Unlock()
	return node
}

// Placed is the outcome of the create of a VMI that Place put on node: on
// success it records the Scheduled event; on failure the room is released
// (if the cache has not already accounted for the VMI).
func (s *Scheduler) Placed(vmi *v1.VirtualMachineInstance, node string, err error) {
	if err == nil {
		s.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", vmi.Namespace, vmi.Name, node)
		return
	}
	key := informer.Key(vmi)
	s.mu.Lock()
	if a, ok := s.assumed[key]; ok && a.node == node {
		s.used[a.node] = s.used[a.node].sub(a.req)
		delete(s.assumed, key)
	}
	s.mu.Unlock()
	s.retryWaiting()
}

// pick chooses, among the cached nodes and under the current reservations,
// the node for vmi (see choose).
func (s *Scheduler) pick(vmi *v1.VirtualMachineInstance, req request) (string, string) {
	nodes := s.nodes.List()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	s.mu.Lock()
	defer s.mu.Unlock()
	return choose(nodes, s.used, s.silentLocked(s.cfg.Now()), vmi.Spec.NodeSelector, req)
}

// choose is the pure placement rule: among nodes (sorted by name), the Ready,
// schedulable, not silent node whose labels match selector and whose free room
// (allocatable minus used) fits req, the least allocated once req is placed;
// ties go to the first. When none fits it returns "" and why, as the count
// of nodes per reason.
func choose(nodes []*v1.Node, used map[string]request, silent map[string]bool, selector map[string]string, req request) (string, string) {
	reasons := map[string]int{}
	best, bestScore := "", 2.0
	for _, n := range nodes {
		switch {
		case !ready(n):
			reasons["node(s) were not ready"]++
			continue
		case n.Spec.Unschedulable:
			reasons["node(s) were unschedulable"]++
			continue
		case silent[n.Name]:
			reasons["node(s) had no heartbeat lately"]++
			continue
		case !selects(selector, n.Labels):
			reasons["node(s) didn't match the VMI's node selector"]++
			continue
		}
		alloc, u := allocatable(n), used[n.Name]
		fits := true
		if u.cpu+req.cpu > alloc.cpu {
			reasons["insufficient cpu"]++
			fits = false
		}
		if u.mem+req.mem > alloc.mem {
			reasons["insufficient memory"]++
			fits = false
		}
		if !fits {
			continue
		}
		score := max(frac(u.cpu+req.cpu, alloc.cpu), frac(u.mem+req.mem, alloc.mem))
		if score < bestScore {
			best, bestScore = n.Name, score
		}
	}
	if best != "" {
		return best, ""
	}
	parts := make([]string, 0, len(reasons))
	for r, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	msg := fmt.Sprintf("0/%d nodes are available", len(nodes))
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	return "", msg + "."
}

func frac(a, b int64) float64 {
	if b <= 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (s *Scheduler) bind(ctx context.Context, vmi *v1.VirtualMachineInstance, node string) error {
	next := vmi.DeepCopy()
	next.Status.Bind(node, metav1.NewTime(s.cfg.Now()).Rfc3339Copy())
	if _, err := s.cfg.Client.VirtualMachineInstances(vmi.Namespace).UpdateStatus(ctx, next, client.WriteOptions{}); err != nil {
		return fmt.Errorf("binding VMI %s/%s to %s: %w", vmi.Namespace, vmi.Name, node, err)
	}
	s.cfg.Recorder.Eventf(vmi, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", vmi.Namespace, vmi.Name, node)
	return nil
}

func (s *Scheduler) markUnschedulable(ctx context.Context, vmi *v1.VirtualMachineInstance, why string) error {
	if c := vmi.Status.Condition(v1.VirtualMachineInstancePodScheduled); c != nil && c.Status == metav1.ConditionFalse && c.Message == why {
		return nil
	}
	next := vmi.DeepCopy()
	next.Status.Phase = v1.Pending
	next.Status.SetCondition(v1.VirtualMachineInstanceCondition{
		Type: v1.VirtualMachineInstancePodScheduled, Status: metav1.ConditionFalse, Reason: v1.UnschedulableReason, Message: why,
	}, metav1.NewTime(s.cfg.Now()).Rfc3339Copy())
	if _, err := s.cfg.Client.VirtualMachineInstances(vmi.Namespace).UpdateStatus(ctx, next, client.WriteOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("marking VMI %s/%s unschedulable: %w", vmi.Namespace, vmi.Name, err)
	}
	s.cfg.Recorder.Eventf(vmi, v1.EventTypeWarning, "FailedScheduling", "%s", why)
	return nil
}

// release ends a VMI deleted before it was bound: Failed, and its agent
// finalizer removed, since no agent will ever see it.
func (s *Scheduler) release(ctx context.Context, vmi *v1.VirtualMachineInstance) error {
	vmis := s.cfg.Client.VirtualMachineInstances(vmi.Namespace)
	if !vmi.Status.Phase.IsFinal() {
		next := vmi.DeepCopy()
		now := metav1.NewTime(s.cfg.Now()).Rfc3339Copy()
		next.Status.Phase = v1.Failed
		next.Status.Reason = v1.ReasonDeletedBeforeStart
		next.Status.Message = "the VMI was deleted before it was scheduled to a node"
		next.Status.PhaseTransitionTimestamps = append(next.Status.PhaseTransitionTimestamps,
			v1.VirtualMachineInstancePhaseTransitionTimestamp{Phase: v1.Failed, PhaseTransitionTimestamp: now})
		updated, err := vmis.UpdateStatus(ctx, next, client.WriteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("failing unbound deleted VMI %s/%s: %w", vmi.Namespace, vmi.Name, err)
		}
		vmi = updated
	}
	if !slices.Contains(vmi.Finalizers, v1.AgentFinalizer) {
		return nil
	}
	fins := slices.DeleteFunc(slices.Clone(vmi.Finalizers), func(f string) bool { return f == v1.AgentFinalizer })
	if fins == nil {
		fins = []string{}
	}
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"finalizers":%s}}`, vmi.ResourceVersion, jsonList(fins))
	_, err := vmis.Patch(ctx, vmi.Name, client.MergePatch, []byte(patch), "", client.WriteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func jsonList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}
