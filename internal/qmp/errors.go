package qmp

import "errors"

// ErrDisconnected matches (errors.Is) the error of every command that was
// outstanding when the connection to QEMU ended, and of every later call.
var ErrDisconnected = errors.New("qmp: disconnected")

// ErrTimeout matches (errors.Is) the error of a call whose context deadline
// passed before QEMU answered; the error matches context.DeadlineExceeded
// too.
var ErrTimeout = errors.New("qmp: timed out")

// Error is an error reply from QEMU. Class is QMP's error class (see the
// Class constants), kept so that callers can tell errors apart with
// errors.As:
//
//	var qe *qmp.Error
//	if errors.As(err, &qe) && qe.Class == qmp.ClassCommandNotFound { ... }
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// The error classes of QMP (QAPI's QapiErrorClass).
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
	ClassDeviceNotActive = "DeviceNotActive"
	ClassDeviceNotFound  = "DeviceNotFound"
	ClassKVMMissingCap   = "KVMMissingCap"
)
