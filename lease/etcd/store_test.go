package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/netconf"
)

// quietLog keeps warnings (renewal failures, resyncs) and drops the
// allocation chatter.
var quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func mustConfig(t testing.TB, js string) netconf.Config {
	t.Helper()
	c, err := netconf.Parse("test", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(node string, i int) lease.Request {
	return lease.Request{
		Node:        node,
		PublicIP:    netip.AddrFrom4([4]byte{192, 168, 0, byte(i)}),
		BackendType: "vxlan",
		BackendData: &lease.BackendData{VtepMAC: fmt.Sprintf("0e:00:00:00:00:%02x", i)},
	}
}

// newStore opens a Store on endpoint, closed at cleanup.
func newStore(t testing.TB, endpoint string, ttl time.Duration) *Store {
	t.Helper()
	s, err := New(context.Background(), Options{Endpoints: []string{endpoint}, TTL: ttl, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitEvent reads events until one satisfies ok, failing after timeout.
func waitEvent(t testing.TB, ch <-chan lease.Event, timeout time.Duration, what string, ok func(lease.Event) bool) lease.Event {
	t.Helper()
	deadline := time.After(timeout)
	var last lease.Event
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed while waiting for %s", what)
			}
			if ok(ev) {
				return ev
			}
			last = ev
		case <-deadline:
			t.Fatalf("no event with %s within %s; last event: %v", what, timeout, subnets(last))
		}
	}
}

func subnets(ev lease.Event) []string {
	var out []string
	for _, l := range ev.Leases {
		out = append(out, l.Subnet.String()+"="+l.Attrs.Node)
	}
	return out
}

func nodes(ev lease.Event) []string {
	var out []string
	for _, l := range ev.Leases {
		out = append(out, l.Attrs.Node)
	}
	slices.Sort(out)
	return out
}

// getNode returns the Node of the lease key of sn, "" when absent.
func getNode(t testing.TB, c *clientv3.Client, sn netip.Prefix) string {
	t.Helper()
	resp, err := c.Get(ctxT(t, 5*time.Second), lease.SubnetKey(lease.DefaultPrefix, sn))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	l, err := lease.Decode(string(resp.Kvs[0].Key), resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs.Node
}

// acquireConcurrently runs n Acquires at once, each with its own Store,
// for nodes "node-<i>" with req(name, i).
func acquireConcurrently(t *testing.T, ep string, cfg netconf.Config, n int, req func(string, int) lease.Request) ([]lease.Lease, []error) {
	got := make([]lease.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := newStore(t, ep, 0)
		wg.Go(func() {
			got[i], errs[i] = s.Acquire(ctxT(t, 30*time.Second), cfg, req(fmt.Sprintf("node-%d", i), i))
		})
	}
	wg.Wait()
	return got, errs
}

func TestAcquireConcurrentNodesGetDistinctSubnets(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	const n = 20
	got, errs := acquireConcurrently(t, ep, cfg, n, request)
	seen := map[netip.Prefix]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node-%d: %v", i, errs[i])
		}
		sn := got[i].Subnet
		if other, dup := seen[sn]; dup {
			t.Fatalf("subnet %s given to node-%d and %s", sn, i, other)
		}
		seen[sn] = got[i].Attrs.Node
		if !cfg.Allocatable(sn) {
			t.Errorf("node-%d got %s, not allocatable", i, sn)
		}
		if got[i].Attrs.Node != fmt.Sprintf("node-%d", i) || got[i].Attrs.PublicIP != request("", i).PublicIP {
			t.Errorf("node-%d: lease attrs %+v", i, got[i].Attrs)
		}
	}
	// The store agrees, key by key.
	all, err := List(ctxT(t, 5*time.Second), newStore(t, ep, 0).Client(), lease.DefaultPrefix)
	if err != nil || len(all) != n {
		t.Fatalf("store holds %d leases (%v), want %d", len(all), err, n)
	}
	for _, l := range all {
		if seen[l.Subnet] != l.Attrs.Node {
			t.Errorf("store: %s held by %s, Acquire said %s", l.Subnet, l.Attrs.Node, seen[l.Subnet])
		}
	}
}

func TestAcquireTooSmallRangeGivesErrNoFreeSubnet(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.5.0"}`)
	const n = 8
	got, errs := acquireConcurrently(t, ep, cfg, n, request)
	seen := map[netip.Prefix]bool{}
	failed := 0
	for i := range n {
		if errs[i] != nil {
			if !errors.Is(errs[i], lease.ErrNoFreeSubnet) {
				t.Fatalf("node-%d: want ErrNoFreeSubnet, got %v", i, errs[i])
			}
			if msg := errs[i].Error(); !strings.Contains(msg, "all 5 /24 subnets from 10.244.1.0 to 10.244.5.0 are leased by other nodes") ||
				!strings.Contains(msg, "node-") {
				t.Errorf("unclear error: %s", msg)
			}
			failed++
			continue
		}
		if seen[got[i].Subnet] {
			t.Fatalf("subnet %s given twice", got[i].Subnet)
		}
		seen[got[i].Subnet] = true
	}
	if failed != n-5 || len(seen) != 5 {
		t.Fatalf("%d nodes got a subnet and %d failed; want 5 and %d", len(seen), failed, n-5)
	}
}

func TestAcquireRestartGetsSameSubnet(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	other := newStore(t, ep, 0)
	if _, err := other.Acquire(ctxT(t, 10*time.Second), cfg, request("node-x", 9)); err != nil {
		t.Fatal(err)
	}
	first := newStore(t, ep, 2*time.Second)
	l1, err := first.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if l1.Subnet != netip.MustParsePrefix("10.244.2.0/24") {
		t.Fatalf("node-a got %s, want the first free 10.244.2.0/24", l1.Subnet)
	}
	first.Close() // a crash: no Release

	// While the key is alive: taken over by Node name, without Previous.
	second := newStore(t, ep, 2*time.Second)
	req := request("node-a", 11)
	l2, err := second.Acquire(ctxT(t, 10*time.Second), cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Subnet != l1.Subnet || l2.Attrs.PublicIP.String() != "192.168.0.11" {
		t.Fatalf("restart got %+v, want %s with the new PublicIP", l2, l1.Subnet)
	}
	second.Close()

	// After it expired: Previous wins over the first free subnet.
	if err := other.Release(ctxT(t, 5*time.Second)); err != nil { // frees 10.244.1.0/24
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for getNode(t, other.Client(), l1.Subnet) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the 2s lease of node-a did not expire within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	third := newStore(t, ep, 0)
	req.Previous = l1.Subnet
	l3, err := third.Acquire(ctxT(t, 10*time.Second), cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	if l3.Subnet != l1.Subnet {
		t.Fatalf("after expiry node-a got %s, want its previous %s (not the first free 10.244.1.0/24)", l3.Subnet, l1.Subnet)
	}
	// Previous outside the config is ignored: the first free subnet instead.
	fourth := newStore(t, ep, 0)
	r4 := request("node-b", 4)
	r4.Previous = netip.MustParsePrefix("10.99.0.0/24")
	l4, err := fourth.Acquire(ctxT(t, 10*time.Second), cfg, r4)
	if err != nil || l4.Subnet != netip.MustParsePrefix("10.244.1.0/24") {
		t.Fatalf("node-b with a foreign Previous: %v, %v", l4.Subnet, err)
	}
}

func TestAcquireDropsOwnStaleLeases(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 20*time.Second)
	// node-a holds a subnet of an old, wider config and a second one.
	for _, sn := range []string{"10.244.3.0/24", "10.244.200.0/24"} {
		if err := Put(ctx, s.Client(), lease.DefaultPrefix, request("node-a", 1).Lease(netip.MustParsePrefix(sn), netip.Prefix{}), 0); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16", "SubnetMax": "10.244.100.0"}`)
	l, err := s.Acquire(ctx, cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.244.3.0/24") {
		t.Fatalf("got %s, want the node's allocatable lease 10.244.3.0/24", l.Subnet)
	}
	if n := getNode(t, s.Client(), netip.MustParsePrefix("10.244.200.0/24")); n != "" {
		t.Fatalf("the out-of-range lease of node-a was not deleted (held by %q)", n)
	}
}

// A node moved from Flannel adopts its Flannel lease (no node name, same
// PublicIP: how flanneld matches a node's lease), keeps the subnet, and
// leaves other nodes' Flannel leases alone.
func TestAcquireAdoptsTheFlannelLeaseOfItsAddress(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 20*time.Second)
	flannel := func(i int, sn string) lease.Lease {
		l := request("", i).Lease(netip.MustParsePrefix(sn), netip.Prefix{})
		l.Attrs.Node = ""
		return l
	}
	for _, l := range []lease.Lease{flannel(1, "10.244.7.0/24"), flannel(2, "10.244.9.0/24")} {
		if err := Put(ctx, s.Client(), lease.DefaultPrefix, l, 0); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	l, err := s.Acquire(ctx, cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.244.7.0/24") {
		t.Fatalf("got %s, want 10.244.7.0/24, the Flannel lease of the node's PublicIP", l.Subnet)
	}
	if n := getNode(t, s.Client(), l.Subnet); n != "node-a" {
		t.Fatalf("the adopted lease names node %q, want node-a", n)
	}
	resp, err := s.Client().Get(ctx, lease.SubnetKey(lease.DefaultPrefix, netip.MustParsePrefix("10.244.9.0/24")))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the other node's Flannel lease is gone: %v %v", resp, err)
	}
	// A twill lease of another node with this address is not adopted: it names a node.
	other := request("node-b", 3).Lease(netip.MustParsePrefix("10.244.20.0/24"), netip.Prefix{})
	if err := Put(ctx, s.Client(), lease.DefaultPrefix, other, 0); err != nil {
		t.Fatal(err)
	}
	l2, err := newStore(t, ep, 0).Acquire(ctx, cfg, request("node-c", 3))
	if err != nil || l2.Subnet == other.Subnet {
		t.Fatalf("node-c took node-b's lease %s: %v", l2.Subnet, err)
	}
}

func TestReleaseRemovesKeySeenByWatcher(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	watcher := newStore(t, ep, 0)
	ch := watcher.Watch(ctxT(t, 60*time.Second))
	waitEvent(t, ch, 5*time.Second, "the initial empty set", func(ev lease.Event) bool { return len(ev.Leases) == 0 })

	a, b := newStore(t, ep, 0), newStore(t, ep, 0)
	la, err := a.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctxT(t, 10*time.Second), cfg, request("node-b", 2)); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ch, 5*time.Second, "node-a and node-b", func(ev lease.Event) bool { return slices.Equal(nodes(ev), []string{"node-a", "node-b"}) })
	if ev.Leases[0].Subnet.Addr().Compare(ev.Leases[1].Subnet.Addr()) >= 0 {
		t.Errorf("event not sorted by subnet: %v", subnets(ev))
	}
	if err := a.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, 5*time.Second, "only node-b", func(ev lease.Event) bool { return slices.Equal(nodes(ev), []string{"node-b"}) })
	if n := getNode(t, a.Client(), la.Subnet); n != "" {
		t.Fatalf("released key still held by %q", n)
	}
	if _, ok := a.Lease(); ok {
		t.Error("Lease() still reports a lease after Release")
	}
	if err := a.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

func TestReleaseLeavesAKeyThatIsNoLongerOurs(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	a := newStore(t, ep, 0)
	la, err := a.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	// node-a's lease vanishes (e.g. expired during a partition) and node-c
	// gets the subnet.
	if _, err := a.Client().Revoke(ctxT(t, 5*time.Second), a.own.id); err != nil {
		t.Fatal(err)
	}
	c := newStore(t, ep, 0)
	lc, err := c.Acquire(ctxT(t, 10*time.Second), cfg, request("node-c", 3))
	if err != nil || lc.Subnet != la.Subnet {
		t.Fatalf("node-c: %v %v, want %s", lc.Subnet, err, la.Subnet)
	}
	if err := a.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := getNode(t, c.Client(), la.Subnet); n != "node-c" {
		t.Fatalf("Release of node-a touched node-c's lease: holder now %q", n)
	}
}

func TestTTLExpirySeenByWatcher(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	ch := newStore(t, ep, 0).Watch(ctxT(t, 60*time.Second))
	s := newStore(t, ep, 2*time.Second)
	if _, err := s.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, 5*time.Second, "node-a", func(ev lease.Event) bool { return slices.Equal(nodes(ev), []string{"node-a"}) })
	s.Close() // no renewal from here on
	start := time.Now()
	waitEvent(t, ch, 10*time.Second, "node-a gone", func(ev lease.Event) bool { return len(ev.Leases) == 0 })
	t.Logf("expiry seen %s after the last renewal", time.Since(start).Round(100*time.Millisecond))
}

