package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/guestimage"
)

// guestWait bounds waits on real guests: a TCG boot takes about 3 s alone
// and several times that with four guests on two cores.
const guestWait = 3 * time.Minute

// qemuCluster starts a cluster whose node "qemu-1" is a `vigil agent`
// process with the qemu runtime and the test guest in its image directory.
// It returns the image directory and the agent process. Without QEMU or
// the test guest it fails under make test (VIGIL_REQUIRE_QEMU=1) and
// skips, naming what is missing, otherwise.
func qemuCluster(t *testing.T) (*cluster, string, *exec.Cmd) {
	t.Helper()
	images := qemuImages(t)
	cl := newCluster(t, clusterOptions{backoffBase: 200 * time.Millisecond, backoffMax: time.Second})
	// No guest outlives its test: whatever QEMU still runs in the agent's
	// state directory at the end is killed.
	t.Cleanup(func() { cl.killQEMUNode("qemu-1") })
	// The process table, sampled, shows no VM ever ran twice.
	watchQEMU(t, cl.dir)
	agent := cl.startQEMUAgent(images)
	cl.waitNodeReady("qemu-1", 60*time.Second)
	return cl, images, agent
}

// qemuImages returns an image directory holding the test guest. Without
// QEMU or the test guest it fails under make test (VIGIL_REQUIRE_QEMU=1)
// and skips, naming what is missing, otherwise.
func qemuImages(t testing.TB) string {
	t.Helper()
	_, qerr := exec.LookPath("qemu-system-x86_64")
	images, err := guestimage.ImageDir(t.TempDir())
	if qerr != nil || err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatalf("QEMU tests need QEMU and the test guest (make guest-image): %v %v", qerr, err)
		}
		t.Skipf("QEMU tests need QEMU and the test guest (make guest-image): %v %v", qerr, err)
	}
	return images
}

// killQEMUNode kills every QEMU guest in a qemu node's state directory
// and the node's watchdog.
func (cl *cluster) killQEMUNode(name string) {
	killGuests(filepath.Join(cl.agentStateDir(name), "qemu", "guests"))
	if b, err := os.ReadFile(filepath.Join(cl.agentStateDir(name), "watchdog.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitNodeReady waits for a node to be Ready.
func (cl *cluster) waitNodeReady(name string, timeout time.Duration) {
	cl.t.Helper()
	cl.waitFor("node "+name+" Ready", timeout, func() (bool, error) {
		n, err := cl.c.Nodes().Get(context.Background(), name)
		if err != nil {
			return false, err
		}
		c := n.Status.Condition(v1.NodeReady)
		return c != nil && c.Status == metav1.ConditionTrue, nil
	})
}

func (cl *cluster) startQEMUAgent(images string) *exec.Cmd {
	return cl.startQEMUAgentVia("qemu-1", cl.url(), images)
}

// startQEMUAgentVia runs a `vigil agent --runtime qemu` process for node
// name that reaches the API at server; it starts the node's watchdog.
func (cl *cluster) startQEMUAgentVia(name, server, images string) *exec.Cmd {
	return cl.startAgentProcessVia(name, server, "--runtime", "qemu", "--image-dir", images, "--capacity-cpu", "16", "--capacity-memory", "8Gi")
}

// guestVM is a VM booting the test guest from its initramfs, with
// cloud-init user-data and, optionally, a persistent host disk.
func guestVM(name string, rs v1.RunStrategy, grace int64, userData, hostDisk string) *v1.VirtualMachine {
	vm := newVM(name, rs, nil)
	spec := &vm.Spec.Template.Spec
	spec.TerminationGracePeriodSeconds = &grace
	spec.Domain.Resources.Requests[v1.ResourceMemory] = resource.MustParse("256Mi")
	spec.Domain.Firmware = &v1.Firmware{KernelBoot: &v1.KernelBoot{
		KernelArgs: "console=ttyS0 panic=-1",
		Container:  &v1.KernelBootContainer{Image: guestimage.Name, KernelPath: "/vmlinuz", InitrdPath: "/initramfs.img"},
	}}
	if hostDisk != "" {
		capacity := resource.MustParse("8Mi")
		spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, v1.Disk{Name: "data", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{}}})
		spec.Volumes = append(spec.Volumes, v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{
			HostDisk: &v1.HostDisk{Path: hostDisk, Type: v1.HostDiskExistsOrCreate, Capacity: &capacity}}})
	}
	spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, v1.Disk{Name: "cloudinit", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{}}})
	spec.Volumes = append(spec.Volumes, v1.Volume{Name: "cloudinit", VolumeSource: v1.VolumeSource{
		CloudInitNoCloud: &v1.CloudInitNoCloudSource{UserData: "#!/bin/sh\n" + userData}}})
	return vm
}

