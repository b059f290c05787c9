package cloudinit_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-vm/vigil/internal/cloudinit"
	"github.com/vigil-vm/vigil/internal/guestimage"
)

// bootUserData prints the marker the brief asks for, then checks from
// inside the guest that busybox's findfs finds the seed by its label and
// that Linux's isofs lists the exact names both with Joliet and without
// (nojoliet: the primary tree's "USER-DATA.;1" names).
const bootUserData = `#!/bin/sh
echo HELLO-FROM-SEED
d=$(findfs LABEL=cidata) && echo "SEED-LABEL $d"
mkdir -p /run/seedcheck
for o in ro ro,nojoliet; do
	mount -t iso9660 -o "$o" "$d" /run/seedcheck && echo "SEED-LS $o:" $(ls /run/seedcheck) && umount /run/seedcheck
done
`

// need skips (or, under make test's VIGIL_REQUIRE_QEMU=1, fails) the test
// naming what is missing.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
		t.Fatalf("the boot test needs %s: %v", what, err)
	}
	t.Skipf("the boot test needs %s: %v", what, err)
}

// TestBootGuest boots the test guest (initramfs, q35, TCG) with a seed
// from WriteISOFile, as a virtio disk and as a CD-ROM, and reads the
// console until the guest's cloud-init is done: about 3 s a boot here.
func TestBootGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		need(t, "qemu-system-x86_64 (make qemu)", err)
	}
	guest, err := guestimage.Find()
	if err != nil {
		need(t, "the test guest (make guest-image)", err)
	}
	for _, f := range []string{"vmlinuz", "initramfs.img"} {
		if _, err := os.Stat(filepath.Join(guest, f)); err != nil {
			need(t, "the test guest's "+f, err)
		}
	}
	seed := filepath.Join(t.TempDir(), "seed.iso")
	s := cloudinit.Seed{InstanceID: "boot-uid-1", Hostname: "seeded", UserData: bootUserData, NetworkData: "version: 2\n"}
	if err := cloudinit.WriteISOFile(seed, s); err != nil {
		t.Fatal(err)
	}
	drive := "file=" + seed + ",if=none,id=seed,format=raw,readonly=on"
	for _, tc := range []struct {
		name string
		dev  string // the seed's device in the guest
		args []string
	}{
		// KubeVirt's default for a cloudInitNoCloud disk.
		{"virtio-blk", "/dev/vda", []string{"-drive", drive, "-device", "virtio-blk-pci,drive=seed"}},
		// A cdrom disk: on q35 the guest kernel sees CD-ROMs on virtio-scsi only.
		{"scsi-cd", "/dev/sr0", []string{"-device", "virtio-scsi-pci,id=scsi0", "-drive", drive + ",media=cdrom", "-device", "scsi-cd,drive=seed,bus=scsi0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) { bootSeed(t, qemu, guest, tc.dev, tc.args) })
	}
}

// bootSeed boots the guest with the seed attached by args and checks the
// console.
func bootSeed(t *testing.T, qemu, guest, dev string, args []string) {
	// A generous bound for a slow machine; the test ends at the marker.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-nodefaults", "-no-user-config", "-M", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-display", "none", "-no-reboot", "-serial", "stdio",
		"-kernel", filepath.Join(guest, "vmlinuz"), "-initrd", filepath.Join(guest, "initramfs.img"),
		"-append", "console=ttyS0 panic=-1",
	)
	cmd.Args = append(cmd.Args, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var console []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console = append(console, line)
		if strings.Contains(line, "VIGIL-CLOUD-INIT-DONE") || strings.Contains(line, "VIGIL-CLOUD-INIT-NONE") {
			break
		}
	}
	cancel() // kills QEMU
	_ = cmd.Wait()

	// The markers and the script's lines, in console order.
	var got []string
	for _, l := range console {
		for _, m := range []string{"VIGIL-CLOUD-INIT-", "HELLO-FROM-SEED", "SEED-"} {
			if strings.Contains(l, m) {
				got = append(got, l[strings.Index(l, m):])
				break
			}
		}
	}
	want := []string{
		"VIGIL-CLOUD-INIT-START seed=" + dev + " fs=iso9660 format=script instance=boot-uid-1 first=1",
		"HELLO-FROM-SEED",
		"SEED-LABEL " + dev,
		"SEED-LS ro: meta-data network-config user-data",
		"SEED-LS ro,nojoliet: meta-data network-config user-data",
	}
	if len(got) != len(want)+1 || !strings.HasPrefix(got[len(got)-1], "VIGIL-CLOUD-INIT-DONE rc=0 instance=boot-uid-1 ") {
		t.Errorf("console markers %q, want %q then VIGIL-CLOUD-INIT-DONE rc=0 instance=boot-uid-1", got, want)
	} else if d := cmp.Diff(want, got[:len(want)]); d != "" {
		t.Errorf("console markers (-want +got):\n%s", d)
	}
	if t.Failed() {
		t.Logf("console:\n%s\nqemu stderr:\n%s", strings.Join(console, "\n"), stderr.String())
	}
}
