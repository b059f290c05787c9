package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/guestimage"
)

// BenchmarkQEMUBoot measures, in one run and side by side, the time from
// `vigil start` to the test guest's boot marker on its console, and the
// time a bare qemu-system-x86_64 takes to boot the same guest to the same
// marker: the difference is what Vigil adds (scheduling, the agent, QMP,
// the seed image). Run it with: go test ./e2e -run '^$' -bench QEMUBoot -benchtime 5x
func BenchmarkQEMUBoot(b *testing.B) {
	images, cl := qemuBenchCluster(b)
	cl.create(guestVM("bench", v1.RunStrategyManual, 5, "true\n", ""))
	var vigilTotal, bareTotal time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cl.mustVigil("start", "bench")
		vmi := cl.waitVMIPhase("bench", v1.Running, "", guestWait)
		cl.waitConsole(vmi, "VIGIL-GUEST-READY")
		vigilTotal += time.Since(start)
		cl.mustVigil("stop", "bench", "--force", "--grace-period", "0")
		cl.waitNoVMI("bench", guestWait)

		bareTotal += bareBoot(b, images)
	}
	b.ReportMetric(float64(vigilTotal.Milliseconds())/float64(b.N), "ms/vigil-start-to-ready")
	b.ReportMetric(float64(bareTotal.Milliseconds())/float64(b.N), "ms/bare-qemu-to-ready")
	b.ReportMetric(float64((vigilTotal-bareTotal).Milliseconds())/float64(b.N), "ms/overhead")
}

// qemuBenchCluster is qemuCluster for a benchmark.
func qemuBenchCluster(b *testing.B) (string, *cluster) {
	b.Helper()
	cl := newCluster(b, clusterOptions{fsync: true})
	dir, err := guestimage.ImageDir(b.TempDir())
	if err != nil {
		b.Skipf("the benchmark needs the test guest (make guest-image): %v", err)
	}
	b.Cleanup(func() { killGuests(filepath.Join(cl.agentStateDir("qemu-1"), "qemu", "guests")) })
	cl.startQEMUAgent(dir)
	cl.waitFor("node qemu-1", time.Minute, func() (bool, error) {
		_, err := cl.c.Nodes().Get(context.Background(), "qemu-1")
		return err == nil, nil
	})
	return dir, cl
}

// bareBoot boots the test guest with a plain QEMU command line and returns
// the time to its boot marker.
func bareBoot(b *testing.B, images string) time.Duration {
	b.Helper()
	guest := filepath.Join(images, "vigil-guest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
		"-kernel", filepath.Join(guest, "vmlinuz"), "-initrd", filepath.Join(guest, "initramfs.img"),
		"-append", "console=ttyS0 panic=-1", "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "VIGIL-GUEST-READY") {
			return time.Since(start)
		}
	}
	b.Fatal("the bare QEMU boot never printed VIGIL-GUEST-READY")
	return 0
}
