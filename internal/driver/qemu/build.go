package qemu

import (
	"crypto/sha256"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
)

// Start error reasons, set on the VMI when a guest cannot start. A missing
// image, kernel, initrd or disk is v1.ReasonDiskNotFound, as KubeVirt
// reports it; the message names the file.
const (
	ReasonDiskNotFound   = v1.ReasonDiskNotFound
	ReasonUnsupported    = "UnsupportedSpec"
	ReasonQEMUNotFound   = "QEMUNotFound"
	ReasonQEMURefused    = "QEMURefused"
	ReasonHostDiskFailed = "HostDiskFailed"
	ReasonSeedFailed     = "CloudInitSeedFailed"
	ReasonPortsFailed    = "PortForwardFailed"
)

// Images finds the files a spec names in the node's image directory.
type Images interface {
	// File resolves a kernel or initrd at path inside image.
	File(image, path string) (string, error)
	// Disk resolves a containerDisk: the disk at path inside image, or
	// the image itself when it is a file. It returns the file and its
	// format (raw or qcow2).
	Disk(image, path string) (file, format string, err error)
}

// Env is what BuildPlan needs from the node.
type Env struct {
	Images Images
	Accel  string
	// SeedFile is where the cloud-init seed image will be written.
	SeedFile string
	// ForwardAddress is the host address forwarded ports listen on.
	ForwardAddress string
	// PickPort returns a free host port for a protocol ("TCP", "UDP").
	PickPort func(protocol string) (int32, error)
}

// defaultNet is QEMU's user network; the guest gets its .15.
const defaultNet = "10.0.2.0/24"

