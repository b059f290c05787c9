package v1

import (
	"encoding/base64"
	"fmt"
	"net"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Admission messages clients match on (spec/lifecycle.md section 3).
const (
	MsgRunningAndRunStrategy = "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"
	MsgRunStrategyRequired   = "RunStrategy must be specified"
	MsgMissingTemplate       = "missing virtual machine template."
	MsgWaitAsReceiver        = "Invalid RunStrategy (WaitAsReceiver): live migration is not supported yet"
	WarningRunningDeprecated = "spec.running is deprecated, please use spec.runStrategy instead."
)

// Limits on sizes Vigil accepts.
const (
	maxVMNameLength    = 63
	maxCloudInitBytes  = 64 << 10
	maxGracePeriodSecs = 7 * 24 * 3600
)

// ValidRunStrategies are the strategies Vigil accepts.
var ValidRunStrategies = []RunStrategy{RunStrategyAlways, RunStrategyRerunOnFailure, RunStrategyManual, RunStrategyHalted, RunStrategyOnce}

// ValidateVirtualMachine applies the admission rules to a VM. It returns the
// errors, each naming its field, and warnings (the deprecated spec.running).
func ValidateVirtualMachine(vm *VirtualMachine) (field.ErrorList, []string) {
	errs := ValidateObjectMeta(&vm.ObjectMeta, true, maxVMNameLength, field.NewPath("metadata"))
	var warnings []string
	spec := field.NewPath("spec")
	switch {
	case vm.Spec.Running != nil && vm.Spec.RunStrategy != nil:
		errs = append(errs, field.Invalid(spec.Child("running"), *vm.Spec.Running, MsgRunningAndRunStrategy))
	case vm.Spec.Running == nil && vm.Spec.RunStrategy == nil:
		errs = append(errs, field.Required(spec.Child("running"), MsgRunStrategyRequired))
	case vm.Spec.RunStrategy != nil:
		errs = append(errs, validateRunStrategy(*vm.Spec.RunStrategy, spec.Child("runStrategy"))...)
	}
	if vm.Spec.Running != nil {
		warnings = append(warnings, WarningRunningDeprecated)
	}
	if vm.Spec.Template == nil {
		errs = append(errs, field.Required(spec.Child("template"), MsgMissingTemplate))
	} else {
		tpl := spec.Child("template")
		errs = append(errs, validateLabelsAnnotations(&vm.Spec.Template.ObjectMeta, tpl.Child("metadata"))...)
		errs = append(errs, ValidateVirtualMachineInstanceSpec(&vm.Spec.Template.Spec, tpl.Child("spec"))...)
	}
	errs = append(errs, validateVMStatus(&vm.Status, field.NewPath("status"))...)
	return errs, warnings
}

func validateRunStrategy(rs RunStrategy, p *field.Path) field.ErrorList {
	switch rs {
	case RunStrategyAlways, RunStrategyRerunOnFailure, RunStrategyManual, RunStrategyHalted, RunStrategyOnce:
		return nil
	case RunStrategyWaitAsReceiver:
		return field.ErrorList{field.Invalid(p, rs, MsgWaitAsReceiver)}
	default:
		return field.ErrorList{field.Invalid(p, rs, fmt.Sprintf("Invalid RunStrategy (%s)", rs))}
	}
}

func validateVMStatus(st *VirtualMachineStatus, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range st.StateChangeRequests {
		rp := p.Child("stateChangeRequests").Index(i)
		switch r.Action {
		case StartRequest:
		case StopRequest:
		default:
			errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, []string{string(StartRequest), string(StopRequest)}))
		}
	}
	errs = append(errs, validateConditionTypes(len(st.Conditions), func(i int) (string, metav1.ConditionStatus) {
		return string(st.Conditions[i].Type), st.Conditions[i].Status
	}, p.Child("conditions"))...)
	if st.RunStrategy != "" {
		errs = append(errs, validateRunStrategy(st.RunStrategy, p.Child("runStrategy"))...)
	}
	if sf := st.StartFailure; sf != nil && sf.ConsecutiveFailCount < 0 {
		errs = append(errs, field.Invalid(p.Child("startFailure", "consecutiveFailCount"), sf.ConsecutiveFailCount, "must be non-negative"))
	}
	return errs
}

