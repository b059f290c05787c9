package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/agent"
	"github.com/vigil-vm/vigil/internal/cli"
	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/qemu"
	"github.com/vigil-vm/vigil/internal/driver/sim"
	"github.com/vigil-vm/vigil/internal/guestimage"
	"github.com/vigil-vm/vigil/internal/watchdog"
)

// agentOptions are the flags of `vigil agent`, shared with the agent that
// `vigil server` runs in-process.
type agentOptions struct {
	node               string
	runtime            string
	stateDir           string
	simJournal         string
	imageDir           string
	accel              string
	capacityCPU        string
	capacityMemory     string
	labels             []string
	leaseRenewInterval time.Duration
	fenceAfter         time.Duration
	consoleListen      string
	watchdogDevice     string
}

func (o *agentOptions) addFlags(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	host, _ := os.Hostname()
	f.StringVar(&o.node, "node", host, "the name of this node")
	f.StringVar(&o.runtime, "runtime", "sim", "the VM runtime: sim (simulated guests) or qemu (real guests)")
	f.StringVar(&o.simJournal, "sim-journal", "", "append every simulated guest start and stop to this file")
	f.StringVar(&o.imageDir, "image-dir", "", "qemu runtime: the directory containerDisk and kernelBoot images are found in (default /var/lib/vigil/images, or, if that does not exist, ~/.cache/vigil/images with the test guest from make guest-image as vigil-guest)")
	f.StringVar(&o.accel, "accel", "auto", "qemu runtime: auto (KVM if it really works, else TCG), kvm or tcg")
	f.StringVar(&o.capacityCPU, prefix+"capacity-cpu", "", "CPUs the node offers (default: the host's)")
	f.StringVar(&o.capacityMemory, prefix+"capacity-memory", "", "memory the node offers, e.g. 64Gi (default: the host's)")
	f.StringSliceVar(&o.labels, prefix+"node-labels", nil, "extra node labels, key=value")
	f.DurationVar(&o.leaseRenewInterval, "lease-renew-interval", time.Second, "how often the node's heartbeat beats (streamed to the API server; the Lease is renewed instead while no stream works)")
	f.StringVar(&o.consoleListen, prefix+"console-listen", "127.0.0.1:0", "HOST:PORT of the agent's console endpoint, which the API server proxies to (port 0: any free port; a remote agent needs an address the server can reach)")
	f.StringVar(&o.watchdogDevice, prefix+"watchdog-device", "", "qemu runtime: a hardware watchdog device (/dev/watchdog) the node's watchdog feeds while the agent renews the lease")
	f.DurationVar(&o.fenceAfter, "fence-after", 4*time.Second, "kill every guest when no heartbeat has been acknowledged for this long (self-fencing)")
}

// builtAgent is an agent with its event recorder; run both with run.
type builtAgent struct {
	agent    *agent.Agent
	recorder *record.Recorder
	cleanup  func()
}

// run runs the agent and its recorder until ctx ends.
func (b *builtAgent) run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); b.recorder.Run(rctx) }()
	err := b.agent.Run(ctx)
	cancel()
	<-done
	b.cleanup()
	return err
}

