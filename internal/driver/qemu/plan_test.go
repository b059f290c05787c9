package qemu

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/plans")

// fakeImages resolves every image to /images/<image>[/<path>].
type fakeImages struct{ missing string }

func (f fakeImages) File(image, path string) (string, error) {
	if image == f.missing {
		return "", fmt.Errorf("image %q: /images/%s does not exist", image, image)
	}
	return "/images/" + image + path, nil
}

func (f fakeImages) Disk(image, path string) (string, string, error) {
	if image == f.missing {
		return "", "", fmt.Errorf("image %q: /images/%s does not exist", image, image)
	}
	format := "raw"
	if strings.HasSuffix(image, ".qcow2") {
		format = "qcow2"
	}
	return "/images/" + image + path, format, nil
}

func testEnv() Env {
	port := int32(40000)
	return Env{
		Images: fakeImages{}, Accel: "tcg", SeedFile: "/state/guests/uid-1/seed.iso", ForwardAddress: "127.0.0.1",
		PickPort: func(string) (int32, error) { port++; return port, nil },
	}
}

func loadVMI(t *testing.T, path string) driver.Spec {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vmi v1.VirtualMachineInstance
	if err := v1.DecodeYAML(b, &vmi); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if errs := v1.ValidateVirtualMachineInstance(&vmi); len(errs) > 0 {
		t.Fatalf("%s is not a valid VMI: %v", path, errs.ToAggregate())
	}
	return driver.Spec{ID: "uid-1", Namespace: vmi.Namespace, Name: vmi.Name, VMI: &vmi}
}

