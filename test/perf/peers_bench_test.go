package perf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// peersNetConf is a cluster network with room for tens of thousands of
// /24 subnets (and no overlap with the testbed underlay 192.168.77.0/24).
const peersNetConf = `{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}`

// programTimeout bounds the wait for the agent to program every peer.
const programTimeout = 5 * time.Minute

// BenchmarkProgramPeers measures one real agent programming N peers: N fake
// vxlan leases are written to etcd (transactions of 100, the clock starts at
// the first write) and the node namespace is polled every 50 ms until it has
// all N routes, then all N neighbours and FDB entries. The agent's memory
// is read from /proc before (0 peers, same run) and after (N peers, after
// two more resyncs so that steady-state resync work is included).
//
// Metrics: s-routes (seconds to all routes), s-all (seconds to routes,
// neighbours and FDB), base-rss-MB, rss-MB, hwm-MB (VmHWM: the peak),
// rss-ratio (rss-MB / base-rss-MB), reconcile-ms (mean duration of the
// agent's reconciles since the first write, programming included, from its
// /metrics), resync-ms (mean duration of its steady-state reconciles at N
// peers, nothing to repair: what every --resync interval costs).
func BenchmarkProgramPeers(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			for range b.N {
				benchProgramPeers(b, n)
			}
		})
	}
}

func benchProgramPeers(b *testing.B, n int) {
	b.StopTimer()
	const resync = 5 * time.Second
	c := newCluster(b, fmt.Sprintf("pp%d", n), 1, peersNetConf, resync)
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

	// Baseline: the same agent, ready, with no peer, after one more resync.
	time.Sleep(resync + time.Second)
	base := a.memory(b)
	recSum0, recN0 := a.metric(b, "twill_reconcile_duration_seconds_sum"), a.metric(b, "twill_reconcile_duration_seconds_count")

	b.StartTimer()
	start := time.Now()
	c.putLeases(b, fakes, 100)
	wrote := time.Since(start)
	var tRoutes, tAll time.Duration
	var last overlay
	for deadline := start.Add(programTimeout); ; {
		o, err := countOverlay(h, c.cfg.Network)
		if err != nil {
			b.Fatal(err)
		}
		last = o
		if tRoutes == 0 && o.Routes >= n {
			tRoutes = time.Since(start)
		}
		if o.Routes >= n && o.Neighbors >= n && o.FDB >= n {
			tAll = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent programmed %d routes, %d neighbours, %d FDB entries of %d peers within %s; log %s:\n%s",
				o.Routes, o.Neighbors, o.FDB, n, programTimeout, a.log, tail(a.log, 10))
		}
		select {
		case <-a.done:
			b.Fatalf("agent exited while programming %d peers; log %s:\n%s", n, a.log, tail(a.log, 15))
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.StopTimer()
	if last.Routes != n || last.Neighbors != n || last.FDB != n {
		b.Fatalf("want exactly %d routes, neighbours and FDB entries, have %+v", n, last)
	}

	// Steady state at N peers: two more resyncs (capture + diff of N
	// objects), timed by the agent itself.
	time.Sleep(time.Second) // let the programming reconcile finish
	recSum1, recN1 := a.metric(b, "twill_reconcile_duration_seconds_sum"), a.metric(b, "twill_reconcile_duration_seconds_count")
	time.Sleep(2 * resync)
	mem := a.memory(b)
	recSum, recN := a.metric(b, "twill_reconcile_duration_seconds_sum"), a.metric(b, "twill_reconcile_duration_seconds_count")
	b.ReportMetric(tRoutes.Seconds(), "s-routes")
	b.ReportMetric(tAll.Seconds(), "s-all")
	b.ReportMetric(wrote.Seconds(), "s-etcd-write")
	b.ReportMetric(MB(base.RSS), "base-rss-MB")
	b.ReportMetric(MB(mem.RSS), "rss-MB")
	b.ReportMetric(MB(mem.HWM), "hwm-MB")
	b.ReportMetric(float64(mem.RSS)/float64(base.RSS), "rss-ratio")
	if recN > recN0 {
		b.ReportMetric(1000*(recSum-recSum0)/(recN-recN0), "reconcile-ms")
	}
	if recN > recN1 {
		b.ReportMetric(1000*(recSum-recSum1)/(recN-recN1), "resync-ms")
	}
	if _, body, err := a.get("/metrics"); err == nil {
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "twill_repairs_total{") {
				b.Logf("peers=%d: agent metric %s", n, line)
			}
		}
	}
	b.Logf("peers=%d: etcd writes %s, all routes %s, all entries %s; RSS %.1f MB (0 peers: %.1f MB), peak %.1f MB; %v reconciles since baseline",
		n, wrote.Round(time.Millisecond), tRoutes.Round(time.Millisecond), tAll.Round(time.Millisecond), MB(mem.RSS), MB(base.RSS), MB(mem.HWM), recN-recN0)
}
