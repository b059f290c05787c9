// Package etcdtest starts an embedded etcd member for one test: free ports,
// a temporary data directory, fsync off, and etcd's own logs at error level
// routed to the test log (shown only when the test fails or runs with -v).
package etcdtest

import (
	"fmt"
	"net"
	"strings"
	"sync"
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

// StartCluster starts an etcd cluster of n embedded members, all in this
// process, each with its own ports and data directory; they stop when the
// test ends (a test may Close one earlier to lose it). Endpoints lists the
// members' client URLs, comma-separated, as --etcd-endpoints takes them.
func StartCluster(t testing.TB, n int) (members []*store.Embedded, endpoints string) {
	t.Helper()
	names := make([]string, n)
	peers := make([]string, n)
	initial := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("member-%d", i+1)
		peers[i] = freeURL(t)
		initial[i] = names[i] + "=" + peers[i]
	}
	members = make([]*store.Embedded, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		// Members start together: each waits for a quorum of the others.
		wg.Go(func() {
			members[i], errs[i] = store.StartEmbedded(store.EmbeddedConfig{
				DataDir: t.TempDir(), Name: names[i], PeerURL: peers[i],
				InitialCluster: strings.Join(initial, ","), UnsafeNoFsync: true, Logger: Logger(t),
			})
		})
	}
	wg.Wait()
	urls := make([]string, 0, n)
	for i, m := range members {
		if m != nil {
			t.Cleanup(m.Close)
			urls = append(urls, m.ClientURL)
		}
		if errs[i] != nil {
			t.Fatalf("starting etcd member %s: %v", names[i], errs[i])
		}
	}
	return members, strings.Join(urls, ",")
}

func freeURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
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
