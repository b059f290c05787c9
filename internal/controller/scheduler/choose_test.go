package scheduler

// Table tests of the pure placement rule (choose) and of what a VMI
// reserves (requestOf). The scheduler's API-level behaviour is tested in
// scheduler_test.go.

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

const gi = 1 << 30

// testNode is a Ready, schedulable node offering cpu and mem as allocatable.
func testNode(name, cpu, mem string, opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)},
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: metav1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func notReady(n *v1.Node)         { n.Status.Conditions[0].Status = metav1.ConditionUnknown }
func noReadyCondition(n *v1.Node) { n.Status.Conditions = nil }
func cordoned(n *v1.Node)         { n.Spec.Unschedulable = true }
func labelled(k, v string) func(*v1.Node) {
	return func(n *v1.Node) { n.Labels = map[string]string{k: v} }
}

// capacityOnly moves the node's allocatable to its capacity, which choose
// must then use.
func capacityOnly(n *v1.Node) { n.Status.Capacity, n.Status.Allocatable = n.Status.Allocatable, nil }

// TestChoose checks the placement rule: a node is a candidate only when it is
// Ready, schedulable, matches the selector and has room for both CPU and
// memory; the least allocated candidate (after placing the request) wins,
// ties go to the first by name; and when nothing fits the message counts the
// nodes per reason.
func TestChoose(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []*v1.Node
		used     map[string]request
		selector map[string]string
		silent   map[string]bool
		req      request
		wantNode string
		wantWhy  string
	}{
		{
			name:     "fits exactly",
			nodes:    []*v1.Node{testNode("a", "2", "2Gi")},
			req:      request{cpu: 2000, mem: 2 * gi},
			wantNode: "a",
		},
		{
			name:    "one millicore too many",
			nodes:   []*v1.Node{testNode("a", "2", "2Gi")},
			req:     request{cpu: 2001, mem: gi},
			wantWhy: "0/1 nodes are available: 1 insufficient cpu.",
		},
		{
			name:    "cpu already used",
			nodes:   []*v1.Node{testNode("a", "2", "2Gi")},
			used:    map[string]request{"a": {cpu: 1500}},
			req:     request{cpu: 600, mem: gi},
			wantWhy: "0/1 nodes are available: 1 insufficient cpu.",
		},
		{
			name:    "one byte too many",
			nodes:   []*v1.Node{testNode("a", "2", "2Gi")},
			req:     request{cpu: 100, mem: 2*gi + 1},
			wantWhy: "0/1 nodes are available: 1 insufficient memory.",
		},
		{
			name:    "memory already used",
			nodes:   []*v1.Node{testNode("a", "2", "2Gi")},
			used:    map[string]request{"a": {mem: gi + 1}},
			req:     request{cpu: 100, mem: gi},
			wantWhy: "0/1 nodes are available: 1 insufficient memory.",
		},
		{
			name:    "short of both counts both",
			nodes:   []*v1.Node{testNode("a", "1", "1Gi")},
			req:     request{cpu: 2000, mem: 2 * gi},
			wantWhy: "0/1 nodes are available: 1 insufficient cpu, 1 insufficient memory.",
		},
		{
			name:     "reservations of other nodes do not count",
			nodes:    []*v1.Node{testNode("a", "2", "2Gi")},
			used:     map[string]request{"b": {cpu: 2000, mem: 2 * gi}},
			req:      request{cpu: 2000, mem: 2 * gi},
			wantNode: "a",
		},
		{
			name:     "capacity stands in for a missing allocatable",
			nodes:    []*v1.Node{testNode("a", "2", "2Gi", capacityOnly)},
			req:      request{cpu: 2000, mem: gi},
			wantNode: "a",
		},
		{
			name:     "selector matches",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi", labelled("zone", "x")), testNode("b", "8", "8Gi", labelled("zone", "y"))},
			selector: map[string]string{"zone": "x"},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "a",
		},
		{
			name:     "selector mismatch",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi", labelled("zone", "y")), testNode("b", "4", "4Gi")},
			selector: map[string]string{"zone": "x"},
			req:      request{cpu: 1000, mem: gi},
			wantWhy:  "0/2 nodes are available: 2 node(s) didn't match the VMI's node selector.",
		},
		{
			name:     "every selector label must match",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi", labelled("zone", "x"))},
			selector: map[string]string{"zone": "x", "disk": "ssd"},
			req:      request{cpu: 1000, mem: gi},
			wantWhy:  "0/1 nodes are available: 1 node(s) didn't match the VMI's node selector.",
		},
		{
			name: "not ready and cordoned nodes are skipped however roomy",
			nodes: []*v1.Node{
				testNode("a", "64", "64Gi", notReady), testNode("b", "64", "64Gi", noReadyCondition),
				testNode("c", "64", "64Gi", cordoned), testNode("d", "2", "2Gi"),
			},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "d",
		},
		{
			name: "every reason counted",
			nodes: []*v1.Node{
				testNode("a", "64", "64Gi", notReady), testNode("b", "64", "64Gi", cordoned),
				testNode("c", "64", "64Gi", labelled("zone", "y")), testNode("d", "1", "64Gi", labelled("zone", "x")),
				testNode("e", "64", "1Gi", labelled("zone", "x")),
			},
			selector: map[string]string{"zone": "x"},
			req:      request{cpu: 2000, mem: 2 * gi},
			wantWhy: "0/5 nodes are available: 1 insufficient cpu, 1 insufficient memory, 1 node(s) didn't match the VMI's node selector, " +
				"1 node(s) were not ready, 1 node(s) were unschedulable.",
		},
		{
			name:    "no nodes",
			req:     request{cpu: 100},
			wantWhy: "0/0 nodes are available.",
		},
		{
			name:     "least allocated after placement wins",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi"), testNode("b", "4", "4Gi")},
			used:     map[string]request{"a": {cpu: 2000, mem: gi}, "b": {cpu: 1000, mem: gi}},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "b",
		},
		{
			name:  "a bigger node is less allocated by the same request",
			nodes: []*v1.Node{testNode("a", "2", "2Gi"), testNode("b", "8", "8Gi")},
			req:   request{cpu: 1000, mem: gi}, wantNode: "b",
		},
		{
			// a: cpu 3/4, mem 1/4 -> 0.75; b: cpu 2/4, mem 2/4 -> 0.5.
			name:     "the scarcer resource scores a node",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi"), testNode("b", "4", "4Gi")},
			used:     map[string]request{"a": {cpu: 2000}, "b": {cpu: 1000, mem: gi}},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "b",
		},
		{
			name:     "a silent node gets nothing, though Ready and the least allocated",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi"), testNode("b", "4", "4Gi")},
			used:     map[string]request{"b": {cpu: 1000}},
			silent:   map[string]bool{"a": true},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "b",
		},
		{
			name:    "only silent nodes: unschedulable, saying why",
			nodes:   []*v1.Node{testNode("a", "4", "4Gi")},
			silent:  map[string]bool{"a": true},
			req:     request{cpu: 1000, mem: gi},
			wantWhy: "0/1 nodes are available: 1 node(s) had no heartbeat lately.",
		},
		{
			name:     "ties go to the first by name",
			nodes:    []*v1.Node{testNode("a", "4", "4Gi"), testNode("b", "4", "4Gi"), testNode("c", "4", "4Gi")},
			used:     map[string]request{"a": {cpu: 1000}},
			req:      request{cpu: 1000, mem: gi},
			wantNode: "b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, why := choose(tt.nodes, tt.used, tt.silent, tt.selector, tt.req)
			if node != tt.wantNode || why != tt.wantWhy {
				t.Errorf("choose = (%q, %q), want (%q, %q)", node, why, tt.wantNode, tt.wantWhy)
			}
		})
	}
}

