package etcd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/netconf"
)

const (
	dualConf   = `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`
	v6OnlyConf = `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`
)

// requestDual is request with the IPv6 underlay address and VTEP MAC.
func requestDual(node string, i int) lease.Request {
	r := request(node, i)
	r.PublicIPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:77::%x", i+1))
	r.BackendV6Data = &lease.BackendData{VtepMAC: fmt.Sprintf("0e:00:00:00:06:%02x", i)}
	return r
}

// Concurrent dual-stack nodes get distinct subnets in both families, under
// Flannel's key naming, with Flannel's value fields, and every node's
// watch accepts all of them.
func TestAcquireDualStackConcurrent(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, dualConf)
	const n = 12
	got, errs := acquireConcurrently(t, ep, cfg, n, requestDual)
	seen := map[netip.Prefix]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node-%d: %v", i, errs[i])
		}
		for _, sn := range []netip.Prefix{got[i].Subnet, got[i].IPv6Subnet} {
			if j, dup := seen[sn]; dup {
				t.Fatalf("subnet %s given to node-%d and node-%d", sn, j, i)
			}
			seen[sn] = i
		}
		if r := lease.Check(cfg, got[i]); r != nil {
			t.Fatalf("node-%d's own lease fails Check: %v", i, r)
		}
	}
	c := newStore(t, ep, 0).Client()
	resp, err := c.Get(ctxT(t, 5*time.Second), lease.SubnetsPrefix(lease.DefaultPrefix), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != n {
		t.Fatalf("store holds %d keys (%v), want %d", len(resp.Kvs), err, n)
	}
	for _, kv := range resp.Kvs {
		base := strings.TrimPrefix(string(kv.Key), lease.SubnetsPrefix(lease.DefaultPrefix))
		var v map[string]any
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			t.Fatal(err)
		}
		i := seen[netip.MustParsePrefix(strings.Replace(strings.SplitN(base, "&", 2)[0], "-", "/", 1))]
		want := fmt.Sprintf("%s-24&%s-64", got[i].Subnet.Addr(), got[i].IPv6Subnet.Addr())
		if base != want {
			t.Errorf("key %q, want Flannel's %q", base, want)
		}
		if v["PublicIPv6"] != fmt.Sprintf("fd00:77::%x", i+1) || v["BackendV6Data"] == nil || v["PublicIP"] == nil {
			t.Errorf("value %s lacks Flannel's dual-stack fields", kv.Value)
		}
	}
	w := newStore(t, ep, 0)
	ev := waitEvent(t, w.Watch(ctxT(t, 10*time.Second)), 5*time.Second, "all leases", func(ev lease.Event) bool { return len(ev.Leases) == n })
	acc, rej := lease.Accept(cfg, ev.Leases)
	if len(acc) != n || len(rej) != 0 {
		t.Fatalf("watch: %d accepted, rejected %v", len(acc), rej)
	}
}

// An IPv6-only lease: Flannel's "0.0.0.0-0&<v6>-<len>" key, no PublicIP.
func TestAcquireIPv6Only(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, v6OnlyConf)
	req := requestDual("n1", 1)
	req.PublicIP, req.BackendData = netip.Addr{}, nil
	s := newStore(t, ep, 0)
	l, err := s.Acquire(ctxT(t, 10*time.Second), cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:1::/64") {
		t.Fatalf("lease %s, want fd00:10:244:1::/64 only", l.Subnets())
	}
	resp, err := s.Client().Get(ctxT(t, 5*time.Second), lease.DefaultPrefix+"/subnets/0.0.0.0-0&fd00:10:244:1::-64")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Flannel's IPv6-only key not found: %v", err)
	}
	if v := string(resp.Kvs[0].Value); strings.Contains(v, `"PublicIP"`) || strings.Contains(v, `"BackendData"`) || !strings.Contains(v, `"PublicIPv6":"fd00:77::2"`) {
		t.Fatalf("IPv6-only value %s", v)
	}
	// The same node again (restart): the same lease, taken over.
	again, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), cfg, req)
	if err != nil || again.IPv6Subnet != l.IPv6Subnet {
		t.Fatalf("restart: %v %v", again.Subnets(), err)
	}
	// A dual-stack net-conf needs the IPv4 underlay address too.
	if _, err := s.Acquire(ctxT(t, 10*time.Second), mustConfig(t, dualConf), req); err == nil || !strings.Contains(err.Error(), "PublicIP is not set") {
		t.Fatalf("dual-stack without PublicIP: %v", err)
	}
	v4req := request("n2", 2)
	if _, err := s.Acquire(ctxT(t, 10*time.Second), cfg, v4req); err == nil || !strings.Contains(err.Error(), "PublicIPv6 is not set") {
		t.Fatalf("IPv6 without PublicIPv6: %v", err)
	}
}

