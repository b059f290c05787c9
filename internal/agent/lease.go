package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// The heartbeat. The agent streams a beat every LeaseRenewInterval to the
// API server, which acknowledges each once it is committed to etcd in the
// server's HeartbeatDigest: a renewal, as a Lease update is. A renewal
// counts from the moment its beat was sent, never later, so the fence
// deadline is never behind the control plane's view of it. Whenever an
// interval passes without an acknowledged beat (the server refuses the
// stream, a proxy buffers it, it stalls, it is being opened again), the
// agent renews its Lease by a plain update at the next interval instead,
// while the stream is tried again, on the next server when there are
// several. The Lease is also written when the agent starts.
//
// Beats go out on the wall clock's interval boundaries (every whole second
// by default), so that the beats of all nodes reach a server together: it
// commits them in one write, and wakes once a second rather than once per
// node and second.

// heartbeat keeps the node's heartbeat going until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.leaseFallback(ctx) })
	for ctx.Err() == nil {
		err := a.streamBeats(ctx)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("the heartbeat stream failed; the lease is renewed instead until it works again", "err", err)
		a.cfg.Client.NextServer()
		if !a.waitBeat(ctx, 0) {
			return
		}
	}
}

// leaseFallback writes the Lease at once, then in the middle of every
// interval at which no renewal was sent for more than an interval: the
// beat of the interval's start is not acknowledged. Each attempt is given
// one interval, so that a request stuck on a dead connection does not hold
// up the next one, on a new connection.
func (a *Agent) leaseFallback(ctx context.Context) {
	leases := a.cfg.Client.Leases(v1.NodeLeaseNamespace)
	var cur *v1.Lease
	for {
		a.fenceMu.Lock()
		since := a.cfg.Now().Sub(a.fence.lastRenew)
		a.fenceMu.Unlock()
		if cur == nil || since > a.cfg.LeaseRenewInterval {
			start := a.cfg.Now()
			next, err := a.renewOnce(ctx, leases, cur)
			switch {
			case err == nil:
				cur = next
				a.renewed(start)
			case ctx.Err() == nil:
				a.log.Warn("renewing the node lease failed", "err", err)
				cur = nil // read it again next time
			}
		}
		if !a.waitBeat(ctx, a.cfg.LeaseRenewInterval/2) {
			return
		}
	}
}

// waitBeat waits for the next interval boundary, shifted by offset; false
// if ctx ended first.
func (a *Agent) waitBeat(ctx context.Context, offset time.Duration) bool {
	t := time.NewTimer(a.untilBeat(offset))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// untilBeat is the time to the next interval boundary of the wall clock,
// shifted by offset (never zero, at most one interval).
func (a *Agent) untilBeat(offset time.Duration) time.Duration {
	now := a.cfg.Now().Add(-offset)
	return now.Truncate(a.cfg.LeaseRenewInterval).Add(a.cfg.LeaseRenewInterval).Sub(now)
}

// streamBeats runs one heartbeat stream until it fails or ctx ends: a beat
// at once, then one on every interval boundary.
func (a *Agent) streamBeats(ctx context.Context) error {
	interval := a.cfg.LeaseRenewInterval
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The server must answer within an interval, or another one is tried.
	opening := time.AfterFunc(interval, cancel)
	s, err := a.cfg.Client.Heartbeat(ctx, a.cfg.Node)
	if !opening.Stop() && err == nil {
		err = errors.New("the server took too long to accept the stream")
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		return err
	}
	acks := make(chan uint64)
	ackErr := make(chan error, 1)
	done := make(chan struct{})
	reader := make(chan struct{})
	defer func() { close(done); s.Close(); <-reader }()
	go func() {
		defer close(reader)
		for {
			n, err := s.Ack()
			if err != nil {
				ackErr <- err
				return
			}
			select {
			case acks <- n:
			case <-done:
				return
			}
		}
	}()

	sent := map[uint64]time.Time{} // beats not acknowledged yet, by number
	var n uint64
	beat := func() error {
		n++
		sent[n] = a.cfg.Now()
		return s.Beat(n)
	}
	if err := beat(); err != nil {
		return err
	}
	t := time.NewTimer(a.untilBeat(0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ackErr:
			return err
		case k := <-acks:
			at, ok := sent[k]
			if !ok {
				return fmt.Errorf("the server acknowledged beat %d, which is not waiting", k)
			}
			for j := range sent {
				if j <= k {
					delete(sent, j)
				}
			}
			a.renewed(at)
		case <-t.C:
			now := a.cfg.Now()
			for k, at := range sent {
				if now.Sub(at) > 2*interval {
					return fmt.Errorf("beat %d is not acknowledged after %s", k, now.Sub(at).Round(time.Millisecond))
				}
			}
			if err := beat(); err != nil {
				return err
			}
			t.Reset(a.untilBeat(0))
		}
	}
}

func (a *Agent) renewOnce(ctx context.Context, leases *client.Resource[*v1.Lease], cur *v1.Lease) (*v1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseRenewInterval)
	defer cancel()
	now := metav1.NewMicroTime(a.cfg.Now())
	holder := a.cfg.Node
	dur := int32(a.cfg.LeaseDuration / time.Second)
	if cur == nil {
		got, err := leases.Get(ctx, a.cfg.Node)
		if apierrors.IsNotFound(err) {
			l := &v1.Lease{
				TypeMeta:   v1.TypeMetaFor(v1.KindLease),
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Node, Namespace: v1.NodeLeaseNamespace},
				Spec:       v1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, AcquireTime: &now, RenewTime: &now},
			}
			return leases.Create(ctx, l, client.WriteOptions{})
		}
		if err != nil {
			return nil, err
		}
		cur = got
	}
	next := cur.DeepCopy()
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &holder, &dur, &now
	return leases.Update(ctx, next, client.WriteOptions{})
}
