package qmp

import (
	"context"
	"errors"
)

// StatusInfo is the reply of query-status.
type StatusInfo struct {
	// Running is true while the vCPUs run.
	Running bool `json:"running"`
	// Status is QEMU's RunState: prelaunch (started with -S), running,
	// paused, shutdown, guest-panicked, internal-error, ...
	Status string `json:"status"`
}

// Status asks QEMU what the machine is doing (query-status).
func (c *Client) Status(ctx context.Context) (StatusInfo, error) {
	var s StatusInfo
	if err := c.Run(ctx, "query-status", nil, &s); err != nil {
		return StatusInfo{}, err
	}
	return s, nil
}

// Stop pauses the vCPUs (stop).
func (c *Client) Stop(ctx context.Context) error { return c.Run(ctx, "stop", nil, nil) }

// Cont starts or resumes the vCPUs (cont).
func (c *Client) Cont(ctx context.Context) error { return c.Run(ctx, "cont", nil, nil) }

// SystemPowerdown presses the ACPI power button (system_powerdown); the
// guest decides what to do about it.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Run(ctx, "system_powerdown", nil, nil)
}

// SystemReset resets the machine at once (system_reset), like the reset
// button.
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Run(ctx, "system_reset", nil, nil)
}

// keyValue is QAPI's KeyValue, a key by its QKeyCode name.
type keyValue struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

type sendKeyArgs struct {
	Keys []keyValue `json:"keys"`
}

// SendCtrlAltDel presses ctrl-alt-delete on the guest's keyboard (send-key).
func (c *Client) SendCtrlAltDel(ctx context.Context) error {
	return c.Run(ctx, "send-key", sendKeyArgs{Keys: []keyValue{
		{Type: "qcode", Data: "ctrl"},
		{Type: "qcode", Data: "alt"},
		{Type: "qcode", Data: "delete"},
	}}, nil)
}

// Quit makes QEMU exit (quit). QEMU may close the socket before or after it
// replies: once quit has been sent, a disconnection counts as success. A
// client already disconnected before quit was sent returns ErrDisconnected.
func (c *Client) Quit(ctx context.Context) error {
	sent, err := c.run(ctx, "quit", nil, nil)
	if sent && errors.Is(err, ErrDisconnected) {
		return nil
	}
	return err
}