// TestChooseSpreads checks that placing equal requests one after another,
// reserving each, alternates between equal nodes and stops exactly when
// their room is used up.
func TestChooseSpreads(t *testing.T) {
	nodes := []*v1.Node{testNode("a", "2", "4Gi"), testNode("b", "2", "4Gi")}
	used := map[string]request{}
	req := request{cpu: 500, mem: gi}
	var got []string
	for {
		node, why := choose(nodes, used, nil, nil, req)
		if node == "" {
			if want := "0/2 nodes are available: 2 insufficient cpu, 2 insufficient memory."; why != want {
				t.Errorf("why = %q, want %q", why, want)
			}
			break
		}
		got = append(got, node)
		used[node] = used[node].add(req)
		if len(got) > 8 {
			t.Fatalf("placed more than the nodes hold: %v", got)
		}
	}
	want := []string{"a", "b", "a", "b", "a", "b", "a", "b"}
	if len(got) != len(want) {
		t.Fatalf("placements = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("placements = %v, want %v", got, want)
		}
	}
}

// TestRequestOf checks what a VMI reserves: its requests, else its limits,
// else 100m per vCPU and its guest memory.
func TestRequestOf(t *testing.T) {
	q := resource.MustParse
	guest := q("3Gi")
	tests := []struct {
		name string
		dom  v1.DomainSpec
		want request
	}{
		{"nothing: one vCPU, no memory", v1.DomainSpec{}, request{cpu: DefaultMilliCPUPerVCPU}},
		{"requests", v1.DomainSpec{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: q("1500m"), v1.ResourceMemory: q("1Gi")},
			Limits:   v1.ResourceList{v1.ResourceCPU: q("4"), v1.ResourceMemory: q("4Gi")}}},
			request{cpu: 1500, mem: gi}},
		{"limits when no requests", v1.DomainSpec{Resources: v1.ResourceRequirements{
			Limits: v1.ResourceList{v1.ResourceCPU: q("2"), v1.ResourceMemory: q("2Gi")}}},
			request{cpu: 2000, mem: 2 * gi}},
		{"vCPU topology and guest memory", v1.DomainSpec{
			CPU: &v1.CPU{Cores: 2, Sockets: 2, Threads: 2}, Memory: &v1.Memory{Guest: &guest}},
			request{cpu: 8 * DefaultMilliCPUPerVCPU, mem: 3 * gi}},
		{"a memory request beats the guest size", v1.DomainSpec{
			Memory:    &v1.Memory{Guest: &guest},
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: q("1Gi")}}},
			request{cpu: DefaultMilliCPUPerVCPU, mem: gi}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vmi := &v1.VirtualMachineInstance{Spec: v1.VirtualMachineInstanceSpec{Domain: tt.dom}}
			if got := requestOf(vmi); got != tt.want {
				t.Errorf("requestOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}
