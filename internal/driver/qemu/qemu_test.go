package qemu_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/drivertest"
	"github.com/vigil-vm/vigil/internal/driver/qemu"
	"github.com/vigil-vm/vigil/internal/guestimage"
)

// imageDir returns an image directory holding the test guest as
// "vigil-guest". Without QEMU or the guest image the test fails when
// VIGIL_REQUIRE_QEMU=1 (make test sets it) and is skipped, naming what is
// missing, otherwise.
func imageDir(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatal("QEMU tests need qemu-system-x86_64 (make qemu)")
		}
		t.Skip("QEMU tests need qemu-system-x86_64 (make qemu)")
	}
	dir, err := guestimage.ImageDir(t.TempDir())
	if err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatalf("QEMU tests need the test guest: %v", err)
		}
		t.Skipf("QEMU tests need the test guest (make guest-image): %v", err)
	}
	return dir
}

func newDriver(t *testing.T, stateDir, images string) *qemu.Driver {
	t.Helper()
	d, err := qemu.New(context.Background(), qemu.Config{StateDir: stateDir, ImageDir: images})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// guestVMI boots the test guest from its initramfs.
func guestVMI(extraArgs string) *v1.VirtualMachineInstance {
	mem := resource.MustParse("256Mi")
	grace := int64(30)
	return &v1.VirtualMachineInstance{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachineInstance),
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "guest"},
		Spec: v1.VirtualMachineInstanceSpec{
			TerminationGracePeriodSeconds: &grace,
			Domain: v1.DomainSpec{
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: mem}},
				Firmware: &v1.Firmware{KernelBoot: &v1.KernelBoot{
					KernelArgs: strings.TrimSpace("console=ttyS0 panic=-1 " + extraArgs),
					Container:  &v1.KernelBootContainer{Image: guestimage.Name, KernelPath: "/vmlinuz", InitrdPath: "/initramfs.img"},
				}},
			},
		},
	}
}

// TestConformance runs the driver contract's suite on real guests.
func TestConformance(t *testing.T) {
	images := imageDir(t)
	drivertest.Run(t, drivertest.Harness{
		NewDriver: func(t *testing.T) driver.Driver { return newDriver(t, t.TempDir(), images) },
		Reopen: func(t *testing.T, d driver.Driver) driver.Driver {
			return newDriver(t, d.(*qemu.Driver).StateDir(), images)
		},
		VMI:     func(*testing.T) *v1.VirtualMachineInstance { return guestVMI("") },
		Timeout: 90 * time.Second,
	})
}

// runs numbers the guests of the behaviour tests.
var runs atomic.Int64

// run is one guest of a behaviour test.
type run struct {
	t       *testing.T
	d       *qemu.Driver
	g       driver.Guest
	console io.ReadWriteCloser
	lines   chan string
}

func start(t *testing.T, d *qemu.Driver, vmi *v1.VirtualMachineInstance) *run {
	t.Helper()
	id := types.UID(fmt.Sprintf("t%d-%s", runs.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))))
	vmi.UID = id
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := d.Start(ctx, driver.Spec{ID: string(id), Namespace: vmi.Namespace, Name: vmi.Name, VMI: vmi})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, d: d, g: g}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if r.g.State().Phase != driver.Exited {
			_ = r.g.Kill(ctx)
		}
		_ = r.g.Remove()
	})
	r.attach()
	return r
}

// attach connects to the serial console and reads it line by line.
func (r *run) attach() {
	c, err := r.g.(driver.Consoler).Console(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	r.console = c
	r.lines = make(chan string, 4096)
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
	}()
	r.t.Cleanup(func() { c.Close() })
}

// expect waits for a console line containing marker.
func (r *run) expect(marker string) string {
	r.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				r.t.Fatalf("the console closed before %q", marker)
			}
			if strings.Contains(l, marker) {
				return l
			}
		case <-deadline:
			r.t.Fatalf("no %q on the console", marker)
		}
	}
}

// typeLine sends a command line to the console shell.
func (r *run) typeLine(cmd string) {
	r.t.Helper()
	if _, err := io.WriteString(r.console, cmd+"\n"); err != nil {
		r.t.Fatal(err)
	}
}

