package apiserver

import (
	"context"
	"net/http"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/store"
)

// nodeNameParam reads the nodeName parameter of a create: a VMI created with
// ?nodeName=N is created already scheduled to node N, the binding the
// scheduler would otherwise write next. The controllers use it to save that
// write; like a Pod's spec.nodeName, it bypasses the scheduler's choice (the
// scheduler still counts the VMI against the node).
func nodeNameParam(r *resource, req *http.Request) (string, error) {
	vals, ok := req.URL.Query()["nodeName"]
	if !ok {
		return "", nil
	}
	if r.kind != v1.KindVirtualMachineInstance {
		return "", badRequest("the nodeName parameter applies only to creating virtualmachineinstances, not %s", r.plural)
	}
	if len(vals) != 1 {
		return "", badRequest("the nodeName parameter is given %d times; give it once", len(vals))
	}
	node := vals[0]
	if msgs := validation.IsDNS1123Subdomain(node); len(msgs) > 0 {
		return "", badRequest("the nodeName parameter %q is not a valid node name: %s", node, msgs[0])
	}
	return node, nil
}

// nodeExists checks that VMI name may be bound to node.
func (s *Server) nodeExists(ctx context.Context, node, name string) error {
	nodes := s.resource("", "nodes")
	_, err := s.store.Get(ctx, nodes.key("", node))
	if store.IsNotFound(err) {
		return invalid(s.resource(v1.GroupName, "virtualmachineinstances"), name, field.ErrorList{field.NotFound(field.NewPath("status", "nodeName"), node)})
	}
	if err != nil {
		return storeErr(nodes, node, err)
	}
	return nil
}
