package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// The QEMU variants of TestNodeCrash and TestPartition: two `vigil agent
// --runtime qemu` processes, each with its own state directory and the
// watchdog it starts, and real guests. The sim journal cannot see real
// guests, so a qemuSampler watches the process table instead and fails the
// test if two QEMU processes of one VM ever lived at once.

// startQEMUNode starts a qemu agent process for node name, reaching the API
// at server, and waits for the node to be Ready. Whatever QEMU and
// watchdog its state directory still has at the end of the test are killed.
func (cl *cluster) startQEMUNode(name, server, images string) *exec.Cmd {
	cl.t.Helper()
	cl.t.Cleanup(func() { cl.killQEMUNode(name) })
	agent := cl.startQEMUAgentVia(name, server, images)
	cl.waitNodeReady(name, time.Minute)
	return agent
}

// powerOff does to a qemu node what a power loss does: its agent (the
// whole process group), its watchdog and its QEMU guests die at once, by
// SIGKILL, the agent first so that it reports nothing about its guests'
// deaths. It returns the moment of the power loss: just before the first
// kill.
func (cl *cluster) powerOff(name string, agent *exec.Cmd) time.Time {
	cl.t.Helper()
	at := time.Now()
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); err != nil {
		cl.t.Fatalf("killing the agent of %s: %v", name, err)
	}
	cl.killQEMUNode(name)
	_ = agent.Wait()
	return at
}

// qemuHAVMs creates one guest per RunStrategy on qemu-1 (the only node so
// far), waits until those that run have booted, and returns their VMIs.
func qemuHAVMs(t *testing.T, cl *cluster) map[string]*v1.VirtualMachineInstance {
	t.Helper()
	for name, rs := range map[string]v1.RunStrategy{
		"always": v1.RunStrategyAlways, "rerun": v1.RunStrategyRerunOnFailure,
		"manual": v1.RunStrategyManual, "halted": v1.RunStrategyHalted,
	} {
		cl.create(guestVM(name, rs, 5, "echo UP\n", ""))
	}
	cl.mustVigil("start", "manual")
	vmis := map[string]*v1.VirtualMachineInstance{}
	for _, name := range []string{"always", "rerun", "manual"} {
		vmi := cl.waitVMIPhase(name, v1.Running, "", guestWait)
		if vmi.Status.NodeName != "qemu-1" {
			t.Fatalf("%s runs on %s, want qemu-1", name, vmi.Status.NodeName)
		}
		cl.waitConsole(vmi, "UP")
		vmis[name] = vmi
	}
	return vmis
}

// checkQEMURecovered: Always and RerunOnFailure boot again on qemu-2, each
// started only after its old QEMU was dead; Manual stays Failed with
// NodeLost; Halted never ran; qemu-1 is Ready=Unknown.
func checkQEMURecovered(t *testing.T, cl *cluster, qs *qemuSampler, old map[string]*v1.VirtualMachineInstance, lostAt time.Time) {
	t.Helper()
	recovered := map[string]*v1.VirtualMachineInstance{}
	for _, name := range []string{"always", "rerun"} {
		vmi := cl.waitVMIPhase(name, v1.Running, string(old[name].UID), guestWait)
		t.Logf("%s: Running on %s by %s after the failure", name, vmi.Status.NodeName, time.Since(lostAt).Round(100*time.Millisecond))
		if vmi.Status.NodeName != "qemu-2" {
			t.Errorf("%s recovered on %s, want qemu-2", name, vmi.Status.NodeName)
		}
		recovered[name] = vmi
	}
	for _, name := range []string{"always", "rerun"} {
		vmi := recovered[name]
		cl.waitConsole(vmi, "UP")
		t.Logf("%s: booted (UP on its new console) by %s after the failure", name, time.Since(lostAt).Round(100*time.Millisecond))
		// The sampler saw the old QEMU die before the new one started.
		was, now := qs.instance(string(old[name].UID)), qs.instance(string(vmi.UID))
		switch {
		case was == nil || now == nil:
			t.Errorf("%s: the sampler saw the old QEMU %v and the new one %v, want both", name, was, now)
		case was.gone.IsZero() || !was.gone.Before(now.start):
			t.Errorf("%s: the new QEMU (%s) started before the old one (%s) was seen dead", name, now, was)
		default:
			t.Logf("%s: old QEMU seen dead %s after the failure; the new one started %s after that", name,
				was.gone.Sub(lostAt).Round(100*time.Millisecond), now.start.Sub(was.gone).Round(100*time.Millisecond))
		}
	}
	cl.waitFor("manual to be Failed with NodeLost", guestWait, func() (bool, error) {
		vmi := cl.vmi("manual")
		return vmi != nil && vmi.Status.Phase == v1.Failed && vmi.Status.Reason == v1.ReasonNodeLost, nil
	})
	if vmi := cl.vmi("manual"); vmi == nil || vmi.UID != old["manual"].UID {
		t.Errorf("the Manual VM was restarted: %s", describeVMI(vmi))
	}
	if vmi := cl.vmi("halted"); vmi != nil {
		t.Errorf("the Halted VM has a VMI")
	}
	for name, vmi := range old {
		if p := qs.instance(string(vmi.UID)); p == nil || p.gone.IsZero() {
			t.Errorf("%s: the old QEMU on qemu-1 is not seen dead: %v", name, p)
		}
	}
	n, err := cl.c.Nodes().Get(context.Background(), "qemu-1")
	if err != nil {
		t.Fatal(err)
	}
	if c := n.Status.Condition(v1.NodeReady); c == nil || c.Status != metav1.ConditionUnknown {
		t.Errorf("qemu-1 Ready = %+v, want Unknown", c)
	}
}

