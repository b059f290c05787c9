package qmp

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is an asynchronous message from QEMU.
type Event struct {
	// Name is the event's name, e.g. SHUTDOWN (see the Event constants).
	Name string
	// Data is the event's data, a JSON object, or empty when the event
	// has none.
	Data json.RawMessage
	// Timestamp is when QEMU emitted the event; zero if it did not say.
	Timestamp time.Time
}

// Decode decodes the event's data into v, e.g. a *ShutdownEvent. An event
// without data leaves v untouched.
func (e Event) Decode(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("qmp: decoding the data of event %s: %w", e.Name, err)
	}
	return nil
}

// The events the QEMU driver acts on.
const (
	// EventShutdown: the machine stopped running for good (unless
	// -no-shutdown); data ShutdownEvent.
	EventShutdown = "SHUTDOWN"
	// EventReset: the machine was reset; data ResetEvent.
	EventReset = "RESET"
	// EventPowerdown: the ACPI power button was pressed
	// (system_powerdown); no data.
	EventPowerdown = "POWERDOWN"
	// EventStop: the vCPUs were paused; no data.
	EventStop = "STOP"
	// EventResume: the vCPUs run again; no data.
	EventResume = "RESUME"
	// EventGuestPanicked: the guest reported a panic (pvpanic); data
	// GuestPanickedEvent.
	EventGuestPanicked = "GUEST_PANICKED"
)

// The reasons of SHUTDOWN and RESET (QAPI's ShutdownCause).
const (
	ReasonNone               = "none"
	ReasonHostError          = "host-error"
	ReasonHostQMPQuit        = "host-qmp-quit"
	ReasonHostQMPSystemReset = "host-qmp-system-reset"
	ReasonHostSignal         = "host-signal"
	ReasonHostUI             = "host-ui"
	ReasonGuestShutdown      = "guest-shutdown"
	ReasonGuestReset         = "guest-reset"
	ReasonGuestPanic         = "guest-panic"
	ReasonSubsystemReset     = "subsystem-reset"
)

// ShutdownEvent is the data of SHUTDOWN.
type ShutdownEvent struct {
	// Guest is true when the guest asked for it (power-off, reset with
	// -no-reboot, panic), false when the host did (quit, a signal).
	Guest bool `json:"guest"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
}

// ResetEvent is the data of RESET.
type ResetEvent struct {
	// Guest is true when the guest reset itself.
	Guest bool `json:"guest"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
}

// GuestPanickedEvent is the data of GUEST_PANICKED.
type GuestPanickedEvent struct {
	// Action is what QEMU does about it: pause, poweroff or run.
	Action string `json:"action"`
	// Info is the hypervisor-specific panic information (hyper-v, s390),
	// absent for pvpanic.
	Info json.RawMessage `json:"info,omitempty"`
}

// timestamp is QEMU's event timestamp.
type timestamp struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

// time converts t; QEMU sends -1 when it could not read the clock.
func (t *timestamp) time() time.Time {
	if t == nil || t.Seconds < 0 || t.Microseconds < 0 {
		return time.Time{}
	}
	return time.Unix(t.Seconds, t.Microseconds*int64(time.Microsecond))
}
