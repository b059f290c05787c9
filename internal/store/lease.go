package store

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseManager hands out etcd leases for keys with a time to live, reusing
// one lease for all keys created within a short window instead of granting
// one per key (as kube-apiserver does for Events). A key created with ttl
// expires between ttl and ttl plus the reuse window (at most 10% of ttl).
type leaseManager struct {
	c *clientv3.Client

	mu     sync.Mutex // guards leases
	leases map[time.Duration]grantedLease
}

type grantedLease struct {
	id      clientv3.LeaseID
	granted time.Time
}

func newLeaseManager(c *clientv3.Client) *leaseManager {
	return &leaseManager{c: c, leases: map[time.Duration]grantedLease{}}
}

func (m *leaseManager) leaseFor(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	reuse := min(ttl/10, time.Minute)
	now := time.Now()
	m.mu.Lock()
	if l, ok := m.leases[ttl]; ok && now.Sub(l.granted) < reuse {
		m.mu.Unlock()
		return l.id, nil
	}
	m.mu.Unlock()
	secs := int64((ttl + reuse + time.Second - 1) / time.Second)
	resp, err := m.c.Grant(ctx, max(secs, 1))
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	m.leases[ttl] = grantedLease{id: resp.ID, granted: now}
	m.mu.Unlock()
	return resp.ID, nil
}
