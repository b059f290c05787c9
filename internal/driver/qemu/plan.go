package qemu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Plan is everything a guest's QEMU command line is made of, with every
// file resolved. Args renders it; nothing in it touches the host.
type Plan struct {
	// ID is the VMI's UID; Name is "namespace/name", for QEMU's -name.
	ID   string
	Name string
	// Accel is "kvm" or "tcg".
	Accel     string
	MemoryMiB int64
	Sockets   uint32
	Cores     uint32
	Threads   uint32
	// UUID is the guest's SMBIOS UUID (spec.domain.firmware.uuid).
	UUID string
	ACPI bool
	// Kernel, Initrd and KernelArgs boot a kernel directly (kernelBoot).
	Kernel     string
	Initrd     string
	KernelArgs string
	Disks      []DiskPlan
	NICs       []NICPlan
	RNG        bool
	// QMPSocket and SerialSocket are paths QEMU listens on, relative to
	// its working directory (the guest's state directory) so that they
	// stay within the length limit of a unix socket address.
	QMPSocket    string
	SerialSocket string
}

// DiskPlan is one disk.
type DiskPlan struct {
	// Name is the disk's name in the spec; the device id is derived from it.
	Name   string
	File   string
	Format string // raw or qcow2
	// Bus is virtio, scsi or sata.
	Bus      string
	CDROM    bool
	ReadOnly bool
	// Snapshot keeps writes in a temporary overlay that QEMU discards when
	// it exits: a containerDisk's copy-on-write layer.
	Snapshot  bool
	Serial    string
	BootIndex uint
}

// NICPlan is one user-mode network interface.
type NICPlan struct {
	Name  string
	Model string // virtio or e1000
	MAC   string
	// Net is the user network's CIDR (empty: QEMU's 10.0.2.0/24), Host the
	// gateway's address and Guest the address DHCP hands out.
	Net      string
	Host     string
	Guest    string
	Forwards []Forward
}

// Forward is one port forwarded from the host to the guest.
type Forward struct {
	Name      string
	Protocol  string // TCP or UDP
	HostIP    string
	HostPort  int32
	GuestPort int32
}

// Args renders the plan as qemu-system-x86_64 arguments (without the
// program name). It fails, naming the field, on a plan that QEMU would
// refuse or misread.
func (p Plan) Args() ([]string, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	machine := "q35"
	if !p.ACPI {
		machine += ",acpi=off"
	}
	a := []string{
		"-name", "guest=" + opt(p.Name) + ",debug-threads=on",
		"-machine", machine,
		"-accel", p.Accel,
	}
	if p.Accel == "kvm" {
		a = append(a, "-cpu", "host")
	}
	a = append(a,
		"-m", strconv.FormatInt(p.MemoryMiB, 10),
		"-smp", fmt.Sprintf("%d,sockets=%d,cores=%d,threads=%d", p.Sockets*p.Cores*p.Threads, p.Sockets, p.Cores, p.Threads),
	)
	if p.UUID != "" {
		a = append(a, "-uuid", p.UUID)
	}
	a = append(a,
		"-nodefaults", "-no-user-config", "-nographic",
		// The vCPUs start stopped: the driver connects to QMP and the
		// serial console first, so that no event and no output is lost,
		// and then lets the guest run (or not, for a paused start).
		"-S",
		// A guest power-off or panic pauses QEMU instead of ending it, so
		// the outcome can still be read over QMP by an agent that was
		// away when it happened; the driver then ends QEMU itself.
		"-no-shutdown", "-action", "panic=pause",
		"-qmp", "unix:"+opt(p.QMPSocket)+",server=on,wait=off",
		"-chardev", "socket,id=serial0,path="+opt(p.SerialSocket)+",server=on,wait=off",
		"-serial", "chardev:serial0",
		"-device", "pvpanic-pci",
	)
	if p.Kernel != "" {
		a = append(a, "-kernel", p.Kernel)
		if p.Initrd != "" {
			a = append(a, "-initrd", p.Initrd)
		}
		if p.KernelArgs != "" {
			a = append(a, "-append", p.KernelArgs)
		}
	}
	scsi, sata := false, 0
	for _, d := range p.Disks {
		if d.Bus == "scsi" && !scsi {
			a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
			scsi = true
		}
		a = append(a, d.args(&sata)...)
	}
	for i, n := range p.NICs {
		a = append(a, n.args(i)...)
	}
	if p.RNG {
		a = append(a, "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0")
	}
	return a, nil
}

