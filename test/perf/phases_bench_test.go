package perf

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/agent"
	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/kernel"
	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
)

// BenchmarkResyncPhases explains what one drift-repair resync of the agent
// costs at N peers, part by part. The real agent programs N fake peers
// (as in BenchmarkProgramPeers) and is then stopped; the benchmark repeats
// each step of the agent's reconcile in-process on that node, on a node
// where nothing needs repairing (the agent's steady state), and reports its
// mean time (ms) and allocated memory (MB) per step:
//
//	capture      nodestate.Capture: netlink dumps, /proc, 8 tool runs, files
//	tools        of which: the iptables/nft tools (each also reported alone)
//	compute      backend.Compute (desired state from the leases)
//	diff         backend.Diff (desired vs captured)
//	placements   firewall.Placements (where the FORWARD drop is: parses the rule sets)
//	firewall     agent.NodeFirewall.Ensure (placements + reading the nft table and set)
//	*-nft        each nft command the firewall's knftables runs
//	apply-<kind> programming all N peers from scratch through netlink, per kind
//	firewall-all the firewall from scratch (table, rules, N-element set)
//
// Run it with -cpuprofile to see where the CPU goes inside each step.
func BenchmarkResyncPhases(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			benchResyncPhases(b, n)
		})
	}
}

