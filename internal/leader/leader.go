// Package leader elects one leader among the vigil servers that share an
// etcd cluster, with etcd's own election recipe: each candidate holds a
// session lease, the oldest campaign wins, and a leader whose session
// expires (its process died or lost etcd) is replaced within the session
// TTL. The controllers run only while their server leads.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Prefix is the etcd prefix of the controllers' election.
const Prefix = "/vigil/leader/controllers"

// Config configures an election.
type Config struct {
	Client *clientv3.Client
	// Identity names this candidate (host and PID, say).
	Identity string
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