func TestKeepAliveRenewsAndReacquiresALostLease(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	s := newStore(t, ep, 2*time.Second)
	l, err := s.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	errs := s.KeepAlive(ctxT(t, 60*time.Second))
	time.Sleep(5 * time.Second) // 2.5 TTLs
	if n := getNode(t, s.Client(), l.Subnet); n != "node-a" {
		t.Fatalf("after 2.5 TTLs with KeepAlive the key is held by %q", n)
	}
	select {
	case err := <-errs:
		t.Fatalf("KeepAlive reported %v while etcd was fine", err)
	default:
	}

	oldID := s.own.id
	if _, err := s.Client().Revoke(ctxT(t, 5*time.Second), oldID); err != nil { // the lease is lost
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		var re *lease.ReacquiredError
		if !errors.As(err, &re) || re.New.Subnet != l.Subnet || re.Old.Subnet != l.Subnet {
			t.Fatalf("want a ReacquiredError for %s, got %v", l.Subnet, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeepAlive did not re-acquire the lost lease within 10s")
	}
	if n := getNode(t, s.Client(), l.Subnet); n != "node-a" {
		t.Fatalf("after re-acquire the key is held by %q", n)
	}
	if s.own.id == oldID {
		t.Fatal("re-acquired lease still uses the revoked etcd lease")
	}
}

func TestKeepAliveWithoutLease(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	errs := s.KeepAlive(ctxT(t, 10*time.Second))
	err, ok := <-errs
	if !ok || err == nil || !strings.Contains(err.Error(), "call Acquire first") {
		t.Fatalf("want an error saying to Acquire first, got %v", err)
	}
	if _, open := <-errs; open {
		t.Fatal("channel not closed")
	}
}

func TestKeepAliveAndWatchSurviveEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.StartServer(t, etcdtest.Options{})
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	const ttl = 4 * time.Second
	s := newStore(t, srv.Endpoint, ttl)
	l, err := s.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 120*time.Second)
	errs := s.KeepAlive(ctx)
	ch := s.Watch(ctx)
	waitEvent(t, ch, 5*time.Second, "node-a", func(ev lease.Event) bool { return slices.Equal(nodes(ev), []string{"node-a"}) })

	srv.Kill()
	time.Sleep(2 * ttl) // longer than the TTL: renewals fail meanwhile
	select {
	case err := <-errs:
		t.Logf("while etcd is down KeepAlive reports: %v", err)
	default:
		t.Error("KeepAlive reported no error while etcd was down for 2 TTLs")
	}
	t.Logf("restart at %s", time.Now().Format("15:04:05.000"))
	srv.Restart()
	t.Logf("healthy at %s", time.Now().Format("15:04:05.000"))

	// Watch recovers: a lease written after the restart is delivered.
	b := newStore(t, srv.Endpoint, 0)
	if _, err := b.Acquire(ctxT(t, 10*time.Second), cfg, request("node-b", 2)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, 15*time.Second, "node-a and node-b after the restart", func(ev lease.Event) bool {
		return slices.Equal(nodes(ev), []string{"node-a", "node-b"})
	})
	// KeepAlive recovers: the key outlives several TTLs after the restart.
	time.Sleep(2 * ttl)
	if n := getNode(t, b.Client(), l.Subnet); n != "node-a" {
		t.Fatalf("2 TTLs after etcd came back, node-a's key is held by %q", n)
	}
	drain := true
	for drain {
		select {
		case err := <-errs:
			// etcd restores leases with a full TTL when it restarts, so
			// renewing must have resumed: no re-acquire.
			var re *lease.ReacquiredError
			if errors.As(err, &re) {
				t.Fatalf("the lease was lost across the etcd restart: %v", err)
			}
		default:
			drain = false
		}
	}
	if got, _ := s.Lease(); got.Subnet != l.Subnet {
		t.Fatalf("node-a now holds %s, want %s", got.Subnet, l.Subnet)
	}
	// And renewals succeed again: no new error during another TTL.
	time.Sleep(ttl)
	select {
	case err := <-errs:
		t.Fatalf("KeepAlive still failing after the restart: %v", err)
	default:
	}
}