// ValidateVirtualMachineInstance applies the admission rules to a VMI.
func ValidateVirtualMachineInstance(vmi *VirtualMachineInstance) field.ErrorList {
	errs := ValidateObjectMeta(&vmi.ObjectMeta, true, maxVMNameLength, field.NewPath("metadata"))
	errs = append(errs, ValidateVirtualMachineInstanceSpec(&vmi.Spec, field.NewPath("spec"))...)
	errs = append(errs, ValidateVirtualMachineInstanceStatus(&vmi.Status, field.NewPath("status"))...)
	return errs
}

// ValidateVirtualMachineInstanceUpdate validates newVMI as
// ValidateVirtualMachineInstance does, and refuses changes to an existing
// VMI's spec: a VMI is one run, and a different spec is a different run.
// Only the grace period may change, since stopping "harder" lowers it.
func ValidateVirtualMachineInstanceUpdate(newVMI, oldVMI *VirtualMachineInstance) field.ErrorList {
	errs := ValidateVirtualMachineInstance(newVMI)
	a, b := newVMI.Spec.DeepCopy(), oldVMI.Spec.DeepCopy()
	a.TerminationGracePeriodSeconds, b.TerminationGracePeriodSeconds = nil, nil
	if !equality.Semantic.DeepEqual(a, b) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "a VirtualMachineInstance's spec cannot change after creation, except terminationGracePeriodSeconds"))
	}
	return errs
}

// ValidateVirtualMachineInstanceSpec validates a VMI spec, or a VM template's.
func ValidateVirtualMachineInstanceSpec(s *VirtualMachineInstanceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	dom := p.Child("domain")
	errs = append(errs, validateResources(s, dom)...)
	if m := s.Domain.Machine; m != nil {
		switch m.Type {
		case "", "q35", "pc":
		default:
			errs = append(errs, field.NotSupported(dom.Child("machine", "type"), m.Type, []string{"q35", "pc"}))
		}
	}
	if fw := s.Domain.Firmware; fw != nil {
		if fw.UUID != "" && !isUUID(string(fw.UUID)) {
			errs = append(errs, field.Invalid(dom.Child("firmware", "uuid"), fw.UUID, "must be a UUID (8-4-4-4-12 hexadecimal digits)"))
		}
		if fw.KernelBoot != nil {
			errs = append(errs, validateKernelBoot(fw.KernelBoot, dom.Child("firmware", "kernelBoot"))...)
		}
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && (*g < 0 || *g > maxGracePeriodSecs) {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, fmt.Sprintf("must be between 0 and %d", maxGracePeriodSecs)))
	}
	if ss := s.StartStrategy; ss != nil && *ss != StartStrategyPaused {
		errs = append(errs, field.NotSupported(p.Child("startStrategy"), *ss, []string{string(StartStrategyPaused)}))
	}
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(p.Child("hostname"), s.Hostname, msg))
		}
	}
	errs = append(errs, validateNodeSelector(s.NodeSelector, p.Child("nodeSelector"))...)
	errs = append(errs, validateDisksAndVolumes(s, p)...)
	errs = append(errs, validateNetworks(s, p)...)
	return errs
}

