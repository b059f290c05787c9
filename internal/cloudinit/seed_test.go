package cloudinit_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/cloudinit"
)

func vmi(hostname string) *v1.VirtualMachineInstance {
	return &v1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec:       v1.VirtualMachineInstanceSpec{Hostname: hostname},
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSeedFor(t *testing.T) {
	cases := []struct {
		name     string
		hostname string
		src      v1.CloudInitNoCloudSource
		want     cloudinit.Seed
	}{
		{"plain", "", v1.CloudInitNoCloudSource{UserData: "#cloud-config\n", NetworkData: "version: 2\n"},
			cloudinit.Seed{InstanceID: "uid-1", Hostname: "web", UserData: "#cloud-config\n", NetworkData: "version: 2\n"}},
		{"base64", "", v1.CloudInitNoCloudSource{UserDataBase64: b64("#!/bin/sh\n"), NetworkDataBase64: b64("version: 2\n")},
			cloudinit.Seed{InstanceID: "uid-1", Hostname: "web", UserData: "#!/bin/sh\n", NetworkData: "version: 2\n"}},
		{"base64 with line breaks", "", v1.CloudInitNoCloudSource{UserDataBase64: "IyEvYmlu\nL3NoCg==\n"},
			cloudinit.Seed{InstanceID: "uid-1", Hostname: "web", UserData: "#!/bin/sh\n"}},
		{"spec hostname", "db", v1.CloudInitNoCloudSource{UserData: "x"},
			cloudinit.Seed{InstanceID: "uid-1", Hostname: "db", UserData: "x"}},
		{"network only", "", v1.CloudInitNoCloudSource{NetworkData: "version: 2\n"},
			cloudinit.Seed{InstanceID: "uid-1", Hostname: "web", NetworkData: "version: 2\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cloudinit.SeedFor(vmi(tc.hostname), tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("seed (-want +got):\n%s", d)
			}
		})
	}
}

func TestMetaData(t *testing.T) {
	for _, tc := range []struct {
		seed cloudinit.Seed
		want string
	}{
		{cloudinit.Seed{InstanceID: "a"}, "instance-id: a\n"},
		{cloudinit.Seed{InstanceID: "a", Hostname: "h"}, "instance-id: a\nlocal-hostname: h\n"},
	} {
		if got := tc.seed.MetaData(); got != tc.want {
			t.Errorf("%+v: meta-data %q, want %q", tc.seed, got, tc.want)
		}
	}
}

// TestBadSeeds: each kind of bad input is refused with an error naming it.
func TestBadSeeds(t *testing.T) {
	seedFor := func(src v1.CloudInitNoCloudSource) func() error {
		return func() error { _, err := cloudinit.SeedFor(vmi(""), src); return err }
	}
	write := func(s cloudinit.Seed) func() error {
		return func() error { return cloudinit.WriteISO(&bytes.Buffer{}, s) }
	}
	noUID := vmi("")
	noUID.UID = ""
	tooBig := strings.Repeat("a", cloudinit.MaxDataSize+1)
	bad := []struct {
		name string
		err  func() error
		want string
	}{
		{"invalid base64 user-data", seedFor(v1.CloudInitNoCloudSource{UserDataBase64: "!!!"}), "userDataBase64 is not valid base64"},
		{"truncated base64 user-data", seedFor(v1.CloudInitNoCloudSource{UserDataBase64: "IyEv="}), "userDataBase64 is not valid base64"},
		{"invalid base64 network-config", seedFor(v1.CloudInitNoCloudSource{NetworkDataBase64: "%%"}), "networkDataBase64 is not valid base64"},
		{"both user-data fields", seedFor(v1.CloudInitNoCloudSource{UserData: "a", UserDataBase64: b64("b")}), "only one of userData and userDataBase64"},
		{"both network fields", seedFor(v1.CloudInitNoCloudSource{NetworkData: "a", NetworkDataBase64: b64("b")}), "only one of networkData and networkDataBase64"},
		{"decoded user-data too large", seedFor(v1.CloudInitNoCloudSource{UserDataBase64: b64(tooBig)}), "user-data is 16777217 bytes, more than the 16777216 allowed"},
		{"VMI without a UID", func() error { _, err := cloudinit.SeedFor(noUID, v1.CloudInitNoCloudSource{UserData: "x"}); return err }, "instance id"},
		{"user-data too large", write(cloudinit.Seed{InstanceID: "x", UserData: tooBig}), "user-data is 16777217 bytes"},
		{"network-config too large", write(cloudinit.Seed{InstanceID: "x", NetworkData: tooBig}), "network-config is 16777217 bytes"},
		{"no instance id", write(cloudinit.Seed{}), "needs an instance id"},
		{"multi-line instance id", write(cloudinit.Seed{InstanceID: "a\nlocal-hostname: evil"}), "instance id"},
		{"multi-line hostname", write(cloudinit.Seed{InstanceID: "x", Hostname: "a\rb"}), "hostname"},
		{"NUL in hostname", write(cloudinit.Seed{InstanceID: "x", Hostname: "a\x00b"}), "hostname"},
	}
	for _, b := range bad {
		if err := b.err(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: got %v, want an error containing %q", b.name, err, b.want)
		}
	}
}

// TestWriteISOFile: the file appears whole with mode 0600 whatever the
// umask, replaces an older seed, and a failed write leaves nothing.
func TestWriteISOFile(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(path, []byte("old seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := cloudinit.Seed{InstanceID: "x", UserData: "#!/bin/sh\n"}
	if err := cloudinit.WriteISOFile(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, writeISO(t, s)) {
		t.Error("the file differs from WriteISO's image")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode: %v %v, want 0600", fi.Mode(), err)
	}

	if err := cloudinit.WriteISOFile(path, cloudinit.Seed{}); err == nil {
		t.Error("WriteISOFile accepted a seed without an instance id")
	}
	if got2, _ := os.ReadFile(path); !bytes.Equal(got2, got) {
		t.Error("a refused seed changed the existing file")
	}
	err = cloudinit.WriteISOFile(filepath.Join(dir, "missing", "seed.iso"), s)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writing into a missing directory: %v, want ErrNotExist", err)
	}
	// A rename that fails (path is a non-empty directory) removes the
	// temporary file.
	if err := os.MkdirAll(filepath.Join(dir, "taken", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cloudinit.WriteISOFile(filepath.Join(dir, "taken"), s); err == nil {
		t.Error("WriteISOFile replaced a directory")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"seed.iso", "taken"}, names); d != "" {
		t.Errorf("directory after the writes (-want +got):\n%s", d)
	}
}
