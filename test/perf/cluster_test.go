package perf

import (
	"context"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/netconf"
)

// cluster is a testbed cluster with a real etcd on its underlay and one
// real agent per node.
type cluster struct {
	*testbed.Cluster
	cfg      netconf.Config
	endpoint string
	etcd     *clientv3.Client
	agents   []*agentProc
}

// newCluster builds n nodes (testbed), runs etcd on the underlay bridge,
// stores net-conf.json (netConf) at <prefix>/config, starts one agent per
// node and waits until every agent is ready.
func newCluster(tb testing.TB, tag string, n int, netConf string, resync time.Duration) *cluster {
	tb.Helper()
	requireRoot(tb)
	twillBinary(tb) // build before the clock of anything starts
	cfg, err := netconf.Parse("benchmark net-conf.json", []byte(netConf))
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Network.Overlaps(testbed.Segment) {
		tb.Fatalf("net-conf Network %s overlaps the testbed underlay %s", cfg.Network, testbed.Segment)
	}
	c := &cluster{Cluster: testbed.New(tb, tag, n), cfg: cfg}
	testbed.In(tb, c.Underlay, "ip", "addr", "add", etcdAddr+"/24", "dev", "br0")
	c.endpoint, c.etcd = startEtcd(tb, c.Underlay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.etcd.Put(ctx, leaseetcd.ConfigKey(lease.DefaultPrefix), string(cfg.JSON())); err != nil {
		tb.Fatalf("store net-conf.json: %v", err)
	}
	for _, nd := range c.Nodes {
		c.agents = append(c.agents, startAgent(tb, nd, cfg.Network, c.endpoint, resync))
	}
	for _, a := range c.agents {
		a.waitReady(tb, 60*time.Second)
	}
	return c
}

// realSubnets are the subnets of the testbed's nodes (to keep fake peers
// off them).
func (c *cluster) realSubnets() []netip.Prefix {
	var out []netip.Prefix
	for _, nd := range c.Nodes {
		out = append(out, nd.Subnet)
	}
	return out
}

// putLeases writes leases to etcd without a TTL, batch of them per
// transaction (etcd allows 128 operations per transaction by default).
func (c *cluster) putLeases(tb testing.TB, ls []lease.Lease, batch int) {
	tb.Helper()
	for i := 0; i < len(ls); i += batch {
		ops := make([]clientv3.Op, 0, batch)
		for _, l := range ls[i:min(i+batch, len(ls))] {
			ops = append(ops, clientv3.OpPut(lease.SubnetKey(lease.DefaultPrefix, l.Subnet), string(l.Encode())))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.etcd.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			tb.Fatalf("write leases %d..%d to etcd: %v", i, i+len(ops)-1, err)
		}
	}
}
