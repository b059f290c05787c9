package agent

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// renewLease renews the node's Lease every LeaseRenewInterval until ctx ends.
func (a *Agent) renewLease(ctx context.Context) {
	leases := a.cfg.Client.Leases(v1.NodeLeaseNamespace)
	var cur *v1.Lease
	t := time.NewTicker(a.cfg.LeaseRenewInterval)
	defer t.Stop()
	for {
		next, err := a.renewOnce(ctx, leases, cur)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("renewing the node lease failed", "err", err)
			cur = nil // read it again next time
		} else {
			cur = next
			a.renewed()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) renewOnce(ctx context.Context, leases *client.Resource[*v1.Lease], cur *v1.Lease) (*v1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseRenewInterval*2)
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
