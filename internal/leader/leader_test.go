package leader_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vigil-vm/vigil/internal/leader"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// deadCampaign leaves a campaign behind as a process that died would: its
// key, as etcd's election recipe writes it, on a lease that lives on for a
// minute with nobody keeping it alive.
func deadCampaign(t *testing.T, c *clientv3.Client, identity string) {
	t.Helper()
	l, err := c.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s/%x", leader.Prefix, l.ID)
	if _, err := c.Put(context.Background(), key, identity, clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
}

// run runs a candidate until the test ends and returns a channel closed
// when it first leads.
func run(t *testing.T, cfg leader.Config) (<-chan struct{}, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	led := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		first := true
		errc <- leader.Run(ctx, cfg, func(ctx context.Context) {
			if first {
				close(led)
				first = false
			}
			<-ctx.Done()
		})
	}()
	t.Cleanup(func() { cancel(); <-errc })
	return led, errc
}

// TestRestartedServerLeadsAtOnce: a server whose earlier process died
// leading revokes that campaign and leads without waiting out its lease.
func TestRestartedServerLeadsAtOnce(t *testing.T) {
	c := etcdtest.NewClient(t, etcdtest.Start(t))
	deadCampaign(t, c, "host http://127.0.0.1:7070 /data/1234")
	deadCampaign(t, c, "host http://127.0.0.1:7070 /data/1111") // an even older one
	led, _ := run(t, leader.Config{Client: c, Identity: "host http://127.0.0.1:7070 /data/5678", Instance: "host http://127.0.0.1:7070 /data", TTL: time.Second, Log: quiet})
	select {
	case <-led:
	case <-time.After(30 * time.Second): // far below the dead lease's 60 s
		t.Fatal("the restarted server did not lead: its earlier process's campaign was not revoked")
	}
}

// TestOtherServersCampaignStands: a campaign by another instance is a live
// leader as far as anyone can tell; it is not revoked, and this candidate
// waits.
func TestOtherServersCampaignStands(t *testing.T) {
	c := etcdtest.NewClient(t, etcdtest.Start(t))
	deadCampaign(t, c, "host http://127.0.0.1:7071 /data/1234")       // another listen address
	deadCampaign(t, c, "host http://127.0.0.1:7070 /data-other/1234") // another data directory
	led, _ := run(t, leader.Config{Client: c, Identity: "host http://127.0.0.1:7070 /data/5678", Instance: "host http://127.0.0.1:7070 /data", TTL: time.Second, Log: quiet})
	select {
	case <-led:
		t.Fatal("led while another server's campaign was live")
	case <-time.After(3 * time.Second):
	}
	resp, err := c.Get(context.Background(), leader.Prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 3 {
		t.Errorf("%d campaigns, want the two others' and this one's", len(resp.Kvs))
	}
}

// TestIdentityMustExtendInstance: a mismatched identity is refused with an
// error naming both, rather than revoking the wrong campaigns.
func TestIdentityMustExtendInstance(t *testing.T) {
	c := etcdtest.NewClient(t, etcdtest.Start(t))
	err := leader.Run(context.Background(), leader.Config{Client: c, Identity: "a/1", Instance: "b", Log: quiet}, func(context.Context) {})
	if err == nil || !strings.Contains(err.Error(), `"a/1"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("mismatched identity: %v", err)
	}
}
