package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// Bounds of one Acquire: how often the store is listed again after a lost
// take-over race, and how many create transactions may conflict in total.
const (
	maxListRounds  = 64
	maxCreateTries = 512
)

// Acquire returns this node's lease, in this order of preference:
//
//  1. a lease in the store whose value names req.Node and whose subnet is
//     allocatable under cfg: it is taken over (re-written with our values
//     and our new TTL lease, in a transaction that fails if the key changed
//     since it was read); a lease naming no node (Flannel's: flanneld
//     knows a node by its address) whose PublicIP is req.PublicIP counts as
//     this node's too, so a node moved from Flannel keeps its subnet and
//     no stale lease of it is left for its peers;
//  2. req.Previous, when allocatable and free (create-only transaction);
//  3. the first free subnet from SubnetMin to SubnetMax (create-only
//     transactions; a conflict moves on to the next subnet).
//
// Other leases naming req.Node (a second one, or one outside cfg after a
// config change) are deleted. A new subnet never overlaps any subnet key in
// the store (not only an identical key): each create transaction also
// requires that no subnet key was created since the list it was chosen
// from, so no two nodes ever hold overlapping subnets. When every subnet is
// held by other nodes the error wraps lease.ErrNoFreeSubnet.
//
// Acquire refuses (wrapping lease.ErrIncompatibleConfig) when this node's
// lease or previous subnet lies in Network with another prefix length than
// cfg.SubnetLen (the net-conf was changed under a running cluster). A lease
// of this node that is not allocatable (host bits, outside the range) is
// deleted, never taken over. A previous lease of this Store is replaced (its
// TTL lease revoked).
func (s *Store) Acquire(ctx context.Context, cfg netconf.Config, req lease.Request) (lease.Lease, error) {
	if err := req.Check(); err != nil {
		return lease.Lease{}, err
	}
	if cfg.SubnetCount() == 0 {
		return lease.Lease{}, fmt.Errorf("lease for node %s: the network config has no subnets (SubnetMin %s, SubnetMax %s, SubnetLen %d): pass a config from netconf.Parse", req.Node, cfg.SubnetMin, cfg.SubnetMax, cfg.SubnetLen)
	}
	g, err := s.c.Grant(ctx, int64(s.ttl/time.Second))
	if err != nil {
		return lease.Lease{}, fmt.Errorf("lease for node %s: etcd grant of a %s TTL lease: %w", req.Node, s.ttl, err)
	}
	l, err := s.acquire(ctx, cfg, req, g.ID)
	if err != nil {
		s.revoke(g.ID)
		return lease.Lease{}, err
	}
	s.mu.Lock()
	old := s.own
	s.own = &owned{lease: l, id: g.ID, cfg: cfg, req: req}
	s.mu.Unlock()
	if old != nil && old.id != g.ID {
		s.revoke(old.id)
	}
	return l, nil
}

