package main

import (
	"strings"
	"testing"

	"github.com/vigil-vm/vigil/internal/cli"
)

// TestServerFlagsRefused: out-of-range timing flags are refused before
// anything starts, with a message naming the flag.
func TestServerFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--starting-status-hold=-1s"}, "--starting-status-hold"},
		{[]string{"--starting-status-hold=2m"}, "--starting-status-hold"},
		{[]string{"--crashloop-base-delay=0s"}, "--crashloop-base-delay"},
		{[]string{"--node-lost-after=3s"}, "--node-lost-after"},
	} {
		cmd := newServerCmd(&cli.Factory{})
		cmd.SetArgs(append(tc.args, "--data-dir", t.TempDir()))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vigil server %v: err = %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
