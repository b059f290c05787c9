package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-vm/vigil/internal/cli"
	"github.com/vigil-vm/vigil/internal/driver/qemu"
	"github.com/vigil-vm/vigil/internal/watchdog"
)

// newWatchdogCmd is `vigil watchdog`, which a qemu agent starts for its
// node (docs/ha.md).
func newWatchdogCmd(_ *cli.Factory) *cobra.Command {
	var stateDir, device string
	var fenceAfter time.Duration
	cmd := &cobra.Command{
		Use:   "watchdog",
		Short: "Kill the node's guests when its agent stops renewing the node lease (started by vigil agent)",
		Long: `Watch the heartbeat the node agent writes on every lease renewal, and kill
every QEMU guest of the node when it is older than --fence-after: the agent
died, hung, or lost the control plane, and the guests may be started elsewhere.
With --device, feed a hardware watchdog while the heartbeat is fresh.

vigil agent (qemu runtime) starts one per state directory and leaves it
running across agent restarts.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stateDir == "" {
				return fmt.Errorf("--state-dir is required")
			}
			if fenceAfter <= 0 {
				return fmt.Errorf("--fence-after must be positive")
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "watchdog")
			if err := os.WriteFile(watchdogPIDFile(stateDir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
				return err
			}
			log.Info("watching the agent's heartbeat", "stateDir", stateDir, "fenceAfter", fenceAfter, "device", device)
			return watchdog.Run(cmd.Context(), watchdog.Config{
				Heartbeat: watchdog.HeartbeatPath(stateDir), FenceAfter: fenceAfter, Device: device, Log: log,
				Fence: func(why string) (int, error) { return qemu.FenceAll(filepath.Join(stateDir, "qemu"), why) },
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", "", "the agent's state directory")
	f.DurationVar(&fenceAfter, "fence-after", 4*time.Second, "kill the guests when the heartbeat is older than this")
	f.StringVar(&device, "device", "", "a watchdog device (/dev/watchdog) to feed while the heartbeat is fresh")
	return cmd
}

func watchdogPIDFile(stateDir string) string { return filepath.Join(stateDir, "watchdog.pid") }

// ensureWatchdog starts `vigil watchdog` for stateDir unless one runs.
// It runs in its own session, so that it outlives this agent.
func ensureWatchdog(stateDir string, fenceAfter time.Duration, device string, log *slog.Logger) error {
	if b, err := os.ReadFile(watchdogPIDFile(stateDir)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), "watchdog") {
				return nil
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("starting the watchdog: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(stateDir, "watchdog.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("starting the watchdog: %w", err)
	}
	defer logf.Close()
	args := []string{"watchdog", "--state-dir", stateDir, "--fence-after", fenceAfter.String()}
	if device != "" {
		args = append(args, "--device", device)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the watchdog: %w", err)
	}
	// The reaper: the watchdog is this process's child until this
	// process ends; it ends when the watchdog does.
	go func() { _ = cmd.Wait() }()
	log.Info("started the node's watchdog", "pid", cmd.Process.Pid)
	return nil
}
