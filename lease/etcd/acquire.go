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
//  1. a lease in the store that is this node's (req.Owns: its value names
//     req.Node, or names no node and carries this node's PublicIP, as
//     Flannel's leases do, so a node moved from Flannel keeps its subnet
//     and no stale lease of it is left for its peers) and whose subnets
//     (one per family the cluster runs) are allocatable under cfg: it is
//     taken over (re-written with our values and our new TTL lease, in a
//     transaction that fails if the key changed since it was read);
//  2. per family: the subnet of this node's lease when allocatable (a lease
//     that lacks a family, e.g. after EnableIPv6 was turned on, keeps its
//     other subnet and is replaced in the same transaction), else
//     req.Previous (req.PreviousV6) when allocatable and free, else the
//     first free subnet from SubnetMin to SubnetMax; the lease is created
//     under one key holding both subnets (Flannel's naming, see
//     lease.LeaseKey) in a create-only transaction.
//
// Other leases naming req.Node (a second one, or one outside cfg after a
// config change) are deleted. A new subnet never overlaps any subnet of its
// family in the store (not only an identical key): each create transaction
// also requires that no subnet key was created since the list it was
// chosen from, so no two nodes ever hold overlapping subnets. When every
// subnet of a family is held by other nodes the error wraps
// lease.ErrNoFreeSubnet.
//
// Acquire refuses (wrapping lease.ErrIncompatibleConfig) when this node's
// lease or previous subnet lies in a family's network with another prefix
// length than the config's (the net-conf was changed under a running
// cluster). A lease of this node that is not allocatable (host bits,
// outside the range) is deleted, never taken over. A previous lease of this
// Store is replaced (its TTL lease revoked).
func (s *Store) Acquire(ctx context.Context, cfg netconf.Config, req lease.Request) (lease.Lease, error) {
	if err := req.Check(cfg); err != nil {
		return lease.Lease{}, err
	}
	if len(cfg.Families()) == 0 {
		return lease.Lease{}, fmt.Errorf("lease for node %s: the network config has no subnets (no Network, no IPv6Network): pass a config from netconf.Parse", req.Node)
	}
	for _, f := range cfg.Families() {
		if pl := cfg.Pool(f); pl.Count() == 0 {
			return lease.Lease{}, fmt.Errorf("lease for node %s: the network config has no %s subnets (min %s, max %s, length %d): pass a config from netconf.Parse", req.Node, f, pl.SubnetMin, pl.SubnetMax, pl.SubnetLen)
		}
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

// entry is one subnet key of the store as acquire reads it.
type entry struct {
	kv       *mvccpb.KeyValue
	sn4, sn6 netip.Prefix
}

// subnet returns the entry's subnet of family f.
func (e entry) subnet(f netconf.Family) netip.Prefix {
	if f == netconf.IPv6 {
		return e.sn6
	}
	return e.sn4
}

// allocatable reports for how many of cfg's families the entry's subnet is
// allocatable, and whether it is for all of them.
func (e entry) allocatable(cfg netconf.Config) (n int, all bool) {
	for _, f := range cfg.Families() {
		if cfg.Pool(f).Allocatable(e.subnet(f)) {
			n++
		}
	}
	return n, n == len(cfg.Families())
}

// lenKey names family f's subnet length key.
func lenKey(f netconf.Family) string {
	if f == netconf.IPv6 {
		return "IPv6SubnetLen"
	}
	return "SubnetLen"
}

// acquire finds and claims subnets for req, attaching etcd lease id.
func (s *Store) acquire(ctx context.Context, cfg netconf.Config, req lease.Request, id clientv3.LeaseID) (lease.Lease, error) {
	fams := cfg.Families()
	creates := 0
	for range maxListRounds {
		resp, err := s.c.Get(ctx, lease.SubnetsPrefix(s.prefix), clientv3.WithPrefix())
		if err != nil {
			return lease.Lease{}, fmt.Errorf("lease for node %s: etcd list %s: %w", req.Node, lease.SubnetsPrefix(s.prefix), err)
		}
		var all, mine []entry
		var wrongLen []string
		for _, kv := range resp.Kvs {
			sn4, sn6, err := lease.ParseLeaseKey(string(kv.Key))
			if err != nil {
				continue // not a subnet key: cannot collide with one we create
			}
			e := entry{kv: kv, sn4: sn4, sn6: sn6}
			all = append(all, e)
			var a lease.Attrs
			if len(kv.Value) <= lease.MaxValueSize && json.Unmarshal(kv.Value, &a) == nil && req.Owns(a) {
				mine = append(mine, e)
				for _, f := range fams {
					pl, sn := cfg.Pool(f), e.subnet(f)
					if sn.IsValid() && pl.Network.Overlaps(sn.Masked()) && sn.Bits() != pl.SubnetLen {
						wrongLen = append(wrongLen, fmt.Sprintf("%s (%s %d)", kv.Key, lenKey(f), pl.SubnetLen))
					}
				}
			}
		}
		for _, f := range fams {
			pl, p := cfg.Pool(f), req.PreviousOf(f)
			if p.IsValid() && pl.Network.Overlaps(p) && p.Bits() != pl.SubnetLen {
				wrongLen = append(wrongLen, fmt.Sprintf("the subnet file's %s (%s %d)", p, lenKey(f), pl.SubnetLen))
			}
		}
		if len(wrongLen) > 0 {
			return lease.Lease{}, fmt.Errorf("%w: node %s: the network config's subnet length does not fit this node's pods: %s: the net-conf of a running cluster cannot change its subnet length (pods would get addresses of other nodes); restore the old config under %s, or drain the node, delete its lease and subnet file first",
				lease.ErrIncompatibleConfig, req.Node, strings.Join(wrongLen, ", "), ConfigKey(s.prefix))
		}

		// 1. Our own lease, the best one first; the others are dropped.
		slices.SortFunc(mine, func(x, y entry) int { return cmp.Compare(s.rank(cfg, req, x), s.rank(cfg, req, y)) })
		var keep *entry
		for i, e := range mine {
			if n, _ := e.allocatable(cfg); i > 0 || n == 0 {
				s.dropStale(ctx, req.Node, e.kv)
				continue
			}
			keep = &mine[i]
		}
		if keep != nil {
			if _, full := keep.allocatable(cfg); full {
				var sn4, sn6 netip.Prefix
				if cfg.EnableIPv4() {
					sn4 = keep.sn4
				}
				if cfg.EnableIPv6() {
					sn6 = keep.sn6
				}
				l := req.Lease(sn4, sn6)
				if l.Key(s.prefix) == string(keep.kv.Key) {
					ok, err := s.txn(ctx, clientv3.Compare(clientv3.ModRevision(string(keep.kv.Key)), "=", keep.kv.ModRevision),
						clientv3.OpPut(string(keep.kv.Key), string(l.Encode()), clientv3.WithLease(id)))
					if err != nil {
						return lease.Lease{}, fmt.Errorf("lease %s for node %s: take over: %w", l.Subnets(), req.Node, err)
					}
					if ok {
						s.log.Info("lease: took over this node's existing lease", "node", req.Node, "subnet", l.Subnets())
						return l, nil
					}
					continue // it changed under us: list again
				}
				// The key holds a family the cluster no longer runs: re-key it below.
			}
		}

		// 2. Per family: our lease's subnet, the previous one, the first free one.
		if creates >= maxCreateTries {
			return lease.Lease{}, fmt.Errorf("lease for node %s: gave up after %d conflicting attempts (many nodes allocating at once?): try again", req.Node, creates)
		}
		var pick [2]netip.Prefix // IPv4, IPv6
		how := "allocated a new subnet"
		for _, f := range fams {
			pl := cfg.Pool(f)
			var held []netip.Prefix
			for _, e := range all {
				if sn := e.subnet(f); sn.IsValid() && sn.Masked() == sn && (keep == nil || e.kv != keep.kv) {
					// A key with host bits is rejected by every node
					// (lease.Check): it blocks nothing.
					held = append(held, sn)
				}
			}
			free := func(sn netip.Prefix) bool {
				return pl.Allocatable(sn) && !slices.ContainsFunc(held, func(h netip.Prefix) bool { return h.Overlaps(sn) })
			}
			var sn netip.Prefix
			switch {
			case keep != nil && free(keep.subnet(f)):
				sn, how = keep.subnet(f), "kept this node's subnet, re-keyed its lease for the cluster's families"
			case free(req.PreviousOf(f)):
				sn = req.PreviousOf(f)
				if how == "allocated a new subnet" {
					how = "got the node's previous subnet back"
				}
			default:
				for first := range pl.Free(held) {
					sn = first
					break
				}
			}
			if !sn.IsValid() {
				what, keys := "", "SubnetMin/SubnetMax or Network"
				if f == netconf.IPv6 {
					what, keys = " IPv6", "IPv6SubnetMin/IPv6SubnetMax or IPv6Network"
				}
				return lease.Lease{}, fmt.Errorf("%w for node %s: all %d /%d%s subnets from %s to %s are leased by other nodes (%d leases under %s): widen %s, or remove leases of nodes that are gone",
					lease.ErrNoFreeSubnet, req.Node, pl.Count(), pl.SubnetLen, what, pl.SubnetMin, pl.SubnetMax, len(held), lease.SubnetsPrefix(s.prefix), keys)
			}
			pick[map[netconf.Family]int{netconf.IPv4: 0, netconf.IPv6: 1}[f]] = sn
		}
		creates++
		l := req.Lease(pick[0], pick[1])
		key := l.Key(s.prefix)
		// Nothing created under the subnets prefix since the list: the
		// overlap check above still holds when the put commits.
		conds := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(lease.SubnetsPrefix(s.prefix)).WithPrefix(), "<", resp.Header.Revision+1),
		}
		ops := []clientv3.Op{clientv3.OpPut(key, string(l.Encode()), clientv3.WithLease(id))}
		if keep != nil {
			// Replace our partial lease in the same transaction.
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(string(keep.kv.Key)), "=", keep.kv.ModRevision))
			ops = append(ops, clientv3.OpDelete(string(keep.kv.Key)))
		}
		resp2, err := s.c.Txn(ctx).If(conds...).Then(ops...).Commit()
		if err != nil {
			return lease.Lease{}, fmt.Errorf("lease %s for node %s: create: %w", l.Subnets(), req.Node, err)
		}
		if resp2.Succeeded {
			s.log.Info("lease: "+how, "node", req.Node, "subnet", l.Subnets())
			return l, nil
		}
		// A subnet was created meanwhile: list again.
	}
	return lease.Lease{}, fmt.Errorf("lease for node %s: its existing lease kept changing during %d attempts (another agent with the same node name?)", req.Node, maxListRounds)
}

