package lease

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/netconf"
)

func testConfig(t testing.TB) netconf.Config {
	t.Helper()
	return dualConfig(t, `{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}`)
}

func good(node, subnet, ip, mac string, created int64) Lease {
	return Lease{Subnet: netip.MustParsePrefix(subnet), Created: created, Attrs: Attrs{
		PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", Node: node, BackendData: &BackendData{VtepMAC: mac}}}
}

func TestCheckReasons(t *testing.T) {
	cfg := testConfig(t)
	ok := good("n1", "10.244.1.0/24", "192.168.77.11", "0e:74:c0:a8:4d:0b", 5)
	if r := Check(cfg, ok); r != nil {
		t.Fatalf("a good lease rejected: %v", r)
	}
	mod := func(f func(*Lease)) Lease {
		l := ok
		bd := *ok.Attrs.BackendData
		l.Attrs.BackendData = &bd
		f(&l)
		return l
	}
	for _, c := range []struct {
		name, reason, detail string
		l                    Lease
	}{
		{"host bits", ReasonSubnet, "host bits", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("10.244.2.5/24") })},
		{"outside", ReasonSubnet, "not inside the network", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("10.9.1.0/24") })},
		{"wider", ReasonSubnet, "SubnetLen 24", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("10.244.2.0/23") })},
		{"narrower", ReasonSubnet, "SubnetLen 24", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("10.244.1.0/25") })},
		{"below SubnetMin", ReasonSubnet, "SubnetMin", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("10.244.0.0/24") })},
		{"ipv6", ReasonSubnet, "IPv4", mod(func(l *Lease) { l.Subnet = netip.MustParsePrefix("fd00::/64") })},
		{"no ip", ReasonPublicIP, "not set", mod(func(l *Lease) { l.Attrs.PublicIP = netip.Addr{} })},
		{"unspecified", ReasonPublicIP, "unspecified", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("0.0.0.0") })},
		{"loopback", ReasonPublicIP, "loopback", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("127.0.0.1") })},
		{"multicast", ReasonPublicIP, "multicast", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("224.0.0.1") })},
		{"broadcast", ReasonPublicIP, "broadcast", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("255.255.255.255") })},
		{"link-local", ReasonPublicIP, "link-local", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("169.254.1.1") })},
		{"ipv6 ip", ReasonPublicIP, "IPv4", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("fd00::1") })},
		{"backend", ReasonBackend, "host-gw", mod(func(l *Lease) { l.Attrs.BackendType = "host-gw" })},
		{"no mac", ReasonVtepMAC, "no VtepMAC", mod(func(l *Lease) { l.Attrs.BackendData = nil })},
		{"broadcast mac", ReasonVtepMAC, "multicast/broadcast", mod(func(l *Lease) { l.Attrs.BackendData.VtepMAC = "ff:ff:ff:ff:ff:ff" })},
		{"multicast mac", ReasonVtepMAC, "multicast/broadcast", mod(func(l *Lease) { l.Attrs.BackendData.VtepMAC = "01:00:5e:00:00:01" })},
		{"zero mac", ReasonVtepMAC, "zero MAC", mod(func(l *Lease) { l.Attrs.BackendData.VtepMAC = "00:00:00:00:00:00" })},
		{"long mac", ReasonVtepMAC, "Ethernet", mod(func(l *Lease) { l.Attrs.BackendData.VtepMAC = "02:00:00:00:00:00:00:01" })},
	} {
		r := Check(cfg, c.l)
		if r == nil || r.Reason != c.reason || !strings.Contains(r.Detail, c.detail) {
			t.Errorf("%s: Check = %v, want reason %s with %q", c.name, r, c.reason, c.detail)
		}
	}
}

func TestDecodeBoundsValue(t *testing.T) {
	big := `{"PublicIP":"192.168.77.11","Node":"` + strings.Repeat("x", MaxValueSize) + `"}`
	_, err := Decode("/p/subnets/10.244.1.0-24", []byte(big))
	if err == nil || !strings.Contains(err.Error(), "more than the 4096") {
		t.Fatalf("Decode of a %d-byte value: %v", len(big), err)
	}
}

func TestEncodeIsFlannelJSON(t *testing.T) {
	l := good("n1", "10.244.1.0/24", "192.168.77.11", "0e:74:c0:a8:4d:0b", 0)
	l.Attrs.Node = ""
	if got := string(l.Encode()); got != `{"PublicIP":"192.168.77.11","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:74:c0:a8:4d:0b"}}` {
		t.Fatalf("Encode = %s", got)
	}
}