func TestWatchResyncsAfterCompaction(t *testing.T) {
	t.Parallel()
	srv := etcdtest.StartServer(t, etcdtest.Options{})
	s := newStore(t, srv.Endpoint, 0)
	c := srv.Client()
	ctx := ctxT(t, 60*time.Second)
	put := func(i int) {
		t.Helper()
		if err := Put(ctx, c, lease.DefaultPrefix, request(fmt.Sprintf("node-%d", i), i).Lease(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24), netip.Prefix{}), 0); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	out := make(chan lease.Event, 1)
	w := &watcher{s: s, out: out}
	rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.publish()
	// While this watcher is not watching, node-2 arrives, node-1 leaves and
	// etcd compacts its history past the watcher's revision.
	put(2)
	if _, err := c.Delete(ctx, lease.SubnetKey(lease.DefaultPrefix, netip.MustParsePrefix("10.244.1.0/24"))); err != nil {
		t.Fatal(err)
	}
	put(3)
	resp, err := c.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.follow(ctx, rev); close(done) }()
	select {
	case <-done: // the compacted watch was noticed
	case <-time.After(10 * time.Second):
		t.Fatal("watch from a compacted revision did not end")
	}
	// The full loop lists again and delivers the right set.
	go w.run(ctx)
	waitEvent(t, out, 10*time.Second, "node-2 and node-3 only", func(ev lease.Event) bool {
		return slices.Equal(nodes(ev), []string{"node-2", "node-3"})
	})
}

