// Command vigil is Vigil's one binary: the daemons (vigil server, vigil
// agent) and the kubectl/virtctl-style client verbs.
package main

import (
	"os"

	"github.com/vigil-vm/vigil/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, version, newServerCmd, newAgentCmd, newWatchdogCmd, newBenchCmd))
}
