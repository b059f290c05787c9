// Package driver is the contract between the node agent and a VM runtime:
// the simulated runtime (driver/sim) for tests and scale runs, and QEMU
// (driver/qemu) for real guests. The agent plugs either in without knowing
// which it has.
//
// A Driver starts guests and re-adopts them after an agent restart; a Guest
// is one running guest, which reports its state (booting, running, paused,
// exited with an outcome) and takes the lifecycle operations: graceful
// shutdown (ACPI), kill, pause, resume and reboot. Guests outlive the agent
// process: Close releases the agent's hold on a guest without stopping it,
// and Recover takes it back.
//
// Optional capabilities are separate interfaces found by type assertion
// (Scripter for the simulator's scripted faults, Consoler for a serial
// console).
package driver

import (
	"context"
	"errors"
	"io"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// ErrNotFound matches (errors.Is) the error of Recover for a guest the node
// does not have (never started, or removed).
var ErrNotFound = errors.New("guest not found")

// Driver runs guests on one node.
type Driver interface {
	// Info describes the runtime for the Node's status.
	Info() Info
	// Start starts a guest for a VMI. It fails with a *StartError when the
	// guest cannot start (a missing image, a refused configuration); nothing
	// is left behind then. Start is idempotent: for an ID the node already
	// has (held, or closed and not removed) it returns that guest, in
	// whatever state it is, and starts nothing.
	Start(ctx context.Context, spec Spec) (Guest, error)
	// Recover re-adopts a guest that was started before, by this Driver or
	// by an earlier one on the same node state (an agent restart), and
	// replays what it did meanwhile. An id the node has no guest for gives
	// an error that matches ErrNotFound.
	Recover(ctx context.Context, id string) (Guest, error)
	// Guests lists the ids of every guest the node still has state for:
	// held or closed, running or exited, until it is removed.
	Guests(ctx context.Context) ([]string, error)
}

// Info describes a runtime.
type Info struct {
	// Name is "sim" or "qemu".
	Name string
	// Version is the runtime's version, e.g. "7.2.0".
	Version string
	// Accelerator is "kvm", "tcg" or "sim".
	Accelerator string
}

// Spec is what a guest is started from.
type Spec struct {
	// ID is the VMI's UID; the guest is known by it.
	ID        string
	Namespace string
	Name      string
	VMI       *v1.VirtualMachineInstance
	// Paused starts the guest with its vCPUs stopped.
	Paused bool
}

// Phase is where a guest is in its life.
type Phase int

// Guest phases.
const (
	Booting Phase = iota + 1
	Running
	Exited
)

func (p Phase) String() string {
	switch p {
	case Booting:
		return "Booting"
	case Running:
		return "Running"
	case Exited:
		return "Exited"
	}
	return "Unknown"
}

// ExitReason says how a guest ended.
type ExitReason string

// Exit reasons.
const (
	// ExitShutdown: the guest powered itself off (or completed an ACPI
	// shutdown) — a clean end.
	ExitShutdown ExitReason = "Shutdown"
	// ExitKilled: the guest was killed by Kill.
	ExitKilled ExitReason = "Killed"
	// ExitCrashed: the hypervisor died without the guest powering off.
	ExitCrashed ExitReason = "Crashed"
	// ExitPanicked: the guest's panic device fired.
	ExitPanicked ExitReason = "Panicked"
	// ExitStartFailed: the guest never came up.
	ExitStartFailed ExitReason = "StartFailed"
	// ExitFenced: the node's watchdog killed the guest because the agent
	// had stopped renewing the node's lease.
	ExitFenced ExitReason = "Fenced"
)

// Exit is how and when a guest ended.
type Exit struct {
	Reason  ExitReason
	Message string
	At      time.Time
}

// State is a guest's observed state.
type State struct {
	Phase  Phase
	Paused bool
	// Exit is set once Phase is Exited.
	Exit *Exit
	// Reboots counts in-place reboots.
	Reboots int
	// Interfaces and Ports are the guest's network, when known.
	Interfaces []v1.VirtualMachineInstanceNetworkInterface
	Ports      []v1.PortForward
	// Accelerator is what this guest runs with ("kvm", "tcg", "sim").
	Accelerator string
}

// Guest is one guest. Its methods are safe for concurrent use.
//
// An exited guest keeps its exit: the lifecycle methods (Shutdown, Kill,
// Pause, Resume, Reboot, and Act for a Scripter) fail or do nothing on it,
// and none of them changes State.
//
// After Close or Remove the Guest is released: ID and State still answer
// (State as last seen), the lifecycle methods fail, Close does nothing, and
// Remove does nothing after Remove but fails after Close.
type Guest interface {
	ID() string
	// State returns the current state.
	State() State
	// Changed is signalled whenever the state changes; read State then. It
	// is a size-1 channel: several changes may coalesce into one signal,
	// and the driver never blocks on a reader that is slow or absent.
	Changed() <-chan struct{}
	// Shutdown asks the guest to power off (ACPI power button). It returns
	// once the request is delivered; the guest may ignore it, or not be
	// ready for it yet, so a graceful stop repeats it.
	Shutdown(ctx context.Context) error
	// Kill stops the guest at once. When it returns nil, State reports
	// Exited, with reason ExitKilled (or the earlier exit if the guest had
	// already exited).
	Kill(ctx context.Context) error
	// Pause and Resume stop and restart the vCPUs.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Reboot asks the guest to reboot in place (ACPI / ctrl-alt-del): it
	// stays Running and State.Reboots counts up once it has. Like Shutdown,
	// the request may be ignored, or come too early for the guest.
	Reboot(ctx context.Context) error
	// Close releases the agent's hold on the guest (connections, timers)
	// without stopping it. The node keeps the guest and its state, running
	// or exited, for Recover.
	Close() error
	// Remove deletes what the node keeps for an exited guest (state files,
	// overlay disks) and releases it. It fails, and changes nothing, if the
	// guest still runs.
	Remove() error
}

// ActionAnnotation asks a Scripter guest for a scripted fault; the node
// agent hands its value to Act once when it sees it on a running VMI.
const ActionAnnotation = "sim.vigil.dev/action"

// Scripter is implemented by simulated guests: Act performs a scripted
// fault (sim.vigil.dev/action) once.
type Scripter interface {
	Act(ctx context.Context, action string) error
}

// Consoler is implemented by guests with a serial console.
type Consoler interface {
	// Console attaches to the serial console.
	Console(ctx context.Context) (io.ReadWriteCloser, error)
	// ConsoleLog returns the console output of the guest's run so far.
	ConsoleLog() (io.ReadCloser, error)
}

// StartError is a guest that could not start, with a Kubernetes-style
// reason ("DiskNotFound", "StartFailed") and a message saying exactly what
// is wrong.
type StartError struct {
	Reason  string
	Message string
}

func (e *StartError) Error() string { return e.Reason + ": " + e.Message }