func TestAcceptOlderWins(t *testing.T) {
	cfg := testConfig(t)
	a := good("a", "10.244.1.0/24", "192.168.77.11", "02:00:00:00:00:01", 10)
	b := good("b", "10.244.1.0/24", "192.168.77.12", "02:00:00:00:00:02", 7) // older, same subnet
	c := good("c", "10.244.2.0/24", "192.168.77.13", "02:00:00:00:00:03", 3)
	host := good("d", "10.244.1.0/24", "192.168.77.14", "02:00:00:00:00:04", 1)
	host.Subnet = netip.MustParsePrefix("10.244.1.5/24") // oldest, but has host bits
	acc, rej := Accept(cfg, []Lease{a, b, c, host})
	if len(acc) != 2 || acc[0].Attrs.Node != "b" || acc[1].Attrs.Node != "c" {
		t.Fatalf("accepted %v, want b and c", acc)
	}
	if len(rej) != 2 || rej[0].Lease.Attrs.Node != "a" || rej[0].Reason != ReasonConflict || !strings.Contains(rej[0].Detail, "node b") ||
		rej[1].Lease.Attrs.Node != "d" || rej[1].Reason != ReasonSubnet {
		t.Fatalf("rejected %v", rej)
	}
}

// randomLease draws a lease that is often valid, often conflicting and
// sometimes malformed in each possible way.
func randomLease(r *rand.Rand, i int) Lease {
	third := byte(r.IntN(8))
	sn := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, third, 0}), 24)
	switch r.IntN(12) {
	case 0:
		sn = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, third, byte(r.IntN(256))}), 24)
	case 1:
		sn = netip.PrefixFrom(sn.Addr(), 16+r.IntN(17))
	case 2:
		sn = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), third, 0}), 24)
	}
	ip := netip.AddrFrom4([4]byte{192, 168, 77, byte(r.IntN(256))})
	if r.IntN(10) == 0 {
		ip = []netip.Addr{{}, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("224.0.0.1")}[r.IntN(4)]
	}
	mac := []string{"02:00:00:00:00:09", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "nope", ""}[min(r.IntN(20), 4)]
	be := "vxlan"
	if r.IntN(15) == 0 {
		be = "host-gw"
	}
	return Lease{Subnet: sn, Created: int64(r.IntN(5)), Attrs: Attrs{PublicIP: ip, BackendType: be,
		Node: string(rune('a' + i%26)), BackendData: &BackendData{VtepMAC: mac}}}
}

// TestAcceptProperty: for random lease sets, every node (each seeing the
// leases in its own order) accepts the same set, no two accepted subnets
// overlap, each accepted lease passes Check, and each input lease is
// accepted or rejected exactly once.
func TestAcceptProperty(t *testing.T) {
	cfg := testConfig(t)
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 1))
		var in []Lease
		for i := range r.IntN(20) {
			in = append(in, randomLease(r, i))
		}
		checkAccept(t, cfg, in, r)
	}
}

func checkAccept(t *testing.T, cfg netconf.Config, in []Lease, r *rand.Rand) {
	t.Helper()
	acc, rej := Accept(cfg, in)
	if len(acc)+len(rej) != len(in) {
		t.Fatalf("%d leases in, %d accepted + %d rejected", len(in), len(acc), len(rej))
	}
	for i, a := range acc {
		if c := Check(cfg, a); c != nil {
			t.Fatalf("accepted a lease Check rejects: %v", c)
		}
		for _, b := range acc[i+1:] {
			// A family the cluster does not run is ignored, overlaps too.
			if (cfg.EnableIPv4() && a.Subnet.Overlaps(b.Subnet)) || (cfg.EnableIPv6() && a.IPv6Subnet.Overlaps(b.IPv6Subnet)) {
				t.Fatalf("accepted overlapping %v and %v", a, b)
			}
		}
	}
	for range 3 { // three other nodes, each listing in its own order
		other := slices.Clone(in)
		r.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
		acc2, rej2 := Accept(cfg, other)
		if !slices.EqualFunc(acc, acc2, sameAttrs) || len(rej) != len(rej2) {
			t.Fatalf("two nodes disagree:\n%v\n%v", acc, acc2)
		}
	}
}

func sameAttrs(a, b Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet && a.Created == b.Created && string(a.Encode()) == string(b.Encode())
}

// FuzzAccept runs the property on lease sets decoded from fuzzer bytes.
func FuzzAccept(f *testing.F) {
	f.Add(uint64(1), uint8(5))
	f.Add(uint64(42), uint8(19))
	cfg := testConfig(f)
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		r := rand.New(rand.NewPCG(seed, 2))
		var in []Lease
		for i := range int(n % 64) {
			in = append(in, randomLease(r, i))
		}
		checkAccept(t, cfg, in, r)
	})
}

func dualConfig(t testing.TB, js string) netconf.Config {
	t.Helper()
	cfg, err := netconf.Parse("test", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const dualJSON = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`

func goodDual(node, sn4, sn6 string, created int64) Lease {
	l := good(node, sn4, "192.168.77.11", "0e:74:c0:a8:4d:0b", created)
	l.IPv6Subnet = netip.MustParsePrefix(sn6)
	l.Attrs.PublicIPv6 = netip.MustParseAddr("fd00:77::11")
	l.Attrs.BackendV6Data = &BackendData{VtepMAC: "0e:74:c0:a8:4d:6b"}
	return l
}

// One validator, both families: each IPv6 defect is rejected with its
// reason like its IPv4 twin.
func TestCheckReasonsIPv6(t *testing.T) {
	cfg := dualConfig(t, dualJSON)
	ok := goodDual("n1", "10.244.1.0/24", "fd00:10:244:1::/64", 5)
	if r := Check(cfg, ok); r != nil {
		t.Fatalf("a good dual-stack lease rejected: %v", r)
	}
	mod := func(f func(*Lease)) Lease {
		l := ok
		bd := *ok.Attrs.BackendV6Data
		l.Attrs.BackendV6Data = &bd
		f(&l)
		return l
	}
	for _, c := range []struct {
		name, reason, detail string
		l                    Lease
	}{
		{"no v6 subnet", ReasonSubnet, "no IPv6 subnet, but the cluster runs IPv6", mod(func(l *Lease) { l.IPv6Subnet = netip.Prefix{} })},
		{"v4 in v6 slot", ReasonSubnet, "IPv6 subnet 10.244.9.0/24 is not an IPv6 prefix", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("10.244.9.0/24") })},
		{"mapped", ReasonSubnet, "is not an IPv6 prefix", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("::ffff:10.244.9.0/120") })},
		{"host bits", ReasonSubnet, "host bits", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:1::5/64") })},
		{"outside", ReasonSubnet, "not inside the IPv6 network fd00:10:244::/56", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("fd00:10:245:1::/64") })},
		{"wider", ReasonSubnet, "IPv6SubnetLen 64", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:2::/63") })},
		{"below min", ReasonSubnet, "IPv6SubnetMin", mod(func(l *Lease) { l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244::/64") })},
		{"no ipv6", ReasonPublicIP, "PublicIPv6 invalid IP: not set", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.Addr{} })},
		{"v4 as ipv6", ReasonPublicIP, "not an IPv6 address", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.MustParseAddr("192.168.77.11") })},
		{"mapped ipv6", ReasonPublicIP, "not an IPv6 address", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.MustParseAddr("::ffff:192.168.77.11") })},
		{"link-local", ReasonPublicIP, "link-local", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.MustParseAddr("fe80::1") })},
		{"loopback", ReasonPublicIP, "loopback", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.MustParseAddr("::1") })},
		{"multicast", ReasonPublicIP, "multicast", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.MustParseAddr("ff02::1") })},
		{"unspecified", ReasonPublicIP, "unspecified", mod(func(l *Lease) { l.Attrs.PublicIPv6 = netip.IPv6Unspecified() })},
		{"no v6 mac", ReasonVtepMAC, "no BackendV6Data.VtepMAC", mod(func(l *Lease) { l.Attrs.BackendV6Data = nil })},
		{"bad v6 mac", ReasonVtepMAC, "BackendV6Data.VtepMAC \"ff:ff:ff:ff:ff:ff\": a multicast/broadcast MAC", mod(func(l *Lease) { l.Attrs.BackendV6Data.VtepMAC = "ff:ff:ff:ff:ff:ff" })},
		{"v4 part still checked", ReasonPublicIP, "PublicIP 127.0.0.1: loopback", mod(func(l *Lease) { l.Attrs.PublicIP = netip.MustParseAddr("127.0.0.1") })},
	} {
		r := Check(cfg, c.l)
		if r == nil || r.Reason != c.reason || !strings.Contains(r.Detail, c.detail) {
			t.Errorf("%s: Check = %v, want reason %s with %q", c.name, r, c.reason, c.detail)
		}
	}

	// IPv6-only: the IPv4 half is neither needed nor looked at.
	v6 := dualConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}`)
	only := ok
	only.Subnet, only.Attrs.PublicIP, only.Attrs.BackendData = netip.Prefix{}, netip.Addr{}, nil
	if r := Check(v6, only); r != nil {
		t.Fatalf("IPv6-only lease rejected: %v", r)
	}
	// IPv4-only cluster: a peer's IPv6 half is ignored, whatever it holds.
	v4peer := ok
	v4peer.IPv6Subnet, v4peer.Attrs.PublicIPv6 = netip.MustParsePrefix("2001:db8::/32"), netip.MustParseAddr("fe80::1")
	if r := Check(testConfig(t), v4peer); r != nil {
		t.Fatalf("IPv4 cluster rejected a lease for its IPv6 half: %v", r)
	}
}