// acquire finds and claims a subnet for req, attaching etcd lease id.
func (s *Store) acquire(ctx context.Context, cfg netconf.Config, req lease.Request, id clientv3.LeaseID) (lease.Lease, error) {
	creates := 0
	for range maxListRounds {
		resp, err := s.c.Get(ctx, lease.SubnetsPrefix(s.prefix), clientv3.WithPrefix())
		if err != nil {
			return lease.Lease{}, fmt.Errorf("lease for node %s: etcd list %s: %w", req.Node, lease.SubnetsPrefix(s.prefix), err)
		}
		taken := newHeld(cfg.SubnetLen)
		var mine []*mvccpb.KeyValue
		var wrongLen []string
		for _, kv := range resp.Kvs {
			sn, err := lease.ParseSubnetKey(string(kv.Key))
			if err != nil {
				continue // not a subnet key: cannot collide with one we create
			}
			if sn.Masked() == sn {
				// A key with host bits is rejected by every node
				// (lease.Check): it blocks nothing.
				taken.add(sn)
			}
			var a lease.Attrs
			if len(kv.Value) <= lease.MaxValueSize && json.Unmarshal(kv.Value, &a) == nil && req.Owns(a) {
				mine = append(mine, kv)
				if cfg.Network.Overlaps(sn.Masked()) && sn.Bits() != cfg.SubnetLen {
					wrongLen = append(wrongLen, string(kv.Key))
				}
			}
		}
		if p := req.Previous; p.IsValid() && cfg.Network.Overlaps(p) && p.Bits() != cfg.SubnetLen {
			wrongLen = append(wrongLen, "the subnet file's "+p.String())
		}
		if len(wrongLen) > 0 {
			return lease.Lease{}, fmt.Errorf("%w: node %s: the network config says SubnetLen %d, but this node's pods use %s: the net-conf of a running cluster cannot change its subnet length (pods would get addresses of other nodes); restore the old config under %s, or drain the node, delete its lease and subnet file first",
				lease.ErrIncompatibleConfig, req.Node, cfg.SubnetLen, strings.Join(wrongLen, ", "), ConfigKey(s.prefix))
		}

		// 1. Our own lease, the best one first.
		slices.SortFunc(mine, func(x, y *mvccpb.KeyValue) int { return cmp.Compare(s.rank(cfg, req, x), s.rank(cfg, req, y)) })
		for i, kv := range mine {
			sn, _ := lease.ParseSubnetKey(string(kv.Key))
			if i > 0 || !cfg.Allocatable(sn) {
				s.dropStale(ctx, req.Node, kv)
				mine[i] = nil
			}
		}
		if len(mine) > 0 && mine[0] != nil {
			kv := mine[0]
			sn, _ := lease.ParseSubnetKey(string(kv.Key))
			l := req.Lease(sn)
			ok, err := s.txn(ctx, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision),
				clientv3.OpPut(string(kv.Key), string(l.Encode()), clientv3.WithLease(id)))
			if err != nil {
				return lease.Lease{}, fmt.Errorf("lease %s for node %s: take over: %w", sn, req.Node, err)
			}
			if ok {
				s.log.Info("lease: took over this node's existing lease", "node", req.Node, "subnet", sn)
				return l, nil
			}
			continue // it changed under us: list again
		}

		// 2. The subnet of the node's last subnet file, 3. the first free one.
		try := func(sn netip.Prefix) (bool, error) {
			creates++
			l := req.Lease(sn)
			key := lease.SubnetKey(s.prefix, sn)
			// Nothing created under the subnets prefix since the list:
			// the overlap check above still holds when the put commits.
			resp2, err := s.c.Txn(ctx).If(
				clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(lease.SubnetsPrefix(s.prefix)).WithPrefix(), "<", resp.Header.Revision+1),
			).Then(clientv3.OpPut(key, string(l.Encode()), clientv3.WithLease(id))).Commit()
			if err != nil {
				return false, fmt.Errorf("lease %s for node %s: create: %w", sn, req.Node, err)
			}
			return resp2.Succeeded, nil
		}
		if creates >= maxCreateTries {
			return lease.Lease{}, fmt.Errorf("lease for node %s: gave up after %d conflicting attempts (many nodes allocating at once?): try again", req.Node, creates)
		}
		if cfg.Allocatable(req.Previous) && !taken.overlaps(req.Previous) {
			ok, err := try(req.Previous)
			if err != nil {
				return lease.Lease{}, err
			}
			if ok {
				s.log.Info("lease: got the node's previous subnet back", "node", req.Node, "subnet", req.Previous)
				return req.Lease(req.Previous), nil
			}
			continue // a subnet was created meanwhile: list again
		}
		free := false
		for sn := range cfg.Subnets() {
			if taken.overlaps(sn) {
				continue
			}
			free = true
			ok, err := try(sn)
			if err != nil {
				return lease.Lease{}, err
			}
			if ok {
				s.log.Info("lease: allocated a new subnet", "node", req.Node, "subnet", sn)
				return req.Lease(sn), nil
			}
			break // a subnet was created meanwhile: list again
		}
		if free {
			continue
		}
		held := 0
		for sn := range cfg.Subnets() {
			if taken.overlaps(sn) {
				held++
			}
		}
		return lease.Lease{}, fmt.Errorf("%w for node %s: all %d /%d subnets from %s to %s are leased by other nodes (%d leases under %s): widen SubnetMin/SubnetMax or Network, or remove leases of nodes that are gone",
			lease.ErrNoFreeSubnet, req.Node, cfg.SubnetCount(), cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax, held, lease.SubnetsPrefix(s.prefix))
	}
	return lease.Lease{}, fmt.Errorf("lease for node %s: its existing lease kept changing during %d attempts (another agent with the same node name?)", req.Node, maxListRounds)
}