func benchResyncPhases(b *testing.B, n int) {
	b.StopTimer()
	c := newCluster(b, fmt.Sprintf("rp%d", n), 1, peersNetConf, 5*time.Second)
	a, nd := c.agents[0], c.Nodes[0]
	fakes, err := FakePeers(n, c.cfg.Network, c.cfg.SubnetLen, netip.MustParseAddr("10.1.0.0"), c.realSubnets())
	if err != nil {
		b.Fatal(err)
	}
	h, err := nsHandle(nd.NS)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	c.putLeases(b, fakes, 100)
	deadline := time.Now().Add(programTimeout)
	for {
		o, err := countOverlay(h, c.cfg.Network)
		if err != nil {
			b.Fatal(err)
		}
		if o.Routes == n && o.Neighbors == n && o.FDB == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent programmed %+v of %d peers within %s", o, n, programTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(6 * time.Second) // one more resync: firewall set complete
	a.stop()

	ctx := context.Background()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	all, err := leaseetcd.List(lctx, c.etcd, lease.DefaultPrefix)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	var self lease.Lease
	for _, l := range all {
		if l.Attrs.Node == nd.Name {
			self = l
		}
	}
	if !self.Subnet.IsValid() {
		b.Fatalf("no lease of %s in etcd", nd.Name)
	}
	capOpt := nodestate.CaptureOptions{Netns: nd.NS}
	snap, err := nodestate.Capture(ctx, capOpt)
	if err != nil {
		b.Fatal(err)
	}
	fw, err := firewall.New(firewall.Detect(snap), nd.NS)
	if err != nil {
		b.Fatal(err)
	}
	nodeFW := &agent.NodeFirewall{Backend: fw}
	node := backend.Node{Self: self, Peers: all, Config: c.cfg, UnderlayDev: "eth0", UnderlayIP: nd.IP, UnderlayMTU: 1500, UnderlayNets: []netip.Prefix{netip.PrefixFrom(nd.IP, 24).Masked()}}
	want, err := backend.Compute(node)
	if err != nil {
		b.Fatal(err)
	}
	// Prime the firewall's idea of the peers so the timed runs are steady state.
	if _, err := nodeFW.Ensure(ctx, agent.View{Config: c.cfg, Self: self, Peers: all, Snap: snap}); err != nil {
		b.Fatal(err)
	}
	if ch := backend.Diff(want, snap); len(ch) != 0 {
		b.Fatalf("the node is not in steady state: %d changes pending, first %v", len(ch), ch[0])
	}

	const reps = 3
	measure := func(name string, f func() error) {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		alloc0 := ms.TotalAlloc
		start := time.Now()
		for range reps {
			if err := f(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
		}
		d := time.Since(start) / reps
		runtime.ReadMemStats(&ms)
		b.ReportMetric(Millis(d), name+"-ms")
		b.ReportMetric(MB(int64(ms.TotalAlloc-alloc0)/reps), name+"-alloc-MB")
		b.Logf("peers=%d %-12s %8.1f ms %8.1f MB allocated", n, name, Millis(d), MB(int64(ms.TotalAlloc-alloc0)/reps))
	}
	b.StartTimer()
	measure("capture", func() error {
		var err error
		snap, err = nodestate.Capture(ctx, capOpt)
		return err
	})
	tools := [][]string{
		{"iptables-legacy-save"}, {"ip6tables-legacy-save"}, {"iptables-legacy", "-V"},
		{"iptables-nft-save"}, {"ip6tables-nft-save"}, {"iptables-nft", "-V"},
		{"nft", "-j", "list", "ruleset"}, {"nft", "-v"},
	}
	// What the firewall's knftables calls run (knftables.New checks the
	// version and a dry-run transaction; then it lists chains, sets, the
	// rules of each chain and the peer set's elements).
	nftCalls := [][]string{
		{"nft", "--version"}, {"nft", "--check", "add", "table", "inet", firewall.NftTable},
		{"nft", "--json", "--terse", "list", "table", "inet", firewall.NftTable},
		{"nft", "--json", "list", "chain", "inet", firewall.NftTable, "forward"},
		{"nft", "--json", "list", "set", "inet", firewall.NftTable, firewall.NftPeerSet},
	}
	var toolTotal time.Duration
	for _, argv := range tools {
		start := time.Now()
		for range reps {
			if _, err := nsrun.Output(ctx, nd.NS, argv...); err != nil {
				b.Fatalf("%v: %v", argv, err)
			}
		}
		d := time.Since(start) / reps
		toolTotal += d
		b.Logf("peers=%d   tool %-28s %6.1f ms", n, fmt.Sprint(argv), Millis(d))
	}
	b.ReportMetric(Millis(toolTotal), "tools-ms")
	for _, argv := range nftCalls {
		start := time.Now()
		for range reps {
			if out, err := nsrun.Output(ctx, nd.NS, argv...); err != nil {
				b.Fatalf("%v: %v: %s", argv, err, out)
			}
		}
		d := time.Since(start) / reps
		b.ReportMetric(Millis(d), strings.Join(argv[min(len(argv)-1, 3):min(len(argv), 4)], "")+"-nft-ms")
		b.Logf("peers=%d   firewall's %-50s %6.1f ms", n, fmt.Sprint(argv), Millis(d))
	}
	b.Logf("peers=%d   nft -j list ruleset: %d bytes of JSON", n, len(snap.Nftables.JSON))
	measure("compute", func() error {
		var err error
		want, err = backend.Compute(node)
		return err
	})
	measure("diff", func() error {
		if ch := backend.Diff(want, snap); len(ch) != 0 {
			return fmt.Errorf("%d changes", len(ch))
		}
		return nil
	})
	measure("placements", func() error {
		_, err := firewall.Placements(snap, c.cfg.Network, self.Subnet)
		return err
	})
	measure("firewall", func() error {
		rs, err := nodeFW.Ensure(ctx, agent.View{Config: c.cfg, Self: self, Peers: all, Snap: snap})
		if err == nil && len(rs) > 0 {
			err = fmt.Errorf("steady state, yet the firewall repaired %d things, first %+v", len(rs), rs[0])
		}
		return err
	})

	// From scratch, as at start or when all peers arrive at once: the
	// overlay (N routes, neighbours, FDB entries through netlink, one call
	// each) and the firewall (table, rules and the N-element peer set in
	// one nft transaction).
	testbed.In(b, nd.NS, "ip", "link", "del", backend.DeviceName(1))
	testbed.In(b, nd.NS, "nft", "delete", "table", "inet", firewall.NftTable)
	nodeFW = &agent.NodeFirewall{Backend: fw}
	measure1 := func(name string, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		b.ReportMetric(Millis(time.Since(start)), name+"-ms")
		b.Logf("peers=%d %-12s %8.1f ms (once)", n, name, Millis(time.Since(start)))
	}
	s0, err := nodestate.Capture(ctx, capOpt)
	if err != nil {
		b.Fatal(err)
	}
	changes := backend.Diff(want, s0)
	if len(changes) < 3*n {
		b.Fatalf("only %d changes after deleting the device", len(changes))
	}
	byKind := map[string][]backend.Change{}
	for _, ch := range changes {
		byKind[ch.Kind] = append(byKind[ch.Kind], ch)
	}
	// In the agent's order: the device first, then per kind.
	for _, k := range []string{backend.KindLink, backend.KindAddr, backend.KindRoute, backend.KindNeighbor, backend.KindFDB} {
		measure1("apply-"+k, func() error {
			_, err := kernel.Apply(ctx, nd.NS, byKind[k])
			return err
		})
	}
	measure1("firewall-all", func() error {
		_, err := nodeFW.Ensure(ctx, agent.View{Config: c.cfg, Self: self, Peers: all, Snap: snap})
		return err
	})
	b.StopTimer()
}
