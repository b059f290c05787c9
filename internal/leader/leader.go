// Package leader elects one leader among the vigil servers that share an
// etcd cluster, with etcd's own election recipe: each candidate holds a
// session lease, the oldest campaign wins, and a leader whose session
// expires (its process died or lost etcd) is replaced within the session
// TTL. The controllers run only while their server leads.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Prefix is the etcd prefix of the controllers' election.
const Prefix = "/vigil/leader/controllers"

// Config configures an election.
type Config struct {
	Client *clientv3.Client
	// Identity names this candidate: Instance, a slash, and something
	// unique to this process (its PID, say).
	Identity string
	// Instance, when set, names this server apart from its process: its
	// host, listen address and data directory, which no two live servers
	// share. A candidate that finds a campaign of its own instance by an
	// earlier process revokes it at once instead of waiting out its TTL:
	// that process is gone, since this one holds its listen address. So a
	// server that crashed and restarted leads again at once.
	Instance string
	// TTL is the session lease: a dead leader is replaced within it (default 5s).
	TTL time.Duration
	Log *slog.Logger
}

// Run campaigns until ctx ends. Each time this candidate becomes leader it
// calls lead with a context that is cancelled when leadership is lost (the
// session expired) or ctx ends, and waits for lead to return before
// campaigning again.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Instance != "" {
		if !strings.HasPrefix(cfg.Identity, cfg.Instance+"/") {
			return fmt.Errorf("leader election: identity %q does not start with instance %q and a slash", cfg.Identity, cfg.Instance)
		}
		if err := reclaim(ctx, cfg); err != nil {
			cfg.Log.Warn("leader election: could not revoke the campaign of this server's earlier process; waiting for it to expire", "err", err)
		}
	}
	for ctx.Err() == nil {
		if err := campaign(ctx, cfg, lead); err != nil && ctx.Err() == nil {
			cfg.Log.Warn("leader election: campaign failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// reclaim revokes the leases of campaigns by earlier processes of this
// server instance.
func reclaim(ctx context.Context, cfg Config) error {
	resp, err := cfg.Client.Get(ctx, Prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("listing the campaigns: %w", err)
	}
	for _, kv := range resp.Kvs {
		id := string(kv.Value)
		if id == cfg.Identity || !strings.HasPrefix(id, cfg.Instance+"/") {
			continue
		}
		if _, err := cfg.Client.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("revoking the campaign of %s: %w", id, err)
		}
		cfg.Log.Info("revoked the campaign of this server's earlier process", "identity", id)
	}
	return nil
}

func campaign(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	session, err := concurrency.NewSession(cfg.Client, concurrency.WithTTL(int((cfg.TTL+time.Second-1)/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("opening a session: %w", err)
	}
	defer session.Close()
	e := concurrency.NewElection(session, Prefix)
	if err := e.Campaign(ctx, cfg.Identity); err != nil {
		return fmt.Errorf("campaigning: %w", err)
	}
	cfg.Log.Info("became the controllers' leader", "identity", cfg.Identity)
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leadCtx)
	}()
	select {
	case <-session.Done():
		cfg.Log.Warn("lost the controllers' leadership: the etcd session expired", "identity", cfg.Identity)
	case <-ctx.Done():
	case <-done:
	}
	cancel()
	<-done
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	_ = e.Resign(rctx) // hand over at once on a clean stop
	return nil
}