// isUUID reports whether s is a UUID in its canonical textual form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func validateResources(s *VirtualMachineInstanceSpec, dom *field.Path) field.ErrorList {
	var errs field.ErrorList
	res := dom.Child("resources")
	for _, kind := range []struct {
		list ResourceList
		name string
	}{{s.Domain.Resources.Requests, "requests"}, {s.Domain.Resources.Limits, "limits"}} {
		for name, q := range kind.list {
			fp := res.Child(kind.name).Key(string(name))
			switch name {
			case ResourceCPU, ResourceMemory:
			default:
				errs = append(errs, field.NotSupported(fp, name, []string{string(ResourceCPU), string(ResourceMemory)}))
				continue
			}
			if q.Sign() <= 0 {
				errs = append(errs, field.Invalid(fp, q.String(), "must be greater than zero"))
			}
		}
	}
	for _, name := range []ResourceName{ResourceCPU, ResourceMemory} {
		req, hasReq := s.Domain.Resources.Requests[name]
		lim, hasLim := s.Domain.Resources.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(res.Child("requests").Key(string(name)), req.String(), fmt.Sprintf("must be less than or equal to the %s limit %s", name, lim.String())))
		}
	}
	mem := s.Domain.Memory
	if mem != nil && mem.Guest != nil {
		if mem.Guest.Sign() <= 0 {
			errs = append(errs, field.Invalid(dom.Child("memory", "guest"), mem.Guest.String(), "must be greater than zero"))
		}
		if lim, ok := s.Domain.Resources.Limits[ResourceMemory]; ok && mem.Guest.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(dom.Child("memory", "guest"), mem.Guest.String(), "must be less than or equal to the memory limit "+lim.String()))
		}
	}
	_, hasReq := s.Domain.Resources.Requests[ResourceMemory]
	_, hasLim := s.Domain.Resources.Limits[ResourceMemory]
	if !hasReq && !hasLim && (mem == nil || mem.Guest == nil) {
		errs = append(errs, field.Required(res.Child("requests").Key(string(ResourceMemory)), "no memory requested: set domain.resources.requests.memory or domain.memory.guest"))
	}
	if cpu := s.Domain.CPU; cpu != nil {
		const maxVCPUs = 512
		// Each factor is checked first, so that the product cannot overflow
		// and wrap around to a small number.
		c, so, th := uint64(max(cpu.Cores, 1)), uint64(max(cpu.Sockets, 1)), uint64(max(cpu.Threads, 1))
		if c > maxVCPUs || so > maxVCPUs || th > maxVCPUs || c*so*th > maxVCPUs {
			errs = append(errs, field.Invalid(dom.Child("cpu"), fmt.Sprintf("%d x %d x %d", c, so, th), fmt.Sprintf("cores x sockets x threads must be at most %d", maxVCPUs)))
		}
	}
	return errs
}

// validImageName accepts a relative name inside the node's image directory.
func validImageName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case name == ".":
		return "must name a file or directory inside the node's image directory, not the directory itself"
	case strings.HasPrefix(name, "/"):
		return "must be a name relative to the node's image directory, not an absolute path"
	case path.Clean(name) != name || strings.HasPrefix(name, "..") || strings.Contains(name, "/../"):
		return "must be a clean relative path without '..'"
	case strings.ContainsAny(name, "\x00,"):
		return "must not contain NUL or ','"
	}
	return ""
}

func validateKernelBoot(kb *KernelBoot, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if kb.Container == nil {
		if kb.KernelArgs != "" {
			errs = append(errs, field.Required(p.Child("container"), "kernelArgs need a kernel: set container.image and container.kernelPath"))
		} else {
			errs = append(errs, field.Required(p.Child("container"), "kernel boot needs a container with the kernel"))
		}
		return errs
	}
	cp := p.Child("container")
	if msg := validImageName(kb.Container.Image); msg != "" {
		errs = append(errs, field.Invalid(cp.Child("image"), kb.Container.Image, msg))
	}
	errs = append(errs, validatePullPolicy(kb.Container.ImagePullPolicy, cp.Child("imagePullPolicy"))...)
	if kb.Container.KernelPath == "" {
		errs = append(errs, field.Required(cp.Child("kernelPath"), "the kernel's path inside the image is required"))
	}
	for name, v := range map[string]string{"kernelPath": kb.Container.KernelPath, "initrdPath": kb.Container.InitrdPath} {
		if v == "" {
			continue
		}
		if msg := validImageName(strings.TrimPrefix(v, "/")); msg != "" {
			errs = append(errs, field.Invalid(cp.Child(name), v, msg))
		}
	}
	if strings.ContainsRune(kb.KernelArgs, 0) {
		errs = append(errs, field.Invalid(p.Child("kernelArgs"), kb.KernelArgs, "must not contain NUL"))
	}
	return errs
}

// validatePullPolicy accepts Kubernetes' pull policies. Vigil pulls no
// images (an image is a file on the node), so all of them mean the same.
func validatePullPolicy(policy string, p *field.Path) field.ErrorList {
	switch policy {
	case "", "Always", "IfNotPresent", "Never":
		return nil
	}
	return field.ErrorList{field.NotSupported(p, policy, []string{"Always", "IfNotPresent", "Never"})}
}

func validateNodeSelector(sel map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k, v := range sel {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p.Key(k), v, msg))
		}
	}
	return errs
}

