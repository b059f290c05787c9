// Package apiservertest runs a real API server on a real embedded etcd for
// one test, so that tests of the API, of its clients and of the controllers
// exercise the server users run, never a fake of it.
package apiservertest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

// Config configures a test server.
type Config struct {
	// API configures the API server; Store is filled in, and Log when nil
	// (warnings and errors go to the test log).
	API apiserver.Config
	// Fsync keeps etcd's fsync on, as users run it (benchmarks); tests
	// leave it off.
	Fsync bool
}

// Server is a running API server over an embedded etcd member.
type Server struct {
	// URL is the server's base URL (http://127.0.0.1:port).
	URL string
	// API is the API server.
	API *apiserver.Server
	// Etcd is the embedded etcd member; Store is the store on it.
	Etcd  *store.Embedded
	Store *store.Store
}

// Start starts an embedded etcd and an API server over it, and waits until
// the server is ready. Everything stops when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	var e *store.Embedded
	if cfg.Fsync {
		var err error
		e, err = store.StartEmbedded(store.EmbeddedConfig{DataDir: t.TempDir(), Logger: etcdtest.Logger(t)})
		if err != nil {
			t.Fatalf("starting embedded etcd: %v", err)
		}
		t.Cleanup(e.Close)
	} else {
		e = etcdtest.Start(t)
	}
	st := store.New(e.Client)
	api := cfg.API
	api.Store = st
	if api.Log == nil {
		api.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := apiserver.New(api)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	ts := httptest.NewServer(srv.Handler())
	// Cleanups run last-registered first: stop the API's background work
	// (which ends every open watch), then the listener, then etcd.
	t.Cleanup(func() {
		cancel()
		<-done
		ts.Close()
	})
	select {
	case <-srv.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the API server did not become ready within 30s")
	}
	return &Server{URL: ts.URL, API: srv, Etcd: e, Store: st}
}

// Client returns a client of the server.
func (s *Server) Client(t testing.TB, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Server = s.URL
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Compact compacts etcd's history up to its current revision and returns
// that revision: every older revision is gone (lists continued from it
// answer 410).
func (s *Server) Compact(t testing.TB) int64 {
	t.Helper()
	ctx := context.Background()
	rev, err := s.Store.CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Etcd.Client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compacting etcd to %d: %v", rev, err)
	}
	return rev
}
