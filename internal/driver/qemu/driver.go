package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vigil-vm/vigil/internal/driver"
)

// Config configures the QEMU runtime.
type Config struct {
	// StateDir holds one directory per guest (guests/<id>). It must be on
	// a local file system; the agent re-adopts guests from it.
	StateDir string
	// ImageDir is where containerDisk and kernelBoot images are found.
	ImageDir string
	// Binary is the QEMU program (default: qemu-system-x86_64 on $PATH).
	Binary string
	// Accel is "auto" (KVM if it really works, else TCG), "kvm" or "tcg".
	Accel string
	// ForwardAddress is the host address forwarded guest ports listen on
	// (default 127.0.0.1).
	ForwardAddress string
	Log            *slog.Logger
}

// Driver runs guests in QEMU processes.
type Driver struct {
	cfg     Config
	binary  string // resolved; empty when QEMU is missing
	missing error  // why binary is empty
	version string
	accel   string
	// accelWhy says why KVM is not used, for the log and the Node.
	accelWhy string

	mu sync.Mutex
	// held are the guests this Driver holds (started or recovered, not
	// closed or removed).
	held map[string]*guest
}

// New prepares the runtime: it finds QEMU, reads its version and decides
// between KVM and TCG (Config.Accel). A missing QEMU is not an error here:
// the node still registers, and each Start fails with a reason naming it.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("qemu: a state directory is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ForwardAddress == "" {
		cfg.ForwardAddress = "127.0.0.1"
	}
	if net.ParseIP(cfg.ForwardAddress) == nil {
		return nil, fmt.Errorf("qemu: forward address %q is not an IP address", cfg.ForwardAddress)
	}
	if cfg.Accel == "" {
		cfg.Accel = "auto"
	}
	if cfg.Accel != "auto" && cfg.Accel != "kvm" && cfg.Accel != "tcg" {
		return nil, fmt.Errorf("qemu: accelerator %q: want auto, kvm or tcg", cfg.Accel)
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "guests"), 0o700); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	d := &Driver{cfg: cfg, held: map[string]*guest{}}
	bin := cfg.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	if p, err := exec.LookPath(bin); err != nil {
		d.missing = fmt.Errorf("the QEMU program %s is not installed on this node (Debian package qemu-system-x86; scripts/ensure-qemu.sh installs it)", bin)
		cfg.Log.Warn("QEMU not found: guests cannot start", "binary", bin)
	} else {
		d.binary = p
	}
	if d.binary != "" {
		v, err := qemuVersion(ctx, d.binary)
		if err != nil {
			return nil, fmt.Errorf("qemu: %w", err)
		}
		d.version = v
	}
	switch {
	case cfg.Accel == "tcg":
		d.accel, d.accelWhy = "tcg", "TCG was asked for"
	case d.binary == "":
		d.accel = cfg.Accel
		if d.accel == "auto" {
			d.accel = "tcg"
		}
	default:
		err := ProbeKVM(ctx, d.binary)
		switch {
		case err == nil:
			d.accel = "kvm"
		case cfg.Accel == "kvm":
			return nil, fmt.Errorf("qemu: KVM was asked for but does not work: %w", err)
		default:
			d.accel, d.accelWhy = "tcg", err.Error()
			cfg.Log.Info("KVM does not work here: guests run with TCG software emulation", "why", err)
		}
	}
	return d, nil
}

// Info describes the runtime.
func (d *Driver) Info() driver.Info {
	return driver.Info{Name: "qemu", Version: d.version, Accelerator: d.accel}
}

// AccelReason says why the driver does not use KVM ("" when it does).
func (d *Driver) AccelReason() string { return d.accelWhy }

// StateDir is the directory the driver keeps its guests in.
func (d *Driver) StateDir() string { return d.cfg.StateDir }

func (d *Driver) guestDir(id string) (string, error) {
	if id == "" || !filepath.IsLocal(id) || strings.ContainsAny(id, `/\`) {
		return "", fmt.Errorf("qemu: invalid guest id %q", id)
	}
	return filepath.Join(d.cfg.StateDir, "guests", id), nil
}

// Start starts a guest, or returns the one the node already has for the ID.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	dir, err := d.guestDir(spec.ID)
	if err != nil {
		return nil, err
	}
	if spec.VMI == nil {
		return nil, errors.New("qemu: Start needs the VMI")
	}
	d.mu.Lock()
	if g, ok := d.held[spec.ID]; ok {
		d.mu.Unlock()
		return g, nil
	}
	d.mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, recordFile)); err == nil {
		return d.Recover(ctx, spec.ID)
	}
	if d.binary == "" {
		return nil, &driver.StartError{Reason: ReasonQEMUNotFound, Message: d.missing.Error()}
	}
	g, err := d.start(ctx, spec, dir)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Recover takes back a guest started earlier on this node.
func (d *Driver) Recover(ctx context.Context, id string) (driver.Guest, error) {
	dir, err := d.guestDir(id)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if g, ok := d.held[id]; ok {
		d.mu.Unlock()
		return g, nil
	}
	d.mu.Unlock()
	rec, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("qemu: guest %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: recovering guest %s: %w", id, err)
	}
	g, err := d.recover(ctx, dir, rec)
	if err != nil {
		return nil, fmt.Errorf("qemu: recovering guest %s: %w", id, err)
	}
	return g, nil
}

// Guests lists the guests the node has state for.
func (d *Driver) Guests(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.cfg.StateDir, "guests"))
	if err != nil {
		return nil, fmt.Errorf("qemu: listing guests: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.cfg.StateDir, "guests", e.Name(), recordFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (d *Driver) hold(g *guest) {
	d.mu.Lock()
	d.held[g.id] = g
	d.mu.Unlock()
}

func (d *Driver) release(g *guest) {
	d.mu.Lock()
	if d.held[g.id] == g {
		delete(d.held, g.id)
	}
	d.mu.Unlock()
}

// pickPort finds a free host port for a forward. The port is free when
// picked; QEMU binds it a moment later, and a start that loses that race
// is retried with new ports.
func (d *Driver) pickPort(proto string) (int32, error) {
	addr := net.JoinHostPort(d.cfg.ForwardAddress, "0")
	if proto == "UDP" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return int32(c.LocalAddr().(*net.UDPAddr).Port), nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port), nil
}
