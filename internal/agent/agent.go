package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/informer"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/driver"
)

// Config configures a node agent.
type Config struct {
	Client *client.Client
	// Node is this node's name.
	Node   string
	Driver driver.Driver
	// Capacity is what the node offers (default: the host's CPUs and memory).
	Capacity v1.ResourceList
	// Labels are added to the Node's labels.
	Labels map[string]string
	// LeaseRenewInterval is how often the heartbeat beats (default 1s).
	LeaseRenewInterval time.Duration
	// LeaseDuration is recorded in the Lease (default 8s).
	LeaseDuration time.Duration
	// FenceAfter is how long the agent runs guests without a successful
	// renewal (heartbeat) before it kills them all (default 4s).
	FenceAfter time.Duration
	// OnRenew, when set, is called after every successful renewal with
	// the time its beat was sent (it feeds the node's watchdog).
	OnRenew func(at time.Time)
	// LastRenewal, when known, is when an earlier agent process on this
	// node last renewed the lease. The fence deadline counts from it, not
	// from this start: the control plane's clock runs from that renewal
	// too, so an agent that restarts (even again and again) without
	// reaching the control plane still fences in time.
	LastRenewal time.Time
	// Address and Port are where the agent serves consoles, published in
	// the Node's status.
	Address string
	Port    int32
	// ConsoleListen, when set, is the HOST:PORT the console endpoint
	// listens on (port 0: any); Address and Port are then taken from it
	// (Address only when HOST is not 0.0.0.0 or ::).
	ConsoleListen string
	// Version is the agent's version.
	Version  string
	Recorder *record.Recorder
	Log      *slog.Logger
	Now      func() time.Time
}

// Agent is a node agent.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	vmis *informer.Informer[*v1.VirtualMachineInstance]

	// ctx is Run's context; runners stop when it ends. Set before the
	// informer starts, read-only afterwards.
	ctx context.Context

	mu      sync.Mutex // guards runners and adopted
	runners map[string]*runner
	// adopted holds guests re-adopted at start whose VMI the agent has not
	// matched yet.
	adopted map[string]driver.Guest
	wg      sync.WaitGroup // runners

	fenceMu sync.Mutex
	fence   fence
}

// New builds an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil || cfg.Driver == nil || cfg.Node == "" {
		return nil, errors.New("agent: a client, a driver and a node name are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LeaseRenewInterval <= 0 {
		cfg.LeaseRenewInterval = time.Second
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 8 * time.Second
	}
	if cfg.FenceAfter <= 0 {
		cfg.FenceAfter = 4 * time.Second
	}
	if cfg.Capacity == nil {
		cfg.Capacity = HostCapacity()
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.Node), runners: map[string]*runner{}, adopted: map[string]driver.Guest{},
		fence: fence{rearm: make(chan struct{}, 1)}}
	a.vmis = informer.New[*v1.VirtualMachineInstance](cfg.Client.VirtualMachineInstances("").Resource,
		client.ListOptions{FieldSelector: "status.nodeName=" + cfg.Node}, cfg.Log)
	a.vmis.AddHandler(informer.Handler[*v1.VirtualMachineInstance]{
		OnAdd: func(vmi *v1.VirtualMachineInstance) {
			a.log.Debug("VMI added", "vmi", vmi.UID, "name", vmi.Name, "resourceVersion", vmi.ResourceVersion)
			a.dispatch(vmi.UID, vmi)
		},
		OnUpdate: func(old, vmi *v1.VirtualMachineInstance) {
			if old.UID != vmi.UID {
				// The VMI was replaced by one of the same name while the
				// watch was away: the old one is gone.
				a.log.Debug("VMI replaced", "old", old.UID, "vmi", vmi.UID, "name", vmi.Name)
				a.dispatch(old.UID, nil)
			}
			a.dispatch(vmi.UID, vmi)
		},
		OnDelete: func(vmi *v1.VirtualMachineInstance) {
			a.log.Debug("VMI deleted", "vmi", vmi.UID, "name", vmi.Name, "resourceVersion", vmi.ResourceVersion)
			a.dispatch(vmi.UID, nil)
		},
	})
	return a, nil
}

