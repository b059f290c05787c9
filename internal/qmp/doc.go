// Package qmp is a client of the QEMU Machine Protocol: JSON commands,
// replies and events over QEMU's monitor socket, as started with
// -qmp unix:PATH,server=on,wait=off.
//
// Dial (or NewClient over an open connection) reads QEMU's greeting and
// negotiates capabilities; Run sends one command and waits for its reply;
// typed methods (Status, Stop, Cont, SystemPowerdown, SystemReset,
// SendCtrlAltDel, Quit) wrap Run; Events delivers what QEMU announces
// (SHUTDOWN, RESET, STOP, ...), with typed structs for their data.
//
// # Design
//
// One goroutine, readLoop, owns the reading side of the socket for the
// life of the Client: it decodes every message QEMU sends, hands replies to
// their callers and events to the event buffer, and never blocks on either.
// Writes are serialized by a one-token semaphore (a channel, so that a
// caller waiting for it can give up when its context ends).
//
// Commands and replies. Each command carries an id ("id": "17"); before it
// is written, its caller registers a one-slot reply channel under that id
// in the table of outstanding commands, the FIFO that QEMU works through in
// order. readLoop looks a reply up by its id, so replies are matched even if
// they come out of order. A reply with an unknown id, an id that is not a
// string, or no id at all (QEMU sends those only for input it could not
// parse, which this client never writes) is ignored.
//
// Cancellation. Run takes a context for its whole life:
//   - while waiting for the write semaphore, or while its write has not
//     sent a byte: the command is not sent, Run returns ctx.Err() and the
//     connection goes on;
//   - in the middle of a write (some bytes sent): the stream can no longer
//     be trusted, so the connection is ended (ErrDisconnected) for everyone;
//   - after the command was sent: Run returns ctx.Err() at once, but the
//     command stays in the table until QEMU answers it (QEMU will still run
//     it; nothing can take it back), and the reply, when it comes, is
//     dropped: its slot is buffered, so readLoop never blocks on it, and it
//     is never decoded into the caller's out. A deadline that passes makes
//     Run's error match both context.DeadlineExceeded and ErrTimeout.
//
// A reply that arrives together with the cancellation or the disconnection
// wins: Run reports what QEMU answered. No command here completes on an
// event (as device_del does with DEVICE_DELETED); one that did would
// declare the event it waits for, and its caller could stop waiting for
// that event without losing the already-received reply.
//
// Disconnection. When the connection ends (QEMU exits, the socket breaks,
// QEMU sends something that is not JSON, or Close), every outstanding
// command and every later call fails with an error matching
// ErrDisconnected, Done is closed, Err says why, and Events is closed once
// the events received before the end have been buffered. Quit counts a
// disconnection after quit was sent as success, since QEMU may close the
// socket before it replies.
//
// Events. Events returns one channel with a bounded buffer (EventBuffer
// events). readLoop never waits for an event reader: when the buffer is
// full, the new event is dropped and counted (Dropped). So a slow or absent
// event reader can never stall replies; a reader that must not lose events
// reads them promptly. Events sent before a reply are in the buffer before
// the Run waiting for that reply returns.
package qmp
