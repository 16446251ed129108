package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
)

// ReleaseNode deletes the lease held by the named node, whoever's client
// wrote it (`twill uninstall` runs after the agent is gone). A key is only
// deleted if it still holds the value read (no race with a node taking it
// over). It returns the released subnet, or ok false when the node holds no
// lease.
func (s *Store) ReleaseNode(ctx context.Context, node string) (released lease.Lease, ok bool, err error) {
	resp, err := s.c.Get(ctx, lease.SubnetsPrefix(s.prefix), clientv3.WithPrefix())
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("release lease of node %s: list: %w", node, err)
	}
	for _, kv := range resp.Kvs {
		l, err := lease.Decode(string(kv.Key), kv.Value)
		if err != nil || l.Attrs.Node != node {
			continue
		}
		key := string(kv.Key)
		done, err := s.txn(ctx, clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision), clientv3.OpDelete(key))
		if err != nil {
			return l, false, fmt.Errorf("release lease %s of node %s: %w", l.Subnet, node, err)
		}
		if !done {
			return l, false, fmt.Errorf("release lease %s of node %s: the key changed while releasing it (is the agent still running?)", l.Subnet, node)
		}
		return l, true, nil
	}
	return lease.Lease{}, false, nil
}
