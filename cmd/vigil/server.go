package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/cli"
	"github.com/vigil-vm/vigil/internal/controller/nodehealth"
	"github.com/vigil-vm/vigil/internal/controlplane"
	"github.com/vigil-vm/vigil/internal/inproc"
	"github.com/vigil-vm/vigil/internal/leader"
	"github.com/vigil-vm/vigil/internal/server"
)

// serverOptions are the flags of `vigil server`.
type serverOptions struct {
	cfg           server.Config
	etcdEndpoints string
	tokenFile     string
	logLevel      string

	noAgent                               bool
	pprofAddr                             string
	agent                                 agentOptions
	crashLoopBaseDelay, crashLoopMaxDelay time.Duration
	nodeLostAfter                         time.Duration
	startingStatusHold                    time.Duration
	fenceCommand                          string
}

// fenceMargin is the least by which --node-lost-after must exceed
// --fence-after: it covers clock-rate drift between the agent and the
// controller and the time a self-fencing agent needs to kill its guests
// (docs/ha.md).
const fenceMargin = 2 * time.Second

func newServerCmd(_ *cli.Factory) *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Vigil control plane (API server, controllers) and a local node agent",
		Long: `Run the Vigil control plane.

By default the server starts an embedded single-member etcd in --data-dir.
With --etcd-endpoints it uses an external etcd cluster instead. Without
--token-file it serves loopback clients only.

The controllers (VM controller, scheduler) run in the one server that holds
the leadership among the servers sharing an etcd; a node agent runs in this
process unless --no-agent is given.`,
		Example: `  vigil server --data-dir /var/lib/vigil
  vigil server --etcd-endpoints https://10.0.0.1:2379 --etcd-cafile ca.pem --token-file /etc/vigil/token --listen 0.0.0.0:7070`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.DataDir, "data-dir", "/var/lib/vigil", "directory for the embedded etcd's data")
	f.StringVar(&o.cfg.Listen, "listen", "127.0.0.1:7070", "HOST:PORT of the API")
	f.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "comma-separated URLs of an external etcd cluster (default: embedded etcd)")
	f.StringVar(&o.cfg.EtcdCAFile, "etcd-cafile", "", "CA bundle to verify the external etcd's certificates")
	f.StringVar(&o.cfg.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd")
	f.StringVar(&o.cfg.EtcdKeyFile, "etcd-keyfile", "", "client key for the external etcd")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token clients must send (default: loopback clients only)")
	f.StringVar(&o.cfg.TLSCertFile, "tls-cert-file", "", "serve the API over TLS with this certificate")
	f.StringVar(&o.cfg.TLSKeyFile, "tls-key-file", "", "the TLS certificate's key")
	f.DurationVar(&o.cfg.CompactionInterval, "compaction-interval", time.Minute, "how often old etcd revisions are compacted")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.noAgent, "no-agent", false, "do not run a node agent in this process")
	f.StringVar(&o.pprofAddr, "pprof", "", "serve Go's profiles (net/http/pprof) on this HOST:PORT, e.g. 127.0.0.1:6060; off by default")
	f.DurationVar(&o.crashLoopBaseDelay, "crashloop-base-delay", 10*time.Second, "the crash-loop backoff's first delay")
	f.DurationVar(&o.crashLoopMaxDelay, "crashloop-max-delay", 300*time.Second, "the crash-loop backoff's longest delay")
	f.DurationVar(&o.startingStatusHold, "starting-status-hold", 0, "how long the VM controller may hold back a status write that would only say a VM is Starting, waiting for its new VMI to run, to save a write per start (0: write it at once, as KubeVirt does)")
	f.DurationVar(&o.nodeLostAfter, "node-lost-after", nodehealth.DefaultNodeLostAfter, "how long a node may go without a heartbeat before it is declared lost and its VMs recovered elsewhere (at least --fence-after + 2s)")
	f.StringVar(&o.fenceCommand, "fence-command", "", "command (split on spaces, no shell) that fences a lost node before its VMs are recovered, e.g. an IPMI or Redfish fence agent; it gets $VIGIL_NODE and $VIGIL_NODE_ADDRESS")
	o.agent.addFlags(cmd, "agent-")
	return cmd
}

