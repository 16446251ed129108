package vsflannel

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/test/perf"
)

// Sizes and bounds of BenchmarkVsFlannel.
const (
	// convSamples lease appearances are timed per daemon, alternately.
	convSamples = 12
	// convTimeout bounds one convergence (and one removal) sample.
	convTimeout = 60 * time.Second
	// convSettle passes between the removal and the new lease, with the
	// pings already running (none may be answered then).
	convSettle = 300 * time.Millisecond
	pollEvery  = 5 * time.Millisecond
	// rssSamples readings of every daemon's memory, a second apart.
	rssSamples = 5
	// tcpRounds of underlay then pod runs per daemon, alternately, of
	// tcpTime each.
	tcpRounds = 3
	tcpTime   = 2 * time.Second
	tcpPort   = 5201
)

// BenchmarkVsFlannel puts twill beside flanneld, for vxlan and host-gw:
// a 3-node lab of twill agents and a 3-node lab of flanneld (Flannel's own
// code, bin/flanneld; pods wired by bridge + host-local as Flannel's CNI
// plugin delegates them) are built side by side, and each figure is
// measured on both alternately, so both see the same machine load.
//
//   - rss-MB: the daemon process's resident memory in steady state (the
//     median of rssSamples readings of the mean over the 3 nodes).
//   - tcp-ratio: pod-to-pod TCP throughput node1 -> node2 over the
//     underlay's (node1's eth0 -> node2's eth0) measured just before it,
//     median of tcpRounds; pod-Gbps and underlay-Gbps are the medians.
//   - conv-p50-ms, conv-p99-ms: node3's daemon is stopped (its network
//     stays); convSamples times its lease is deleted from etcd, node1 and
//     node2 drop it, and it is written back: the time from the write until
//     node1 and node2 both have the route (vxlan: also the neighbour and
//     FDB entry) and pings from their pods reach node3's pod (pings every
//     5 ms). prog-p50-ms is the kernel part alone.
//
// Run with -benchtime 1x (make bench does).
func BenchmarkVsFlannel(b *testing.B) {
	for _, be := range []string{lab.BackendVXLAN, lab.BackendHostGW} {
		b.Run(be, func(b *testing.B) {
			for range b.N {
				benchVsFlannel(b, be)
			}
		})
	}
}

// side is one of the two labs.
type side struct {
	daemon string // "twill" or "flannel": the metrics' prefix
	st     *lab.State
	etcd   *clientv3.Client
}

func benchVsFlannel(b *testing.B, backend string) {
	b.StopTimer()
	if os.Geteuid() != 0 {
		b.Fatal("BenchmarkVsFlannel needs root: it builds network namespaces and runs etcd, twill agents and flanneld in them")
	}
	binaries(b)
	sides := []*side{upLab(b, "twill", backend, 0), upLab(b, "flannel", backend, 3)}
	for _, s := range sides {
		s.waitMesh(b)
	}
	b.StartTimer()

	for _, s := range sides {
		b.ReportMetric(s.rss(b), s.daemon+"-rss-MB")
	}

	under, pod := map[string][]float64{}, map[string][]float64{}
	for range tcpRounds {
		for _, s := range sides {
			u, p := s.throughput(b)
			under[s.daemon], pod[s.daemon] = append(under[s.daemon], u), append(pod[s.daemon], p)
		}
	}
	for _, s := range sides {
		r, err := perf.MedianRatio(pod[s.daemon], under[s.daemon])
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(perf.Median(under[s.daemon])/1e9, s.daemon+"-underlay-Gbps")
		b.ReportMetric(perf.Median(pod[s.daemon])/1e9, s.daemon+"-pod-Gbps")
		b.ReportMetric(r, s.daemon+"-tcp-ratio")
	}

	convs := make([]*converger, len(sides))
	for i, s := range sides {
		convs[i] = s.newConverger(b)
	}
	prog, conv := map[string][]time.Duration{}, map[string][]time.Duration{}
	for i := range convSamples {
		for _, c := range convs {
			p, cv := c.sample(b, i)
			prog[c.daemon], conv[c.daemon] = append(prog[c.daemon], p), append(conv[c.daemon], cv)
		}
	}
	b.StopTimer()
	for _, s := range sides {
		p50, _ := perf.Percentile(conv[s.daemon], 50)
		p99, _ := perf.Percentile(conv[s.daemon], 99)
		k50, _ := perf.Percentile(prog[s.daemon], 50)
		b.ReportMetric(perf.Millis(p50), s.daemon+"-conv-p50-ms")
		b.ReportMetric(perf.Millis(p99), s.daemon+"-conv-p99-ms")
		b.ReportMetric(perf.Millis(k50), s.daemon+"-prog-p50-ms")
		b.Logf("%s %s: convergence %v; kernel %v", backend, s.daemon, ms(conv[s.daemon]), ms(prog[s.daemon]))
	}
}