// TestQEMUNodeCrash: a node with real guests loses power (agent, watchdog
// and QEMU processes killed at once); its VMs come back per their
// RunStrategy on the other node, and no VM ever has two QEMU processes.
func TestQEMUNodeCrash(t *testing.T) {
	images := qemuImages(t)
	cl := newCluster(t, clusterOptions{backoffBase: 200 * time.Millisecond, backoffMax: time.Second})
	qs := watchQEMU(t, cl.dir)
	agent := cl.startQEMUNode("qemu-1", cl.url(), images)
	old := qemuHAVMs(t, cl)
	cl.startQEMUNode("qemu-2", cl.url(), images)

	lostAt := cl.powerOff("qemu-1", agent)
	checkQEMURecovered(t, cl, qs, old, lostAt)
	if live := qs.live("qemu-1"); len(live) != 0 {
		t.Errorf("QEMU runs on the dead node: %v", live)
	}
}

// TestQEMUPartition: a qemu node cut off from the API server (a blackhole
// proxy between its agent and the server; agent, watchdog and guests all
// alive) fences its own guests; the control plane starts them elsewhere
// only after that; when the partition heals, the node is Ready again and
// nothing of it comes back.
func TestQEMUPartition(t *testing.T) {
	images := qemuImages(t)
	cl := newCluster(t, clusterOptions{backoffBase: 200 * time.Millisecond, backoffMax: time.Second})
	qs := watchQEMU(t, cl.dir)
	p := newBlackhole(t, cl.url())
	agent := cl.startQEMUNode("qemu-1", p.url, images)
	old := qemuHAVMs(t, cl)
	cl.startQEMUNode("qemu-2", cl.url(), images)
	var pids []int
	for _, vmi := range old {
		pids = append(pids, cl.qemuPID(vmi))
	}

	p.cut()
	cutAt := time.Now()
	cl.waitFor("qemu-1 to fence its guests", guestWait, func() (bool, error) {
		return !slices.ContainsFunc(pids, alive), nil
	})
	t.Logf("qemu-1's guests dead %s after the cut", time.Since(cutAt).Round(100*time.Millisecond))
	if !alive(agent.Process.Pid) {
		t.Fatal("the cut-off agent died")
	}
	checkQEMURecovered(t, cl, qs, old, cutAt)

	p.heal()
	healedAt := time.Now()
	cl.waitNodeReady("qemu-1", guestWait)
	t.Logf("qemu-1 Ready again %s after the heal", time.Since(healedAt).Round(100*time.Millisecond))
	// Nothing on qemu-1 comes back: a few renewals later it runs no QEMU,
	// and the VMs still run, as the same VMIs, on qemu-2.
	recovered := map[string]*v1.VirtualMachineInstance{}
	for _, name := range []string{"always", "rerun"} {
		recovered[name] = cl.vmi(name)
	}
	time.Sleep(3 * time.Second)
	if live := qs.live("qemu-1"); len(live) != 0 {
		t.Errorf("QEMU runs on qemu-1 after the partition healed: %v", live)
	}
	for _, proc := range qs.all() {
		if proc.node == "qemu-1" && !slices.Contains(pids, proc.pid) {
			t.Errorf("a QEMU started on qemu-1 after the cut: %s", proc)
		}
	}
	for name, was := range recovered {
		if vmi := cl.vmi(name); vmi == nil || vmi.UID != was.UID || vmi.Status.NodeName != "qemu-2" || vmi.Status.Phase != v1.Running {
			t.Errorf("%s after the partition healed: %s, want %s Running on qemu-2", name, describeVMI(vmi), was.UID)
		}
	}
	if vmi := cl.vmi("manual"); vmi == nil || vmi.UID != old["manual"].UID || vmi.Status.Phase != v1.Failed || vmi.Status.Reason != v1.ReasonNodeLost {
		t.Errorf("manual after the partition healed: %s, want %s Failed (NodeLost) on qemu-1", describeVMI(vmi), old["manual"].UID)
	}
}