// guestDir is where the qemu runtime keeps a VMI's guest.
func (cl *cluster) guestDir(vmi *v1.VirtualMachineInstance) string {
	return filepath.Join(cl.agentStateDir(vmi.Status.NodeName), "qemu", "guests", string(vmi.UID))
}

// consoleLog is what a VMI's guest has printed so far.
func (cl *cluster) consoleLog(vmi *v1.VirtualMachineInstance) string {
	b, _ := os.ReadFile(filepath.Join(cl.guestDir(vmi), "console.log"))
	return string(b)
}

// waitConsole waits for a line on a VMI's console.
func (cl *cluster) waitConsole(vmi *v1.VirtualMachineInstance, marker string) {
	cl.t.Helper()
	cl.waitFor(fmt.Sprintf("%q on the console of %s", marker, vmi.Name), guestWait, func() (bool, error) {
		return strings.Contains(cl.consoleLog(vmi), marker), nil
	})
}

// qemuPID is the PID of a VMI's QEMU process.
func (cl *cluster) qemuPID(vmi *v1.VirtualMachineInstance) int {
	cl.t.Helper()
	pid, err := guestPID(cl.guestDir(vmi))
	if err != nil {
		cl.t.Fatal(err)
	}
	return pid
}

func guestPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "guest.json"))
	if err != nil {
		return 0, err
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID == 0 {
		return 0, fmt.Errorf("%s/guest.json: no pid: %v", dir, err)
	}
	return rec.PID, nil
}

// eventReasons lists the reasons of the events about a VMI (by UID).
func (cl *cluster) eventReasons(vmi *v1.VirtualMachineInstance) []string {
	cl.t.Helper()
	list, err := cl.c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.UID == vmi.UID {
			out = append(out, e.Reason)
		}
	}
	return out
}

func (cl *cluster) waitEvent(vmi *v1.VirtualMachineInstance, reason string) {
	cl.t.Helper()
	cl.waitFor(fmt.Sprintf("event %s on VMI %s", reason, vmi.Name), guestWait, func() (bool, error) {
		return slices.Contains(cl.eventReasons(vmi), reason), nil
	})
}

// waitVMIEvent waits for an event with reason about a VMI of that name and
// returns the VMI's UID.
func (cl *cluster) waitVMIEvent(name, reason string) types.UID {
	cl.t.Helper()
	var uid types.UID
	cl.waitFor(fmt.Sprintf("event %s on VMI %s", reason, name), guestWait, func() (bool, error) {
		list, err := cl.c.Events(v1.DefaultNamespace).List(context.Background(), client.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == v1.KindVirtualMachineInstance && e.InvolvedObject.Name == name && e.Reason == reason {
				uid = e.InvolvedObject.UID
				return true, nil
			}
		}
		return false, nil
	})
	return uid
}

