package lease

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/netconf"
)

func testConfig(t testing.TB) netconf.Config {
	t.Helper()
	cfg, err := netconf.Parse("test", []byte(`{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
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
			if a.Subnet.Overlaps(b.Subnet) {
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
	return a.Subnet == b.Subnet && a.Created == b.Created && string(a.Encode()) == string(b.Encode())
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
