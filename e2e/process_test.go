package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// startAgentProcess runs `vigil agent` with the sim runtime as a separate
// process.
func (cl *cluster) startAgentProcess(name string) *exec.Cmd {
	cl.t.Helper()
	return cl.startAgentProcessWith(name, "--runtime", "sim", "--sim-journal", cl.journal,
		"--capacity-cpu", "8", "--capacity-memory", "16Gi")
}

// agentStateDir is the state directory of the agent process of a node.
func (cl *cluster) agentStateDir(name string) string { return filepath.Join(cl.dir, "agents", name) }

// startAgentProcessWith runs `vigil agent` as a separate process, with the
// runtime flags given.
func (cl *cluster) startAgentProcessWith(name string, runtimeArgs ...string) *exec.Cmd {
	cl.t.Helper()
	return cl.startAgentProcessVia(name, cl.url(), runtimeArgs...)
}

// startAgentProcessVia runs `vigil agent` as a separate process that
// reaches the API at server (a test may route it through a proxy).
func (cl *cluster) startAgentProcessVia(name, server string, runtimeArgs ...string) *exec.Cmd {
	cl.t.Helper()
	logf, err := os.OpenFile(filepath.Join(cl.dir, "agent-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		cl.t.Fatal(err)
	}
	args := append([]string{"agent", "--server", server, "--node", name, "--state-dir", cl.agentStateDir(name), "--log-level", "debug"}, runtimeArgs...)
	cmd := exec.Command(vigilBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if cl.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			cl.t.Logf("agent %s log:\n%s", name, b)
		}
	})
	return cmd
}

// TestAgentProcess runs VMs on a separate `vigil agent` process, kills it
// without warning, and checks that the next agent process re-adopts the
// running guests untouched.
func TestAgentProcess(t *testing.T) {
	cl := newCluster(t, clusterOptions{})
	agentCmd := cl.startAgentProcess("proc-1")
	cl.create(newVM("remote", v1.RunStrategyAlways, boot("200ms")))
	cl.create(newVM("remote-manual", v1.RunStrategyManual, nil))
	cl.waitStatus("remote", v1.VirtualMachineStatusRunning, wait)
	cl.mustVigil("start", "remote-manual")
	cl.waitStatus("remote-manual", v1.VirtualMachineStatusRunning, wait)
	if n := cl.vmi("remote").Status.NodeName; n != "proc-1" {
		t.Fatalf("bound to %q", n)
	}
	before := cl.vmi("remote")

	_ = agentCmd.Process.Signal(syscall.SIGKILL)
	_ = agentCmd.Wait()
	cl.startAgentProcess("proc-1")
	time.Sleep(time.Second)
	after := cl.vmi("remote")
	if after.UID != before.UID || after.Status.Phase != v1.Running {
		t.Fatalf("after an agent crash and restart: VMI %s %s, want %s Running", after.UID, after.Status.Phase, before.UID)
	}
	// The re-adopted guests are still controllable.
	cl.annotateVMI("remote-manual", "sim.vigil.dev/action", "shutdown")
	cl.waitStatus("remote-manual", v1.VirtualMachineStatusStopped, wait)
	cl.mustVigil("stop", "remote")
	cl.waitNoVMI("remote", wait)
}
