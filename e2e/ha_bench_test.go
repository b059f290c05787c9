package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// BenchmarkNodeLoss measures, with the default HA timings, how long a
// node's 100 VMs take to come back on another node after the node dies
// (crash: agent and guests gone at once) or is cut off from the control
// plane (partition: the agent fences its own guests). It prints the time
// to detection (Ready=Unknown), to fencing (the last old guest dead: at
// once for a crash, the self-fence for a partition) and to every VM
// Running elsewhere (p50, p99, max), all from the moment of the failure.
// Run it with: go test ./e2e -run '^$' -bench NodeLoss -benchtime 1x
func BenchmarkNodeLoss(b *testing.B) {
	for _, mode := range []string{"crash", "partition"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				nodeLoss(b, mode, 100)
			}
		})
	}
}

func nodeLoss(b *testing.B, mode string, vms int) {
	cl := newCluster(b, clusterOptions{fsync: true})
	p := newBlackhole(b, cl.url())
	pc, err := client.New(client.Config{Server: p.url, UserAgent: "agent-node-1"})
	if err != nil {
		b.Fatal(err)
	}
	cl.addAgentVia("node-1", "1000", "1000Gi", nil, pc)
	old := map[string]string{}
	for i := range vms {
		cl.create(newVM(fmt.Sprintf("vm-%03d", i), v1.RunStrategyAlways, nil))
	}
	cl.waitFor("every VM Running on node-1", 2*time.Minute, func() (bool, error) {
		list, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
		if err != nil {
			return false, err
		}
		n := 0
		for _, vmi := range list.Items {
			if vmi.Status.Phase == v1.Running {
				old[vmi.Name] = string(vmi.UID)
				n++
			}
		}
		return n == vms, nil
	})
	cl.addAgent("node-2", "1000", "1000Gi", nil)

	var failed time.Time
	switch mode {
	case "crash":
		failed = cl.crashNode("node-1")
	case "partition":
		p.cut()
		failed = time.Now()
	}
	detected, back := watchLoss(b, cl, "node-1", old, failed)
	fenced := time.Duration(0)
	if mode == "partition" {
		entries, err := sim.ReadJournal(cl.journal)
		if err != nil {
			b.Fatal(err)
		}
		for _, iv := range sim.Intervals(entries) {
			if iv.Node == "node-1" && !iv.Stop.IsZero() {
				fenced = max(fenced, iv.Stop.Sub(failed))
			}
		}
	}
	reportLoss(b, detected, fenced, back)
}

// watchLoss watches a node lost at failed until every VM in old (VM name
// to the UID of its VMI before the failure) runs again as a new VMI, for
// at most 2 minutes. It returns how long after the failure the node was
// seen Ready=Unknown, and each VM Running again.
func watchLoss(b *testing.B, cl *cluster, node string, old map[string]string, failed time.Time) (time.Duration, map[string]time.Duration) {
	var detected time.Duration
	back := map[string]time.Duration{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(back) < len(old) && time.Now().Before(deadline) {
		if detected == 0 {
			if n, err := cl.c.Nodes().Get(context.Background(), node); err == nil {
				if c := n.Status.Condition(v1.NodeReady); c != nil && c.Status == metav1.ConditionUnknown {
					detected = time.Since(failed)
				}
			}
		}
		list, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, vmi := range list.Items {
			if _, ok := back[vmi.Name]; !ok && vmi.Status.Phase == v1.Running && string(vmi.UID) != old[vmi.Name] {
				back[vmi.Name] = time.Since(failed)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(back) < len(old) {
		b.Fatalf("%d of %d VMs came back", len(back), len(old))
	}
	return detected, back
}

// reportLoss reports the times to detection and to fencing, and the p50,
// p99 and maximum of the times to Running elsewhere.
func reportLoss(b *testing.B, detected, fenced time.Duration, back map[string]time.Duration) {
	times := make([]time.Duration, 0, len(back))
	for _, d := range back {
		times = append(times, d)
	}
	slices.Sort(times)
	pct := func(q float64) time.Duration { return times[min(len(times)-1, int(q*float64(len(times))))] }
	b.ReportMetric(detected.Seconds(), "s/detect")
	b.ReportMetric(fenced.Seconds(), "s/fence")
	b.ReportMetric(pct(0.5).Seconds(), "s/p50-running")
	b.ReportMetric(pct(0.99).Seconds(), "s/p99-running")
	b.ReportMetric(times[len(times)-1].Seconds(), "s/max-running")
}