// EnableIPv6 turned on under a running IPv4 cluster: each node keeps its
// IPv4 subnet and gains an IPv6 one; its lease is re-keyed in one
// transaction (one key per node, never none).
func TestAcquireAddsIPv6ToAnIPv4Lease(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	v4 := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	var before []lease.Lease
	for i := range 3 {
		l, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), v4, request(fmt.Sprintf("n%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, l)
	}
	dual := mustConfig(t, dualConf)
	v6seen := map[netip.Prefix]bool{}
	for i := range 3 {
		l, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), dual, requestDual(fmt.Sprintf("n%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet != before[i].Subnet || !dual.Pool(netconf.IPv6).Allocatable(l.IPv6Subnet) || v6seen[l.IPv6Subnet] {
			t.Fatalf("n%d: %s, want its IPv4 subnet %s kept and a new IPv6 one", i, l.Subnets(), before[i].Subnet)
		}
		v6seen[l.IPv6Subnet] = true
	}
	all, err := List(ctxT(t, 5*time.Second), newStore(t, ep, 0).Client(), lease.DefaultPrefix)
	if err != nil || len(all) != 3 {
		t.Fatalf("store holds %d leases (%v), want 3 (the IPv4-only keys replaced)", len(all), err)
	}
	for _, l := range all {
		if !l.IPv6Subnet.IsValid() {
			t.Errorf("an IPv4-only key is left: %s", l.Name())
		}
	}
	// And back to IPv4 only: the same IPv4 subnets, the keys lose IPv6.
	for i := range 3 {
		l, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), v4, request(fmt.Sprintf("n%d", i), i))
		if err != nil || l.Subnet != before[i].Subnet || l.IPv6Subnet.IsValid() {
			t.Fatalf("n%d back to IPv4: %s %v", i, l.Subnets(), err)
		}
	}
	if all, _ := List(ctxT(t, 5*time.Second), newStore(t, ep, 0).Client(), lease.DefaultPrefix); len(all) != 3 {
		t.Fatalf("store holds %d leases, want 3", len(all))
	}
}

// IPv6 subnets are overlap-proof like IPv4 ones: keys of other lengths
// (wider or narrower, from a hostile or misconfigured writer) block every
// subnet they touch; a key with host bits blocks nothing; the previous
// IPv6 subnet comes back when free.
func TestAcquireIPv6NeverOverlaps(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	cfg := mustConfig(t, `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetMax": "fd00:10:244:8::"}`)
	v := `{"PublicIPv6":"fd00:77::99","BackendType":"vxlan","Node":"other"}`
	putRaw(t, s.Client(), "0.0.0.0-0&fd00:10:244:1:8000::-65", v) // inside :1::/64
	putRaw(t, s.Client(), "0.0.0.0-0&fd00:10:244:2::5-64", v)     // host bits: blocks nothing
	putRaw(t, s.Client(), "0.0.0.0-0&fd00:10:244:4::-62", v)      // covers :4 .. :7
	putRaw(t, s.Client(), "10.244.9.0-24&fd00:10:244:3::-64", v)  // a dual key holds :3
	var got []string
	for _, l := range acquireEach(t, ep, cfg, 2, func(req *lease.Request) {
		req.PreviousV6 = netip.MustParsePrefix("fd00:10:244:1::/64") // overlapped: not given back
	}) {
		got = append(got, l.IPv6Subnet.String())
	}
	if want := "fd00:10:244:2::/64 fd00:10:244:8::/64"; strings.Join(got, " ") != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
	_, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), cfg, requestDual("n9", 9))
	if err == nil || !strings.Contains(err.Error(), "all 8 /64 IPv6 subnets from fd00:10:244:1:: to fd00:10:244:8:: are leased") || !strings.Contains(err.Error(), "widen IPv6SubnetMin/IPv6SubnetMax or IPv6Network") {
		t.Fatalf("full IPv6 pool: %v", err)
	}

	// Previous comes back when free.
	s2 := newStore(t, ep, 0)
	req := requestDual("n0", 1)
	if err := s2.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	cfg2 := mustConfig(t, `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:245::/56"}`)
	req.Node, req.PreviousV6 = "fresh", netip.MustParsePrefix("fd00:10:245:42::/64")
	if l, err := s2.Acquire(ctxT(t, 10*time.Second), cfg2, req); err != nil || l.IPv6Subnet != req.PreviousV6 {
		t.Fatalf("previous IPv6 subnet: %s %v", l.Subnets(), err)
	}
}
