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

func startServerProcess(t *testing.T, dir, name, etcdURL string, extra ...string) *serverProcess {
	t.Helper()
	addr := freePort(t)
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--etcd-endpoints", etcdURL, "--listen", addr, "--data-dir", filepath.Join(dir, name),
		"--log-level", "debug"}, extra...)
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

// TestTwoServersOneLeader: two servers on one etcd run the controllers
// once; when the leader dies the other takes over within seconds, and no
// VMI is failed or restarted meanwhile.
func TestTwoServersOneLeader(t *testing.T) {
	e := etcdtest.Start(t)
	dir := t.TempDir()
	a := startServerProcess(t, dir, "server-a", e.ClientURL, "--no-agent")
	b := startServerProcess(t, dir, "server-b", e.ClientURL, "--no-agent")
	leads := func(p *serverProcess) bool {
		b, _ := os.ReadFile(p.log)
		return strings.Contains(string(b), "became the controllers' leader")
	}
	deadline := time.Now().Add(wait)
	for !leads(a) && !leads(b) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if leads(a) == leads(b) {
		t.Fatalf("want exactly one leader: a=%v b=%v", leads(a), leads(b))
	}
	leader, survivor := a, b
	if leads(b) {
		leader, survivor = b, a
	}
	// Clients and the agent talk to the server that will survive.
	cl := &cluster{t: t, dir: dir, journal: filepath.Join(dir, "journal"), log: testLogger(t), agents: map[string]*agentHandle{}, urlOverride: survivor.url}
	c, err := client.New(client.Config{Server: survivor.url})
	must(t, err)
	cl.c = c
	t.Cleanup(cl.checkNoOverlap)
	cl.startAgentProcess("node-1")

	cl.create(newVM("led", v1.RunStrategyAlways, nil))
	cl.waitStatus("led", v1.VirtualMachineStatusRunning, wait)
	first := cl.vmi("led")

	// The controllers run once: one SuccessfulCreate event, counted once.
	evs, err := c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{FieldSelector: "involvedObject.name=led,reason=SuccessfulCreate"})
	must(t, err)
	if len(evs.Items) != 1 || evs.Items[0].Count != 1 {
		t.Fatalf("want one SuccessfulCreate event, got %d", len(evs.Items))
	}

	// Kill the leader; the survivor's controllers take over.
	_ = leader.cmd.Process.Signal(syscall.SIGKILL)
	_ = leader.cmd.Wait()
	killed := time.Now()
	cl.create(newVM("after", v1.RunStrategyAlways, nil))
	cl.waitStatus("after", v1.VirtualMachineStatusRunning, wait)
	t.Logf("the survivor started a new VM %s after the leader died", time.Since(killed).Round(100*time.Millisecond))
	if now := cl.vmi("led"); now.UID != first.UID || now.Status.Phase != v1.Running {
		t.Errorf("the failover disturbed a running VM: %s %s", now.UID, now.Status.Phase)
	}
}
