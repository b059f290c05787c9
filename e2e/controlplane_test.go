package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/driver/sim"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

// settle is how long a test watches a cluster after a control-plane fault
// to be sure nothing was failed: longer than the default --node-lost-after
// (8 s), so a server that wrongly took the fault for lost nodes would have
// acted by then.
const settle = 10 * time.Second

// running records the UID of every VMI, which must all be Running.
func (cl *cluster) running(names ...string) map[string]string {
	cl.t.Helper()
	uids := map[string]string{}
	for _, n := range names {
		uids[n] = string(cl.waitVMIPhase(n, v1.Running, "", wait).UID)
	}
	return uids
}

// runningFleet starts two agent processes and, on them, three Always VMs
// and a started Manual one, named prefix-0..2 and prefix-manual, and
// returns their VMI UIDs once all run.
func (cl *cluster) runningFleet(prefix string) map[string]string {
	cl.t.Helper()
	cl.startAgentProcess("node-1")
	cl.startAgentProcess("node-2")
	names := []string{prefix + "-0", prefix + "-1", prefix + "-2", prefix + "-manual"}
	for _, n := range names[:3] {
		cl.create(newVM(n, v1.RunStrategyAlways, nil))
	}
	cl.create(newVM(prefix+"-manual", v1.RunStrategyManual, nil))
	cl.mustVigil("start", prefix+"-manual")
	return cl.running(names...)
}

// checkUndisturbed fails the test unless every VM still runs the VMI it
// had, no guest ever stopped, and every node is Ready.
func (cl *cluster) checkUndisturbed(uids map[string]string) {
	cl.t.Helper()
	for name, uid := range uids {
		vmi := cl.vmi(name)
		if vmi == nil || string(vmi.UID) != uid || vmi.Status.Phase != v1.Running {
			cl.t.Errorf("VM %s was disturbed: now %v", name, vmiSummary(vmi))
		}
	}
	entries, err := sim.ReadJournal(cl.journal)
	if err != nil {
		cl.t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := uids[e.VM[len(v1.DefaultNamespace)+1:]]; ok && e.Event == "stop" {
			cl.t.Errorf("guest of %s (%s) stopped on %s: %s", e.VM, e.UID, e.Node, e.Reason)
		}
	}
	nodes, err := cl.c.Nodes().List(context.Background(), client.ListOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if c := n.Status.Condition(v1.NodeReady); c == nil || c.Status != metav1.ConditionTrue {
			cl.t.Errorf("node %s is not Ready: %+v", n.Name, c)
		}
	}
}

func vmiSummary(vmi *v1.VirtualMachineInstance) string {
	if vmi == nil {
		return "no VMI"
	}
	return fmt.Sprintf("VMI %s %s %s", vmi.UID, vmi.Status.Phase, vmi.Status.Reason)
}

// TestControlPlaneFailover: two servers on a three-member etcd cluster,
// agents that know both. Killing the leading server moves the controllers
// to the other and the agents' heartbeats with them; then losing one
// etcd member (its Raft leader) leaves the API serving with nothing lost.
// Throughout, no VMI is failed and no guest restarted.
func TestControlPlaneFailover(t *testing.T) {
	members, endpoints := etcdtest.StartCluster(t, 3)
	dir := t.TempDir()
	a := startServerProcess(t, dir, "server-a", endpoints, "--no-agent")
	b := startServerProcess(t, dir, "server-b", endpoints, "--no-agent")
	leader, _ := whoLeads(t, a, b)
	// The agents and the test reach the leader first, so killing it is
	// felt by everyone.
	other := a
	if leader == a {
		other = b
	}
	cl := processCluster(t, dir, leader.url+","+other.url)
	uids := cl.runningFleet("cp")

	leader.kill()
	killed := time.Now()
	// A request on a kept-alive connection to the dead server fails (EOF)
	// without the client knowing whether it arrived, so the client does not
	// resend it; the caller retries, as documented for the failover client,
	// and the retry goes to the other server. A create that did arrive
	// answers AlreadyExists.
	cl.waitFor("a create through the surviving server", wait, func() (bool, error) {
		_, err := cl.c.VirtualMachines(v1.DefaultNamespace).Create(context.Background(), newVM("after-failover", v1.RunStrategyAlways, nil), client.WriteOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
	cl.waitStatus("after-failover", v1.VirtualMachineStatusRunning, wait)
	t.Logf("a VM created after the leading server died ran %s later", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(settle)
	cl.checkUndisturbed(uids)

	// Lose etcd's Raft leader.
	for _, m := range members {
		if m.IsLeader() {
			m.Close()
			break
		}
	}
	lost := time.Now()
	cl.create(newVM("after-member-loss", v1.RunStrategyAlways, nil))
	cl.waitStatus("after-member-loss", v1.VirtualMachineStatusRunning, wait)
	t.Logf("a VM created after an etcd member was lost ran %s later", time.Since(lost).Round(100*time.Millisecond))
	time.Sleep(settle)
	cl.checkUndisturbed(uids)
	list, err := cl.c.VirtualMachines(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
	must(t, err)
	if len(list.Items) != len(uids)+2 {
		t.Errorf("%d VMs after the faults, want %d", len(list.Items), len(uids)+2)
	}
	// The cluster still acts: a stop goes through.
	cl.mustVigil("stop", "cp-manual")
	cl.waitNoVMI("cp-manual", wait)
}

// TestControlPlaneRestart: the only server (embedded etcd) is killed and
// started again on the same data while its agents run on. The restart
// finishes within --fence-after, so no agent fences, no VMI is failed and
// no guest restarted, and the state written before the crash is all there.
func TestControlPlaneRestart(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	s := startServer(t, dir, "server", addr, "--no-agent")
	cl := processCluster(t, dir, s.url)
	uids := cl.runningFleet("re")

	s.kill()
	killed := time.Now()
	startServer(t, dir, "server", addr, "--no-agent")
	t.Logf("the server was back %s after it was killed", time.Since(killed).Round(100*time.Millisecond))
	cl.create(newVM("after-restart", v1.RunStrategyAlways, nil))
	cl.waitStatus("after-restart", v1.VirtualMachineStatusRunning, wait)
	time.Sleep(settle)
	cl.checkUndisturbed(uids)
	cl.mustVigil("stop", "re-manual")
	cl.waitNoVMI("re-manual", wait)
}