// upLab builds a 3-node lab (1 pod per node) whose first flannelNodes
// nodes run flanneld, and removes it at the end of the benchmark, failed
// or not (also one left by an interrupted run of the same name).
func upLab(b *testing.B, daemon, backend string, flannelNodes int) *side {
	b.Helper()
	name := fmt.Sprintf("vsf%d%s%s", os.Getpid()%10000, daemon[:2], strings.ReplaceAll(backend, "-", "")[:2])
	_ = lab.Down(context.Background(), name, nil)
	b.Cleanup(func() {
		if err := lab.Down(context.Background(), name, nil); err != nil {
			b.Errorf("lab down %s: %v", name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	st, err := lab.Up(ctx, lab.Config{Name: name, Nodes: 3, Pods: 1, Backend: backend, Agent: true,
		Self: twill, CNIBin: twillCNI, FlannelNodes: flannelNodes, Out: &out})
	if err != nil {
		b.Fatalf("lab up %s (%s, %s): %v\n%s", name, daemon, backend, err, out.String())
	}
	c, err := lab.EtcdClient(st)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &side{daemon: daemon, st: st, etcd: c}
}

// waitMesh waits (30 s at most) until every pod answers a TCP call from a
// pod on every other node.
func (s *side) waitMesh(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, from := range s.st.Nodes {
		for _, to := range s.st.Nodes {
			if from.Index == to.Index {
				continue
			}
			addr := fmt.Sprintf("%s:%d", to.Pods[0].IP, lab.ServerPort)
			for {
				_, err := lab.Call(context.Background(), from.Pods[0].Namespace, addr, time.Second, false)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s lab: pod %s cannot reach %s: %v", s.daemon, from.Pods[0].Name, addr, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// rss is the median over rssSamples readings (a second apart) of the mean
// resident memory of the 3 nodes' daemons, in MiB.
func (s *side) rss(b *testing.B) float64 {
	b.Helper()
	var samples []float64
	for i := range rssSamples {
		if i > 0 {
			time.Sleep(time.Second)
		}
		var sum int64
		for _, n := range s.st.Nodes {
			if !n.Agent.Alive() {
				b.Fatalf("%s lab: %s's daemon (pid %d) is not running", s.daemon, n.Name, n.Agent.PID)
			}
			m, err := perf.ReadMemory(n.Agent.PID)
			if err != nil {
				b.Fatal(err)
			}
			sum += m.RSS
		}
		samples = append(samples, perf.MB(sum)/float64(len(s.st.Nodes)))
	}
	return perf.Median(samples)
}

// throughput measures node1 -> node2: the underlay (eth0 to eth0), then
// pod to pod, in bit/s.
func (s *side) throughput(b *testing.B) (underlay, pod float64) {
	b.Helper()
	n1, n2 := s.st.Nodes[0], s.st.Nodes[1]
	u, err := tcpRate(n1.Namespace, n2.Namespace, netip.MustParseAddr(n2.IP), tcpPort, tcpTime)
	if err != nil {
		b.Fatalf("%s lab: underlay: %v", s.daemon, err)
	}
	p, err := tcpRate(n1.Pods[0].Namespace, n2.Pods[0].Namespace, netip.MustParseAddr(n2.Pods[0].IP), tcpPort, tcpTime)
	if err != nil {
		b.Fatalf("%s lab: pods: %v", s.daemon, err)
	}
	return u, p
}

// converger times node3's lease appearing on node1 and node2.
type converger struct {
	*side
	key       string
	value     []byte
	subnet    netip.Prefix
	public    netip.Addr
	target    netip.Addr // node3's pod
	vxlan     bool
	observers []observer
}

type observer struct {
	name, podNS string
	h           *netlink.Handle
}

// newConverger records node3's lease (key and value as its daemon wrote
// them) and stops node3's daemon; node3 keeps its network.
func (s *side) newConverger(b *testing.B) *converger {
	b.Helper()
	joiner := s.st.Nodes[2]
	c := &converger{side: s, public: netip.MustParseAddr(joiner.IP), target: netip.MustParseAddr(joiner.Pods[0].IP),
		vxlan: s.st.Backend == lab.BackendVXLAN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.etcd.Get(ctx, lease.SubnetsPrefix(s.st.Prefix()), clientv3.WithPrefix())
	if err != nil {
		b.Fatalf("%s lab: leases: %v", s.daemon, err)
	}
	for _, kv := range resp.Kvs {
		l, err := lease.Decode(string(kv.Key), kv.Value)
		if err == nil && l.Attrs.PublicIP == c.public {
			c.key, c.value, c.subnet = string(kv.Key), kv.Value, l.Subnet
		}
	}
	if c.key == "" {
		b.Fatalf("%s lab: no lease of %s (%s) under %s", s.daemon, joiner.Name, joiner.IP, s.st.Prefix())
	}
	if err := lab.AgentControl(ctx, s.st.Name, joiner.Name, lab.AgentStop, nil); err != nil {
		b.Fatalf("%s lab: stop %s's daemon: %v", s.daemon, joiner.Name, err)
	}
	for _, n := range s.st.Nodes[:2] {
		h, err := nsrun.NetlinkHandle(n.Namespace)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(h.Close)
		c.observers = append(c.observers, observer{name: n.Name, podNS: n.Pods[0].Namespace, h: h})
	}
	return c
}

// sample deletes node3's lease, waits until both observers dropped it,
// writes it back and returns the time until both programmed it and until
// both pods' pings went through.
func (c *converger) sample(b *testing.B, i int) (programmed, converged time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), convTimeout)
	defer cancel()
	if _, err := c.etcd.Delete(ctx, c.key); err != nil {
		b.Fatalf("%s lab: delete %s: %v", c.daemon, c.key, err)
	}
	for _, o := range c.observers {
		c.wait(b, o, time.Now(), "forget", func(s peerState) bool { return s.none() })
	}
	// Pings start before the lease is back: none may be answered until it is.
	type reply struct {
		at  time.Time
		err error
	}
	replies := make(chan reply, len(c.observers))
	deadline := time.Now().Add(convSettle + convTimeout)
	for k, o := range c.observers {
		p, err := newPinger(o.podNS, c.target, uint16(rand.IntN(1<<16)&^0xff|i<<2|k))
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			at, err := p.firstReply(pollEvery, deadline)
			replies <- reply{at, err}
		}()
	}
	time.Sleep(convSettle)
	start := time.Now()
	if _, err := c.etcd.Put(ctx, c.key, string(c.value)); err != nil {
		b.Fatalf("%s lab: put %s: %v", c.daemon, c.key, err)
	}
	for _, o := range c.observers {
		programmed = max(programmed, c.wait(b, o, start, "program", func(s peerState) bool { return s.complete(c.vxlan) }))
	}
	converged = programmed
	for range c.observers {
		r := <-replies
		if r.err != nil {
			b.Fatalf("%s lab: sample %d: pod ping to node3's pod %s: %v", c.daemon, i, c.target, r.err)
		}
		if r.at.Before(start) {
			b.Fatalf("%s lab: sample %d: a pod ping reached %s before node3's lease was back: nothing to measure", c.daemon, i, c.target)
		}
		converged = max(converged, r.at.Sub(start))
	}
	return programmed, converged
}

// wait polls o's kernel every pollEvery until done holds for node3's
// peer state (convTimeout at most) and returns the time since start.
func (c *converger) wait(b *testing.B, o observer, start time.Time, what string, done func(peerState) bool) time.Duration {
	b.Helper()
	for {
		s, err := readPeerState(o.h, c.subnet, c.public, c.vxlan)
		if err != nil {
			b.Fatalf("%s lab: %s: %v", c.daemon, o.name, err)
		}
		if done(s) {
			return time.Since(start)
		}
		if time.Since(start) > convTimeout {
			b.Fatalf("%s lab: %s did not %s node3 (%s) within %s: %+v", c.daemon, o.name, what, c.subnet, convTimeout, s)
		}
		time.Sleep(pollEvery)
	}
}

func ms(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.0f", perf.Millis(d)))
	}
	return strings.Join(parts, " ") + " ms"
}