func TestWatchCoalescesBursts(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 120*time.Second)
	ch := s.Watch(ctx)
	waitEvent(t, ch, 5*time.Second, "the initial set", func(lease.Event) bool { return true })
	const total, batch = 5000, 100
	var events atomic.Int64
	var final lease.Event
	got := make(chan struct{})
	go func() {
		defer close(got)
		for ev := range ch {
			events.Add(1)
			if len(ev.Leases) == total {
				final = ev
				return
			}
		}
	}()
	start := time.Now()
	for b := 0; b < total/batch; b++ {
		ops := make([]clientv3.Op, 0, batch)
		for i := b * batch; i < (b+1)*batch; i++ {
			sn := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
			l := request(fmt.Sprintf("fake-%d", i), 1).Lease(sn, netip.Prefix{})
			ops = append(ops, clientv3.OpPut(lease.SubnetKey(lease.DefaultPrefix, sn), string(l.Encode())))
		}
		if _, err := s.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	writing := time.Since(start)
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("the full set of %d never arrived (%d events)", total, events.Load())
	}
	// One event per debounce interval at most, plus slack for scheduling.
	limit := int64(writing/watchDebounce) + 5
	t.Logf("%d leases written in %s: %d events (limit %d)", total, writing.Round(time.Millisecond), events.Load(), limit)
	if events.Load() > limit {
		t.Fatalf("%d events for a burst of %d writes in %s; want at most %d", events.Load(), total, writing, limit)
	}
	if !slices.IsSortedFunc(final.Leases, func(a, b lease.Lease) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) }) {
		t.Fatal("final set not sorted by subnet")
	}
}