// describeVMI says which VMI it is, where and in what phase.
func describeVMI(vmi *v1.VirtualMachineInstance) string {
	if vmi == nil {
		return "no VMI"
	}
	return fmt.Sprintf("%s %s (%s) on %s", vmi.UID, vmi.Status.Phase, vmi.Status.Reason, vmi.Status.NodeName)
}

// qemuSampler samples the QEMU processes of one test's guests: those whose
// working directory (the qemu runtime runs each QEMU in its guest
// directory, <state-dir>/qemu/guests/<VMI UID>) is under the test's
// directory. It fails the test if two QEMU processes of one VM (by QEMU's
// -name, namespace/name) are ever known to have lived at the same
// instant. A process that lives less than one sampling interval may go
// unseen.
type qemuSampler struct {
	t        testing.TB
	root     string
	interval time.Duration
	stop     chan struct{} // closed to stop the sampling goroutine
	done     chan struct{} // closed when it has stopped

	// sampling is held through a whole sample, so that samples (the
	// goroutine's, and those a test's query takes) apply in order.
	sampling sync.Mutex
	mu       sync.Mutex // guards procs and reported; taken inside sampling
	procs    map[qemuKey]*qemuProc
	// reported holds the overlaps already reported, so each fails the
	// test once.
	reported map[[2]qemuKey]bool
}

// qemuKey identifies a process even after its PID is reused.
type qemuKey struct {
	pid   int
	start uint64 // clock ticks after boot, /proc/PID/stat field 22
}

// qemuProc is one QEMU process as the sampler saw it.
type qemuProc struct {
	pid  int
	vm   string // namespace/name, from QEMU's -name
	node string // the node whose state directory holds the guest
	uid  string // the VMI's UID: the guest directory's name
	// start is when the process started (to clockTick); lastSeen is the
	// start of the last sample that found it alive, or start if it started
	// during that sample; gone is the start of the first sample that did
	// not find it alive (zero while it lives). So it certainly lived
	// through [start+clockTick, lastSeen] and was dead by gone.
	start, lastSeen, gone time.Time
}

func (p *qemuProc) String() string {
	if p == nil {
		return "none"
	}
	life := "alive"
	if !p.gone.IsZero() {
		life = "dead by " + p.gone.Format("15:04:05.000")
	}
	return fmt.Sprintf("QEMU %d of %s (VMI %s) on %s, started %s, last seen %s, %s",
		p.pid, p.vm, p.uid, p.node, p.start.Format("15:04:05.000"), p.lastSeen.Format("15:04:05.000"), life)
}

// clockTick is the unit of /proc's process start times (USER_HZ is 100 on
// every Linux architecture Vigil runs on).
const clockTick = 10 * time.Millisecond

// watchQEMU samples the QEMU processes under root every 100 ms until the
// test ends, and then checks them a last time.
func watchQEMU(t testing.TB, root string) *qemuSampler {
	s := &qemuSampler{
		t: t, root: root, interval: 100 * time.Millisecond,
		stop: make(chan struct{}), done: make(chan struct{}),
		procs: map[qemuKey]*qemuProc{}, reported: map[[2]qemuKey]bool{},
	}
	go s.run()
	t.Cleanup(func() {
		close(s.stop)
		<-s.done
		s.sample()
	})
	return s
}