// held is the set of subnets an allocation must not overlap (keys without
// host bits), for
// candidates that are aligned /n prefixes: keys of length n or longer block
// the one /n that contains them (a map lookup), shorter keys (rare: a
// config change or a hostile key) are checked one by one.
type held struct {
	n     int
	exact map[netip.Prefix]bool
	wide  []netip.Prefix
}

func newHeld(n int) *held { return &held{n: n, exact: map[netip.Prefix]bool{}} }

func (h *held) add(sn netip.Prefix) {
	sn = sn.Masked()
	if sn.Bits() >= h.n {
		h.exact[netip.PrefixFrom(sn.Addr(), h.n).Masked()] = true
		return
	}
	h.wide = append(h.wide, sn)
}

// overlaps reports whether the aligned /n prefix sn overlaps a held subnet.
func (h *held) overlaps(sn netip.Prefix) bool {
	if h.exact[sn] {
		return true
	}
	for _, w := range h.wide {
		if w.Overlaps(sn) {
			return true
		}
	}
	return false
}

// rank orders a node's own leases: allocatable before not, Previous first,
// then the oldest.
func (s *Store) rank(cfg netconf.Config, req lease.Request, kv *mvccpb.KeyValue) int64 {
	sn, _ := lease.ParseSubnetKey(string(kv.Key))
	switch {
	case !cfg.Allocatable(sn):
		return 1 << 62
	case sn == req.Previous:
		return -1
	}
	return kv.CreateRevision
}

// dropStale deletes one of the node's own leases that it will not use, if
// it did not change since it was read.
func (s *Store) dropStale(ctx context.Context, node string, kv *mvccpb.KeyValue) {
	ok, err := s.txn(ctx, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision), clientv3.OpDelete(string(kv.Key)))
	if err != nil || !ok {
		s.log.Warn("lease: could not delete a stale lease of this node", "node", node, "key", string(kv.Key), "err", err)
		return
	}
	s.log.Info("lease: deleted a stale lease of this node (a second one, or outside the network config)", "node", node, "key", string(kv.Key))
}

// txn runs If(cond).Then(op) and reports whether cond held.
func (s *Store) txn(ctx context.Context, cond clientv3.Cmp, op clientv3.Op) (bool, error) {
	resp, err := s.c.Txn(ctx).If(cond).Then(op).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// revoke drops an etcd lease (and the keys attached to it), best effort.
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.c.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("lease: revoke failed; the key expires with its TTL", "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

// Release deletes this node's lease, only if it is still attached to our
// etcd lease (not re-taken by anyone), and revokes the etcd lease. Without a
// lease it does nothing.
func (s *Store) Release(ctx context.Context) error {
	s.mu.Lock()
	own := s.own
	s.mu.Unlock()
	if own == nil {
		return nil
	}
	key := lease.SubnetKey(s.prefix, own.lease.Subnet)
	ok, err := s.txn(ctx, clientv3.Compare(clientv3.LeaseValue(key), "=", own.id), clientv3.OpDelete(key))
	if err != nil {
		return fmt.Errorf("release lease %s of node %s: %w", own.lease.Subnet, own.req.Node, err)
	}
	if !ok {
		s.log.Info("lease: release: the key is no longer ours; left it alone", "key", key)
	}
	if _, err := s.c.Revoke(ctx, own.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("release lease %s of node %s: revoke: %w", own.lease.Subnet, own.req.Node, err)
	}
	s.mu.Lock()
	if s.own == own {
		s.own = nil
	}
	s.mu.Unlock()
	return nil
}