func validateDisksAndVolumes(s *VirtualMachineInstanceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	disksPath := p.Child("domain", "devices", "disks")
	volPath := p.Child("volumes")
	volumes := map[string]*Volume{}
	cloudInits := 0
	for i := range s.Volumes {
		v := &s.Volumes[i]
		vp := volPath.Index(i)
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, msg))
		}
		if _, dup := volumes[v.Name]; dup {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes[v.Name] = v
		n := 0
		if cd := v.ContainerDisk; cd != nil {
			n++
			if msg := validImageName(cd.Image); msg != "" {
				errs = append(errs, field.Invalid(vp.Child("containerDisk", "image"), cd.Image, msg))
			}
			if cd.Path != "" {
				if msg := validImageName(strings.TrimPrefix(cd.Path, "/")); msg != "" {
					errs = append(errs, field.Invalid(vp.Child("containerDisk", "path"), cd.Path, msg))
				}
			}
			errs = append(errs, validatePullPolicy(cd.ImagePullPolicy, vp.Child("containerDisk", "imagePullPolicy"))...)
		}
		if hd := v.HostDisk; hd != nil {
			n++
			errs = append(errs, validateHostDisk(hd, vp.Child("hostDisk"))...)
		}
		if ci := v.CloudInitNoCloud; ci != nil {
			n++
			cloudInits++
			errs = append(errs, validateCloudInit(ci, vp.Child("cloudInitNoCloud"))...)
		}
		if n != 1 {
			errs = append(errs, field.Invalid(vp, v.Name, fmt.Sprintf("exactly one of containerDisk, hostDisk or cloudInitNoCloud must be set, found %d", n)))
		}
	}
	if cloudInits > 1 {
		errs = append(errs, field.Invalid(volPath, cloudInits, "at most one cloudInitNoCloud volume is supported"))
	}
	seen := sets.New[string]()
	bootOrders := map[uint]bool{}
	for i := range s.Domain.Devices.Disks {
		d := &s.Domain.Devices.Disks[i]
		dp := disksPath.Index(i)
		if seen.Has(d.Name) {
			errs = append(errs, field.Duplicate(dp.Child("name"), d.Name))
		}
		seen.Insert(d.Name)
		if _, ok := volumes[d.Name]; !ok {
			errs = append(errs, field.NotFound(dp.Child("name"), d.Name))
		}
		if d.Disk != nil && d.CDRom != nil {
			errs = append(errs, field.Invalid(dp, d.Name, "only one of disk and cdrom may be set"))
		}
		if d.Disk != nil {
			errs = append(errs, validateBus(d.Disk.Bus, dp.Child("disk", "bus"))...)
		}
		if d.CDRom != nil {
			errs = append(errs, validateBus(d.CDRom.Bus, dp.Child("cdrom", "bus"))...)
		}
		if d.Serial != "" && !validSerial(d.Serial) {
			errs = append(errs, field.Invalid(dp.Child("serial"), d.Serial, fmt.Sprintf("must be at most %d letters, digits, '-', '_', '.' or '+'", maxSerialLength)))
		}
		if d.BootOrder != nil {
			if *d.BootOrder < 1 {
				errs = append(errs, field.Invalid(dp.Child("bootOrder"), *d.BootOrder, "must be 1 or more"))
			} else if bootOrders[*d.BootOrder] {
				errs = append(errs, field.Duplicate(dp.Child("bootOrder"), *d.BootOrder))
			}
			bootOrders[*d.BootOrder] = true
		}
	}
	for i := range s.Volumes {
		if !seen.Has(s.Volumes[i].Name) {
			errs = append(errs, field.Required(disksPath, fmt.Sprintf("volume %q has no disk: add a disk named %q", s.Volumes[i].Name, s.Volumes[i].Name)))
		}
	}
	return errs
}

// maxSerialLength is the longest disk serial Vigil accepts; the guest may see
// fewer characters (virtio-blk shows 20).
const maxSerialLength = 36

// validSerial accepts the characters KubeVirt accepts in a disk serial. It
// keeps QEMU's comma-separated option syntax out of reach.
func validSerial(s string) bool {
	if len(s) > maxSerialLength {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.ContainsRune("-_.+", c)) {
			return false
		}
	}
	return true
}

