package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-vm/vigil/internal/bench"
	"github.com/vigil-vm/vigil/internal/cli"
)

func newBenchCmd(_ *cli.Factory) *cobra.Command {
	cfg := bench.Defaults()
	var out, agentLog string
	var quick, noNodeLoss bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Vigil at scale: start a control plane and simulated nodes, drive VMs through it, and report",
		Long: `bench starts vigil server (embedded etcd, fsync on) as a child process and
--nodes simulated nodes in this process, each an agent with its own
connection, lease and watch. It starts --vms VMs (the first --paced-vms at
--paced-rate per second, the rest as fast as --concurrency clients go),
samples the idle server's CPU and memory, counts the stored writes per VM
start, churns lifecycles, and kills one node and then five. It writes
report.json, report.md and latency.png to --out, and prints the markdown.`,
		Example: `  vigil bench                          # 10,000 VMs on 100 nodes, about 5 minutes
  vigil bench --quick                  # 500 VMs on 10 nodes
  vigil bench --server-args=--pprof=127.0.0.1:6060`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary = self
			if quick {
				// The small run's sizes, for every flag not given explicitly.
				q := bench.Quick()
				for flag, set := range map[string]func(){
					"nodes":          func() { cfg.Nodes = q.Nodes },
					"vms":            func() { cfg.VMs = q.VMs },
					"paced-vms":      func() { cfg.PacedVMs = q.PacedVMs },
					"steady-settle":  func() { cfg.SteadySettle = q.SteadySettle },
					"steady-window":  func() { cfg.SteadyWindow = q.SteadyWindow },
					"write-starts":   func() { cfg.WriteStarts = q.WriteStarts },
					"churn-duration": func() { cfg.ChurnDuration = q.ChurnDuration },
				} {
					if !cmd.Flags().Changed(flag) {
						set()
					}
				}
			}
			cfg.NodeLoss = !noNodeLoss
			if agentLog != "" {
				f, err := os.Create(agentLog)
				if err != nil {
					return fmt.Errorf("--agent-log: %w", err)
				}
				defer f.Close()
				cfg.Log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			cfg.Progress = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.Run(ctx, cfg)
			if rep != nil {
				if werr := rep.Write(out); werr != nil && err == nil {
					err = werr
				}
				fmt.Fprint(cmd.OutOrStdout(), rep.Markdown("latency.png"))
				fmt.Fprintf(cmd.ErrOrStderr(), "report written to %s\n", out)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated nodes")
	f.IntVar(&cfg.VMs, "vms", cfg.VMs, "VMs to start")
	f.IntVar(&cfg.PacedVMs, "paced-vms", cfg.PacedVMs, "VMs created first at --paced-rate, for latency")
	f.Float64Var(&cfg.PacedRate, "paced-rate", cfg.PacedRate, "offered rate of the paced start, VMs per second")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "clients creating VMs at once")
	f.DurationVar(&cfg.SteadySettle, "steady-settle", cfg.SteadySettle, "how long the server rests after the bulk start before its idle CPU is sampled (its etcd history is compacted one to two minutes after the writes)")
	f.DurationVar(&cfg.SteadyWindow, "steady-window", cfg.SteadyWindow, "how long the idle server's CPU is sampled")
	f.IntVar(&cfg.WriteStarts, "write-starts", cfg.WriteStarts, "VM starts whose stored writes are counted")
	f.DurationVar(&cfg.ChurnDuration, "churn-duration", cfg.ChurnDuration, "how long the lifecycle churn lasts (0: none)")
	f.IntVar(&cfg.ChurnPerMinute, "churn-per-minute", cfg.ChurnPerMinute, "lifecycle operations per minute during the churn")
	f.BoolVar(&noNodeLoss, "no-node-loss", false, "skip killing nodes")
	f.StringVar(&cfg.Dir, "dir", "", "where the server's data and the nodes' state go (default: a temporary directory, removed after)")
	f.StringSliceVar(&cfg.ServerArgs, "server-args", nil, "extra flags for vigil server")
	f.StringVar(&agentLog, "agent-log", "", "write the simulated agents' debug logs to this file")
	f.StringVar(&out, "out", "bench-report", "directory for report.json, report.md and latency.png")
	f.BoolVar(&quick, "quick", false, "a small run: 500 VMs on 10 nodes, short windows (flags given explicitly win)")
	return cmd
}