// Run registers the node and runs it until ctx ends. Guests keep running
// after Run returns.
func (a *Agent) Run(ctx context.Context) error {
	a.ctx = ctx
	a.fenceMu.Lock()
	// The fence deadline counts from the last renewal known, by an earlier
	// process if it left one, else from this start.
	a.fence.lastRenew = a.cfg.Now()
	if last := a.cfg.LastRenewal; !last.IsZero() && last.Before(a.fence.lastRenew) {
		a.fence.lastRenew = last
	}
	a.fenceMu.Unlock()
	var consoles net.Listener
	if a.cfg.ConsoleListen != "" {
		ln, addr, port, err := listenConsoles(a.cfg.ConsoleListen, a.cfg.Address)
		if err != nil {
			return err
		}
		consoles, a.cfg.Address, a.cfg.Port = ln, addr, port
	}
	// Guests left by an earlier process are adopted, and the fence watched,
	// before the control plane is reached: an agent that cannot register
	// must still fence them in time.
	if err := a.adopt(ctx); err != nil {
		if consoles != nil {
			consoles.Close()
		}
		return err
	}
	// The lease is renewed from the start too, registered or not: it is
	// what keeps the node's guests alive, here and in the control plane.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.watchFence(ctx) }()
	go func() { defer wg.Done(); a.heartbeat(ctx) }()
	if err := a.register(ctx); err != nil {
		if consoles != nil {
			consoles.Close()
		}
		wg.Wait()
		a.releaseAdopted()
		return err
	}
	if consoles != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.serveConsoles(ctx, consoles) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.vmis.Run(ctx) }()
	if err := a.vmis.WaitForSync(ctx); err == nil {
		a.killUnclaimed(ctx)
	}
	<-ctx.Done()
	wg.Wait()
	a.wg.Wait()
	a.releaseAdopted()
	return nil
}

// releaseAdopted releases, without stopping them, the guests re-adopted but
// never claimed (the agent stopped before its first sync): the next agent
// decides about them.
func (a *Agent) releaseAdopted() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, g := range a.adopted {
		_ = g.Close()
		delete(a.adopted, id)
	}
}

// register creates or refreshes the Node object.
func (a *Agent) register(ctx context.Context) error {
	info := a.cfg.Driver.Info()
	now := metav1.NewTime(a.cfg.Now()).Rfc3339Copy()
	labels := map[string]string{
		v1.LabelHostname: a.cfg.Node, v1.LabelRuntime: info.Name, v1.LabelAccelerator: info.Accelerator,
	}
	maps.Copy(labels, a.cfg.Labels)
	status := v1.NodeStatus{
		Capacity: a.cfg.Capacity, Allocatable: a.cfg.Capacity,
		Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: metav1.ConditionTrue, Reason: "AgentReady",
			Message: "the vigil agent is running and beating", LastHeartbeatTime: now, LastTransitionTime: now}},
		DaemonEndpoints: v1.NodeDaemonEndpoints{AgentEndpoint: v1.DaemonEndpoint{Port: a.cfg.Port}},
		NodeInfo: v1.NodeSystemInfo{
			BootID: bootID(), KernelVersion: kernelVersion(), OSImage: osImage(), OperatingSystem: runtime.GOOS,
			Architecture: runtime.GOARCH, AgentVersion: a.cfg.Version, Runtime: info.Name + "://" + info.Version, Accelerator: info.Accelerator,
		},
	}
	if a.cfg.Address != "" {
		status.Addresses = []v1.NodeAddress{{Type: "InternalIP", Address: a.cfg.Address}, {Type: "Hostname", Address: a.cfg.Node}}
	}
	nodes := a.cfg.Client.Nodes()
	backoff := 200 * time.Millisecond
	for {
		// One attempt may hang on a lost network; the next gets a new
		// connection, perhaps to another server.
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.registerOnce(actx, nodes, labels, status)
		cancel()
		if err == nil {
			a.log.Info("node registered", "runtime", info.Name, "accelerator", info.Accelerator)
			return nil
		}
		a.log.Warn("registering the node failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		// Retried at least as often as the lease is renewed: a node that
		// came back should be seen at once.
		backoff = min(2*backoff, a.cfg.LeaseRenewInterval)
	}
}

