// Package controlplane runs Vigil's controllers together against the API:
// the VM controller, the scheduler and the node-health controller, sharing
// one set of informers, with the scheduler placing the VM controller's new
// VMIs as they are created. The server runs it only while it holds the
// controllers' leadership.
package controlplane

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/client/record"
	"github.com/vigil-vm/vigil/internal/controller/caches"
	"github.com/vigil-vm/vigil/internal/controller/nodehealth"
	"github.com/vigil-vm/vigil/internal/controller/scheduler"
	"github.com/vigil-vm/vigil/internal/controller/vm"
)

// Config configures the controllers.
type Config struct {
	Client *client.Client
	// Host names this server in events.
	Host string
	// CrashLoopBaseDelay and CrashLoopMaxDelay are the crash-loop backoff
	// parameters (defaults 10s and 300s).
	CrashLoopBaseDelay, CrashLoopMaxDelay time.Duration
	// NodeLostAfter and FenceCommand configure the node-health controller.
	NodeLostAfter time.Duration
	FenceCommand  []string
	// StartingStatusHold is the VM controller's StartingHold (0: none).
	StartingStatusHold time.Duration
	// Workers per controller (default 128: a pass mostly waits on API
	// writes, which etcd serves far better concurrently than one by one).
	Workers int
	Log     *slog.Logger
}

// Run runs every controller until ctx ends.
func Run(ctx context.Context, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 128
	}
	var wg sync.WaitGroup
	start := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	// One set of informers for all three controllers; every controller
	// adds its handlers in New, before the informers run.
	shared := caches.New(cfg.Client, cfg.Log)
	vmRec := record.New(cfg.Client, "vm-controller", cfg.Host, cfg.Log)
	schedRec := record.New(cfg.Client, "scheduler", cfg.Host, cfg.Log)
	healthRec := record.New(cfg.Client, "node-health", cfg.Host, cfg.Log)
	sched := scheduler.New(scheduler.Config{Client: cfg.Client, Recorder: schedRec, Workers: cfg.Workers, Log: cfg.Log, Caches: shared})
	vms := vm.New(vm.Config{
		Client: cfg.Client, Recorder: vmRec, BackoffBase: cfg.CrashLoopBaseDelay, BackoffMax: cfg.CrashLoopMaxDelay,
		Workers: cfg.Workers, Log: cfg.Log, Caches: shared, Placer: sched, StartingHold: cfg.StartingStatusHold,
	})
	health := nodehealth.New(nodehealth.Config{
		Client: cfg.Client, Recorder: healthRec, NodeLostAfter: cfg.NodeLostAfter, FenceCommand: cfg.FenceCommand, Log: cfg.Log,
		Caches: shared,
	})
	for _, run := range []func(context.Context){vmRec.Run, schedRec.Run, healthRec.Run, shared.Run, vms.Run, sched.Run, health.Run} {
		start(run)
	}
	wg.Wait()
}