// waitExit waits for the guest to exit and returns its exit.
func (r *run) waitExit() driver.Exit {
	r.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		if st := r.g.State(); st.Phase == driver.Exited {
			return *st.Exit
		}
		select {
		case <-r.g.Changed():
		case <-deadline:
			r.t.Fatalf("the guest did not exit: %+v", r.g.State())
		}
	}
}

func (r *run) pid() int {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.d.StateDir(), "guests", r.g.ID(), "guest.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID == 0 {
		r.t.Fatalf("guest.json: pid %d, %v", rec.PID, err)
	}
	return rec.PID
}

// TestGuestOutcomes boots the test guest and ends it in every way a guest
// can end, checking the outcome the driver reports.
func TestGuestOutcomes(t *testing.T) {
	images := imageDir(t)
	d := newDriver(t, t.TempDir(), images)
	if info := d.Info(); info.Accelerator != "kvm" && info.Accelerator != "tcg" {
		t.Fatalf("accelerator %q", info.Accelerator)
	}
	t.Run("PowerOffOnConsole", func(t *testing.T) {
		t.Parallel()
		r := start(t, d, guestVMI(""))
		r.expect("VIGIL-GUEST-READY")
		r.typeLine("poweroff")
		if e := r.waitExit(); e.Reason != driver.ExitShutdown {
			t.Errorf("exit %+v, want Shutdown", e)
		}
	})
	t.Run("QEMUKilled", func(t *testing.T) {
		t.Parallel()
		r := start(t, d, guestVMI(""))
		r.expect("VIGIL-GUEST-READY")
		if err := syscall.Kill(r.pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := r.waitExit(); e.Reason != driver.ExitCrashed {
			t.Errorf("exit %+v, want Crashed", e)
		}
	})
	t.Run("GuestPanic", func(t *testing.T) {
		t.Parallel()
		r := start(t, d, guestVMI(""))
		r.expect("VIGIL-GUEST-READY")
		r.typeLine("echo c > /proc/sysrq-trigger")
		if e := r.waitExit(); e.Reason != driver.ExitPanicked {
			t.Errorf("exit %+v, want Panicked", e)
		}
	})
}

// TestGuestIgnoresACPI: a guest whose acpid is gone ignores the power
// button; the guest runs on until it is killed.
func TestGuestIgnoresACPI(t *testing.T) {
	images := imageDir(t)
	d := newDriver(t, t.TempDir(), images)
	r := start(t, d, guestVMI(""))
	r.expect("VIGIL-GUEST-READY")
	// Markers are computed by the shell, so that the echo of the typed line
	// does not match them.
	r.typeLine("kill $(cat /run/vigil/acpid.pid) && echo ACPID-GONE-$((40+2))")
	r.expect("ACPID-GONE-42")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if err := r.g.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	if st := r.g.State(); st.Phase != driver.Running {
		t.Fatalf("a guest without acpid left Running: %+v", st)
	}
	if err := r.g.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if e := r.waitExit(); e.Reason != driver.ExitKilled {
		t.Errorf("exit %+v, want Killed", e)
	}
}

// TestGuestCloudInitAndHostDisk: cloud-init user-data runs, and data the
// guest writes to a hostDisk is there in the next run.
func TestGuestCloudInitAndHostDisk(t *testing.T) {
	images := imageDir(t)
	d := newDriver(t, t.TempDir(), images)
	disk := filepath.Join(t.TempDir(), "data.img")
	capacity := resource.MustParse("16Mi")
	vmi := func() *v1.VirtualMachineInstance {
		vmi := guestVMI("")
		vmi.Spec.Domain.Devices.Disks = []v1.Disk{
			{Name: "data", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{}}},
			{Name: "cloudinit", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{}}},
		}
		vmi.Spec.Volumes = []v1.Volume{
			{Name: "data", VolumeSource: v1.VolumeSource{HostDisk: &v1.HostDisk{Path: disk, Type: v1.HostDiskExistsOrCreate, Capacity: &capacity}}},
			{Name: "cloudinit", VolumeSource: v1.VolumeSource{CloudInitNoCloud: &v1.CloudInitNoCloudSource{
				UserData: "#!/bin/sh\necho USER-DATA-RAN\n",
			}}},
		}
		return vmi
	}
	first := start(t, d, vmi())
	first.expect("USER-DATA-RAN")
	first.expect("VIGIL-CLOUD-INIT-DONE rc=0")
	first.typeLine("printf KEEP-ME-42 | dd of=/dev/vda conv=notrunc 2>/dev/null; sync; echo WRITTEN-$((40+2))")
	first.expect("WRITTEN-42")
	first.typeLine("poweroff")
	if e := first.waitExit(); e.Reason != driver.ExitShutdown {
		t.Fatalf("first run: %+v", e)
	}
	second := start(t, d, vmi())
	if first.g.ID() == second.g.ID() {
		t.Fatal("two runs share a guest id")
	}
	second.expect("VIGIL-GUEST-READY")
	second.typeLine("echo FOUND-$(head -c 10 /dev/vda)")
	second.expect("FOUND-KEEP-ME-42")
}

