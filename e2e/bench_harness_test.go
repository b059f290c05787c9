package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vigil-vm/vigil/internal/bench"
)

// TestBenchHarness runs a small `vigil bench` (500 VMs on 10 simulated
// nodes, every scenario) and checks its report: every VM counted in each
// phase, every churn operation and every VM of a lost node accounted for,
// the writes counted, and the files written. It asserts no timing: the
// numbers are the report's business.
func TestBenchHarness(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(vigilBin, "bench", "--nodes", "10", "--vms", "500", "--paced-vms", "100",
		"--steady-settle", "2s", "--steady-window", "2s", "--write-starts", "50", "--churn-duration", "10s", "--out", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vigil bench: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if r.Paced == nil || r.Paced.VMs != 100 || r.Paced.Latency.N != 100 {
		t.Errorf("paced start: %+v, want 100 VMs measured", r.Paced)
	}
	if r.Bulk == nil || r.Bulk.VMs != 400 || r.Bulk.Latency.N != 400 || r.Bulk.APIWrite.N != 400 {
		t.Errorf("bulk start: %+v, want 400 VMs measured", r.Bulk)
	} else if r.Bulk.ServerCPUMsPerStart <= 0 || r.Bulk.HarnessCPUMsPerStart <= 0 {
		t.Errorf("bulk start: CPU per start server %v ms, harness %v ms; want both measured", r.Bulk.ServerCPUMsPerStart, r.Bulk.HarnessCPUMsPerStart)
	}
	if r.Steady == nil || r.Steady.VMs != 500 || r.Steady.ServerRSSMiB <= 0 {
		t.Errorf("steady state: %+v, want 500 VMs and a server RSS", r.Steady)
	}
	if r.Writes == nil || r.Writes.Starts != 50 || r.Writes.BeyondCreatePerStart <= 0 || r.Writes.DigestWritesPerSecond <= 0 {
		t.Errorf("writes: %+v, want 50 starts with their writes and the heartbeats' counted", r.Writes)
	}
	if c := r.Churn; c == nil || c.Operations == 0 || c.All.N+sum(c.Failed) != c.Operations {
		t.Errorf("churn: %+v, want every operation measured or counted failed", c)
	}
	if len(r.NodeLoss) != 2 || r.NodeLoss[0].Nodes != 1 || r.NodeLoss[1].Nodes != 5 {
		t.Fatalf("node loss: %+v, want one node then five", r.NodeLoss)
	}
	for _, n := range r.NodeLoss {
		if n.VMs == 0 || n.Recovery.N != n.VMs {
			t.Errorf("node loss of %d: %d VMs, %d recovered", n.Nodes, n.VMs, n.Recovery.N)
		}
	}
	if len(r.Targets) == 0 {
		t.Error("the report judges no target")
	}
	for _, f := range []string{"report.md", "latency.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