// rank orders a node's own leases: allocatable in every family before in
// some before in none, a lease holding a previous subnet first, then the
// oldest.
func (s *Store) rank(cfg netconf.Config, req lease.Request, e entry) int64 {
	n, full := e.allocatable(cfg)
	switch {
	case n == 0:
		return 1 << 62
	case !full:
		return 1<<61 + e.kv.CreateRevision
	}
	for _, f := range cfg.Families() {
		if p := req.PreviousOf(f); p.IsValid() && e.subnet(f) == p {
			return -1
		}
	}
	return e.kv.CreateRevision
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
	key := own.lease.Key(s.prefix)
	ok, err := s.txn(ctx, clientv3.Compare(clientv3.LeaseValue(key), "=", own.id), clientv3.OpDelete(key))
	if err != nil {
		return fmt.Errorf("release lease %s of node %s: %w", own.lease.Subnets(), own.req.Node, err)
	}
	if !ok {
		s.log.Info("lease: release: the key is no longer ours; left it alone", "key", key)
	}
	if _, err := s.c.Revoke(ctx, own.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("release lease %s of node %s: revoke: %w", own.lease.Subnets(), own.req.Node, err)
	}
	s.mu.Lock()
	if s.own == own {
		s.own = nil
	}
	s.mu.Unlock()
	return nil
}
