package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// probeTimeout bounds the KVM probe. A working KVM reaches the firmware's
// boot menu in well under a second; a broken one fails at once or hangs.
const probeTimeout = 5 * time.Second

// ProbeKVM boots QEMU's firmware under KVM, with the CPU model guests get
// (-cpu host), and reports whether it got as far as looking for a boot
// disk. /dev/kvm existing is not enough: on some hosts it opens but fails
// to run a vCPU ("failed to set MSR"), or runs one that never progresses.
// The error says what failed.
func ProbeKVM(ctx context.Context, binary string) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/kvm: %w", err)
	}
	f.Close()
	dir, err := os.MkdirTemp("", "vigil-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	debug := filepath.Join(dir, "debugcon")
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary,
		"-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "64",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		// SeaBIOS writes its progress to the debug console port.
		"-debugcon", "file:"+debug, "-global", "isa-debugcon.iobase=0x402")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", binary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return fmt.Errorf("QEMU with KVM exited before the firmware booted: %v: %s", err, firstLine(stderr.String()))
		case <-tick.C:
			if b, _ := os.ReadFile(debug); bytes.Contains(b, []byte("Booting from")) || bytes.Contains(b, []byte("No bootable device")) {
				cancel()
				<-done
				return nil
			}
		case <-ctx.Done():
			<-done
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("QEMU with KVM did not reach the boot menu within %s", probeTimeout)
			}
			return ctx.Err()
		}
	}
}

var versionRE = regexp.MustCompile(`version (\d+\.\d+\.\d+)`)

// qemuVersion asks the binary for its version.
func qemuVersion(ctx context.Context, binary string) (string, error) {
	out, err := exec.CommandContext(ctx, binary, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("%s -version: %w", binary, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s -version: no version in %q", binary, firstLine(string(out)))
	}
	return string(m[1]), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
