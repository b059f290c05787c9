package cloudinit_test

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-vm/vigil/internal/cloudinit"
)

var update = flag.Bool("update", false, "rewrite testdata/*.iso.gz from the writer's output")

// big is 1 MiB of user-data: 512 sectors.
var big = strings.Repeat("0123456789abcde\n", 1<<16)

// seeds are the images under test, with the files each must hold.
var seeds = []struct {
	name   string
	golden bool // compared with testdata/NAME.iso.gz
	seed   cloudinit.Seed
	want   map[string]string
}{
	{"script", true,
		cloudinit.Seed{InstanceID: "uid-1", Hostname: "web", UserData: "#!/bin/sh\necho HELLO-FROM-SEED\n"},
		map[string]string{"user-data": "#!/bin/sh\necho HELLO-FROM-SEED\n", "meta-data": "instance-id: uid-1\nlocal-hostname: web\n"}},
	{"empty-user-data", true,
		cloudinit.Seed{InstanceID: "uid-2"},
		map[string]string{"user-data": "", "meta-data": "instance-id: uid-2\n"}},
	{"network-config", true,
		cloudinit.Seed{InstanceID: "uid-3", Hostname: "db", UserData: "#cloud-config\nruncmd: [true]\n", NetworkData: "version: 2\nethernets: {}\n"},
		map[string]string{"user-data": "#cloud-config\nruncmd: [true]\n", "meta-data": "instance-id: uid-3\nlocal-hostname: db\n", "network-config": "version: 2\nethernets: {}\n"}},
	{"unicode", false, // non-ASCII content, an exact sector's worth of user-data
		cloudinit.Seed{InstanceID: "uid-5", UserData: strings.Repeat("é", sector/2)},
		map[string]string{"user-data": strings.Repeat("é", sector/2), "meta-data": "instance-id: uid-5\n"}},
	{"large", false,
		cloudinit.Seed{InstanceID: "uid-4", UserData: big, NetworkData: "version: 2\n"},
		map[string]string{"user-data": big, "meta-data": "instance-id: uid-4\n", "network-config": "version: 2\n"}},
}

func writeISO(t testing.TB, s cloudinit.Seed) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := cloudinit.WriteISO(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// isoNames is how the primary tree records each name.
var isoNames = map[string]string{"user-data": "USER-DATA.;1", "meta-data": "META-DATA.;1", "network-config": "NETWORK-CONFIG.;1"}

// TestImage reads each image back: the label "cidata" in both
// descriptors, the files with their exact Joliet names and contents, and
// the same extents under their ISO 9660 names.
func TestImage(t *testing.T) {
	for _, tc := range seeds {
		t.Run(tc.name, func(t *testing.T) {
			img := writeISO(t, tc.seed)
			if again := writeISO(t, tc.seed); !bytes.Equal(img, again) {
				t.Error("two images of one seed differ")
			}
			im, err := readISO(img)
			if err != nil {
				t.Fatal(err)
			}
			if im.joliet == nil {
				t.Fatal("no Joliet descriptor")
			}
			if im.primary.label != "cidata" || im.joliet.label != "cidata" {
				t.Errorf("labels %q (primary), %q (Joliet), want cidata", im.primary.label, im.joliet.label)
			}
			if d := cmp.Diff(tc.want, im.joliet.files); d != "" {
				t.Errorf("Joliet files (-want +got):\n%s", d)
			}
			wantISO := map[string]string{}
			for name, data := range tc.want {
				wantISO[isoNames[name]] = data
			}
			if d := cmp.Diff(wantISO, im.primary.files); d != "" {
				t.Errorf("ISO 9660 files (-want +got):\n%s", d)
			}
			// At least 64 KiB, or busybox's findfs does not look at it.
			if len(img) < 64<<10 {
				t.Errorf("image of %d bytes, want at least 64 KiB", len(img))
			}
		})
	}
}

// TestGolden compares images with testdata/*.iso.gz byte for byte (go
// test -update rewrites them). isoinfo -d -J -i on the decompressed
// files shows what they hold.
func TestGolden(t *testing.T) {
	for _, tc := range seeds {
		if !tc.golden {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			img := writeISO(t, tc.seed)
			path := filepath.Join("testdata", tc.name+".iso.gz")
			if *update {
				var z bytes.Buffer
				zw := gzip.NewWriter(&z)
				if _, err := zw.Write(img); err != nil {
					t.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, z.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img, want) {
				t.Errorf("image differs from %s at byte %d (go test -update rewrites it)", path, firstDiff(img, want))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestReaderRejects makes sure the test reader is not blind: images with
// broken fields are refused.
func TestReaderRejects(t *testing.T) {
	good := writeISO(t, seeds[0].seed)
	if _, err := readISO(good); err != nil {
		t.Fatal(err)
	}
	breaks := map[string]func(img []byte) []byte{
		"volume size big-endian half": func(img []byte) []byte { img[16*sector+84]++; return img },
		"truncated":                   func(img []byte) []byte { return img[:len(img)-sector] },
		"no terminator":               func(img []byte) []byte { img[18*sector] = 3; return img },
		"joliet escape":               func(img []byte) []byte { img[17*sector+90] = 'X'; return img },
		"date":                        func(img []byte) []byte { img[16*sector+813] = '1'; return img },
		"path table":                  func(img []byte) []byte { img[19*sector+2]++; return img },
	}
	for name, brk := range breaks {
		if _, err := readISO(brk(bytes.Clone(good))); err == nil {
			t.Errorf("%s: the reader accepted a broken image", name)
		}
	}
}

// TestIsoinfo reads the image with genisoimage's isoinfo, when installed
// (scripts/ensure-qemu.sh installs it).
func TestIsoinfo(t *testing.T) {
	isoinfo, err := exec.LookPath("isoinfo")
	if err != nil {
		if os.Getenv("VIGIL_REQUIRE_QEMU") == "1" {
			t.Fatal("isoinfo not installed (Debian package genisoimage; make qemu installs it)")
		}
		t.Skip("isoinfo not installed (Debian package genisoimage)")
	}
	tc := seeds[2]
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := cloudinit.WriteISOFile(path, tc.seed); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(isoinfo, append(args, "-i", path)...).CombinedOutput()
		if err != nil {
			t.Fatalf("isoinfo %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	desc := run("-d")
	for _, want := range []string{"Volume id: cidata\n", "Joliet with UCS level 3 found"} {
		if !strings.Contains(desc, want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, desc)
		}
	}
	if got, want := run("-J", "-f"), "/meta-data\n/network-config\n/user-data\n"; got != want {
		t.Errorf("isoinfo -J -f = %q, want %q", got, want)
	}
	for name, data := range tc.want {
		if got := run("-J", "-x", "/"+name); got != data {
			t.Errorf("isoinfo -J -x /%s = %q, want %q", name, got, data)
		}
		if got := run("-x", "/"+isoNames[name]); got != data {
			t.Errorf("isoinfo -x /%s = %q, want %q", isoNames[name], got, data)
		}
	}
}

func BenchmarkWriteISO(b *testing.B) {
	for _, tc := range []struct {
		name string
		seed cloudinit.Seed
	}{
		{"small", seeds[0].seed},
		{"1MiB", seeds[4].seed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.seed.UserData)))
			for b.Loop() {
				if err := cloudinit.WriteISO(io.Discard, tc.seed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
