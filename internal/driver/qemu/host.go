package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/cloudinit"
	"github.com/vigil-vm/vigil/internal/driver"
)

// newCommand prepares QEMU in its own session, in the guest's directory
// (its sockets are relative to it, and -drive snapshot=on puts its
// temporary overlays there through TMPDIR), so that neither a signal to
// the agent's process group nor the agent's end reaches the guest.
func newCommand(binary, dir string, args []string, log *os.File) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// maxSocketPath is the longest unix socket path that fits in sun_path.
const maxSocketPath = 107

// dialIn dials the unix socket name in dir. A path too long for a socket
// address is reached through /proc/self/fd and an open descriptor of dir.
func dialIn[T any](ctx context.Context, dir, name string, dial func(context.Context, string) (T, error)) (T, error) {
	path := filepath.Join(dir, name)
	if len(path) <= maxSocketPath {
		return dial(ctx, path)
	}
	f, err := os.Open(dir)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return dial(ctx, "/proc/self/fd/"+strconv.Itoa(int(f.Fd()))+"/"+name)
}

// prepareVolumes writes the cloud-init seed and creates hostDisks that may
// be created.
func prepareVolumes(spec driver.Spec, dir string) error {
	for i, vol := range spec.VMI.Spec.Volumes {
		field := fmt.Sprintf("spec.volumes[%d]", i)
		switch {
		case vol.CloudInitNoCloud != nil:
			seed, err := cloudinit.SeedFor(spec.VMI, *vol.CloudInitNoCloud)
			if err != nil {
				return &driver.StartError{Reason: ReasonSeedFailed, Message: fmt.Sprintf("%s.cloudInitNoCloud: %v", field, err)}
			}
			if err := cloudinit.WriteISOFile(filepath.Join(dir, seedFile), seed); err != nil {
				return &driver.StartError{Reason: ReasonSeedFailed, Message: fmt.Sprintf("%s.cloudInitNoCloud: writing the seed image: %v", field, err)}
			}
		case vol.HostDisk != nil:
			if err := prepareHostDisk(vol.HostDisk, field+".hostDisk"); err != nil {
				return err
			}
		}
	}
	return nil
}

func prepareHostDisk(hd *v1.HostDisk, field string) error {
	fi, err := os.Stat(hd.Path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return &driver.StartError{Reason: ReasonDiskNotFound, Message: fmt.Sprintf("%s.path: %s is not a regular file", field, hd.Path)}
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return &driver.StartError{Reason: ReasonHostDiskFailed, Message: fmt.Sprintf("%s.path: %v", field, err)}
	case hd.Type != v1.HostDiskExistsOrCreate:
		return &driver.StartError{Reason: ReasonDiskNotFound, Message: fmt.Sprintf("%s.path: %s does not exist (type %s needs an existing disk; DiskOrCreate creates one)", field, hd.Path, hd.Type)}
	case hd.Capacity == nil || hd.Capacity.Value() <= 0:
		return &driver.StartError{Reason: ReasonHostDiskFailed, Message: fmt.Sprintf("%s.capacity: DiskOrCreate needs a capacity to create %s", field, hd.Path)}
	}
	if err := os.MkdirAll(filepath.Dir(hd.Path), 0o755); err != nil {
		return &driver.StartError{Reason: ReasonHostDiskFailed, Message: fmt.Sprintf("%s.path: %v", field, err)}
	}
	// Sparse, created exclusively: two guests racing for it get one file.
	f, err := os.OpenFile(hd.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return &driver.StartError{Reason: ReasonHostDiskFailed, Message: fmt.Sprintf("%s.path: %v", field, err)}
	}
	defer f.Close()
	if err := f.Truncate(hd.Capacity.Value()); err != nil {
		os.Remove(hd.Path)
		return &driver.StartError{Reason: ReasonHostDiskFailed, Message: fmt.Sprintf("%s: sizing %s: %v", field, hd.Path, err)}
	}
	return nil
}

func interfaceStatus(n NICPlan) v1.VirtualMachineInstanceNetworkInterface {
	ip := n.GuestIP()
	return v1.VirtualMachineInstanceNetworkInterface{Name: n.Name, IP: ip, IPs: []string{ip}, MAC: n.MAC, InfoSource: "domain"}
}

func portStatus(n NICPlan) []v1.PortForward {
	var out []v1.PortForward
	for _, f := range n.Forwards {
		out = append(out, v1.PortForward{Name: f.Name, Protocol: f.Protocol, GuestPort: f.GuestPort, HostIP: f.HostIP, HostPort: f.HostPort})
	}
	return out
}

// isPortClash tells from QEMU's log whether it failed because a forwarded
// host port was taken meanwhile.
func isPortClash(dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, qemuLog))
	return bytes.Contains(b, []byte("host forwarding rule"))
}
