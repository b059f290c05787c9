package e2e

import (
	"context"
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// newVM builds a small VM with the given strategy and template annotations.
func newVM(name string, rs v1.RunStrategy, ann map[string]string) *v1.VirtualMachine {
	grace := int64(5)
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.DefaultNamespace},
		Spec: v1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template: &v1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: ann, Labels: map[string]string{"vm": name}},
				Spec: v1.VirtualMachineInstanceSpec{
					TerminationGracePeriodSeconds: &grace,
					Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
						v1.ResourceMemory: resource.MustParse("64Mi"),
					}}},
				},
			},
		},
	}
}

func (cl *cluster) create(vm *v1.VirtualMachine) *v1.VirtualMachine {
	cl.t.Helper()
	out, err := cl.c.VirtualMachines(v1.DefaultNamespace).Create(context.Background(), vm, client.WriteOptions{})
	if err != nil {
		cl.t.Fatalf("create VM %s: %v", vm.Name, err)
	}
	return out
}

// annotateVMI sets an annotation on a VMI (sim.vigil.dev/action scripts a fault).
func (cl *cluster) annotateVMI(name, key, value string) {
	cl.t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if _, err := cl.c.VirtualMachineInstances(v1.DefaultNamespace).Patch(context.Background(), name, client.MergePatch, patch, "", client.WriteOptions{}); err != nil {
		cl.t.Fatalf("annotate VMI %s: %v", name, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
