package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// NewRoot returns the vigil command with the client verbs and the given
// daemon commands (server, agent).
func NewRoot(streams Streams, version string, daemons ...func(*Factory) *cobra.Command) *cobra.Command {
	f := &Factory{streams: streams}
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Vigil runs virtual machines declaratively and keeps them in the state you asked for",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	f.addFlags(root)
	root.AddCommand(
		NewApplyCmd(f, streams),
		NewCreateCmd(f, streams),
		NewGetCmd(f, streams),
		NewDescribeCmd(f, streams),
		NewDeleteCmd(f, streams),
		NewEditCmd(f, streams),
		NewStartCmd(f, streams),
		NewStopCmd(f, streams),
		NewRestartCmd(f, streams),
		NewPauseCmd(f, streams, true),
		NewPauseCmd(f, streams, false),
		NewSoftRebootCmd(f, streams),
		NewConsoleCmd(f, streams),
	)
	for _, d := range daemons {
		root.AddCommand(d(f))
	}
	return root
}

// Main runs the vigil command with args and returns the exit code: 0 on
// success, 1 when a request failed or was refused (the server's message is
// printed), 2 for usage errors.
func Main(args []string, streams Streams, version string, daemons ...func(*Factory) *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot(streams, version, daemons...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(streams.ErrOut, "error:", message(err))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// message is what the user sees of an error: the server's own message for
// API errors.
func message(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return se.ErrStatus.Message
	}
	return err.Error()
}

// usageError is a wrong use of a command (flags, arguments).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }
