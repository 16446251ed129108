package perf

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 20; i >= 1; i-- { // unsorted on purpose
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 10 * time.Millisecond}, {99, 20 * time.Millisecond}, {100, 20 * time.Millisecond}, {5, time.Millisecond}, {1, time.Millisecond}} {
		got, err := Percentile(s, c.p)
		if err != nil || got != c.want {
			t.Errorf("p%g = %v, %v; want %v", c.p, got, err, c.want)
		}
	}
	if s[0] != 20*time.Millisecond {
		t.Error("Percentile reordered the caller's slice")
	}
	if _, err := Percentile(nil, 50); err == nil {
		t.Error("no samples: want an error")
	}
	if _, err := Percentile(s, 0); err == nil {
		t.Error("p0: want an error")
	}
}

func TestParseProcStatus(t *testing.T) {
	text := "Name:\ttwill\nVmPeak:\t 1300000 kB\nVmHWM:\t   52344 kB\nVmRSS:\t   40000 kB\nThreads:\t9\n"
	m, err := ParseProcStatus(text)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 40000*1024 || m.HWM != 52344*1024 {
		t.Fatalf("got %+v", m)
	}
	if got := MB(m.RSS); got < 39.06 || got > 39.07 {
		t.Fatalf("MB = %v", got)
	}
	if _, err := ParseProcStatus("Name:\tkthreadd\nThreads:\t1\n"); err == nil || !strings.Contains(err.Error(), "VmRSS") {
		t.Fatalf("kernel thread: err = %v", err)
	}
	if _, err := ParseProcStatus("VmHWM:\t1 kB\nVmRSS:\tlots kB\n"); err == nil || !strings.Contains(err.Error(), "lots") {
		t.Fatalf("bad number: err = %v", err)
	}
}

func TestParseIperfJSON(t *testing.T) {
	bps, err := ParseIperfJSON([]byte(`{"start":{},"end":{"sum_sent":{"bits_per_second":2e9},"sum_received":{"bits_per_second":1.5e9}}}`))
	if err != nil || bps != 1.5e9 {
		t.Fatalf("got %v, %v", bps, err)
	}
	if _, err := ParseIperfJSON([]byte(`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`)); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("iperf3 error: err = %v", err)
	}
	if _, err := ParseIperfJSON([]byte(`{"end":{}}`)); err == nil {
		t.Fatal("no sum_received: want an error")
	}
	if _, err := ParseIperfJSON([]byte(`iperf3: error`)); err == nil {
		t.Fatal("not JSON: want an error")
	}
}

func TestFakePeersAreDistinctValidAndSkipRealNodes(t *testing.T) {
	network := netip.MustParsePrefix("10.0.0.0/8")
	skip := []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")}
	ps, err := FakePeers(5000, network, 24, netip.MustParseAddr("10.1.0.0"), skip)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 5000 {
		t.Fatalf("%d leases", len(ps))
	}
	subnets, ips, macs := map[netip.Prefix]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range ps {
		if p.Subnet.Bits() != 24 || !network.Contains(p.Subnet.Addr()) || p.Subnet.Overlaps(skip[0]) {
			t.Fatalf("bad subnet %s", p.Subnet)
		}
		ip := p.Attrs.PublicIP
		if !FakePeerUnderlay.Contains(ip) {
			t.Fatalf("underlay %s outside %s", ip, FakePeerUnderlay)
		}
		if _, err := net.ParseMAC(p.Attrs.BackendData.VtepMAC); err != nil || p.Attrs.BackendType != "vxlan" || p.Attrs.Node == "" {
			t.Fatalf("bad lease %+v", p)
		}
		subnets[p.Subnet], ips[p.Attrs.PublicIP.String()], macs[p.Attrs.BackendData.VtepMAC] = true, true, true
	}
	if len(subnets) != 5000 || len(ips) != 5000 || len(macs) != 5000 {
		t.Fatalf("not distinct: %d subnets, %d IPs, %d MACs", len(subnets), len(ips), len(macs))
	}
	if ps[0].Subnet.String() != "10.1.0.0/24" || ps[1].Subnet.String() != "10.1.2.0/24" {
		t.Fatalf("first subnets %s %s", ps[0].Subnet, ps[1].Subnet)
	}
	if _, err := FakePeers(300, netip.MustParsePrefix("10.244.0.0/16"), 24, netip.MustParseAddr("10.244.0.0"), nil); err == nil {
		t.Fatal("300 /24s in a /16: want an error")
	}
}

func TestBitRateMedianRatio(t *testing.T) {
	r, err := BitRate(125_000_000, 2*time.Second)
	if err != nil || r != 5e8 {
		t.Fatalf("BitRate = %v, %v; want 5e8", r, err)
	}
	if _, err := BitRate(1, 0); err == nil {
		t.Fatal("zero duration: want an error")
	}
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median odd = %v", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median even = %v", m)
	}
	got, err := MedianRatio([]float64{8, 9, 1}, []float64{10, 10, 10})
	if err != nil || got != 0.8 {
		t.Fatalf("MedianRatio = %v, %v; want 0.8", got, err)
	}
	if _, err := MedianRatio([]float64{1}, []float64{0}); err == nil {
		t.Fatal("zero baseline: want an error")
	}
	if _, err := MedianRatio([]float64{1, 2}, []float64{1}); err == nil {
		t.Fatal("count mismatch: want an error")
	}
}