// alive reports whether process pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// killGuests kills every QEMU process whose working directory is a guest
// directory under dir.
func killGuests(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		guest := filepath.Join(dir, e.Name())
		pid, err := guestPID(guest)
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == guest {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestQEMUGuests runs real guests through the whole system and ends them
// in every way a guest can end, checking what each RunStrategy makes of it.
func TestQEMUGuests(t *testing.T) {
	cl, _, _ := qemuCluster(t)
	disk := filepath.Join(t.TempDir(), "data.img")

	// Always + hostDisk + cloud-init: the first run writes to the disk and
	// powers off (Succeeded); Always starts a new VMI, which finds the data.
	cl.create(guestVM("always", v1.RunStrategyAlways, 10, `
if [ "$(head -c 7 /dev/vda)" = KEEP-ME ]; then
	echo HOSTDISK-KEPT
else
	printf KEEP-ME | dd of=/dev/vda conv=notrunc 2>/dev/null; sync
	echo HOSTDISK-WRITTEN
	poweroff
fi
`, disk))
	// RerunOnFailure: powered off it stays down.
	cl.create(guestVM("rerun-off", v1.RunStrategyRerunOnFailure, 10, "echo ABOUT-TO-POWER-OFF; poweroff\n", ""))
	// RerunOnFailure: QEMU killed is a failure; it comes back.
	cl.create(guestVM("rerun-kill", v1.RunStrategyRerunOnFailure, 10, "echo UP\n", ""))
	// RerunOnFailure: powered off from its console, it stays down.
	cl.create(guestVM("typed", v1.RunStrategyRerunOnFailure, 10, "echo TYPE-HERE\n", ""))
	// Manual: a guest panic fails it, and it stays down.
	cl.create(guestVM("panic", v1.RunStrategyManual, 10, "echo c > /proc/sysrq-trigger\n", ""))
	cl.mustVigil("start", "panic")

	first := cl.waitVMIPhase("always", v1.Running, "", guestWait)
	cl.waitConsole(first, "HOSTDISK-WRITTEN")
	second := cl.waitVMIPhase("always", v1.Running, string(first.UID), guestWait)
	cl.waitConsole(second, "HOSTDISK-KEPT")
	if !slices.Contains(cl.eventReasons(first), v1.ReasonGuestShutdown) {
		t.Errorf("the first run of always: events %v, want %s", cl.eventReasons(first), v1.ReasonGuestShutdown)
	}

	// The console: the log shows the boot; typing poweroff powers off.
	typed := cl.waitVMIPhase("typed", v1.Running, "", guestWait)
	cl.waitConsole(typed, "TYPE-HERE")
	cl.waitConsole(typed, "VIGIL-CLOUD-INIT-DONE")
	if log := cl.mustVigil("console", "--log", "typed"); !strings.Contains(log, "VIGIL-GUEST-READY") {
		t.Errorf("vigil console --log shows no boot marker:\n%s", log)
	}
	out, err := cl.vigilIn("poweroff\n", "console", "typed")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "VIGIL-GUEST-SHUTDOWN") {
		t.Errorf("the console did not show the guest powering off:\n%s", out)
	}
	cl.waitEvent(typed, v1.ReasonGuestShutdown)
	cl.waitStatus("typed", v1.VirtualMachineStatusStopped, guestWait)
	if _, err := cl.vigil("console", "--timeout", "1s", "no-such-vm"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("console of a missing VMI: %v", err)
	}

	// A VM that stays down may keep its final VMI or lose it; the events
	// of the VMI (by UID) say how it ended either way.
	off := cl.waitVMIEvent("rerun-off", v1.ReasonGuestShutdown)
	cl.waitStatus("rerun-off", v1.VirtualMachineStatusStopped, guestWait)
	panicked := cl.waitVMIEvent("panic", v1.ReasonGuestPanicked)
	cl.waitStatus("panic", v1.VirtualMachineStatusStopped, guestWait)

	victim := cl.waitVMIPhase("rerun-kill", v1.Running, "", guestWait)
	cl.waitConsole(victim, "UP")
	if err := syscall.Kill(cl.qemuPID(victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cl.waitEvent(victim, v1.ReasonCrashed)
	back := cl.waitVMIPhase("rerun-kill", v1.Running, string(victim.UID), guestWait)
	cl.waitConsole(back, "UP")

	// The VMs that ended stay ended.
	if vmi := cl.vmi("rerun-off"); vmi != nil && vmi.UID != off {
		t.Errorf("rerun-off was restarted after powering off")
	}
	if vmi := cl.vmi("panic"); vmi != nil && vmi.UID != panicked {
		t.Errorf("the Manual VM was restarted after a panic")
	}

	// Graceful stop: the guest powers off within its grace period.
	cl.mustVigil("stop", "rerun-kill")
	cl.waitEvent(back, v1.ReasonStopped)
	cl.waitNoVMI("rerun-kill", guestWait)
	cl.mustVigil("stop", "always")
	cl.waitNoVMI("always", guestWait)
}

// TestQEMUControl: pause and unpause a real guest, restart its agent under
// it, and stop a guest that ignores ACPI.
func TestQEMUControl(t *testing.T) {
	cl, images, agent := qemuCluster(t)
	// The guest prints a tick every 100 ms, so a pause shows on its console.
	cl.create(guestVM("ticker", v1.RunStrategyAlways, 10, "(while :; do echo TICK; sleep 0.1; done >/dev/console) &\n", ""))
	// A guest without acpid ignores the power button.
	cl.create(guestVM("deaf", v1.RunStrategyAlways, 3, "kill $(cat /run/vigil/acpid.pid) && echo ACPID-GONE\n", ""))

	ticker := cl.waitVMIPhase("ticker", v1.Running, "", guestWait)
	cl.waitConsole(ticker, "TICK")
	cl.mustVigil("pause", "vmi", "ticker")
	cl.waitFor("the Paused condition", guestWait, func() (bool, error) {
		c := cl.vmi("ticker").Status.Condition(v1.VirtualMachineInstancePaused)
		return c != nil && c.Status == metav1.ConditionTrue, nil
	})
	paused := strings.Count(cl.consoleLog(ticker), "TICK")
	time.Sleep(time.Second)
	if now := strings.Count(cl.consoleLog(ticker), "TICK"); now != paused {
		t.Errorf("the paused guest printed %d more ticks", now-paused)
	}
	cl.mustVigil("unpause", "vmi", "ticker")
	cl.waitFor("ticks after unpausing", guestWait, func() (bool, error) {
		return strings.Count(cl.consoleLog(ticker), "TICK") > paused+3, nil
	})

	// The agent dies: the guest runs on under the same QEMU process, and
	// the next agent takes it back and controls it.
	pid := cl.qemuPID(ticker)
	_ = agent.Process.Signal(syscall.SIGKILL)
	_ = agent.Wait()
	if !alive(pid) {
		t.Fatal("the guest died with its agent")
	}
	cl.startQEMUAgent(images)
	time.Sleep(2 * time.Second)
	again := cl.vmi("ticker")
	if again.UID != ticker.UID || again.Status.Phase != v1.Running || cl.qemuPID(again) != pid || !alive(pid) {
		t.Fatalf("after an agent restart: %s %s pid %d alive %v; want %s Running pid %d", again.UID, again.Status.Phase, cl.qemuPID(again), alive(pid), ticker.UID, pid)
	}
	cl.mustVigil("pause", "vmi", "ticker")
	cl.waitFor("the Paused condition after the restart", guestWait, func() (bool, error) {
		c := cl.vmi("ticker").Status.Condition(v1.VirtualMachineInstancePaused)
		return c != nil && c.Status == metav1.ConditionTrue, nil
	})
	cl.mustVigil("stop", "ticker")
	cl.waitEvent(ticker, v1.ReasonStopped)
	cl.waitNoVMI("ticker", guestWait)
	if alive(pid) {
		t.Error("QEMU runs on after its VM was stopped")
	}

	deaf := cl.waitVMIPhase("deaf", v1.Running, "", guestWait)
	cl.waitConsole(deaf, "ACPID-GONE")
	cl.mustVigil("stop", "deaf")
	cl.waitEvent(deaf, v1.ReasonGracePeriodExpired)
	cl.waitNoVMI("deaf", guestWait)
}

// TestQEMUHungAgent: an agent that hangs (SIGSTOP) cannot fence its
// guests; the node's watchdog kills them before the control plane
// recovers the VM, and after SIGCONT the agent does not resume them.
func TestQEMUHungAgent(t *testing.T) {
	cl, _, agent := qemuCluster(t)
	t.Cleanup(func() { _ = agent.Process.Signal(syscall.SIGCONT) })
	cl.create(guestVM("hung", v1.RunStrategyAlways, 5, "echo UP\n", ""))
	first := cl.waitVMIPhase("hung", v1.Running, "", guestWait)
	cl.waitConsole(first, "UP")
	pid := cl.qemuPID(first)

	if err := agent.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cl.waitFor("the watchdog to kill the guest", guestWait, func() (bool, error) { return !alive(pid), nil })
	// The guest was dead before the control plane declared the node lost.
	if vmi := cl.vmi("hung"); vmi.UID == first.UID && vmi.Status.Phase == v1.Failed {
		t.Errorf("the VMI failed before the watchdog killed its guest")
	}
	cl.waitVMIEvent("hung", v1.ReasonNodeLost)

	if err := agent.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	second := cl.waitVMIPhase("hung", v1.Running, string(first.UID), guestWait)
	if p := cl.qemuPID(second); p == pid || !alive(p) {
		t.Errorf("the new run's QEMU: pid %d (old %d) alive %v", p, pid, alive(p))
	}
	if alive(pid) {
		t.Error("the fenced guest came back")
	}
}
