package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// haWait bounds recovery: the default timings recover within about 10 s.
const haWait = 40 * time.Second

// crashNode stops a node's agent and, since its machine is gone with it,
// records its guests as ended now in the sim journal.
func (cl *cluster) crashNode(name string) time.Time {
	cl.t.Helper()
	cl.stopAgent(name)
	return cl.recordCrash(name)
}

// recordCrash records, in the sim journal, every guest of a node that has
// just lost power as ended now.
func (cl *cluster) recordCrash(name string) time.Time {
	cl.t.Helper()
	at := time.Now()
	entries, err := sim.ReadJournal(cl.journal)
	if err != nil {
		cl.t.Fatal(err)
	}
	j, err := sim.OpenJournal(cl.journal)
	if err != nil {
		cl.t.Fatal(err)
	}
	defer j.Close()
	for _, iv := range sim.Intervals(entries) {
		if iv.Node == name && iv.Stop.IsZero() {
			j.Record(sim.JournalEntry{Time: at, Event: "stop", VM: iv.VM, UID: iv.UID, Node: name, Reason: "node-crash"})
		}
	}
	return at
}

// haVMs creates one VM per RunStrategy that runs, all on node-1 (the only
// node), and returns the VMI UIDs of those that run.
func haVMs(t *testing.T, cl *cluster) map[string]string {
	t.Helper()
	for name, rs := range map[string]v1.RunStrategy{
		"always": v1.RunStrategyAlways, "rerun": v1.RunStrategyRerunOnFailure,
		"manual": v1.RunStrategyManual, "halted": v1.RunStrategyHalted,
	} {
		cl.create(newVM(name, rs, nil))
	}
	cl.mustVigil("start", "manual")
	uids := map[string]string{}
	for _, name := range []string{"always", "rerun", "manual"} {
		vmi := cl.waitVMIPhase(name, v1.Running, "", wait)
		if vmi.Status.NodeName != "node-1" {
			t.Fatalf("%s runs on %s, want node-1", name, vmi.Status.NodeName)
		}
		uids[name] = string(vmi.UID)
	}
	return uids
}

// checkRecovered: Always and RerunOnFailure run again on node-2; Manual
// stays down, Failed with NodeLost; Halted never ran.
func checkRecovered(t *testing.T, cl *cluster, uids map[string]string, lostAt time.Time) {
	t.Helper()
	for _, name := range []string{"always", "rerun"} {
		vmi := cl.waitVMIPhase(name, v1.Running, uids[name], haWait)
		if vmi.Status.NodeName != "node-2" {
			t.Errorf("%s recovered on %s, want node-2", name, vmi.Status.NodeName)
		}
		t.Logf("%s Running on node-2 %s after the failure", name, time.Since(lostAt).Round(100*time.Millisecond))
	}
	cl.waitFor("manual to be Failed with NodeLost", haWait, func() (bool, error) {
		vmi := cl.vmi("manual")
		return vmi != nil && vmi.Status.Phase == v1.Failed && vmi.Status.Reason == v1.ReasonNodeLost, nil
	})
	if vmi := cl.vmi("manual"); string(vmi.UID) != uids["manual"] {
		t.Errorf("the Manual VM was restarted")
	}
	if vmi := cl.vmi("halted"); vmi != nil {
		t.Errorf("the Halted VM has a VMI")
	}
	n, err := cl.c.Nodes().Get(context.Background(), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if c := n.Status.Condition(v1.NodeReady); c == nil || c.Status != metav1.ConditionUnknown {
		t.Errorf("node-1 Ready = %+v, want Unknown", c)
	}
}

// TestNodeCrash: a node dies with its guests; its VMs recover per their
// RunStrategy on the other node, and no VM ever runs twice (the journal
// check at the end of every e2e test).
func TestNodeCrash(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	cl.addAgent("node-1", "8", "16Gi", nil)
	uids := haVMs(t, cl)
	cl.addAgent("node-2", "8", "16Gi", nil)
	lostAt := cl.crashNode("node-1")
	checkRecovered(t, cl, uids, lostAt)
	// get nodes shows the lost node's health and how long its lease has
	// not been renewed; the live node renews every second.
	out := cl.mustVigil("get", "nodes", "-o", "wide")
	rows := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	if h := rows["NAME"]; strings.Join(h, " ") != "NAME STATUS HEARTBEAT AGE RUNTIME ACCELERATOR CPU MEMORY REASON" {
		t.Errorf("vigil get nodes -o wide headers: %v", h)
	}
	if f := rows["node-1"]; len(f) != 9 || f[1] != "Unknown" || leaseAge(t, f[2]) < 8 || f[8] != "NodeStatusUnknown" {
		t.Errorf("vigil get nodes shows the lost node as %v, want Unknown, lease at least 8s old, NodeStatusUnknown", f)
	}
	if f := rows["node-2"]; len(f) != 9 || f[1] != "Ready" || leaseAge(t, f[2]) > 5 {
		t.Errorf("vigil get nodes shows the live node as %v, want Ready with a fresh lease", f)
	}
	// describe says why the VM moved (once the event, written
	// asynchronously, is in).
	cl.waitFor("vigil describe vm always to say the VM moved because node-1 was lost", 10*time.Second, func() (bool, error) {
		out = cl.mustVigil("describe", "vm", "always")
		return strings.Contains(out, "NodeLost") && strings.Contains(out, "node-1"), nil
	})
}

// leaseAge parses the HEARTBEAT column ("3.4s") in seconds.
func leaseAge(t *testing.T, s string) float64 {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("HEARTBEAT column %q is not a duration: %v", s, err)
		return -1
	}
	return d.Seconds()
}