func validateBus(bus DiskBus, p *field.Path) field.ErrorList {
	switch bus {
	case "", DiskBusVirtio, DiskBusSATA, DiskBusSCSI:
		return nil
	}
	return field.ErrorList{field.NotSupported(p, bus, []string{string(DiskBusVirtio), string(DiskBusSATA), string(DiskBusSCSI)})}
}

func validateHostDisk(hd *HostDisk, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case hd.Path == "":
		errs = append(errs, field.Required(p.Child("path"), "the disk image's absolute path is required"))
	case !path.IsAbs(hd.Path) || path.Clean(hd.Path) != hd.Path:
		errs = append(errs, field.Invalid(p.Child("path"), hd.Path, "must be a clean absolute path"))
	case strings.ContainsAny(hd.Path, "\x00,"):
		// As for image names: QEMU option values are comma-separated.
		errs = append(errs, field.Invalid(p.Child("path"), hd.Path, "must not contain NUL or ','"))
	}
	switch hd.Type {
	case HostDiskExists:
	case HostDiskExistsOrCreate:
		if hd.Capacity == nil {
			errs = append(errs, field.Required(p.Child("capacity"), "DiskOrCreate needs the capacity of the disk to create"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), hd.Type, []string{string(HostDiskExists), string(HostDiskExistsOrCreate)}))
	}
	if hd.Capacity != nil && hd.Capacity.Sign() <= 0 {
		errs = append(errs, field.Invalid(p.Child("capacity"), hd.Capacity.String(), "must be greater than zero"))
	}
	return errs
}

func validateCloudInit(ci *CloudInitNoCloudSource, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ci.UserData != "" && ci.UserDataBase64 != "" {
		errs = append(errs, field.Invalid(p.Child("userDataBase64"), "<data>", "only one of userData and userDataBase64 may be set"))
	}
	if ci.NetworkData != "" && ci.NetworkDataBase64 != "" {
		errs = append(errs, field.Invalid(p.Child("networkDataBase64"), "<data>", "only one of networkData and networkDataBase64 may be set"))
	}
	if ci.UserData == "" && ci.UserDataBase64 == "" && ci.NetworkData == "" && ci.NetworkDataBase64 == "" {
		errs = append(errs, field.Required(p.Child("userData"), "cloudInitNoCloud needs userData, userDataBase64, networkData or networkDataBase64"))
	}
	for name, v := range map[string]string{"userDataBase64": ci.UserDataBase64, "networkDataBase64": ci.NetworkDataBase64} {
		if v == "" {
			continue
		}
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			errs = append(errs, field.Invalid(p.Child(name), "<data>", "is not valid base64: "+err.Error()))
		}
	}
	total := len(ci.UserData) + len(ci.UserDataBase64) + len(ci.NetworkData) + len(ci.NetworkDataBase64)
	if total > maxCloudInitBytes {
		errs = append(errs, field.TooLong(p, "<data>", maxCloudInitBytes))
	}
	return errs
}