func (a *Agent) registerOnce(ctx context.Context, nodes *client.Resource[*v1.Node], labels map[string]string, status v1.NodeStatus) error {
	cur, err := nodes.Get(ctx, a.cfg.Node)
	if apierrors.IsNotFound(err) {
		n := &v1.Node{TypeMeta: v1.TypeMetaFor(v1.KindNode), ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Node, Labels: labels}, Status: status}
		_, err = nodes.Create(ctx, n, client.WriteOptions{})
		return err
	}
	if err != nil {
		return err
	}
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	maps.Copy(next.Labels, labels)
	if !maps.Equal(next.Labels, cur.Labels) {
		if next, err = nodes.Update(ctx, next, client.WriteOptions{}); err != nil {
			return err
		}
	}
	next.Status = status
	_, err = nodes.UpdateStatus(ctx, next, client.WriteOptions{})
	return err
}

// adopt re-adopts every guest the runtime still has from before a restart.
func (a *Agent) adopt(ctx context.Context) error {
	ids, err := a.cfg.Driver.Guests(ctx)
	if err != nil {
		return fmt.Errorf("agent: listing the runtime's guests: %w", err)
	}
	for _, id := range ids {
		g, err := a.cfg.Driver.Recover(ctx, id)
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			a.log.Error("re-adopting a guest failed", "guest", id, "err", err)
			continue
		}
		a.mu.Lock()
		a.adopted[id] = g
		a.mu.Unlock()
	}
	if len(ids) > 0 {
		a.log.Info("re-adopted guests from the runtime's state", "count", len(ids))
	}
	return nil
}

// killUnclaimed stops every adopted guest whose VMI is not bound to this
// node any more: it is not ours to run, and must never be reported Running.
func (a *Agent) killUnclaimed(ctx context.Context) {
	a.mu.Lock()
	var orphans []driver.Guest
	for id, g := range a.adopted {
		if _, claimed := a.runners[id]; !claimed {
			orphans = append(orphans, g)
			delete(a.adopted, id)
		}
	}
	a.mu.Unlock()
	for _, g := range orphans {
		a.log.Warn("killing a guest whose VMI is no longer bound to this node", "guest", g.ID())
		_ = g.Kill(ctx)
		_ = g.Remove()
		_ = g.Close()
	}
}

// dispatch hands a VMI (nil: gone from this node) to its runner, starting
// one if needed.
func (a *Agent) dispatch(uid any, vmi *v1.VirtualMachineInstance) {
	id := fmt.Sprint(uid)
	a.mu.Lock()
	r, ok := a.runners[id]
	if !ok {
		if vmi == nil {
			a.mu.Unlock()
			return
		}
		g := a.adopted[id]
		delete(a.adopted, id)
		r = newRunner(a, id, g)
		a.runners[id] = r
		// The runner gets its VMI before it runs: a first step without one
		// would take the VMI for gone and end the runner for good.
		r.update(vmi)
		a.log.Debug("runner started", "vmi", id, "name", vmi.Namespace+"/"+vmi.Name, "resourceVersion", vmi.ResourceVersion)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			r.run(a.ctx)
			a.log.Debug("runner done", "vmi", id)
			a.mu.Lock()
			if a.runners[id] == r {
				delete(a.runners, id)
			}
			a.mu.Unlock()
		}()
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	r.update(vmi)
}

// finalizerPatch is a merge patch of an object's finalizers, guarded by its
// resourceVersion.
func finalizerPatch(rv string, finalizers []string) []byte {
	if finalizers == nil {
		finalizers = []string{}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": rv, "finalizers": finalizers}})
	return b
}
