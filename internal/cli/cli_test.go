package cli_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/vigil-vm/vigil/internal/cli"
	"github.com/vigil-vm/vigil/internal/server"
)

// TestScripts runs the CLI scripts in testdata/script against a server
// started in-process for each script. In a script, `vigil ARGS` runs the
// CLI in-process with VIGIL_SERVER pointing at that server; `! vigil`
// expects it to fail.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			s, err := server.Start(context.Background(), server.Config{
				DataDir: env.WorkDir + "/server", Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				return err
			}
			env.Defer(s.Close)
			env.Setenv("VIGIL_SERVER", s.URL)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"vigil": runVigil,
			// sleep DURATION, for watches that should see a change.
			"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
				d, err := time.ParseDuration(args[0])
				ts.Check(err)
				time.Sleep(d)
			},
		},
	})
}

func runVigil(ts *testscript.TestScript, neg bool, args []string) {
	var stdin io.Reader = strings.NewReader("")
	if len(args) > 1 && args[0] == "<" {
		stdin = strings.NewReader(ts.ReadFile(args[1]))
		args = args[2:]
	}
	// The CLI runs in this process, whose directory is not the script's:
	// make file arguments absolute.
	args = append([]string(nil), args...)
	for i := 0; i < len(args); i++ {
		switch {
		case (args[i] == "-f" || args[i] == "--filename") && i+1 < len(args) && args[i+1] != "-":
			args[i+1] = ts.MkAbs(args[i+1])
			i++
		case strings.HasPrefix(args[i], "--filename="):
			args[i] = "--filename=" + ts.MkAbs(strings.TrimPrefix(args[i], "--filename="))
		}
	}
	var out, errOut bytes.Buffer
	code := cli.Main(args, cli.Streams{In: stdin, Out: &out, ErrOut: &errOut, Getenv: ts.Getenv}, "test")
	_, _ = ts.Stdout().Write(out.Bytes())
	_, _ = ts.Stderr().Write(errOut.Bytes())
	switch {
	case code != 0 && !neg:
		ts.Fatalf("vigil %s: exit code %d\n%s", strings.Join(args, " "), code, errOut.String())
	case code == 0 && neg:
		ts.Fatalf("vigil %s: succeeded, want a failure", strings.Join(args, " "))
	}
}