func validateNetworks(s *VirtualMachineInstanceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	ifPath := p.Child("domain", "devices", "interfaces")
	netPath := p.Child("networks")
	if len(s.Networks) > 1 {
		errs = append(errs, field.TooMany(netPath, len(s.Networks), 1))
	}
	if len(s.Domain.Devices.Interfaces) > 1 {
		errs = append(errs, field.TooMany(ifPath, len(s.Domain.Devices.Interfaces), 1))
	}
	networks := sets.New[string]()
	for i, n := range s.Networks {
		np := netPath.Index(i)
		for _, msg := range validation.IsDNS1123Label(n.Name) {
			errs = append(errs, field.Invalid(np.Child("name"), n.Name, msg))
		}
		if n.Pod == nil {
			errs = append(errs, field.Required(np.Child("pod"), "only the default (pod) network is supported"))
		} else if c := n.Pod.VMNetworkCIDR; c != "" {
			ip, ipnet, err := net.ParseCIDR(c)
			if err != nil || ip.To4() == nil {
				errs = append(errs, field.Invalid(np.Child("pod", "vmNetworkCIDR"), c, "must be an IPv4 CIDR such as 10.0.2.0/24"))
			} else if ones, _ := ipnet.Mask.Size(); ones > 30 {
				errs = append(errs, field.Invalid(np.Child("pod", "vmNetworkCIDR"), c, "must leave room for the gateway and the guest: a prefix of /30 or shorter"))
			}
		}
		networks.Insert(n.Name)
	}
	used := sets.New[string]()
	for i, in := range s.Domain.Devices.Interfaces {
		ip := ifPath.Index(i)
		used.Insert(in.Name)
		if !networks.Has(in.Name) {
			errs = append(errs, field.NotFound(ip.Child("name"), in.Name))
		}
		if in.Masquerade == nil {
			errs = append(errs, field.Required(ip.Child("masquerade"), "only the masquerade binding is supported"))
		}
		switch in.Model {
		case "", "virtio", "e1000":
		default:
			errs = append(errs, field.NotSupported(ip.Child("model"), in.Model, []string{"virtio", "e1000"}))
		}
		if in.MacAddress != "" {
			if mac, err := net.ParseMAC(in.MacAddress); err != nil || len(mac) != 6 {
				errs = append(errs, field.Invalid(ip.Child("macAddress"), in.MacAddress, "must be a 48-bit MAC address such as 02:00:00:0a:0b:0c"))
			} else if mac[0]&1 == 1 {
				errs = append(errs, field.Invalid(ip.Child("macAddress"), in.MacAddress, "must be a unicast address (the lowest bit of the first octet clear)"))
			}
		}
		ports := map[string]bool{}
		for j, port := range in.Ports {
			pp := ip.Child("ports").Index(j)
			proto := strings.ToUpper(port.Protocol)
			switch proto {
			case "":
				proto = "TCP"
			case "TCP", "UDP":
			default:
				errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"TCP", "UDP"}))
			}
			if port.Port < 1 || port.Port > 65535 {
				errs = append(errs, field.Invalid(pp.Child("port"), port.Port, "must be between 1 and 65535"))
			}
			key := fmt.Sprintf("%s/%d", proto, port.Port)
			if ports[key] {
				errs = append(errs, field.Duplicate(pp, key))
			}
			ports[key] = true
			if port.Name != "" {
				for _, msg := range validation.IsValidPortName(port.Name) {
					errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
				}
			}
		}
	}
	for i, n := range s.Networks {
		if !used.Has(n.Name) {
			errs = append(errs, field.Required(ifPath, fmt.Sprintf("network %q (networks[%d]) has no interface: add an interface named %q", n.Name, i, n.Name)))
		}
	}
	return errs
}

// ValidateVirtualMachineInstanceStatus checks a status written by the
// scheduler or a node agent.
func ValidateVirtualMachineInstanceStatus(st *VirtualMachineInstanceStatus, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch st.Phase {
	case VmPhaseUnset, Pending, Scheduling, Scheduled, Running, Succeeded, Failed, Unknown:
	default:
		errs = append(errs, field.NotSupported(p.Child("phase"), st.Phase, []string{string(Pending), string(Scheduling), string(Scheduled), string(Running), string(Succeeded), string(Failed), string(Unknown)}))
	}
	errs = append(errs, validateConditionTypes(len(st.Conditions), func(i int) (string, metav1.ConditionStatus) {
		return string(st.Conditions[i].Type), st.Conditions[i].Status
	}, p.Child("conditions"))...)
	for i, r := range st.ActionRequests {
		rp := p.Child("actionRequests").Index(i)
		switch r.Action {
		case VMIActionPause, VMIActionUnpause, VMIActionSoftReboot:
		default:
			errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, []string{string(VMIActionPause), string(VMIActionUnpause), string(VMIActionSoftReboot)}))
		}
		if r.ID == "" {
			errs = append(errs, field.Required(rp.Child("id"), "every action request needs an id"))
		}
	}
	return errs
}

func validateConditionTypes(n int, get func(int) (string, metav1.ConditionStatus), p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	for i := range n {
		t, s := get(i)
		cp := p.Index(i)
		if t == "" {
			errs = append(errs, field.Required(cp.Child("type"), "a condition needs a type"))
		} else if seen.Has(t) {
			errs = append(errs, field.Duplicate(cp.Child("type"), t))
		}
		seen.Insert(t)
		switch s {
		case metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown:
		default:
			errs = append(errs, field.NotSupported(cp.Child("status"), s, []string{"True", "False", "Unknown"}))
		}
	}
	return errs
}

