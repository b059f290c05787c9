package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// Config sizes a run.
type Config struct {
	// Binary is the vigil executable that runs the server.
	Binary string
	// Dir holds the server's data and the agents' state (a temporary
	// directory when empty).
	Dir string
	// Nodes and VMs size the fleet.
	Nodes, VMs int
	// PacedVMs are created first at PacedRate per second (latency); the
	// rest as fast as Concurrency clients manage (throughput).
	PacedVMs  int
	PacedRate float64
	// Concurrency is the number of clients creating VMs in the bulk phase.
	Concurrency int
	// SteadySettle is how long the server rests after the bulk start
	// before its idle CPU is sampled: long enough for the housekeeping the
	// burst left, above all the compaction of its etcd history, which the
	// server runs one to two --compaction-interval (1m) after the writes.
	// The CPU of the settle is reported too.
	SteadySettle time.Duration
	// SteadyWindow is how long server CPU is sampled with nothing changing;
	// by default one --compaction-interval, so that the server's periodic
	// compaction (it walks etcd's whole key index) counts once, as it does
	// on average.
	SteadyWindow time.Duration
	// WriteStarts is how many VM starts the write count covers.
	WriteStarts int
	// ChurnDuration and ChurnPerMinute shape the lifecycle churn.
	ChurnDuration  time.Duration
	ChurnPerMinute int
	// NodeLoss runs the node-loss scenarios (one node, then five).
	NodeLoss bool
	// ServerArgs are extra flags for `vigil server` (e.g. --pprof).
	ServerArgs []string
	// Progress, when set, receives a line per step.
	Progress io.Writer
	// Log receives the agents' logs (discarded when nil).
	Log *slog.Logger
}

// Defaults is the full run of issue 7.
func Defaults() Config {
	return Config{
		Nodes: 100, VMs: 10000, PacedVMs: 1000, PacedRate: 200, Concurrency: 64,
		SteadySettle: 130 * time.Second, SteadyWindow: time.Minute, WriteStarts: 500,
		ChurnDuration: time.Minute, ChurnPerMinute: 1000, NodeLoss: true,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Binary == "":
		return errors.New("bench: the vigil binary is required")
	case c.Nodes < 1:
		return fmt.Errorf("bench: --nodes %d: at least one node is needed", c.Nodes)
	case c.VMs < 1:
		return fmt.Errorf("bench: --vms %d: at least one VM is needed", c.VMs)
	case c.PacedVMs < 0 || c.PacedVMs > c.VMs:
		return fmt.Errorf("bench: --paced-vms %d must be between 0 and --vms (%d)", c.PacedVMs, c.VMs)
	case c.PacedVMs > 0 && c.PacedRate <= 0:
		return fmt.Errorf("bench: --paced-rate %g must be positive", c.PacedRate)
	case c.Concurrency < 1:
		return fmt.Errorf("bench: --concurrency %d must be at least 1", c.Concurrency)
	case c.SteadySettle < 0:
		return fmt.Errorf("bench: --steady-settle %s cannot be negative", c.SteadySettle)
	case c.SteadyWindow <= 0:
		return fmt.Errorf("bench: --steady-window %s must be positive", c.SteadyWindow)
	case c.WriteStarts < 0 || c.ChurnPerMinute < 0 || c.ChurnDuration < 0:
		return errors.New("bench: --write-starts, --churn-per-minute and --churn-duration cannot be negative")
	case c.NodeLoss && c.Nodes < 6:
		return fmt.Errorf("bench: node loss kills up to five nodes and needs a sixth to recover on; --nodes is %d (or turn node loss off)", c.Nodes)
	}
	return nil
}

// run is one run's state.
type run struct {
	cfg     Config
	dir     string
	server  *serverProc
	c       *client.Client
	nodes   nodeSet
	track   *tracker
	rep     *Report
	nodeIDs []string

	stopTracker func()
}

