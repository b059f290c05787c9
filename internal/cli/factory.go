package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// Streams are the command's standard streams and environment.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
}

// DefaultServer is the API server the CLI talks to when neither --server
// nor VIGIL_SERVER says otherwise.
const DefaultServer = "http://127.0.0.1:7070"

// Factory holds the connection flags shared by every client verb and makes
// the API client from them.
type Factory struct {
	Server        string
	Token         string
	Namespace     string
	AllNamespaces bool
	Timeout       time.Duration
	// Env reads environment variables (os.Getenv unless a test sets it).
	Env func(string) string
	// Now is the clock used for ages in tables (time.Now unless set).
	Now     func() time.Time
	streams Streams
}

func (f *Factory) addFlags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.Server, "server", "", "the API server URL, or several separated by commas (default $VIGIL_SERVER, else "+DefaultServer+")")
	pf.StringVar(&f.Token, "token", "", "bearer token for the API server (default $VIGIL_TOKEN)")
	pf.StringVarP(&f.Namespace, "namespace", "n", v1.DefaultNamespace, "the namespace of the objects")
	pf.DurationVar(&f.Timeout, "request-timeout", 30*time.Second, "how long one API request may take")
}

// Client returns an API client for the flags and environment.
func (f *Factory) Client() (*client.Client, error) {
	env := f.getenv()
	server := f.Server
	if server == "" {
		server = env("VIGIL_SERVER")
	}
	if server == "" {
		server = DefaultServer
	}
	token := f.Token
	if token == "" {
		token = env("VIGIL_TOKEN")
	}
	c, err := client.New(client.Config{
		Server: server, Token: token, UserAgent: "vigil-cli", Timeout: f.Timeout,
		OnWarning: func(w string) { fmt.Fprintf(f.streams.ErrOut, "Warning: %s\n", w) },
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (f *Factory) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Factory) getenv() func(string) string {
	switch {
	case f.Env != nil:
		return f.Env
	case f.streams.Getenv != nil:
		return f.streams.Getenv
	}
	return os.Getenv
}
