package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/agent"
	"github.com/vigil-vm/vigil/internal/cli"
	"github.com/vigil-vm/vigil/internal/controlplane"
	"github.com/vigil-vm/vigil/internal/driver/sim"
	"github.com/vigil-vm/vigil/internal/inproc"
	"github.com/vigil-vm/vigil/internal/server"
)

// cluster is one test's Vigil: a server with its controllers, and agents.
type cluster struct {
	t      testing.TB
	dir    string
	server *server.Server
	c      *client.Client
	// urlOverride is the API URL when the server runs as a process.
	urlOverride string
	journal     string
	log         *slog.Logger

	mu     sync.Mutex
	agents map[string]*agentHandle
}

type agentHandle struct {
	cancel context.CancelFunc
	done   chan struct{}
	cmd    *exec.Cmd // set for agent processes
}

type clusterOptions struct {
	// backoffBase and backoffMax shrink the crash-loop constants.
	backoffBase, backoffMax time.Duration
	// noControllers starts the API only.
	noControllers bool
	// fsync keeps etcd's fsync on (benchmarks); tests turn it off.
	fsync bool
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("VIGIL_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newCluster starts a server (embedded etcd, API, controllers) for one test.
func newCluster(t testing.TB, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	log := testLogger(t)
	s, err := server.Start(context.Background(), server.Config{
		DataDir: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: !o.fsync, Log: log,
		ControllerFinalizers: !o.noControllers,
	})
	if err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	c, err := client.New(client.Config{Server: s.URL, UserAgent: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{t: t, dir: dir, server: s, c: c, journal: filepath.Join(dir, "journal"), log: log, agents: map[string]*agentHandle{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if !o.noControllers {
		// As in vigil server, the controllers reach the API in process;
		// the test and the agents come over the network.
		cc, err := client.New(client.Config{Server: s.URL, UserAgent: "e2e-controllers", Transport: &inproc.Transport{Handler: s.Handler()}})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			controlplane.Run(ctx, controlplane.Config{Client: cc, Host: "e2e", CrashLoopBaseDelay: o.backoffBase, CrashLoopMaxDelay: o.backoffMax, Log: log})
		}()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cl.stopAgents()
		cancel()
		<-done
		s.Close()
		cl.checkNoOverlap()
	})
	return cl
}

// addAgent starts an in-process node agent with the sim runtime.
func (cl *cluster) addAgent(name string, cpu, mem string, labels map[string]string) {
	cl.t.Helper()
	cl.addAgentVia(name, cpu, mem, labels, cl.c)
}

// addAgentVia starts an in-process node agent that reaches the API through
// the client c (a test may route it through a proxy it can cut).
func (cl *cluster) addAgentVia(name string, cpu, mem string, labels map[string]string, c *client.Client) {
	cl.t.Helper()
	j, err := sim.OpenJournal(cl.journal)
	if err != nil {
		cl.t.Fatal(err)
	}
	d, err := sim.New(sim.Config{StateDir: filepath.Join(cl.dir, "agents", name, "sim"), Node: name, Journal: j, Persist: true})
	if err != nil {
		cl.t.Fatal(err)
	}
	capacity := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}
	rec := record.New(c, "vigil-agent", name, cl.log)
	a, err := agent.New(agent.Config{Client: c, Node: name, Driver: d, Capacity: capacity, Labels: labels, Recorder: rec, Log: cl.log.With("node", name)})
	if err != nil {
		cl.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &agentHandle{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer j.Close()
		go rec.Run(ctx)
		_ = a.Run(ctx)
	}()
	cl.mu.Lock()
	cl.agents[name] = h
	cl.mu.Unlock()
	cl.waitFor(fmt.Sprintf("node %s Ready", name), 30*time.Second, func() (bool, error) {
		n, err := cl.c.Nodes().Get(context.Background(), name)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		c := n.Status.Condition(v1.NodeReady)
		return c != nil && c.Status == metav1.ConditionTrue, nil
	})
}

// stopAgent stops an agent; its guests keep running.
func (cl *cluster) stopAgent(name string) {
	cl.mu.Lock()
	h := cl.agents[name]
	delete(cl.agents, name)
	cl.mu.Unlock()
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
}

func (cl *cluster) stopAgents() {
	cl.mu.Lock()
	names := make([]string, 0, len(cl.agents))
	for n := range cl.agents {
		names = append(names, n)
	}
	cl.mu.Unlock()
	for _, n := range names {
		cl.stopAgent(n)
	}
}

// checkNoOverlap fails the test if two instances of one VM ever overlapped.
func (cl *cluster) checkNoOverlap() {
	entries, err := sim.ReadJournal(cl.journal)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		cl.t.Errorf("reading the journal: %v", err)
		return
	}
	for _, o := range sim.Overlaps(sim.Intervals(entries)) {
		cl.t.Errorf("two instances of one VM ran at once: %s", o)
	}
}

// vigil runs the CLI in-process against the cluster and returns its output.
func (cl *cluster) vigil(args ...string) (string, error) { return cl.vigilIn("", args...) }

// vigilIn runs the CLI with stdin as its standard input.
func (cl *cluster) vigilIn(stdin string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "VIGIL_SERVER" {
			return cl.url()
		}
		return ""
	}
	code := cli.Main(args, cli.Streams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut, Getenv: env}, "e2e")
	if code != 0 {
		return out.String(), fmt.Errorf("vigil %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

func (cl *cluster) mustVigil(args ...string) string {
	cl.t.Helper()
	out, err := cl.vigil(args...)
	if err != nil {
		cl.t.Fatal(err)
	}
	return out
}

// waitEventAbout waits for an event about the named object with reason (events
// are written asynchronously, after the change they report).
func (cl *cluster) waitEventAbout(name, reason string, timeout time.Duration) {
	cl.t.Helper()
	cl.waitFor(fmt.Sprintf("a %s event about %s", reason, name), timeout, func() (bool, error) {
		evs, err := cl.c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=" + reason})
		return err == nil && len(evs.Items) > 0, err
	})
}

// waitFor polls cond until it holds or the timeout passes.
func (cl *cluster) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	cl.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	cl.t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
}

func (cl *cluster) vm(name string) *v1.VirtualMachine {
	cl.t.Helper()
	vm, err := cl.c.VirtualMachines(v1.DefaultNamespace).Get(context.Background(), name)
	if err != nil {
		cl.t.Fatalf("get vm %s: %v", name, err)
	}
	return vm
}

// vmi returns the VM's VMI, or nil.
func (cl *cluster) vmi(name string) *v1.VirtualMachineInstance {
	cl.t.Helper()
	vmi, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).Get(context.Background(), name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		cl.t.Fatalf("get vmi %s: %v", name, err)
	}
	return vmi
}

// waitStatus waits for a VM's printable status.
func (cl *cluster) waitStatus(name string, status v1.VirtualMachinePrintableStatus, timeout time.Duration) *v1.VirtualMachine {
	cl.t.Helper()
	var vm *v1.VirtualMachine
	cl.waitFor(fmt.Sprintf("VM %s to be %s", name, status), timeout, func() (bool, error) {
		var err error
		vm, err = cl.c.VirtualMachines(v1.DefaultNamespace).Get(context.Background(), name)
		if err != nil {
			return false, err
		}
		if vm.Status.PrintableStatus != status {
			return false, fmt.Errorf("status is %s", vm.Status.PrintableStatus)
		}
		return true, nil
	})
	return vm
}

// waitVMIPhase waits for the VM's VMI (a new one if notUID is set) to reach phase.
func (cl *cluster) waitVMIPhase(name string, phase v1.VirtualMachineInstancePhase, notUID string, timeout time.Duration) *v1.VirtualMachineInstance {
	cl.t.Helper()
	var vmi *v1.VirtualMachineInstance
	cl.waitFor(fmt.Sprintf("VMI %s to be %s", name, phase), timeout, func() (bool, error) {
		var err error
		vmi, err = cl.c.VirtualMachineInstances(v1.DefaultNamespace).Get(context.Background(), name)
		if err != nil {
			return false, err
		}
		if string(vmi.UID) == notUID {
			return false, fmt.Errorf("still the old VMI")
		}
		if vmi.Status.Phase != phase {
			return false, fmt.Errorf("phase is %s (%s)", vmi.Status.Phase, vmi.Status.Reason)
		}
		return true, nil
	})
	return vmi
}

// waitNoVMI waits until the VM has no VMI.
func (cl *cluster) waitNoVMI(name string, timeout time.Duration) {
	cl.t.Helper()
	cl.waitFor("VMI "+name+" to be gone", timeout, func() (bool, error) {
		_, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).Get(context.Background(), name)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// newBenchCluster is a cluster for benchmarks: fsync on, as users run it.
func newBenchCluster(b *testing.B) *cluster {
	return newCluster(b, clusterOptions{fsync: true})
}

func (cl *cluster) url() string {
	if cl.urlOverride != "" {
		return cl.urlOverride
	}
	return cl.server.URL
}