// Run performs every scenario and returns the report. A scenario that
// fails ends the run with an error; the report holds what was measured
// up to then.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench directory: %w", err)
	}
	r := &run{cfg: cfg, dir: dir, rep: newReport(cfg)}
	if err := r.start(ctx); err != nil {
		return r.rep, err
	}
	defer r.stop()
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"start", r.startVMs},
		{"steady state", r.steady},
		{"writes per start", r.writes},
		{"churn", r.churn},
		{"node loss", r.nodeLoss},
	}
	for _, s := range steps {
		r.progress("%s ...", s.name)
		if err := s.f(ctx); err != nil {
			return r.rep, fmt.Errorf("bench: %s: %w", s.name, err)
		}
	}
	r.rep.evaluate()
	return r.rep, nil
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *run) start(ctx context.Context) error {
	s, err := startServer(ctx, r.cfg.Binary, r.dir, r.cfg.ServerArgs)
	if err != nil {
		return err
	}
	r.server = s
	if r.c, err = client.New(client.Config{Server: s.url, UserAgent: "vigil-bench"}); err != nil {
		return err
	}
	r.track = newTracker(r.c)
	tctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.track.run(tctx) }()
	r.stopTracker = func() { cancel(); <-done }
	r.progress("server %s (pid %d); starting %d simulated nodes", s.url, s.pid(), r.cfg.Nodes)
	for i := range r.cfg.Nodes {
		name := fmt.Sprintf("sim-%03d", i)
		if err := r.nodes.startNode(s.url, name, filepath.Join(r.dir, "nodes", name), r.cfg.Log); err != nil {
			return err
		}
		r.nodeIDs = append(r.nodeIDs, name)
	}
	return r.waitFor(ctx, "every node Ready", 2*time.Minute, func() (bool, error) {
		list, err := r.c.Nodes().List(ctx, client.ListOptions{})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, n := range list.Items {
			if c := n.Status.Condition(v1.NodeReady); c != nil && c.Status == metav1.ConditionTrue {
				ready++
			}
		}
		return ready == r.cfg.Nodes, fmt.Errorf("%d of %d nodes Ready", ready, r.cfg.Nodes)
	})
}

func (r *run) stop() {
	r.nodes.stopAll()
	if r.stopTracker != nil {
		r.stopTracker()
	}
	if r.server != nil {
		r.server.stop()
	}
}

func (r *run) waitFor(ctx context.Context, what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (last: %v)", timeout, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// benchVM is the VM every scenario creates: Always, small, booting at once.
func benchVM(name string) *v1.VirtualMachine {
	rs := v1.RunStrategyAlways
	grace := int64(5)
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.DefaultNamespace, Labels: map[string]string{"vigil.dev/bench": "true"}},
		Spec: v1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template: &v1.VirtualMachineInstanceTemplateSpec{
				Spec: v1.VirtualMachineInstanceSpec{
					TerminationGracePeriodSeconds: &grace,
					Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
						v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi"),
					}}},
				},
			},
		},
	}
}

// created is one VM create: when it was sent and how long the API took.
type created struct {
	name string
	at   time.Time
	took time.Duration
}