// BuildPlan turns a VMI's spec into a Plan. It is a pure function of the
// spec and env: files are only looked up through env.Images, and nothing
// is created. A spec the runtime cannot run gives a *driver.StartError
// naming the field.
func BuildPlan(spec driver.Spec, env Env) (Plan, error) {
	vmi := spec.VMI
	dom := vmi.Spec.Domain
	p := Plan{
		ID:           spec.ID,
		Name:         spec.Namespace + "/" + spec.Name,
		Accel:        env.Accel,
		Sockets:      1,
		Cores:        1,
		Threads:      1,
		ACPI:         true,
		QMPSocket:    qmpSocket,
		SerialSocket: serialSocket,
	}
	if c := dom.CPU; c != nil {
		p.Sockets, p.Cores, p.Threads = max(c.Sockets, 1), max(c.Cores, 1), max(c.Threads, 1)
	} else if q, ok := dom.Resources.Requests[v1.ResourceCPU]; ok {
		p.Cores = uint32(max(q.Value(), 1))
	}
	mem, ok := guestMemory(vmi)
	if !ok {
		return Plan{}, unsupported("spec.domain.resources.requests.memory: no memory requested")
	}
	p.MemoryMiB = (mem.Value() + (1<<20 - 1)) >> 20
	if f := dom.Features; f != nil && f.ACPI.Enabled != nil {
		p.ACPI = *f.ACPI.Enabled
	}
	if fw := dom.Firmware; fw != nil {
		p.UUID = string(fw.UUID)
		if kb := fw.KernelBoot; kb != nil && kb.Container != nil {
			c := kb.Container
			k, err := env.Images.File(c.Image, c.KernelPath)
			if err != nil {
				return Plan{}, &driver.StartError{Reason: ReasonDiskNotFound, Message: fmt.Sprintf("spec.domain.firmware.kernelBoot.container.kernelPath: %v", err)}
			}
			p.Kernel = k
			if c.InitrdPath != "" {
				i, err := env.Images.File(c.Image, c.InitrdPath)
				if err != nil {
					return Plan{}, &driver.StartError{Reason: ReasonDiskNotFound, Message: fmt.Sprintf("spec.domain.firmware.kernelBoot.container.initrdPath: %v", err)}
				}
				p.Initrd = i
			}
			p.KernelArgs = kb.KernelArgs
			// The serial port is the guest's only console.
			if !strings.Contains(" "+p.KernelArgs, " console=") {
				p.KernelArgs = strings.TrimSpace(p.KernelArgs + " console=ttyS0")
			}
		}
	}
	if dom.Devices.Rng != nil {
		p.RNG = true
	}
	if err := planDisks(&p, vmi, env); err != nil {
		return Plan{}, err
	}
	if err := planNICs(&p, spec, env); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// guestMemory is the memory the guest sees: domain.memory.guest, else the
// request, else the limit.
func guestMemory(vmi *v1.VirtualMachineInstance) (resource.Quantity, bool) {
	dom := vmi.Spec.Domain
	if dom.Memory != nil && dom.Memory.Guest != nil {
		return *dom.Memory.Guest, true
	}
	if q, ok := dom.Resources.Requests[v1.ResourceMemory]; ok {
		return q, true
	}
	q, ok := dom.Resources.Limits[v1.ResourceMemory]
	return q, ok
}

func planDisks(p *Plan, vmi *v1.VirtualMachineInstance, env Env) error {
	volumes := map[string]v1.Volume{}
	for _, v := range vmi.Spec.Volumes {
		volumes[v.Name] = v
	}
	for i, d := range vmi.Spec.Domain.Devices.Disks {
		field := fmt.Sprintf("spec.domain.devices.disks[%d]", i)
		vol, ok := volumes[d.Name]
		if !ok {
			return unsupported(field + ": no volume named " + d.Name)
		}
		dp := DiskPlan{Name: d.Name, Bus: "virtio", Serial: d.Serial}
		if d.BootOrder != nil {
			dp.BootIndex = *d.BootOrder
		}
		switch {
		case d.CDRom != nil:
			dp.CDROM, dp.Bus = true, "scsi"
			if d.CDRom.Bus != "" {
				dp.Bus = string(d.CDRom.Bus)
			}
			if dp.Bus == "virtio" {
				return unsupported(field + ".cdrom.bus: a CD-ROM cannot be on the virtio bus: use scsi or sata")
			}
		case d.Disk != nil:
			if d.Disk.Bus != "" {
				dp.Bus = string(d.Disk.Bus)
			}
			dp.ReadOnly = d.Disk.ReadOnly
		}
		vfield := fmt.Sprintf("spec.volumes[%s]", d.Name)
		switch {
		case vol.ContainerDisk != nil:
			file, format, err := env.Images.Disk(vol.ContainerDisk.Image, vol.ContainerDisk.Path)
			if err != nil {
				return &driver.StartError{Reason: ReasonDiskNotFound, Message: fmt.Sprintf("%s.containerDisk: %v", vfield, err)}
			}
			dp.File, dp.Format, dp.Snapshot = file, format, !dp.ReadOnly && !dp.CDROM
		case vol.HostDisk != nil:
			dp.File, dp.Format = vol.HostDisk.Path, "raw"
		case vol.CloudInitNoCloud != nil:
			dp.File, dp.Format, dp.ReadOnly = env.SeedFile, "raw", true
		default:
			return unsupported(vfield + ": no supported volume source")
		}
		p.Disks = append(p.Disks, dp)
	}
	return nil
}

func planNICs(p *Plan, spec driver.Spec, env Env) error {
	vmi := spec.VMI
	ifaces := vmi.Spec.Domain.Devices.Interfaces
	if len(ifaces) == 0 {
		if len(vmi.Spec.Networks) > 0 {
			return nil
		}
		// As KubeVirt does, a VMI that declares no network gets one
		// interface on the default network.
		ifaces = []v1.Interface{{Name: "default", InterfaceBindingMethod: v1.InterfaceBindingMethod{Masquerade: &v1.InterfaceMasquerade{}}}}
	}
	cidr := ""
	for _, n := range vmi.Spec.Networks {
		if n.Pod != nil && n.Pod.VMNetworkCIDR != "" {
			cidr = n.Pod.VMNetworkCIDR
		}
	}
	for i, in := range ifaces {
		n := NICPlan{Name: in.Name, Model: "virtio", MAC: in.MacAddress}
		if in.Model != "" {
			n.Model = in.Model
		}
		if n.MAC == "" {
			n.MAC = macFor(spec.ID, i)
		}
		if cidr != "" && cidr != defaultNet {
			ip, ipnet, err := net.ParseCIDR(cidr)
			if err != nil || ip.To4() == nil {
				return unsupported(fmt.Sprintf("spec.networks: vmNetworkCIDR %q is not an IPv4 CIDR", cidr))
			}
			if ones, _ := ipnet.Mask.Size(); ones > 27 {
				return unsupported(fmt.Sprintf("spec.networks: vmNetworkCIDR %q: the qemu runtime needs a /27 or larger network (user-mode networking puts the guest at .15)", cidr))
			}
			base := ipnet.IP.To4()
			n.Net = ipnet.String()
			n.Host = addIP(base, 2)
			n.Guest = addIP(base, 15)
		}
		for _, port := range in.Ports {
			proto := strings.ToUpper(port.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			hp, err := env.PickPort(proto)
			if err != nil {
				return &driver.StartError{Reason: ReasonPortsFailed, Message: fmt.Sprintf("no free host port for %s/%d: %v", proto, port.Port, err)}
			}
			n.Forwards = append(n.Forwards, Forward{Name: port.Name, Protocol: proto, HostIP: env.ForwardAddress, HostPort: hp, GuestPort: port.Port})
		}
		p.NICs = append(p.NICs, n)
	}
	return nil
}

// GuestIP is the address the guest of a NIC gets from user-mode DHCP.
func (n NICPlan) GuestIP() string {
	if n.Guest != "" {
		return n.Guest
	}
	return "10.0.2.15"
}

// macFor derives a stable, locally administered unicast MAC from the VMI's
// UID and the interface's index.
func macFor(id string, i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", id, i))
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3])
}

func addIP(base net.IP, n byte) string {
	ip := make(net.IP, 4)
	copy(ip, base)
	ip[3] += n
	return ip.String()
}

func unsupported(msg string) error {
	return &driver.StartError{Reason: ReasonUnsupported, Message: msg}
}

// fsImages resolves images in a directory on the node.
type fsImages struct{ dir string }

func (im fsImages) root(image string) (string, error) {
	if im.dir == "" {
		return "", fmt.Errorf("image %q: the node has no image directory (--image-dir)", image)
	}
	if !filepath.IsLocal(image) {
		return "", fmt.Errorf("image %q must be a name inside the image directory", image)
	}
	return filepath.Join(im.dir, image), nil
}
