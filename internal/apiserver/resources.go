package apiserver

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// object is what every stored resource is: Kubernetes metadata plus deep copy.
type object interface {
	metav1.Object
	runtime.Object
}

// resource describes one REST resource: its names, how its objects are made,
// validated and selected, and how spec and status are kept apart.
type resource struct {
	group, version string
	plural         string
	singular       string
	kind, listKind string
	shortNames     []string
	namespaced     bool
	// hasStatus: the resource has a /status subresource, and writes to the
	// main resource never change status (and /status writes never change spec).
	hasStatus bool
	// ttl makes objects expire on their own (Events).
	ttl time.Duration
	// batched: writes are group-committed, several to an etcd transaction,
	// so objects written together share a resourceVersion, and a write
	// answers up to the batch's linger time later. For Events: many,
	// written on every lifecycle step, never read back at once.
	batched bool
	// history, when set, is how many events of this resource the watch
	// cache keeps (instead of the server's WatchHistory).
	history int
	// readOnly: clients may get, list and watch, never write; the server
	// writes the objects itself (HeartbeatDigests).
	readOnly bool

	newObj func() object
	// validate applies admission rules; it returns errors and warnings.
	validate func(obj object) (field.ErrorList, []string)
	// validateUpdate checks rules about changing an existing object.
	validateUpdate func(newObj, oldObj object) field.ErrorList
	// fields returns the values that fieldSelector can select on.
	fields func(obj object) fields.Set
	// spec and status return pointers to the object's spec and status, for
	// the spec/status split and the generation rule (nil when absent).
	spec, status func(obj object) any
}

func (r *resource) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.group, Resource: r.plural}
}

func (r *resource) groupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.group, Kind: r.kind}
}

func (r *resource) apiVersion() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

// keyPrefix is the etcd prefix of the resource: /vigil/registry/<group>/<plural>/.
func (r *resource) keyPrefix() string {
	g := r.group
	if g == "" {
		g = "core"
	}
	return registryPrefix + g + "/" + r.plural + "/"
}

// key is the etcd key of one object.
func (r *resource) key(namespace, name string) string {
	if r.namespaced {
		return r.keyPrefix() + namespace + "/" + name
	}
	return r.keyPrefix() + name
}

// nsPrefix is the etcd prefix of the objects of one namespace ("" for all).
func (r *resource) nsPrefix(namespace string) string {
	if r.namespaced && namespace != "" {
		return r.keyPrefix() + namespace + "/"
	}
	return r.keyPrefix()
}

const registryPrefix = "/vigil/registry/"

func metaFields(obj object, r *resource) fields.Set {
	f := fields.Set{"metadata.name": obj.GetName()}
	if r.namespaced {
		f["metadata.namespace"] = obj.GetNamespace()
	}
	return f
}

