package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// Soak sizes. CI runs soakSchedules schedules from a fixed seed, so a run
// is repeatable; `make soak` runs more (VIGIL_SOAK_SCHEDULES) from a new
// seed each time (VIGIL_SOAK_SEED=random), and VIGIL_SOAK_SEED=N replays
// a run.
const (
	soakSchedules = 5
	soakSeed      = 1
	soakNodes     = 3
	soakVMs       = 6
	// soakRecover bounds the wait for a schedule's recovery: with the
	// default timings a lost node's VMs are back in about 8 s.
	soakRecover = 90 * time.Second
)

// soakNode is one node of the soak: an agent process behind a proxy the
// soak can cut.
type soakNode struct {
	name  string
	proxy *blackhole
	cmd   *exec.Cmd
}

// soak is a cluster of a server process (embedded etcd) and sim agent
// processes, each behind its own proxy, and the faults it can suffer.
type soak struct {
	t      *testing.T
	cl     *cluster
	dir    string
	addr   string
	server *serverProcess
	nodes  []*soakNode
}

// fault is one fault of a schedule: inject breaks something; settle, when
// set, waits until the fault has had its effect; repair, run once the VMs
// have recovered, undoes what a real operator or a reboot would (nil when
// nothing is left to undo).
type fault struct {
	name   string
	inject func()
	settle func()
	repair func()
}

// TestSoak runs random schedules of node crashes, partitions, agent
// restarts and control-plane restarts, one or two faults at once, against
// Always VMs. After every schedule each VM runs exactly once: one Running
// VMI, one live guest, on the node the VMI names; and the journal shows no
// two instances of one VM ever overlapped.
func TestSoak(t *testing.T) {
	schedules := envInt(t, "VIGIL_SOAK_SCHEDULES", soakSchedules)
	seed := uint64(soakSeed)
	switch s := os.Getenv("VIGIL_SOAK_SEED"); s {
	case "":
	case "random":
		seed = uint64(time.Now().UnixNano())
	default:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("VIGIL_SOAK_SEED=%q is neither a number nor random", s)
		}
		seed = v
	}
	t.Logf("soak: %d schedules, seed %d (replay with VIGIL_SOAK_SEED=%d)", schedules, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	s := newSoak(t)
	for i := range soakVMs {
		s.cl.create(newVM(fmt.Sprintf("soak-%d", i), v1.RunStrategyAlways, nil))
	}
	s.waitExactlyOnce("the VMs to start")
	for i := range schedules {
		faults := s.schedule(rng, i)
		names := make([]string, len(faults))
		for j, f := range faults {
			names[j] = f.name
		}
		t.Logf("schedule %d: %s", i+1, strings.Join(names, " + "))
		start := time.Now()
		for _, f := range faults {
			f.inject()
		}
		for _, f := range faults {
			if f.settle != nil {
				f.settle()
			}
		}
		s.waitExactlyOnce("recovery from " + strings.Join(names, " + "))
		recovered := time.Since(start)
		for _, f := range faults {
			if f.repair != nil {
				f.repair()
			}
		}
		s.waitNodesReady()
		s.waitExactlyOnce("a steady state after the repairs")
		s.cl.checkNoOverlap()
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("schedule %d: every VM running exactly once %s after the faults", i+1, recovered.Round(100*time.Millisecond))
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q is not a positive number", name, s)
	}
	return n
}

func newSoak(t *testing.T) *soak {
	dir := t.TempDir()
	s := &soak{t: t, dir: dir, addr: freePort(t)}
	s.server = startServer(t, dir, "server", s.addr, "--no-agent")
	s.cl = processCluster(t, dir, s.server.url)
	for i := range soakNodes {
		n := &soakNode{name: fmt.Sprintf("node-%d", i+1), proxy: newBlackhole(t, s.server.url)}
		s.nodes = append(s.nodes, n)
		s.startAgent(n)
	}
	s.waitNodesReady()
	return s
}