func TestAcceptIPv6ConflictOlderWins(t *testing.T) {
	cfg := dualConfig(t, dualJSON)
	a := goodDual("a", "10.244.1.0/24", "fd00:10:244:1::/64", 10)
	b := goodDual("b", "10.244.2.0/24", "fd00:10:244:1::/64", 7) // older: same IPv6 subnet, other IPv4
	c := goodDual("c", "10.244.3.0/24", "fd00:10:244:3::/64", 3)
	acc, rej := Accept(cfg, []Lease{a, b, c})
	if len(acc) != 2 || acc[0].Attrs.Node != "b" || acc[1].Attrs.Node != "c" {
		t.Fatalf("accepted %v, want b and c", acc)
	}
	if len(rej) != 1 || rej[0].Lease.Attrs.Node != "a" || rej[0].Reason != ReasonConflict || !strings.Contains(rej[0].Detail, "subnet fd00:10:244:1::/64 overlaps 10.244.2.0/24,fd00:10:244:1::/64 of node b") {
		t.Fatalf("rejected %v", rej)
	}
	// a's IPv4 subnet stays free: a later lease may hold it.
	d := goodDual("d", "10.244.1.0/24", "fd00:10:244:4::/64", 11)
	if acc, _ := Accept(cfg, []Lease{a, b, c, d}); len(acc) != 3 {
		t.Fatalf("accepted %v, want b, c and d", acc)
	}
}

// randomDualLease is randomLease with an IPv6 half, often valid, often
// conflicting, sometimes malformed.
func randomDualLease(r *rand.Rand, i int) Lease {
	l := randomLease(r, i)
	sn6 := netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::/64", r.IntN(8)))
	switch r.IntN(10) {
	case 0:
		sn6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::%x/64", r.IntN(8), r.IntN(3)))
	case 1:
		sn6 = netip.PrefixFrom(sn6.Addr(), 56+r.IntN(20))
	case 2:
		sn6 = netip.Prefix{}
	}
	l.IPv6Subnet = sn6
	l.Attrs.PublicIPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:77::%x", r.IntN(300)))
	if r.IntN(10) == 0 {
		l.Attrs.PublicIPv6 = []netip.Addr{{}, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("::1"), netip.MustParseAddr("10.0.0.1")}[r.IntN(4)]
	}
	l.Attrs.BackendV6Data = &BackendData{VtepMAC: []string{"02:00:00:00:06:09", "ff:ff:ff:ff:ff:ff", ""}[min(r.IntN(15), 2)]}
	return l
}

// TestAcceptPropertyDualStack: the Accept property for dual-stack and
// IPv6-only clusters.
func TestAcceptPropertyDualStack(t *testing.T) {
	for _, cfg := range []netconf.Config{dualConfig(t, dualJSON), dualConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}`)} {
		for seed := range uint64(300) {
			r := rand.New(rand.NewPCG(seed, 3))
			var in []Lease
			for i := range r.IntN(20) {
				in = append(in, randomDualLease(r, i))
			}
			checkAccept(t, cfg, in, r)
		}
	}
}
