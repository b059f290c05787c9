package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/agent"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

// serverProc is the `vigil server` under measurement, a child process so
// that its CPU time and memory are its own.
type serverProc struct {
	cmd *exec.Cmd
	url string
	log *os.File
}

// startServer runs `vigil server --no-agent` with embedded etcd (fsync on,
// as users run it) in dir and waits until it is ready.
func startServer(ctx context.Context, binary, dir string, extra []string) (*serverProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("finding a port for the server: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	args := append([]string{"server", "--no-agent", "--listen", addr, "--data-dir", filepath.Join(dir, "server"), "--log-level", "warn"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s server: %w", binary, err)
	}
	p := &serverProc{cmd: cmd, url: "http://" + addr, log: logf}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			p.stop()
			return nil, ctx.Err()
		}
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("the server did not become ready in 60s (log: %s)", logf.Name())
}

func (p *serverProc) pid() int { return p.cmd.Process.Pid }

// stop ends the server gracefully, then for sure.
func (p *serverProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// simNode is one simulated node: an agent in this process with its own
// API client (own connections), lease and watch, as a real agent has.
type simNode struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

// nodeSet runs the simulated nodes.
type nodeSet struct {
	mu    sync.Mutex
	nodes map[string]*simNode
}

// capacity of one simulated node: room for far more VMs than any scenario
// puts on it, so that placement is limited by spreading, not by fit.
var nodeCapacity = v1.ResourceList{
	v1.ResourceCPU:    resource.MustParse("2000"),
	v1.ResourceMemory: resource.MustParse("8Ti"),
}

// startNode starts a simulated node's agent and returns once it runs.
func (s *nodeSet) startNode(serverURL, name, stateDir string, log *slog.Logger) error {
	c, err := client.New(client.Config{Server: serverURL, UserAgent: "vigil-bench-agent/" + name})
	if err != nil {
		return err
	}
	d, err := sim.New(sim.Config{StateDir: stateDir, Node: name})
	if err != nil {
		return err
	}
	rec := record.New(c, "vigil-agent", name, log)
	a, err := agent.New(agent.Config{Client: c, Node: name, Driver: d, Capacity: nodeCapacity, Recorder: rec, Log: log.With("node", name)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &simNode{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		rctx, rcancel := context.WithCancel(ctx)
		recDone := make(chan struct{})
		go func() { defer close(recDone); rec.Run(rctx) }()
		_ = a.Run(ctx)
		rcancel()
		<-recDone
	}()
	s.mu.Lock()
	if s.nodes == nil {
		s.nodes = map[string]*simNode{}
	}
	s.nodes[name] = n
	s.mu.Unlock()
	return nil
}

// kill stops a node's agent at once, as a power loss does: it renews
// nothing more and reports nothing more.
func (s *nodeSet) kill(name string) {
	s.mu.Lock()
	n := s.nodes[name]
	delete(s.nodes, name)
	s.mu.Unlock()
	if n != nil {
		n.cancel()
		<-n.done
	}
}

func (s *nodeSet) stopAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() { s.kill(n) })
	}
	wg.Wait()
}