// TestStartFailures: what cannot start fails with a reason saying what is
// missing, and leaves nothing behind.
func TestStartFailures(t *testing.T) {
	images := imageDir(t)
	state := t.TempDir()
	d := newDriver(t, state, images)
	cases := []struct {
		name   string
		change func(*v1.VirtualMachineInstance)
		reason string
		msg    string
	}{
		{"missing kernel", func(v *v1.VirtualMachineInstance) {
			v.Spec.Domain.Firmware.KernelBoot.Container.KernelPath = "/no-such-kernel"
		},
			qemu.ReasonDiskNotFound, "no-such-kernel"},
		{"missing image", func(v *v1.VirtualMachineInstance) {
			v.Spec.Domain.Firmware.KernelBoot.Container.Image = "no-such-image"
		},
			qemu.ReasonDiskNotFound, "no-such-image"},
		{"missing host disk", func(v *v1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Disks = []v1.Disk{{Name: "d", DiskDevice: v1.DiskDevice{Disk: &v1.DiskTarget{}}}}
			v.Spec.Volumes = []v1.Volume{{Name: "d", VolumeSource: v1.VolumeSource{HostDisk: &v1.HostDisk{Path: "/nonexistent/disk.img", Type: v1.HostDiskExists}}}}
		}, qemu.ReasonDiskNotFound, "/nonexistent/disk.img"},
		{"QEMU refuses", func(v *v1.VirtualMachineInstance) {
			v.Spec.Domain.Resources.Requests[v1.ResourceMemory] = resource.MustParse("64Ti")
		}, qemu.ReasonQEMURefused, "QEMU"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vmi := guestVMI("")
			tc.change(vmi)
			id := fmt.Sprintf("fail-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := d.Start(ctx, driver.Spec{ID: id, Namespace: "default", Name: "x", VMI: vmi})
			var se *driver.StartError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a StartError", err)
			}
			if se.Reason != tc.reason || !strings.Contains(se.Message, tc.msg) {
				t.Errorf("got %s: %s; want %s naming %q", se.Reason, se.Message, tc.reason, tc.msg)
			}
			if _, err := os.Stat(filepath.Join(state, "guests", id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed start left its directory behind: %v", err)
			}
		})
	}
	missing, err := qemu.New(context.Background(), qemu.Config{StateDir: t.TempDir(), ImageDir: images, Binary: "/nonexistent/qemu"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = missing.Start(context.Background(), driver.Spec{ID: "x", Namespace: "default", Name: "x", VMI: guestVMI("")})
	var se *driver.StartError
	if !errors.As(err, &se) || se.Reason != qemu.ReasonQEMUNotFound || !strings.Contains(se.Message, "/nonexistent/qemu") {
		t.Errorf("without QEMU: %v", err)
	}
}

// TestKVMProbe: the driver's accelerator follows the probe; on these
// machines /dev/kvm exists but fails, so the driver must fall back.
func TestKVMProbe(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatal("qemu-system-x86_64 is not installed")
		}
		t.Skip("qemu-system-x86_64 is not installed")
	}
	probeErr := qemu.ProbeKVM(context.Background(), bin)
	d := newDriver(t, t.TempDir(), "")
	want := "kvm"
	if probeErr != nil {
		want = "tcg"
		if d.AccelReason() == "" {
			t.Error("the driver fell back to TCG without saying why")
		}
	}
	if got := d.Info().Accelerator; got != want {
		t.Errorf("accelerator %s, probe said %v", got, probeErr)
	}
	t.Logf("KVM probe: %v; accelerator %s", probeErr, d.Info().Accelerator)
}