func (o *serverOptions) complete() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	o.cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.etcdEndpoints != "" {
		for _, e := range strings.Split(o.etcdEndpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				o.cfg.EtcdEndpoints = append(o.cfg.EtcdEndpoints, e)
			}
		}
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		o.cfg.Token = strings.TrimSpace(string(b))
		if o.cfg.Token == "" {
			return fmt.Errorf("--token-file %s is empty", o.tokenFile)
		}
	}
	if o.cfg.CompactionInterval <= 0 {
		return errors.New("--compaction-interval must be positive")
	}
	if o.crashLoopBaseDelay <= 0 || o.crashLoopMaxDelay < o.crashLoopBaseDelay {
		return fmt.Errorf("--crashloop-base-delay (%s) must be positive and at most --crashloop-max-delay (%s)", o.crashLoopBaseDelay, o.crashLoopMaxDelay)
	}
	if o.startingStatusHold < 0 || o.startingStatusHold > time.Minute {
		return fmt.Errorf("--starting-status-hold (%s) must be between 0 and 1m", o.startingStatusHold)
	}
	if o.nodeLostAfter < o.agent.fenceAfter+fenceMargin {
		return fmt.Errorf("--node-lost-after (%s) must exceed --fence-after (%s) by at least %s, or a lost node's guests could still run when its VMs are started elsewhere",
			o.nodeLostAfter, o.agent.fenceAfter, fenceMargin)
	}
	o.agent.stateDir = filepath.Join(o.cfg.DataDir, "agent")
	o.cfg.Version = version
	o.cfg.ControllerFinalizers = true // every vigil server runs the controllers (when it leads)
	return nil
}

func (o *serverOptions) run(ctx context.Context, cmd *cobra.Command) error {
	s, err := server.Start(ctx, o.cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.pprofAddr != "" {
		stop, err := servePprof(o.pprofAddr)
		if err != nil {
			return err
		}
		defer stop()
		o.cfg.Log.Info("serving profiles", "url", "http://"+o.pprofAddr+"/debug/pprof/")
	}
	o.cfg.Log.Info("vigil server is serving", "url", s.URL, "etcd", etcdDescription(o.cfg))
	fmt.Fprintf(cmd.OutOrStdout(), "vigil server listening on %s\n", s.URL)

	// The controllers and the local agent reach this server's API in
	// process: no socket, the same handler and checks as any client.
	c, err := client.New(client.Config{Server: s.URL, Token: o.cfg.Token, UserAgent: "vigil-server",
		Transport: &inproc.Transport{Handler: s.Handler()}})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	host, _ := os.Hostname()
	dataDir, _ := filepath.Abs(o.cfg.DataDir)
	instance := fmt.Sprintf("%s %s %s", host, s.URL, dataDir)
	identity := fmt.Sprintf("%s/%d", instance, os.Getpid())
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = leader.Run(runCtx, leader.Config{Client: s.Etcd(), Identity: identity, Instance: instance, Log: o.cfg.Log}, func(ctx context.Context) {
			controlplane.Run(ctx, controlplane.Config{
				Client: c, Host: host, CrashLoopBaseDelay: o.crashLoopBaseDelay, CrashLoopMaxDelay: o.crashLoopMaxDelay,
				NodeLostAfter: o.nodeLostAfter, FenceCommand: strings.Fields(o.fenceCommand), StartingStatusHold: o.startingStatusHold,
				Log: o.cfg.Log.With("component", "controllers"),
			})
		})
	}()
	agentErr := make(chan error, 1)
	if !o.noAgent {
		a, err := o.agent.build(ctx, c, o.cfg.Log.With("component", "agent"))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); agentErr <- a.run(runCtx) }()
	}
	select {
	case <-ctx.Done():
		o.cfg.Log.Info("shutting down")
		return nil
	case err := <-s.Err():
		return err
	case err := <-agentErr:
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("the node agent stopped: %w", err)
		}
		return nil
	}
}

func etcdDescription(cfg server.Config) string {
	if len(cfg.EtcdEndpoints) > 0 {
		return strings.Join(cfg.EtcdEndpoints, ",")
	}
	return "embedded in " + cfg.DataDir
}