func (s *qemuSampler) run() {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// sample scans /proc once, updates what the sampler knows and reports new
// overlaps.
func (s *qemuSampler) sample() {
	s.sampling.Lock()
	defer s.sampling.Unlock()
	now, boot := time.Now(), bootTime()
	seen := map[qemuKey]bool{}
	found := map[qemuKey]*qemuProc{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		s.t.Errorf("sampling QEMU processes: %v", err)
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, key, ok := s.read(pid)
		if !ok {
			continue
		}
		seen[key] = true
		// start ticks after boot, boot being now's reading of the boot clock.
		p.start = now.Add(time.Duration(key.start)*clockTick - boot)
		p.lastSeen = now
		if p.start.After(now) {
			p.lastSeen = p.start
		}
		found[key] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, p := range found {
		if known := s.procs[key]; known != nil {
			known.lastSeen = p.lastSeen
		} else {
			s.procs[key] = p
		}
	}
	for key, p := range s.procs {
		if !seen[key] && p.gone.IsZero() {
			p.gone = now
		}
	}
	s.checkLocked()
}

// read returns the process pid if it is a live QEMU with its working
// directory under the sampler's root.
func (s *qemuSampler) read(pid int) (*qemuProc, qemuKey, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	comm, err := os.ReadFile(dir + "/comm")
	if err != nil || !strings.HasPrefix(string(comm), "qemu-system") {
		return nil, qemuKey{}, false
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, qemuKey{}, false
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// f[0] is field 3 (state), f[19] field 22 (start time).
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return nil, qemuKey{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return nil, qemuKey{}, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return nil, qemuKey{}, false
	}
	cwd, err := os.Readlink(dir + "/cwd")
	if err != nil {
		return nil, qemuKey{}, false
	}
	cwd = strings.TrimSuffix(cwd, " (deleted)")
	rel, err := filepath.Rel(s.root, cwd)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, qemuKey{}, false
	}
	p := &qemuProc{pid: pid, uid: filepath.Base(cwd)}
	// rel is agents/<node>/qemu/guests/<uid> in this harness.
	if parts := strings.Split(rel, string(filepath.Separator)); len(parts) >= 4 && parts[len(parts)-3] == "qemu" && parts[len(parts)-2] == "guests" {
		p.node = parts[len(parts)-4]
	}
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return nil, qemuKey{}, false
	}
	args := strings.Split(string(cmdline), "\x00")
	for j, a := range args[:len(args)-1] {
		if a == "-name" {
			name, _, _ := strings.Cut(strings.TrimPrefix(args[j+1], "guest="), ",")
			p.vm = name
		}
	}
	if p.vm == "" {
		p.vm = "?" + p.uid // not a Vigil guest: it counts as a VM of its own
	}
	return p, qemuKey{pid, start}, true
}

// checkLocked fails the test for each pair of processes of one VM that
// certainly lived at the same instant, once per pair.
func (s *qemuSampler) checkLocked() {
	for ka, a := range s.procs {
		for kb, b := range s.procs {
			if a.vm != b.vm || ka == kb || s.reported[[2]qemuKey{kb, ka}] || s.reported[[2]qemuKey{ka, kb}] {
				continue
			}
			later := a.start
			if b.start.After(later) {
				later = b.start
			}
			first := a.lastSeen
			if b.lastSeen.Before(first) {
				first = b.lastSeen
			}
			if later.Add(clockTick).After(first) {
				continue
			}
			s.reported[[2]qemuKey{ka, kb}] = true
			s.t.Errorf("two QEMU processes of VM %s ran at once:\n\t%s\n\t%s", a.vm, a, b)
		}
	}
}

// instance returns what the sampler saw of the QEMU of the VMI with that
// UID (the latest process, should it have had several), or nil.
func (s *qemuSampler) instance(uid string) *qemuProc {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out *qemuProc
	for _, p := range s.procs {
		if p.uid == uid && (out == nil || p.start.After(out.start)) {
			c := *p
			out = &c
		}
	}
	return out
}

// live returns the QEMU processes of a node that are alive now.
func (s *qemuSampler) live(node string) []*qemuProc {
	s.sample()
	var out []*qemuProc
	for _, p := range s.all() {
		if p.node == node && p.gone.IsZero() {
			out = append(out, p)
		}
	}
	return out
}

// all returns a copy of every QEMU process the sampler has seen.
func (s *qemuSampler) all() []*qemuProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*qemuProc, 0, len(s.procs))
	for _, p := range s.procs {
		c := *p
		out = append(out, &c)
	}
	return out
}

// bootTime reads the clock that /proc's process start times count on: the
// time since boot, suspend included.
func bootTime() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}