func (s *soak) startAgent(n *soakNode) {
	n.cmd = s.cl.startAgentProcessVia(n.name, n.proxy.url, "--runtime", "sim", "--sim-journal", s.cl.journal,
		"--capacity-cpu", "8", "--capacity-memory", "16Gi")
}

func (s *soak) killAgent(n *soakNode) {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
}

// schedule picks one or two faults: on distinct nodes, nodes that host
// VMs first (a fault elsewhere shows little), and at most one
// control-plane restart. The first five schedules start with each kind of
// fault in turn, so that even a short soak has them all.
func (s *soak) schedule(rng *rand.Rand, i int) []fault {
	const kinds = 5
	k := 1 + rng.IntN(2)
	var out []fault
	used := map[string]bool{}
	busy := s.busyNodes()
	for len(out) < k {
		kind := rng.IntN(kinds)
		if len(out) == 0 && i < kinds {
			kind = i
		}
		if kind == 3 {
			if used["control-plane"] {
				continue
			}
			used["control-plane"] = true
			out = append(out, s.controlPlaneRestart())
			continue
		}
		n := s.nodes[rng.IntN(len(s.nodes))]
		if len(busy) > 0 {
			n = busy[rng.IntN(len(busy))]
		}
		if used[n.name] {
			busy = slices.DeleteFunc(busy, func(b *soakNode) bool { return b == n })
			continue
		}
		used[n.name] = true
		switch kind {
		case 0:
			out = append(out, s.crash(n))
		case 1:
			out = append(out, s.partition(n))
		case 2:
			out = append(out, s.agentRestart(n))
		case 4:
			out = append(out, s.blip(n))
		}
	}
	return out
}

