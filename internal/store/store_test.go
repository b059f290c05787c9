package store_test

import (
	"testing"

	"github.com/vigil-vm/vigil/internal/store"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
	"github.com/vigil-vm/vigil/internal/store/storetest"
)

// TestConformanceInProcess runs the suite over the in-process client that
// `vigil server` uses with its embedded etcd.
func TestConformanceInProcess(t *testing.T) {
	e := etcdtest.Start(t)
	storetest.Run(t, func(t *testing.T) *store.Store { return store.New(e.Client) })
}

// TestConformanceNetwork runs the suite over a gRPC client, the way a server
// reaches an external etcd cluster.
func TestConformanceNetwork(t *testing.T) {
	e := etcdtest.Start(t)
	c := etcdtest.NewClient(t, e)
	storetest.Run(t, func(t *testing.T) *store.Store { return store.New(c) })
}