// TestPartition: an agent cut off from the API server fences its own
// guests; the control plane recovers them elsewhere only after that; when
// the partition heals, the node rejoins and nothing is duplicated or
// resurrected.
func TestPartition(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	p := newBlackhole(t, cl.url())
	pc, err := client.New(client.Config{Server: p.url, UserAgent: "partitioned-agent"})
	if err != nil {
		t.Fatal(err)
	}
	cl.addAgentVia("node-1", "8", "16Gi", nil, pc)
	uids := haVMs(t, cl)
	cl.addAgent("node-2", "8", "16Gi", nil)

	p.cut()
	cutAt := time.Now()
	checkRecovered(t, cl, uids, cutAt)
	p.heal()
	cl.waitFor("node-1 Ready again", haWait, func() (bool, error) {
		n, err := cl.c.Nodes().Get(context.Background(), "node-1")
		if err != nil {
			return false, err
		}
		c := n.Status.Condition(v1.NodeReady)
		return c != nil && c.Status == metav1.ConditionTrue, nil
	})
	// Nothing on node-1 comes back.
	time.Sleep(2 * time.Second)
	for _, name := range []string{"always", "rerun"} {
		if vmi := cl.vmi(name); vmi.Status.NodeName != "node-2" || vmi.Status.Phase != v1.Running {
			t.Errorf("%s after the partition healed: %s on %s", name, vmi.Status.Phase, vmi.Status.NodeName)
		}
	}
	if vmi := cl.vmi("manual"); vmi.Status.Phase != v1.Failed {
		t.Errorf("manual after the partition healed: %s", vmi.Status.Phase)
	}
}

// blackhole is a TCP proxy to the API server that a test can cut: cut
// drops every connection and leaves new ones hanging, as a lost network
// does; heal lets traffic through again.
type blackhole struct {
	t      testing.TB
	url    string
	target string
	l      net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newBlackhole(t testing.TB, serverURL string) *blackhole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackhole{t: t, url: "http://" + l.Addr().String(), target: serverURL[len("http://"):], l: l, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() { defer close(done); p.serve() }()
	t.Cleanup(func() {
		l.Close()
		<-done
		p.cut()
	})
	return p
}

func (p *blackhole) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		if down {
			continue // held open, never answered, until heal or cut
		}
		go p.pipe(c)
	}
}

func (p *blackhole) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

func (p *blackhole) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *blackhole) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
	for c := range p.conns {
		c.Close() // the hung ones: their clients retry
		delete(p.conns, c)
	}
}

// TestAgentRestartsCutOff: an agent that dies and restarts while its node
// is cut off cannot register, yet still fences the guests it finds, and in
// time: its fence deadline counts from the last renewal of the process
// before it, as the control plane's clock does, not from its own start.
func TestAgentRestartsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "server", freePort(t), "--no-agent")
	cl := processCluster(t, dir, s.url)
	p := newBlackhole(t, s.url)
	simArgs := []string{"--runtime", "sim", "--sim-journal", cl.journal, "--capacity-cpu", "8", "--capacity-memory", "16Gi"}
	agent := cl.startAgentProcessVia("node-1", p.url, simArgs...)
	cl.create(newVM("cut", v1.RunStrategyAlways, nil))
	old := cl.waitVMIPhase("cut", v1.Running, "", wait)
	cl.startAgentProcessVia("node-2", s.url, simArgs...)

	p.cut()
	_ = agent.Process.Kill()
	_ = agent.Wait()
	cl.startAgentProcessVia("node-1", p.url, simArgs...)
	cl.waitFor("the restarted, cut-off agent to fence its guest", haWait, func() (bool, error) {
		entries, err := sim.ReadJournal(cl.journal)
		if err != nil {
			return false, err
		}
		for _, iv := range sim.Intervals(entries) {
			if iv.UID == string(old.UID) {
				return !iv.Stop.IsZero(), nil
			}
		}
		return false, nil
	})
	vmi := cl.waitVMIPhase("cut", v1.Running, string(old.UID), haWait)
	if vmi.Status.NodeName != "node-2" {
		t.Errorf("recovered on %s, want node-2", vmi.Status.NodeName)
	}
	// The journal check at the end shows the fence came before the new start.
}