func TestConfigInStore(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 10*time.Second)
	_, err := s.Config(ctx)
	if !errors.Is(err, lease.ErrNoConfig) || !strings.Contains(err.Error(), "/twill.io/network/config") {
		t.Fatalf("absent config: want ErrNoConfig naming the key, got %v", err)
	}
	if err := s.PutConfig(ctx, netconf.Config{Network: netip.MustParsePrefix("10.50.0.0/16"), Backend: netconf.Backend{Type: "host-gw"}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Network.String() != "10.50.0.0/16" || cfg.SubnetLen != 24 || cfg.Backend.Type != "host-gw" || cfg.SubnetMin.String() != "10.50.1.0" {
		t.Fatalf("config read back: %+v", cfg)
	}
	if err := s.PutConfig(ctx, netconf.Config{Network: netip.MustParsePrefix("10.50.0.0/16"), SubnetLen: 40}); err == nil {
		t.Fatal("PutConfig wrote an invalid config")
	}
	if _, err := s.Client().Put(ctx, ConfigKey(lease.DefaultPrefix), `{"Network": "10.50.0.0/16", "SubnetLen": 40}`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(ctx); err == nil || !strings.Contains(err.Error(), "etcd key /twill.io/network/config: SubnetLen 40") {
		t.Fatalf("bad stored config: want an error naming the key and value, got %v", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no endpoints", Options{}, "no endpoints"},
		{"bad endpoint", Options{Endpoints: []string{"10.0.0.1:2379"}}, `etcd endpoint "10.0.0.1:2379": want a URL`},
		{"bad prefix", Options{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "twill"}, `prefix "twill": must start with /`},
		{"short ttl", Options{Endpoints: []string{"http://127.0.0.1:1"}, TTL: time.Second}, "TTL 1s: must be at least 2s"},
		{"missing cert", Options{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: dir + "/nope.pem", KeyFile: dir + "/nope-key.pem"}, "etcd TLS client certificate: stat " + dir + "/nope.pem: no such file"},
		{"cert without key", Options{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: dir + "/c.pem"}, "give both or neither"},
		{"missing ca", Options{Endpoints: []string{"https://127.0.0.1:1"}, CAFile: dir + "/ca.pem"}, "etcd TLS CA file: open " + dir + "/ca.pem: no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(context.Background(), c.o)
			if err == nil {
				s.Close()
				t.Fatal("New accepted bad options")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}

func TestTLSAndDial(t *testing.T) {
	t.Parallel()
	srv := etcdtest.StartServer(t, etcdtest.Options{TLS: true})
	if !strings.HasPrefix(srv.Endpoint, "https://") {
		t.Fatalf("endpoint %s", srv.Endpoint)
	}
	// http:// with TLS files would silently drop TLS: refused.
	if _, err := New(context.Background(), Options{Endpoints: []string{strings.Replace(srv.Endpoint, "https", "http", 1)}, CAFile: srv.CAFile}); err == nil ||
		!strings.Contains(err.Error(), "use https://") {
		t.Fatalf("http endpoint with TLS files: %v", err)
	}
	var dials atomic.Int64
	s, err := New(context.Background(), Options{
		Endpoints: []string{srv.Endpoint}, CAFile: srv.CAFile, CertFile: srv.CertFile, KeyFile: srv.KeyFile,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16"}`)
	if _, err := s.Acquire(ctxT(t, 10*time.Second), cfg, request("node-a", 1)); err != nil {
		t.Fatalf("Acquire over TLS: %v", err)
	}
	if dials.Load() == 0 {
		t.Fatal("Options.Dial was not used")
	}
	// Without a client certificate the server refuses.
	anon, err := New(context.Background(), Options{Endpoints: []string{srv.Endpoint}, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Config(ctxT(t, 3*time.Second)); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

// putRaw writes a lease key with any value (hostile or malformed data).
// acquireEach acquires leases for nodes n0, n1, ... one after the other,
// each request dual-stack (requestDual) and changed by edit.
func acquireEach(t *testing.T, ep string, cfg netconf.Config, n int, edit func(*lease.Request)) []lease.Lease {
	t.Helper()
	var out []lease.Lease
	for i := range n {
		req := requestDual(fmt.Sprintf("n%d", i), i+1)
		edit(&req)
		l, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), cfg, req)
		if err != nil {
			t.Fatalf("n%d: %v", i, err)
		}
		out = append(out, l)
	}
	return out
}

func putRaw(t *testing.T, c *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := c.Put(ctxT(t, 5*time.Second), lease.DefaultPrefix+"/subnets/"+key, value); err != nil {
		t.Fatal(err)
	}
}

// A new lease overlaps no valid key in the store: not a longer or shorter
// prefix inside it. A key with host bits is rejected by every node and
// blocks nothing.
func TestAcquireNeverOverlaps(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16", "SubnetMax": "10.244.6.0"}`)
	v := `{"PublicIP":"192.168.0.99","BackendType":"vxlan","Node":"other"}`
	putRaw(t, s.Client(), "10.244.1.128-25", v) // inside 10.244.1.0/24
	putRaw(t, s.Client(), "10.244.2.5-24", v)   // host bits: rejected everywhere, blocks nothing
	putRaw(t, s.Client(), "10.244.4.0-23", v)   // covers .4 and .5
	var got []string
	for _, l := range acquireEach(t, ep, cfg, 2, func(req *lease.Request) {
		req.Previous = netip.MustParsePrefix("10.244.1.0/24") // overlapped: not given back
	}) {
		got = append(got, l.Subnet.String())
	}
	if want := "10.244.2.0/24 10.244.3.0/24"; strings.Join(got, " ") != want {
		t.Fatalf("allocated %v, want %s (every other subnet overlaps a key)", got, want)
	}
	if l, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), cfg, request("n8", 8)); err != nil || l.Subnet.String() != "10.244.6.0/24" {
		t.Fatalf("third node: %v, %v; want 10.244.6.0/24", l.Subnet, err)
	}
	if _, err := newStore(t, ep, 0).Acquire(ctxT(t, 10*time.Second), cfg, request("n9", 9)); !errors.Is(err, lease.ErrNoFreeSubnet) {
		t.Fatalf("with every subnet overlapped: %v, want ErrNoFreeSubnet", err)
	}
}

// A restart with another SubnetLen than the node's lease refuses, and so
// does a node whose lease overlaps an older valid one.
func TestAcquireRefusesIncompatible(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 20*time.Second)
	cfg24 := mustConfig(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	l, err := s.Acquire(ctx, cfg24, request("node-a", 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg23 := mustConfig(t, `{"Network": "10.244.0.0/16", "SubnetLen": 23, "Backend": {"Type": "vxlan"}}`)
	_, err = newStore(t, ep, 0).Acquire(ctx, cfg23, request("node-a", 1))
	if !errors.Is(err, lease.ErrIncompatibleConfig) || !strings.Contains(err.Error(), "SubnetLen 23") || !strings.Contains(err.Error(), l.Subnet.String()[:9]) {
		t.Fatalf("restart with SubnetLen 23: %v", err)
	}
	if getNode(t, s.Client(), l.Subnet) != "node-a" {
		t.Fatal("the refused restart changed the node's lease")
	}
	// A fresh node whose subnet file says /24 refuses the /23 config too.
	req := request("node-b", 2)
	req.Previous = netip.MustParsePrefix("10.244.9.0/24")
	if _, err := newStore(t, ep, 0).Acquire(ctx, cfg23, req); !errors.Is(err, lease.ErrIncompatibleConfig) {
		t.Fatalf("node with a /24 subnet file and a /23 config: %v", err)
	}
	// node-c's own key has host bits (written by hand): deleted, never
	// taken over; node-c gets a subnet that overlaps nobody's.
	bad := request("node-c", 3).Lease(l.Subnet, netip.Prefix{})
	key := l.Subnet.Addr().Next().String() + "-24"
	putRaw(t, s.Client(), key, string(bad.Encode()))
	lc, err := newStore(t, ep, 0).Acquire(ctx, cfg24, request("node-c", 3))
	if err != nil || lc.Subnet.Overlaps(l.Subnet) {
		t.Fatalf("node whose lease has host bits: %v, %v", lc.Subnet, err)
	}
	if resp, err := s.Client().Get(ctx, lease.DefaultPrefix+"/subnets/"+key); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the host-bits key of node-c is still there (%v)", err)
	}
}

// On a Flannel cluster's etcd, an agent with twill's default prefix is told
// which prefix joins that cluster; one with Flannel's prefix reads the config.
func TestConfigPointsAtFlannelPrefix(t *testing.T) {
	t.Parallel()
	ep, _ := etcdtest.Start(t)
	s := newStore(t, ep, 0)
	ctx := ctxT(t, 10*time.Second)
	if _, err := s.Client().Put(ctx, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	_, err := s.Config(ctx)
	var fe *lease.FlannelConfigError
	if !errors.As(err, &fe) || !errors.Is(err, lease.ErrNoConfig) {
		t.Fatalf("want a FlannelConfigError wrapping ErrNoConfig, got %v", err)
	}
	const want = "no config at /twill.io/network/config, but Flannel's is at /coreos.com/network/config: to join that Flannel cluster, run with --etcd-prefix /coreos.com/network"
	if err.Error() != want {
		t.Fatalf("error %q\nwant  %q", err, want)
	}
	fs, err := New(ctx, Options{Endpoints: []string{ep}, Prefix: "/coreos.com/network/", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	cfg, err := fs.Config(ctx)
	if err != nil || cfg.Network.String() != "10.244.0.0/16" || cfg.Backend.VNI != 1 || cfg.Backend.Port != 8472 {
		t.Fatalf("Flannel's config through --etcd-prefix /coreos.com/network: %+v, %v", cfg, err)
	}
	// Another prefix with no config and no Flannel config: the plain error.
	other, err := New(ctx, Options{Endpoints: []string{ep}, Prefix: "/coreos.com/other", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Config(ctx); !errors.As(err, &fe) {
		t.Fatalf("prefix /coreos.com/other: want the Flannel pointer too, got %v", err)
	}
	if _, err := s.Client().Delete(ctx, "/coreos.com/network/config"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Config(ctx); errors.As(err, &fe) || !errors.Is(err, lease.ErrNoConfig) {
		t.Fatalf("no Flannel config: want the plain ErrNoConfig, got %v", err)
	}
}