// build makes the agent, its driver and its recorder.
func (o *agentOptions) build(ctx context.Context, c *client.Client, log *slog.Logger) (*builtAgent, error) {
	if o.node == "" {
		return nil, fmt.Errorf("--node is required")
	}
	if o.leaseRenewInterval <= 0 {
		return nil, fmt.Errorf("--lease-renew-interval must be positive")
	}
	if o.fenceAfter < 2*o.leaseRenewInterval {
		return nil, fmt.Errorf("--fence-after (%s) must be at least twice --lease-renew-interval (%s), or one slow renewal would fence the node", o.fenceAfter, o.leaseRenewInterval)
	}
	capacity := agent.HostCapacity()
	if o.capacityCPU != "" {
		q, err := resource.ParseQuantity(o.capacityCPU)
		if err != nil || q.Sign() <= 0 {
			return nil, fmt.Errorf("--capacity-cpu %q is not a positive quantity", o.capacityCPU)
		}
		capacity[v1.ResourceCPU] = q
	}
	if o.capacityMemory != "" {
		q, err := resource.ParseQuantity(o.capacityMemory)
		if err != nil || q.Sign() <= 0 {
			return nil, fmt.Errorf("--capacity-memory %q is not a positive quantity", o.capacityMemory)
		}
		capacity[v1.ResourceMemory] = q
	}
	labels := map[string]string{}
	for _, l := range o.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--node-labels: %q is not key=value", l)
		}
		labels[k] = v
	}
	cleanup := func() {}
	var drv driver.Driver
	switch o.runtime {
	case "sim":
		var journal *sim.Journal
		if o.simJournal != "" {
			j, err := sim.OpenJournal(o.simJournal)
			if err != nil {
				return nil, err
			}
			journal, cleanup = j, func() { j.Close() }
		}
		d, err := sim.New(sim.Config{StateDir: filepath.Join(o.stateDir, "sim"), Node: o.node, Journal: journal, Persist: true})
		if err != nil {
			cleanup()
			return nil, err
		}
		drv = d
	case "qemu":
		images := o.imageDir
		if images == "" {
			images = defaultImageDir()
		}
		d, err := qemu.New(ctx, qemu.Config{StateDir: filepath.Join(o.stateDir, "qemu"), ImageDir: images, Accel: o.accel, Log: log})
		if err != nil {
			return nil, err
		}
		drv = d
		// Real guests outlive the agent: a separate watchdog kills them
		// if the agent dies or hangs and its heartbeat stops.
		if err := ensureWatchdog(o.stateDir, o.fenceAfter, o.watchdogDevice, log); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("--runtime %q: use sim or qemu", o.runtime)
	}
	// Every renewal is recorded in the heartbeat file (the watchdog reads
	// it); a new agent process counts its fence deadline from the last one.
	// Starting does not count as a renewal.
	heartbeat := watchdog.HeartbeatPath(o.stateDir)
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		cleanup()
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	var lastRenewal time.Time
	if age, ok, err := watchdog.LastBeatAge(heartbeat); err != nil {
		log.Warn("reading the heartbeat of the last agent; the fence deadline counts from now", "err", err)
	} else if ok {
		lastRenewal = time.Now().Add(-age)
	}
	onRenew := func(at time.Time) {
		if err := watchdog.BeatAt(heartbeat, at); err != nil {
			log.Error("writing the heartbeat", "err", err)
		}
	}
	rec := record.New(c, "vigil-agent", o.node, log)
	a, err := agent.New(agent.Config{
		Client: c, Node: o.node, Driver: drv, Capacity: capacity, Labels: labels,
		LeaseRenewInterval: o.leaseRenewInterval, FenceAfter: o.fenceAfter, OnRenew: onRenew, LastRenewal: lastRenewal, Version: version, Recorder: rec, Log: log,
		Address: outboundIP(), ConsoleListen: o.consoleListen,
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	return &builtAgent{agent: a, recorder: rec, cleanup: cleanup}, nil
}

func outboundIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}

func newAgentCmd(f *cli.Factory) *cobra.Command {
	o := &agentOptions{}
	var server, tokenFile, logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register this node and run the VMIs bound to it",
		Example: `  vigil agent --server http://10.0.0.1:7070 --node node-1 --runtime sim --state-dir /var/lib/vigil-agent
  vigil agent --server http://127.0.0.1:7070 --node sim-1 --runtime sim --capacity-cpu 64 --capacity-memory 256Gi`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "agent")
			token := ""
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				token = strings.TrimSpace(string(b))
			}
			if server == "" {
				server = os.Getenv("VIGIL_SERVER")
			}
			if server == "" {
				return fmt.Errorf("--server (or VIGIL_SERVER) is required")
			}
			if o.stateDir == "" {
				return fmt.Errorf("--state-dir is required")
			}
			c, err := client.New(client.Config{Server: server, Token: token, UserAgent: "vigil-agent/" + o.node})
			if err != nil {
				return err
			}
			a, err := o.build(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			log.Info("vigil agent starting", "node", o.node, "server", server, "runtime", o.runtime)
			return a.run(cmd.Context())
		},
	}
	o.addFlags(cmd, "")
	cmd.Flags().StringVar(&server, "server", "", "the API server URL, or the URLs of several servers of one control plane separated by commas (the agent moves to the next when one cannot be reached) (default $VIGIL_SERVER)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the API server's bearer token")
	cmd.Flags().StringVar(&o.stateDir, "state-dir", "", "directory for the agent's and the runtime's state")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// defaultImageDir is /var/lib/vigil/images, or, when that does not exist
// and make guest-image has built the test guest, an image directory next
// to it that holds the test guest as "vigil-guest".
func defaultImageDir() string {
	const system = "/var/lib/vigil/images"
	if _, err := os.Stat(system); err == nil {
		return system
	}
	dir := filepath.Join(filepath.Dir(guestimage.CacheDir()), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return system
	}
	if _, err := guestimage.ImageDir(dir); err != nil {
		return system
	}
	return dir
}
