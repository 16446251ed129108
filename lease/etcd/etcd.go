// Package etcd keeps the network config and the subnet leases in etcd v3,
// under the key layout of package lease (encoding lives there). Store is the
// lease.Store the agent uses: atomic allocation, TTL renewal, a watch of all
// leases (docs/leases.md). Put and List are one-shot helpers for the lab,
// snapshot and tests. Package etcdtest starts a real etcd for tests.
package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
)

// Put writes (or overwrites) one lease. ttlSeconds > 0 attaches an etcd lease
// so the key disappears when it is not renewed.
func Put(ctx context.Context, c *clientv3.Client, prefix string, l lease.Lease, ttlSeconds int64) error {
	key := l.Key(prefix)
	var opts []clientv3.OpOption
	if ttlSeconds > 0 {
		g, err := c.Grant(ctx, ttlSeconds)
		if err != nil {
			return fmt.Errorf("lease %s: grant ttl: %w", key, err)
		}
		opts = append(opts, clientv3.WithLease(g.ID))
	}
	if _, err := c.Put(ctx, key, string(l.Encode()), opts...); err != nil {
		return fmt.Errorf("lease %s: put: %w", key, err)
	}
	return nil
}

// List returns every lease under prefix. A key that does not decode is an
// error naming the key: a corrupt store must be seen, not skipped.
func List(ctx context.Context, c *clientv3.Client, prefix string) ([]lease.Lease, error) {
	resp, err := c.Get(ctx, lease.SubnetsPrefix(prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list leases under %s: %w", prefix, err)
	}
	out := make([]lease.Lease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		l, err := lease.Decode(string(kv.Key), kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}