func (p Plan) validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("plan: no guest name")
	case p.Accel != "kvm" && p.Accel != "tcg":
		return fmt.Errorf("plan: accelerator %q: want kvm or tcg", p.Accel)
	case p.MemoryMiB < 1:
		return fmt.Errorf("plan: memory %d MiB: want at least 1", p.MemoryMiB)
	case p.Sockets < 1 || p.Cores < 1 || p.Threads < 1:
		return fmt.Errorf("plan: CPU topology %d sockets, %d cores, %d threads: each must be at least 1", p.Sockets, p.Cores, p.Threads)
	case p.QMPSocket == "" || p.SerialSocket == "":
		return fmt.Errorf("plan: the QMP and serial socket paths are required")
	case p.Initrd != "" && p.Kernel == "", p.KernelArgs != "" && p.Kernel == "":
		return fmt.Errorf("plan: an initrd or kernel arguments need a kernel")
	}
	seen := map[string]bool{}
	for _, d := range p.Disks {
		if seen[d.Name] {
			return fmt.Errorf("plan: disk %q appears twice", d.Name)
		}
		seen[d.Name] = true
		if err := d.validate(); err != nil {
			return err
		}
	}
	for _, n := range p.NICs {
		if err := n.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (d DiskPlan) validate() error {
	switch {
	case d.Name == "":
		return fmt.Errorf("plan: a disk has no name")
	case d.File == "":
		return fmt.Errorf("plan: disk %q has no file", d.Name)
	case d.Format != "raw" && d.Format != "qcow2":
		return fmt.Errorf("plan: disk %q: format %q: want raw or qcow2", d.Name, d.Format)
	case d.Bus != "virtio" && d.Bus != "scsi" && d.Bus != "sata":
		return fmt.Errorf("plan: disk %q: bus %q: want virtio, scsi or sata", d.Name, d.Bus)
	case d.CDROM && d.Bus == "virtio":
		return fmt.Errorf("plan: disk %q: a CD-ROM cannot be on the virtio bus: use scsi or sata", d.Name)
	case strings.ContainsAny(d.Serial, ",="):
		return fmt.Errorf("plan: disk %q: serial %q must not contain ',' or '='", d.Name, d.Serial)
	}
	return nil
}

// args renders the -drive and -device pair of a disk. sata counts the
// AHCI ports used so far.
func (d DiskPlan) args(sata *int) []string {
	id := "disk-" + d.Name
	drive := "if=none,id=" + id + ",file=" + opt(d.File) + ",format=" + d.Format
	if d.CDROM {
		drive += ",media=cdrom"
	}
	if d.ReadOnly || d.CDROM {
		drive += ",readonly=on"
	}
	if d.Snapshot {
		drive += ",snapshot=on"
	}
	var dev string
	switch {
	case d.Bus == "virtio":
		dev = "virtio-blk-pci,drive=" + id + ",id=dev-" + d.Name
	case d.Bus == "scsi" && d.CDROM:
		dev = "scsi-cd,bus=scsi0.0,drive=" + id + ",id=dev-" + d.Name
	case d.Bus == "scsi":
		dev = "scsi-hd,bus=scsi0.0,drive=" + id + ",id=dev-" + d.Name
	case d.CDROM: // sata: the q35 machine's own AHCI controller
		dev = fmt.Sprintf("ide-cd,bus=ide.%d,drive=%s,id=dev-%s", *sata, id, d.Name)
		*sata++
	default:
		dev = fmt.Sprintf("ide-hd,bus=ide.%d,drive=%s,id=dev-%s", *sata, id, d.Name)
		*sata++
	}
	if d.Serial != "" {
		dev += ",serial=" + d.Serial
	}
	if d.BootIndex > 0 {
		dev += ",bootindex=" + strconv.FormatUint(uint64(d.BootIndex), 10)
	}
	return []string{"-drive", drive, "-device", dev}
}

func (n NICPlan) validate() error {
	if _, err := net.ParseMAC(n.MAC); err != nil {
		return fmt.Errorf("plan: interface %q: MAC %q: %w", n.Name, n.MAC, err)
	}
	if n.Model != "virtio" && n.Model != "e1000" {
		return fmt.Errorf("plan: interface %q: model %q: want virtio or e1000", n.Name, n.Model)
	}
	for _, f := range n.Forwards {
		if f.Protocol != "TCP" && f.Protocol != "UDP" {
			return fmt.Errorf("plan: interface %q: port %d: protocol %q: want TCP or UDP", n.Name, f.GuestPort, f.Protocol)
		}
		if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
			return fmt.Errorf("plan: interface %q: forward %d->%d: ports must be between 1 and 65535", n.Name, f.HostPort, f.GuestPort)
		}
		if net.ParseIP(f.HostIP) == nil {
			return fmt.Errorf("plan: interface %q: host address %q is not an IP address", n.Name, f.HostIP)
		}
	}
	return nil
}

// args renders a user-mode network backend and its NIC.
func (n NICPlan) args(i int) []string {
	id := "net" + strconv.Itoa(i)
	netdev := "user,id=" + id
	if n.Net != "" {
		netdev += ",net=" + n.Net + ",host=" + n.Host + ",dhcpstart=" + n.Guest
	}
	for _, f := range n.Forwards {
		netdev += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", strings.ToLower(f.Protocol), f.HostIP, f.HostPort, f.GuestPort)
	}
	model := "virtio-net-pci"
	if n.Model == "e1000" {
		model = "e1000"
	}
	return []string{"-netdev", netdev, "-device", model + ",netdev=" + id + ",mac=" + n.MAC + ",id=nic-" + n.Name}
}

// opt escapes a value for QEMU's option syntax, where a comma is written
// twice.
func opt(s string) string { return strings.ReplaceAll(s, ",", ",,") }