// ValidateNode validates a Node.
func ValidateNode(n *Node) field.ErrorList {
	errs := ValidateObjectMeta(&n.ObjectMeta, false, validation.DNS1123SubdomainMaxLength, field.NewPath("metadata"))
	for _, l := range []struct {
		list ResourceList
		name string
	}{{n.Status.Capacity, "capacity"}, {n.Status.Allocatable, "allocatable"}} {
		for name, q := range l.list {
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(field.NewPath("status", l.name).Key(string(name)), q.String(), "must not be negative"))
			}
		}
	}
	errs = append(errs, validateConditionTypes(len(n.Status.Conditions), func(i int) (string, metav1.ConditionStatus) {
		return string(n.Status.Conditions[i].Type), n.Status.Conditions[i].Status
	}, field.NewPath("status", "conditions"))...)
	return errs
}

// ValidateLease validates a Lease.
func ValidateLease(l *Lease) field.ErrorList {
	errs := ValidateObjectMeta(&l.ObjectMeta, true, validation.DNS1123SubdomainMaxLength, field.NewPath("metadata"))
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "leaseDurationSeconds"), *d, "must be greater than zero"))
	}
	return errs
}

// ValidateHeartbeatDigest validates a HeartbeatDigest: its name, and every
// node it names.
func ValidateHeartbeatDigest(d *HeartbeatDigest) field.ErrorList {
	errs := ValidateObjectMeta(&d.ObjectMeta, false, validation.DNS1123SubdomainMaxLength, field.NewPath("metadata"))
	nodes := field.NewPath("nodes")
	for name := range d.Nodes {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(nodes.Key(name), name, "not a node name: "+msg))
		}
	}
	return errs
}

// ValidateEvent validates an Event.
func ValidateEvent(e *Event) field.ErrorList {
	errs := ValidateObjectMeta(&e.ObjectMeta, true, validation.DNS1123SubdomainMaxLength, field.NewPath("metadata"))
	if e.InvolvedObject.Name == "" {
		errs = append(errs, field.Required(field.NewPath("involvedObject", "name"), "an event must name the object it is about"))
	}
	if e.Reason == "" {
		errs = append(errs, field.Required(field.NewPath("reason"), "an event needs a reason"))
	}
	switch e.Type {
	case "", EventTypeNormal, EventTypeWarning:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{EventTypeNormal, EventTypeWarning}))
	}
	return errs
}

// ValidateObjectMeta checks the name, namespace, labels and annotations.
func ValidateObjectMeta(m *metav1.ObjectMeta, namespaced bool, maxNameLen int, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case m.Name == "" && m.GenerateName == "":
		errs = append(errs, field.Required(p.Child("name"), "name or generateName is required"))
	case m.Name != "":
		for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), m.Name, msg))
		}
		if len(m.Name) > maxNameLen {
			errs = append(errs, field.TooLong(p.Child("name"), m.Name, maxNameLen))
		}
	case m.GenerateName != "":
		if msgs := validation.IsDNS1123Subdomain(strings.TrimSuffix(m.GenerateName, "-") + "-x"); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("generateName"), m.GenerateName, strings.Join(msgs, "; ")))
		}
	}
	if namespaced {
		if m.Namespace != "" {
			for _, msg := range validation.IsDNS1123Label(m.Namespace) {
				errs = append(errs, field.Invalid(p.Child("namespace"), m.Namespace, msg))
			}
		}
	} else if m.Namespace != "" {
		errs = append(errs, field.Forbidden(p.Child("namespace"), "this resource is not namespaced"))
	}
	errs = append(errs, validateLabelsAnnotations(m, p)...)
	return errs
}

func validateLabelsAnnotations(m *metav1.ObjectMeta, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k, v := range m.Labels {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), v, msg))
		}
	}
	total := 0
	for k, v := range m.Annotations {
		total += len(k) + len(v)
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, field.Invalid(p.Child("annotations").Key(k), k, msg))
		}
	}
	const maxAnnotationBytes = 256 << 10
	if total > maxAnnotationBytes {
		errs = append(errs, field.TooLong(p.Child("annotations"), "", maxAnnotationBytes))
	}
	return errs
}