// resources returns the resources the server serves; Events live for eventTTL.
func resources(eventTTL time.Duration) []*resource {
	vms := &resource{
		group: v1.GroupName, version: v1.Version, plural: "virtualmachines", singular: "virtualmachine",
		kind: v1.KindVirtualMachine, listKind: v1.KindVirtualMachineList, shortNames: []string{"vm", "vms"},
		namespaced: true, hasStatus: true,
		newObj: func() object { return &v1.VirtualMachine{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateVirtualMachine(o.(*v1.VirtualMachine))
		},
		spec:   func(o object) any { return &o.(*v1.VirtualMachine).Spec },
		status: func(o object) any { return &o.(*v1.VirtualMachine).Status },
	}
	vms.fields = func(o object) fields.Set {
		f := metaFields(o, vms)
		f["status.printableStatus"] = string(o.(*v1.VirtualMachine).Status.PrintableStatus)
		return f
	}
	vmis := &resource{
		group: v1.GroupName, version: v1.Version, plural: "virtualmachineinstances", singular: "virtualmachineinstance",
		kind: v1.KindVirtualMachineInstance, listKind: v1.KindVirtualMachineInstanceList, shortNames: []string{"vmi", "vmis"},
		namespaced: true, hasStatus: true,
		newObj: func() object { return &v1.VirtualMachineInstance{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateVirtualMachineInstance(o.(*v1.VirtualMachineInstance)), nil
		},
		validateUpdate: func(n, o object) field.ErrorList {
			return v1.ValidateVirtualMachineInstanceUpdate(n.(*v1.VirtualMachineInstance), o.(*v1.VirtualMachineInstance))
		},
		spec:   func(o object) any { return &o.(*v1.VirtualMachineInstance).Spec },
		status: func(o object) any { return &o.(*v1.VirtualMachineInstance).Status },
	}
	vmis.fields = func(o object) fields.Set {
		vmi := o.(*v1.VirtualMachineInstance)
		f := metaFields(o, vmis)
		f["status.phase"] = string(vmi.Status.Phase)
		f["status.nodeName"] = vmi.Status.NodeName
		return f
	}
	nodes := &resource{
		group: "", version: v1.Version, plural: "nodes", singular: "node",
		kind: v1.KindNode, listKind: v1.KindNodeList, shortNames: []string{"no"},
		namespaced: false, hasStatus: true,
		newObj: func() object { return &v1.Node{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateNode(o.(*v1.Node)), nil
		},
		spec:   func(o object) any { return &o.(*v1.Node).Spec },
		status: func(o object) any { return &o.(*v1.Node).Status },
	}
	nodes.fields = func(o object) fields.Set {
		f := metaFields(o, nodes)
		if o.(*v1.Node).Spec.Unschedulable {
			f["spec.unschedulable"] = "true"
		} else {
			f["spec.unschedulable"] = "false"
		}
		return f
	}
	leases := &resource{
		group: v1.CoordinationGroupName, version: v1.Version, plural: "leases", singular: "lease",
		kind: v1.KindLease, listKind: v1.KindLeaseList,
		namespaced: true,
		newObj:     func() object { return &v1.Lease{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateLease(o.(*v1.Lease)), nil
		},
		spec: func(o object) any { return &o.(*v1.Lease).Spec },
	}
	leases.fields = func(o object) fields.Set { return metaFields(o, leases) }
	events := &resource{
		group: "", version: v1.Version, plural: "events", singular: "event",
		kind: v1.KindEvent, listKind: v1.KindEventList, shortNames: []string{"ev"},
		namespaced: true, ttl: eventTTL, batched: true,
		newObj: func() object { return &v1.Event{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateEvent(o.(*v1.Event)), nil
		},
	}
	events.fields = func(o object) fields.Set {
		e := o.(*v1.Event)
		f := metaFields(o, events)
		f["involvedObject.kind"] = e.InvolvedObject.Kind
		f["involvedObject.name"] = e.InvolvedObject.Name
		f["involvedObject.namespace"] = e.InvolvedObject.Namespace
		f["involvedObject.uid"] = string(e.InvolvedObject.UID)
		f["reason"] = e.Reason
		f["type"] = e.Type
		f["source"] = e.Source.Component
		return f
	}
	digests := &resource{
		group: v1.VigilGroupName, version: v1.Version, plural: "heartbeatdigests", singular: "heartbeatdigest",
		kind: v1.KindHeartbeatDigest, listKind: v1.KindHeartbeatDigestList,
		// A few digests, each rewritten several times a second: a long
		// history would hold thousands of copies for nothing.
		history: 256,
		// Only its server writes a digest: a renewal is a beat it
		// acknowledged, never an edit.
		readOnly: true,
		newObj:   func() object { return &v1.HeartbeatDigest{} },
		validate: func(o object) (field.ErrorList, []string) {
			return v1.ValidateHeartbeatDigest(o.(*v1.HeartbeatDigest)), nil
		},
	}
	digests.fields = func(o object) fields.Set { return metaFields(o, digests) }
	return []*resource{vms, vmis, nodes, leases, events, digests}
}

// validateMeta checks the metadata every resource shares beyond what the
// resource's own validation covers, as Kubernetes does: owner references
// name their owner completely (the garbage collector would take a
// reference without a UID for one to a deleted owner) with at most one
// controller, and finalizers are qualified names.
func validateMeta(obj object) field.ErrorList {
	var errs field.ErrorList
	refs := field.NewPath("metadata", "ownerReferences")
	controllers := 0
	for i, o := range obj.GetOwnerReferences() {
		p := refs.Index(i)
		if o.APIVersion == "" {
			errs = append(errs, field.Required(p.Child("apiVersion"), "the owner's apiVersion is required"))
		}
		if o.Kind == "" {
			errs = append(errs, field.Required(p.Child("kind"), "the owner's kind is required"))
		}
		if o.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "the owner's name is required"))
		}
		if o.UID == "" {
			errs = append(errs, field.Required(p.Child("uid"), "the owner's uid is required"))
		}
		if o.Controller != nil && *o.Controller {
			if controllers++; controllers > 1 {
				errs = append(errs, field.Invalid(p.Child("controller"), true, "only one owner reference can be a controller"))
			}
		}
	}
	for i, f := range obj.GetFinalizers() {
		for _, msg := range validation.IsQualifiedName(f) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "finalizers").Index(i), f, msg))
		}
	}
	return errs
}