// TestPlanGolden renders the command line of every VMI in testdata/plans
// and compares it, one argument per line, with its .args file. Run with
// -update to rewrite them.
func TestPlanGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/plans/*.yaml")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			plan, err := BuildPlan(loadVMI(t, f), testEnv())
			if err != nil {
				t.Fatal(err)
			}
			args, err := plan.Args()
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(args, "\n") + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".args"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("arguments differ from %s (-want +got):\n%s", golden, d)
			}
		})
	}
}

// TestPlanStatus: the interfaces and port forwards recorded for the VMI's
// status follow the plan.
func TestPlanStatus(t *testing.T) {
	plan, err := BuildPlan(loadVMI(t, "testdata/plans/kernel-boot.yaml"), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.NICs) != 1 {
		t.Fatalf("%d NICs, want 1", len(plan.NICs))
	}
	iface := interfaceStatus(plan.NICs[0])
	if iface.Name != "default" || iface.IP != "10.0.2.15" || iface.MAC != plan.NICs[0].MAC {
		t.Errorf("interface status = %+v", iface)
	}
	want := []v1.PortForward{
		{Name: "http", Protocol: "TCP", GuestPort: 80, HostIP: "127.0.0.1", HostPort: 40001},
		{Name: "dns", Protocol: "UDP", GuestPort: 53, HostIP: "127.0.0.1", HostPort: 40002},
	}
	if d := cmp.Diff(want, portStatus(plan.NICs[0])); d != "" {
		t.Errorf("port forwards (-want +got):\n%s", d)
	}
	custom, err := BuildPlan(loadVMI(t, "testdata/plans/disks.yaml"), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if ip := custom.NICs[0].GuestIP(); ip != "192.168.100.15" {
		t.Errorf("guest IP on 192.168.100.0/24 = %s", ip)
	}
}

// TestPlanMAC: a generated MAC is stable for a VMI, differs between VMIs,
// and is a locally administered unicast address.
func TestPlanMAC(t *testing.T) {
	a, b := macFor("uid-1", 0), macFor("uid-2", 0)
	if a != macFor("uid-1", 0) || a == b || a == macFor("uid-1", 1) {
		t.Errorf("MACs: %s %s", a, b)
	}
	if !strings.HasPrefix(a, "52:54:") {
		t.Errorf("MAC %s is not in the locally administered 52:54 range", a)
	}
}

// TestPlanRefusals: what the runtime cannot run gives a StartError with a
// reason and a message naming the field.
func TestPlanRefusals(t *testing.T) {
	cases := []struct {
		name   string
		change func(*v1.VirtualMachineInstance, *Env)
		reason string
		msg    string
	}{
		{"missing kernel image", func(_ *v1.VirtualMachineInstance, e *Env) { e.Images = fakeImages{missing: "vigil-guest"} },
			ReasonDiskNotFound, "kernelBoot.container.kernelPath"},
		{"no memory", func(v *v1.VirtualMachineInstance, _ *Env) {
			v.Spec.Domain.Memory = nil
			v.Spec.Domain.Resources = v1.ResourceRequirements{}
		}, ReasonUnsupported, "memory"},
		{"cdrom on virtio", func(v *v1.VirtualMachineInstance, _ *Env) {
			v.Spec.Domain.Devices.Disks[1].Disk = nil
			v.Spec.Domain.Devices.Disks[1].CDRom = &v1.CDRomTarget{Bus: v1.DiskBusVirtio}
		}, ReasonUnsupported, "cdrom.bus"},
		{"small network", func(v *v1.VirtualMachineInstance, _ *Env) {
			v.Spec.Networks[0].Pod.VMNetworkCIDR = "10.1.0.0/29"
		}, ReasonUnsupported, "/27"},
		{"no free port", func(_ *v1.VirtualMachineInstance, e *Env) {
			e.PickPort = func(string) (int32, error) { return 0, errors.New("address in use") }
		}, ReasonPortsFailed, "TCP/80"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := loadVMI(t, "testdata/plans/kernel-boot.yaml")
			env := testEnv()
			tc.change(spec.VMI, &env)
			_, err := BuildPlan(spec, env)
			var se *driver.StartError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a StartError", err)
			}
			if se.Reason != tc.reason || !strings.Contains(se.Message, tc.msg) {
				t.Errorf("got %s: %s; want reason %s and a message naming %q", se.Reason, se.Message, tc.reason, tc.msg)
			}
		})
	}
}

// TestPlanArgsValidation: Args refuses plans QEMU would refuse or misread.
func TestPlanArgsValidation(t *testing.T) {
	good := func() Plan {
		return Plan{Name: "a/b", Accel: "tcg", MemoryMiB: 64, Sockets: 1, Cores: 1, Threads: 1, ACPI: true, QMPSocket: "q", SerialSocket: "s"}
	}
	if _, err := good().Args(); err != nil {
		t.Fatalf("a good plan: %v", err)
	}
	cases := map[string]func(*Plan){
		"accelerator": func(p *Plan) { p.Accel = "hvf" },
		"memory":      func(p *Plan) { p.MemoryMiB = 0 },
		"topology":    func(p *Plan) { p.Cores = 0 },
		"initrd":      func(p *Plan) { p.Initrd = "/i" },
		"disk format": func(p *Plan) { p.Disks = []DiskPlan{{Name: "d", File: "/f", Format: "vmdk", Bus: "virtio"}} },
		"disk bus":    func(p *Plan) { p.Disks = []DiskPlan{{Name: "d", File: "/f", Format: "raw", Bus: "ide"}} },
		"disk twice": func(p *Plan) {
			p.Disks = []DiskPlan{{Name: "d", File: "/f", Format: "raw", Bus: "virtio"}, {Name: "d", File: "/g", Format: "raw", Bus: "virtio"}}
		},
		"disk serial": func(p *Plan) {
			p.Disks = []DiskPlan{{Name: "d", File: "/f", Format: "raw", Bus: "virtio", Serial: "a,b"}}
		},
		"virtio cdrom": func(p *Plan) {
			p.Disks = []DiskPlan{{Name: "d", File: "/f", Format: "raw", Bus: "virtio", CDROM: true}}
		},
		"mac": func(p *Plan) { p.NICs = []NICPlan{{Name: "n", Model: "virtio", MAC: "nope"}} },
		"forward": func(p *Plan) {
			p.NICs = []NICPlan{{Name: "n", Model: "virtio", MAC: "52:54:00:00:00:01", Forwards: []Forward{{Protocol: "TCP", HostIP: "127.0.0.1", HostPort: 0, GuestPort: 80}}}}
		},
	}
	for name, change := range cases {
		p := good()
		change(&p)
		if _, err := p.Args(); err == nil {
			t.Errorf("%s: Args accepted %+v", name, p)
		}
	}
	// A comma in a file name is escaped, not taken as an option separator.
	p := good()
	p.Disks = []DiskPlan{{Name: "d", File: "/a,b.img", Format: "raw", Bus: "virtio"}}
	args, err := p.Args()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(args, " "), "file=/a,,b.img,") {
		t.Errorf("a comma in a path is not escaped: %v", args)
	}
}

// TestImages resolves images in a directory the way the node does.
func TestImages(t *testing.T) {
	dir := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("guest/vmlinuz", "k")
	mk("guest/rootfs.img", "raw")
	mk("single/disk.qcow2", "QFI\xfbrest")
	mk("two/a.img", "")
	mk("two/b.img", "")
	mk("plain.img", "raw")
	im := fsImages{dir}
	if f, err := im.File("guest", "/vmlinuz"); err != nil || f != filepath.Join(dir, "guest/vmlinuz") {
		t.Errorf("File(guest, /vmlinuz) = %s, %v", f, err)
	}
	if f, format, err := im.Disk("single", ""); err != nil || format != "qcow2" || f != filepath.Join(dir, "single/disk.qcow2") {
		t.Errorf("Disk(single) = %s %s %v", f, format, err)
	}
	if _, format, err := im.Disk("plain.img", ""); err != nil || format != "raw" {
		t.Errorf("Disk(plain.img) = %s %v", format, err)
	}
	if _, _, err := im.Disk("guest", "/rootfs.img"); err != nil {
		t.Errorf("Disk(guest, /rootfs.img): %v", err)
	}
	bad := []struct {
		name string
		err  func() error
		want string
	}{
		{"missing image", func() error { _, err := im.File("nope", "/vmlinuz"); return err }, "does not exist"},
		{"missing file", func() error { _, err := im.File("guest", "/initrd"); return err }, "does not exist"},
		{"escaping path", func() error { _, err := im.File("guest", "/../plain.img"); return err }, "not a path inside"},
		{"escaping image", func() error { _, err := im.File("../etc", "/passwd"); return err }, "inside the image directory"},
		{"file with a path", func() error { _, _, err := im.Disk("plain.img", "/x"); return err }, "is a file"},
		{"two disks", func() error { _, _, err := im.Disk("two", ""); return err }, "holds 2 disk images"},
		{"a directory as a kernel", func() error { _, err := im.File("guest", "/"); return err }, "not a regular file"},
		{"no image dir", func() error { _, err := fsImages{}.File("guest", "/vmlinuz"); return err }, "--image-dir"},
	}
	for _, b := range bad {
		err := b.err()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: got %v, want an error containing %q", b.name, err, b.want)
		}
	}
}

// TestHostDisk: DiskOrCreate makes a sparse file of the capacity once; Disk
// needs the file; neither touches an existing disk.
func TestHostDisk(t *testing.T) {
	dir := t.TempDir()
	capacity := resource.MustParse("64Mi")
	path := filepath.Join(dir, "sub", "data.img")
	hd := &v1.HostDisk{Path: path, Type: v1.HostDiskExistsOrCreate, Capacity: &capacity}
	if err := prepareHostDisk(hd, "spec.volumes[0].hostDisk"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 64<<20 {
		t.Fatalf("created disk: %v, %v", fi, err)
	}
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareHostDisk(hd, "f"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("an existing host disk was changed")
	}
	var se *driver.StartError
	err = prepareHostDisk(&v1.HostDisk{Path: filepath.Join(dir, "none.img"), Type: v1.HostDiskExists}, "f")
	if !errors.As(err, &se) || se.Reason != ReasonDiskNotFound {
		t.Errorf("missing Disk: %v", err)
	}
	err = prepareHostDisk(&v1.HostDisk{Path: dir, Type: v1.HostDiskExists}, "f")
	if !errors.As(err, &se) || se.Reason != ReasonDiskNotFound {
		t.Errorf("a directory as a disk: %v", err)
	}
	err = prepareHostDisk(&v1.HostDisk{Path: filepath.Join(dir, "nocap.img"), Type: v1.HostDiskExistsOrCreate}, "f")
	if !errors.As(err, &se) || se.Reason != ReasonHostDiskFailed {
		t.Errorf("DiskOrCreate without capacity: %v", err)
	}
}