// busyNodes lists the nodes that host VMs.
func (s *soak) busyNodes() []*soakNode {
	var out []*soakNode
	for _, n := range s.nodes {
		if len(s.vmisOn(n)) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// crash: the node loses power. Its agent and guests die at once; when it
// boots again its agent starts with no guests.
func (s *soak) crash(n *soakNode) fault {
	return fault{
		name: "crash " + n.name,
		inject: func() {
			s.killAgent(n)
			s.cl.recordCrash(n.name)
			if err := os.RemoveAll(filepath.Join(s.cl.agentStateDir(n.name), "sim")); err != nil {
				s.t.Fatal(err)
			}
		},
		repair: func() { s.startAgent(n) },
	}
}

// partition: the node is cut off from the control plane, alive, until it
// is declared lost.
func (s *soak) partition(n *soakNode) fault {
	return fault{name: "partition " + n.name, inject: n.proxy.cut, repair: n.proxy.heal, settle: func() {
		s.cl.waitFor(n.name+" to be lost", soakRecover, func() (bool, error) {
			node, err := s.cl.c.Nodes().Get(context.Background(), n.name)
			if err != nil {
				return false, err
			}
			c := node.Status.Condition(v1.NodeReady)
			return c != nil && c.Status == metav1.ConditionUnknown, nil
		})
	}}
}

// blip: the node is cut off for less than --fence-after (4 s); nothing
// may change.
func (s *soak) blip(n *soakNode) fault {
	before := map[string]string{}
	healed := make(chan struct{})
	return fault{name: "2s network blip on " + n.name,
		inject: func() {
			for _, vmi := range s.vmisOn(n) {
				before[vmi.Name] = string(vmi.UID)
			}
			n.proxy.cut()
			// The blip ends on time, whatever the other faults wait for.
			time.AfterFunc(2*time.Second, func() { n.proxy.heal(); close(healed) })
		},
		settle: func() {
			<-healed
			time.Sleep(3 * time.Second) // past the fence deadline had the blip counted
			for name, uid := range before {
				if vmi := s.cl.vmi(name); vmi == nil || string(vmi.UID) != uid || vmi.Status.Phase != v1.Running {
					s.t.Errorf("a 2s blip on %s disturbed %s: %s, was VMI %s Running", n.name, name, vmiSummary(vmi), uid)
				}
			}
		}}
}

// vmisOn lists the VMIs bound to a node.
func (s *soak) vmisOn(n *soakNode) []*v1.VirtualMachineInstance {
	list, err := s.cl.c.VirtualMachineInstances(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []*v1.VirtualMachineInstance
	for _, vmi := range list.Items {
		if vmi.Status.NodeName == n.name {
			out = append(out, vmi)
		}
	}
	return out
}

// agentRestart: the agent crashes and is restarted at once, within the
// fence deadline; its guests run on.
func (s *soak) agentRestart(n *soakNode) fault {
	return fault{name: "restart agent " + n.name, inject: func() {
		s.killAgent(n)
		s.startAgent(n)
	}}
}

// controlPlaneRestart: the server (and its embedded etcd) crashes and is
// started again on its data.
func (s *soak) controlPlaneRestart() fault {
	return fault{name: "restart control plane", inject: func() {
		s.server.kill()
		s.server = startServer(s.t, s.dir, "server", s.addr, "--no-agent")
	}}
}

// waitExactlyOnce waits until every VM runs exactly once.
func (s *soak) waitExactlyOnce(what string) {
	s.t.Helper()
	s.cl.waitFor(what, soakRecover, func() (bool, error) {
		err := s.exactlyOnce()
		return err == nil, err
	})
}

// exactlyOnce checks that every VM has a Running VMI and exactly one live
// guest in the journal: that VMI's, on that VMI's node.
func (s *soak) exactlyOnce() error {
	list, err := s.cl.c.VirtualMachineInstances(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
	if err != nil {
		return err
	}
	entries, err := sim.ReadJournal(s.cl.journal)
	if err != nil {
		return err
	}
	live := map[string][]sim.Interval{}
	for _, iv := range sim.Intervals(entries) {
		if iv.Stop.IsZero() {
			live[iv.VM] = append(live[iv.VM], iv)
		}
	}
	vmis := map[string]*v1.VirtualMachineInstance{}
	for _, vmi := range list.Items {
		vmis[vmi.Name] = vmi
	}
	for i := range soakVMs {
		name := fmt.Sprintf("soak-%d", i)
		vmi, ok := vmis[name]
		if !ok {
			return fmt.Errorf("%s has no VMI", name)
		}
		if vmi.Status.Phase != v1.Running {
			return fmt.Errorf("%s: VMI %s is %s", name, vmi.UID, vmi.Status.Phase)
		}
		g := live[v1.DefaultNamespace+"/"+name]
		if len(g) != 1 || g[0].UID != string(vmi.UID) || g[0].Node != vmi.Status.NodeName {
			return fmt.Errorf("%s: VMI %s Running on %s, live guests %v", name, vmi.UID, vmi.Status.NodeName, g)
		}
	}
	return nil
}

// waitNodesReady waits until every node is Ready and its heartbeat streams.
func (s *soak) waitNodesReady() {
	s.t.Helper()
	s.cl.waitFor("every node Ready", soakRecover, func() (bool, error) {
		nodes, err := s.cl.c.Nodes().List(context.Background(), client.ListOptions{})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, n := range nodes.Items {
			if c := n.Status.Condition(v1.NodeReady); c != nil && c.Status == metav1.ConditionTrue {
				ready++
			}
		}
		if ready != soakNodes {
			return false, fmt.Errorf("%d of %d nodes Ready", ready, soakNodes)
		}
		// and every agent's heartbeat streams as usual again: each node
		// beat lately, by its server's clock, in some server's digest.
		digests, err := s.cl.c.HeartbeatDigests().List(context.Background(), client.ListOptions{})
		if err != nil {
			return false, err
		}
		beat := v1.LatestBeats(digests.Items)
		for _, n := range nodes.Items {
			if t, ok := beat[n.Name]; !ok || time.Since(t) > 1500*time.Millisecond {
				return false, fmt.Errorf("node %s has not beaten lately", n.Name)
			}
		}
		return true, nil
	})
}