// createVMs creates VMs named prefix-NNNNN, paced at rate per second (0:
// as fast as conc clients go), and returns when each was sent.
func (r *run) createVMs(ctx context.Context, prefix string, from, n int, rate float64, conc int) ([]created, error) {
	out := make([]created, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				name := fmt.Sprintf("%s-%05d", prefix, from+i)
				t0 := time.Now()
				_, err := r.c.VirtualMachines(v1.DefaultNamespace).Create(ctx, benchVM(name), client.WriteOptions{})
				out[i] = created{name: name, at: t0, took: time.Since(t0)}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("creating VM %s: %w", name, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// awaitRunning waits until every VM of cs is Running and returns, per VM,
// the time from its create to Running as the watch saw it.
func (r *run) awaitRunning(ctx context.Context, cs []created, timeout time.Duration) ([]sample, error) {
	out := make([]sample, len(cs))
	deadline := time.After(timeout)
	for i, c := range cs {
		select {
		case at := <-r.track.wait(c.name, func(s vmiState) bool { return !s.gone && s.phase == v1.Running }):
			out[i] = sample{at: c.at, d: at.Sub(c.at)}
		case <-deadline:
			return nil, fmt.Errorf("VM %s not Running %s after the creates began (%d of %d Running)", c.name, timeout, i, len(cs))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// startVMs runs the paced and the bulk start.
func (r *run) startVMs(ctx context.Context) error {
	paced := r.cfg.PacedVMs
	if paced > 0 {
		r.progress("paced start: %d VMs at %.0f/s", paced, r.cfg.PacedRate)
		cs, err := r.createVMs(ctx, "vm", 0, paced, r.cfg.PacedRate, r.cfg.Concurrency)
		if err != nil {
			return err
		}
		lat, err := r.awaitRunning(ctx, cs, 10*time.Minute)
		if err != nil {
			return err
		}
		r.rep.Paced = &PhaseResult{VMs: paced, OfferedRate: r.cfg.PacedRate, Latency: stats(durations(lat)),
			APIWrite: stats(tookOf(cs)), Throughput: throughput(cs, lat)}
		r.rep.samples = append(r.rep.samples, seriesOf("paced", lat)...)
	}
	bulk := r.cfg.VMs - paced
	if bulk > 0 {
		r.progress("bulk start: %d VMs, %d clients", bulk, r.cfg.Concurrency)
		server0, self0, err := r.usage()
		if err != nil {
			return err
		}
		cs, err := r.createVMs(ctx, "vm", paced, bulk, 0, r.cfg.Concurrency)
		if err != nil {
			return err
		}
		lat, err := r.awaitRunning(ctx, cs, 30*time.Minute)
		if err != nil {
			return err
		}
		server1, self1, err := r.usage()
		if err != nil {
			return err
		}
		perStart := func(a, b procUsage) float64 { return float64(b.cpu-a.cpu) / float64(time.Millisecond) / float64(bulk) }
		r.rep.Bulk = &PhaseResult{VMs: bulk, Latency: stats(durations(lat)), APIWrite: stats(tookOf(cs)), Throughput: throughput(cs, lat),
			ServerCPUMsPerStart: perStart(server0, server1), HarnessCPUMsPerStart: perStart(self0, self1)}
		r.rep.samples = append(r.rep.samples, seriesOf("bulk", lat)...)
	}
	r.progress("%d VMs Running", r.track.runningCount())
	return nil
}

// usage reads the server's and this process's usage now.
func (r *run) usage() (server, self procUsage, err error) {
	if server, err = readProc(r.server.pid()); err != nil {
		return server, self, err
	}
	self, err = readProc(os.Getpid())
	return server, self, err
}

// steady measures the server at rest with every VM running.
func (r *run) steady(ctx context.Context) error {
	settle := r.cfg.SteadySettle
	r.progress("steady state: settling %s, then sampling %s", settle, r.cfg.SteadyWindow)
	settle0, _, err := r.usage()
	if err != nil {
		return err
	}
	s0 := time.Now()
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	before, self0, err := r.usage()
	if err != nil {
		return err
	}
	var settleCPU float64
	if d := time.Since(s0); d > 0 {
		settleCPU = 100 * (before.cpu - settle0.cpu).Seconds() / d.Seconds()
	}
	t0 := time.Now()
	select {
	case <-time.After(r.cfg.SteadyWindow):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, self1, err := r.usage()
	if err != nil {
		return err
	}
	wall := time.Since(t0)
	running := r.track.runningCount()
	r.rep.Steady = &SteadyResult{
		VMs:              running,
		Window:           wall.Round(time.Millisecond).String(),
		ServerCPUPercent: 100 * (after.cpu - before.cpu).Seconds() / wall.Seconds(),
		ServerRSSMiB:     float64(after.rss) / (1 << 20),
		ServerRSSKiBPerVM: func() float64 {
			if running == 0 {
				return 0
			}
			return float64(after.rss) / 1024 / float64(running)
		}(),
		AgentsCPUPercent: 100 * (self1.cpu - self0.cpu).Seconds() / wall.Seconds(),
		Settle:           settle.String(),
		SettleCPUPercent: settleCPU,
	}
	return nil
}

// writes counts what starting WriteStarts VMs writes, beyond the creates.
func (r *run) writes(ctx context.Context) error {
	n := r.cfg.WriteStarts
	if n == 0 {
		return nil
	}
	r.progress("writes per start: %d VMs", n)
	w, err := startWriteCounter(ctx, r.c)
	if err != nil {
		return err
	}
	defer w.close()
	t0 := time.Now()
	cs, err := r.createVMs(ctx, "w", 0, n, 100, 16)
	if err != nil {
		return err
	}
	if _, err := r.awaitRunning(ctx, cs, 10*time.Minute); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // status writes that trail Running
	keys := w.snapshot()
	window := time.Since(t0)
	kinds := []string{"VirtualMachine", "VirtualMachineInstance", "Event"}
	per := map[string]float64{}
	beyondKeys := 0
	for _, k := range kinds {
		c := keys[k]
		if k == "VirtualMachine" {
			c -= n // the user's own creates
		}
		per[k] = float64(c) / float64(n)
		beyondKeys += c
	}
	// The user's creates are transactions of their own (a create carries
	// no batch).
	free := []string{"Lease", "HeartbeatDigest", "Node"}
	beyondTxns := w.transactions(kinds, free) - n
	// What the Events cost: their transactions that wrote no VM or VMI.
	eventOnly := beyondTxns - (w.transactions(kinds[:2], free) - n)
	r.rep.Writes = &WritesResult{
		Starts: n, PerStart: per,
		BeyondCreatePerStart:         float64(beyondTxns) / float64(n),
		KeysBeyondCreatePerStart:     float64(beyondKeys) / float64(n),
		BeyondCreatePerStartNoEvents: float64(beyondKeys-keys["Event"]) / float64(n),
		EventTransactionsPerStart:    float64(eventOnly) / float64(n),
		LeaseWritesPerSecond:         float64(keys["Lease"]) / window.Seconds(),
		DigestWritesPerSecond:        float64(keys["HeartbeatDigest"]) / window.Seconds(),
		NodeWrites:                   keys["Node"],
		CeilingStartsPerSecond:       etcdCeiling / max(float64(beyondTxns)/float64(n)+1, 1),
	}
	return nil
}

// etcdCeiling is the small-write rate embedded etcd with fsync sustains on
// this machine from 64 concurrent clients (issue 7's measurement).
const etcdCeiling = 9500

// churn restarts, stops, starts and crashes VMs at a fixed rate.
func (r *run) churn(ctx context.Context) error {
	if r.cfg.ChurnDuration == 0 || r.cfg.ChurnPerMinute == 0 {
		return nil
	}
	every := time.Minute / time.Duration(r.cfg.ChurnPerMinute)
	r.progress("churn: %d operations a minute for %s", r.cfg.ChurnPerMinute, r.cfg.ChurnDuration)
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	busy := map[string]bool{}
	stopped := map[string]bool{}
	lat := map[string][]time.Duration{}
	failed := map[string]int{}
	var wg sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.After(r.cfg.ChurnDuration)
	ops := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
		}
		name := fmt.Sprintf("vm-%05d", rng.IntN(r.cfg.VMs))
		mu.Lock()
		if busy[name] {
			mu.Unlock()
			continue
		}
		busy[name] = true
		op := "start"
		if !stopped[name] {
			op = []string{"restart", "restart", "stop", "crash"}[rng.IntN(4)]
		}
		mu.Unlock()
		ops++
		wg.Go(func() {
			d, err := r.churnOp(ctx, op, name)
			mu.Lock()
			defer mu.Unlock()
			busy[name] = false
			if err != nil {
				failed[op]++
				return
			}
			lat[op] = append(lat[op], d)
			switch op {
			case "stop":
				stopped[name] = true
			case "start":
				delete(stopped, name)
			}
		})
	}
	wg.Wait()
	res := &ChurnResult{Operations: ops, PerMinute: r.cfg.ChurnPerMinute, Duration: r.cfg.ChurnDuration.String(), ByKind: map[string]LatencyStats{}, Failed: failed}
	var all []time.Duration
	for op, ds := range lat {
		res.ByKind[op] = stats(ds)
		all = append(all, ds...)
	}
	res.All = stats(all)
	r.rep.Churn = res
	// Leave every VM running again for what follows.
	for name := range stopped {
		if err := r.c.VirtualMachines(v1.DefaultNamespace).Start(ctx, name, v1.StartOptions{}); err != nil {
			return fmt.Errorf("starting %s again after the churn: %w", name, err)
		}
	}
	return r.waitFor(ctx, "every VM Running after the churn", 5*time.Minute, func() (bool, error) {
		n := r.track.runningCount()
		return n >= r.cfg.VMs+r.cfg.WriteStarts, fmt.Errorf("%d Running", n)
	})
}

// churnOp performs one operation and returns the time from its request
// to the state it asks for.
func (r *run) churnOp(ctx context.Context, op, name string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	vms := r.c.VirtualMachines(v1.DefaultNamespace)
	old := r.track.get(name)
	want := map[string]func(vmiState) bool{
		"restart": runningNot(old.uid), "crash": runningNot(old.uid), "stop": isGone, "start": runningNot(""),
	}[op]
	t0 := time.Now()
	reached := r.track.wait(name, want)
	var err error
	switch op {
	case "restart":
		err = vms.Restart(ctx, name, v1.RestartOptions{})
	case "stop":
		err = vms.Stop(ctx, name, v1.StopOptions{})
	case "start":
		err = vms.Start(ctx, name, v1.StartOptions{})
	case "crash":
		patch := []byte(`{"metadata":{"annotations":{"sim.vigil.dev/action":"crash"}}}`)
		_, err = r.c.VirtualMachineInstances(v1.DefaultNamespace).Patch(ctx, name, client.MergePatch, patch, "", client.WriteOptions{})
	}
	if err != nil {
		return 0, err
	}
	select {
	case at := <-reached:
		return at.Sub(t0), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// nodeLoss kills one node, then five at once, and times their VMs' return.
func (r *run) nodeLoss(ctx context.Context) error {
	if !r.cfg.NodeLoss {
		return nil
	}
	for _, k := range []int{1, 5} {
		res, err := r.loseNodes(ctx, k)
		if err != nil {
			return err
		}
		r.rep.NodeLoss = append(r.rep.NodeLoss, res)
	}
	return nil
}

func (r *run) loseNodes(ctx context.Context, k int) (NodeLossResult, error) {
	victims := r.nodeIDs[:k]
	r.nodeIDs = r.nodeIDs[k:]
	lost := map[string]bool{}
	for _, v := range victims {
		lost[v] = true
	}
	var names []string
	old := map[string]string{}
	r.track.mu.Lock()
	for name, s := range r.track.state {
		if !s.gone && lost[s.node] {
			names = append(names, name)
			old[name] = s.uid
		}
	}
	r.track.mu.Unlock()
	sort.Strings(names)
	r.progress("node loss: killing %d node(s) with %d VMs", k, len(names))
	back := make([]<-chan time.Time, len(names))
	for i, name := range names {
		back[i] = r.track.wait(name, runningNot(old[name]))
	}
	var wg sync.WaitGroup
	for _, v := range victims {
		wg.Go(func() { r.nodes.kill(v) })
	}
	wg.Wait()
	t0 := time.Now()
	var ds []time.Duration
	deadline := time.After(3 * time.Minute)
	for i, name := range names {
		select {
		case at := <-back[i]:
			ds = append(ds, at.Sub(t0))
		case <-deadline:
			return NodeLossResult{}, fmt.Errorf("VM %s of a lost node not Running elsewhere after 3 minutes", name)
		case <-ctx.Done():
			return NodeLossResult{}, ctx.Err()
		}
	}
	return NodeLossResult{Nodes: k, VMs: len(names), Recovery: stats(ds)}, nil
}

// Quick is a small run, as make test does: 500 VMs on 10 nodes.
func Quick() Config {
	c := Defaults()
	c.Nodes, c.VMs, c.PacedVMs = 10, 500, 200
	c.SteadySettle, c.SteadyWindow, c.WriteStarts, c.ChurnDuration = 5*time.Second, 5*time.Second, 100, 15*time.Second
	return c
}
