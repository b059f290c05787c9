package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// escapeByte is ^] (ctrl-]), which detaches from a console in raw mode.
const escapeByte = 0x1d

// ConsoleOptions holds the flags of console.
type ConsoleOptions struct {
	f       *Factory
	streams Streams
	Timeout time.Duration
	Log     bool

	name string
}

// NewConsoleCmd returns `vigil console`.
func NewConsoleCmd(f *Factory, streams Streams) *cobra.Command {
	o := &ConsoleOptions{f: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a VMI's serial console",
		Long: `Attach to the serial console of the VMI NAME, once it is Running.

On a terminal the console is raw: every key goes to the guest, and ^] (ctrl-])
detaches. When standard input is not a terminal, it is sent to the guest as it
is, and the guest's output is printed until the console closes (the guest
powers off) or the command is interrupted.

With --log, print what the guest has written on its console during its run,
as the node keeps it, and exit.`,
		Example: "  vigil console myvm\n  echo poweroff | vigil console myvm\n  vigil console --log myvm",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the VMI to be Running")
	cmd.Flags().BoolVar(&o.Log, "log", false, "print the console log of the VMI's run and exit")
	return cmd
}

// Complete checks the arguments.
func (o *ConsoleOptions) Complete(args []string) error {
	if len(args) != 1 {
		return usagef("usage: vigil console NAME")
	}
	if o.Timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	o.name = args[0]
	return nil
}

// Run attaches, or prints the log.
func (o *ConsoleOptions) Run(ctx context.Context) error {
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	vmis := c.VirtualMachineInstances(o.f.Namespace)
	if o.Log {
		b, err := vmis.ConsoleLog(ctx, o.name)
		if err != nil {
			return fmt.Errorf("Can't read the console log of VMI %s: %s", o.name, message(err))
		}
		_, err = o.streams.Out.Write(b)
		return err
	}
	if err := o.waitRunning(ctx, vmis); err != nil {
		return err
	}
	conn, err := vmis.Console(ctx, o.name)
	if err != nil {
		return fmt.Errorf("Can't connect to websocket (%s): %s", o.name, message(err))
	}
	defer conn.Close()
	if f, ok := o.streams.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return o.raw(ctx, f, conn)
	}
	return o.pipe(ctx, conn)
}

// waitRunning waits for the VMI to be Running, up to the timeout.
func (o *ConsoleOptions) waitRunning(ctx context.Context, vmis *client.VMIs) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		vmi, err := vmis.Get(ctx, o.name)
		switch {
		case err == nil && vmi.Status.Phase == v1.Running:
			return nil
		case err == nil && vmi.Status.Phase.IsFinal():
			return fmt.Errorf("VMI %s is %s: it has no console any more (vigil console --log %s shows what it printed)", o.name, vmi.Status.Phase, o.name)
		case err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil:
			return fmt.Errorf("Can't access VMI %s: %s", o.name, message(err))
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s waiting for VMI %s to be Running", o.Timeout, o.name)
			}
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pipe sends standard input to the guest and prints its output until the
// console closes or ctx ends.
func (o *ConsoleOptions) pipe(ctx context.Context, conn io.ReadWriteCloser) error {
	go func() { _, _ = io.Copy(conn, o.streams.In) }()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, err := io.Copy(o.streams.Out, conn)
	if ctx.Err() != nil {
		return nil // interrupted
	}
	if err != nil && !isClosed(err) {
		return fmt.Errorf("the console of %s: %w", o.name, err)
	}
	return nil
}

// raw runs an interactive session on a terminal until ^].
func (o *ConsoleOptions) raw(ctx context.Context, tty *os.File, conn io.ReadWriteCloser) error {
	state, err := term.MakeRaw(int(tty.Fd()))
	if err != nil {
		return fmt.Errorf("setting the terminal to raw mode: %w", err)
	}
	defer term.Restore(int(tty.Fd()), state)
	fmt.Fprintf(o.streams.ErrOut, "Successfully connected to %s console. The escape sequence is ^]\r\n", o.name)
	done := make(chan struct{}, 2)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := tty.Read(buf)
			if i := bytes.IndexByte(buf[:n], escapeByte); i >= 0 {
				_, _ = conn.Write(buf[:i])
				break
			}
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	go func() { _, _ = io.Copy(o.streams.Out, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	conn.Close()
	fmt.Fprint(o.streams.ErrOut, "\r\n")
	return nil
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) || errors.Is(err, context.Canceled)
}
