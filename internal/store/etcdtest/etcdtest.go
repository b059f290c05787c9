// Package etcdtest starts an embedded etcd member for one test: free ports,
// a temporary data directory, fsync off, and etcd's own logs at error level
// routed to the test log (shown only when the test fails or runs with -v).
package etcdtest

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/vigil-vm/vigil/internal/store"
)

// Start starts an embedded etcd that stops when the test ends.
func Start(t testing.TB) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(store.EmbeddedConfig{
		DataDir:       t.TempDir(),
		UnsafeNoFsync: true,
		Logger:        Logger(t),
	})
	if err != nil {
		t.Fatalf("starting embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// NewStore returns a Store on a fresh embedded etcd.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	return store.New(Start(t).Client)
}

// NewClient returns a network (gRPC) client of e, closed when the test ends.
func NewClient(t testing.TB, e *store.Embedded) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Logger is a zap logger that writes error-level logs to the test log.
func Logger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel))
}
