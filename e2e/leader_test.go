package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serverProcess is a `vigil server` process on an external etcd.
type serverProcess struct {
	cmd *exec.Cmd
	url string
	log string
}

// startServerProcess starts `vigil server` on the external etcd at
// etcdURLs (comma-separated), on a free port.
func startServerProcess(t *testing.T, dir, name, etcdURLs string, extra ...string) *serverProcess {
	t.Helper()
	return startServer(t, dir, name, freePort(t), append([]string{"--etcd-endpoints", etcdURLs}, extra...)...)
}

// startServer starts `vigil server` listening on addr with its data in
// dir/name, and waits until it is ready. It is killed when the test ends.
func startServer(t *testing.T, dir, name, addr string, extra ...string) *serverProcess {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--listen", addr, "--data-dir", filepath.Join(dir, name), "--log-level", "debug"}, extra...)
	cmd := exec.Command(vigilBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, url: "http://" + addr, log: logPath}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server %s did not become ready", name)
	return nil
}

// kill kills the server process at once, as a power loss would.
func (p *serverProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// leads reports whether the server has become the controllers' leader.
func (p *serverProcess) leads() bool {
	b, _ := os.ReadFile(p.log)
	return strings.Contains(string(b), "became the controllers' leader")
}

// whoLeads waits until exactly one of two servers leads the controllers
// and returns the leader and the other.
func whoLeads(t *testing.T, a, b *serverProcess) (leader, other *serverProcess) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !a.leads() && !b.leads() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if a.leads() == b.leads() {
		t.Fatalf("want exactly one leader: a=%v b=%v", a.leads(), b.leads())
	}
	if b.leads() {
		return b, a
	}
	return a, b
}

// processCluster is a cluster whose servers are processes at urls (one
// URL, or several comma-separated); the test's client, CLI and agents use
// them all.
func processCluster(t *testing.T, dir, urls string) *cluster {
	t.Helper()
	cl := &cluster{t: t, dir: dir, journal: filepath.Join(dir, "journal"), log: testLogger(t), agents: map[string]*agentHandle{}, urlOverride: urls}
	c, err := client.New(client.Config{Server: urls, UserAgent: "e2e"})
	must(t, err)
	cl.c = c
	t.Cleanup(cl.checkNoOverlap)
	return cl
}

// TestTwoServersOneLeader: two servers on one etcd run the controllers
// once; when the leader dies the other takes over within seconds, and no
// VMI is failed or restarted meanwhile.
func TestTwoServersOneLeader(t *testing.T) {
	e := etcdtest.Start(t)
	dir := t.TempDir()
	a := startServerProcess(t, dir, "server-a", e.ClientURL, "--no-agent")
	b := startServerProcess(t, dir, "server-b", e.ClientURL, "--no-agent")
	leader, survivor := whoLeads(t, a, b)
	// Clients and the agent talk to the server that will survive.
	cl := processCluster(t, dir, survivor.url)
	c := cl.c
	cl.startAgentProcess("node-1")

	cl.create(newVM("led", v1.RunStrategyAlways, nil))
	cl.waitStatus("led", v1.VirtualMachineStatusRunning, wait)
	first := cl.vmi("led")

	// The controllers run once: one SuccessfulCreate event, counted once.
	// Events are written asynchronously: wait for it, then make sure no
	// second one follows.
	var evs *client.List[*v1.Event]
	listCreated := func() (bool, error) {
		var err error
		evs, err = c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{FieldSelector: "involvedObject.name=led,reason=SuccessfulCreate"})
		return err == nil && len(evs.Items) > 0, err
	}
	cl.waitFor("the SuccessfulCreate event", wait, listCreated)
	time.Sleep(time.Second)
	_, _ = listCreated()
	if len(evs.Items) != 1 || evs.Items[0].Count != 1 {
		t.Fatalf("want one SuccessfulCreate event, got %d", len(evs.Items))
	}

	// Kill the leader; the survivor's controllers take over.
	leader.kill()
	killed := time.Now()
	cl.create(newVM("after", v1.RunStrategyAlways, nil))
	cl.waitStatus("after", v1.VirtualMachineStatusRunning, wait)
	t.Logf("the survivor started a new VM %s after the leader died", time.Since(killed).Round(100*time.Millisecond))
	if now := cl.vmi("led"); now.UID != first.UID || now.Status.Phase != v1.Running {
		t.Errorf("the failover disturbed a running VM: %s %s", now.UID, now.Status.Phase)
	}
}
