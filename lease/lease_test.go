package lease

import (
	"net/netip"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	sn := netip.MustParsePrefix("10.244.7.0/24")
	key := SubnetKey("/twill.io/network/", sn)
	if key != "/twill.io/network/subnets/10.244.7.0-24" {
		t.Fatalf("key %q", key)
	}
	l := Lease{Subnet: sn, Attrs: Attrs{PublicIP: netip.MustParseAddr("192.168.77.12"), BackendType: "vxlan", BackendData: &BackendData{VtepMAC: "aa:bb:cc:dd:ee:ff"}}}
	got, err := Decode(key, l.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Subnet != sn || got.Attrs.BackendData.VtepMAC != "aa:bb:cc:dd:ee:ff" || got.Attrs.PublicIP.String() != "192.168.77.12" {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	for _, c := range []struct{ key, val string }{
		{"/p/subnets/10.244.1.0", `{"PublicIP":"1.2.3.4"}`},
		{"/p/subnets/10.244.1.0-99", `{"PublicIP":"1.2.3.4"}`},
		{"/p/subnets/10.244.1.0-24", `{"PublicIP":"nope"}`},
		{"/p/subnets/10.244.1.0-24", `{`},
	} {
		if _, err := Decode(c.key, []byte(c.val)); err == nil {
			t.Errorf("Decode(%q, %q) succeeded", c.key, c.val)
		}
	}
}

// Keys are named as Flannel names them (pkg/subnet MakeSubnetKey), and
// every key Flannel writes parses back.
func TestLeaseKeysFlannelNaming(t *testing.T) {
	sn4, sn6 := netip.MustParsePrefix("10.244.7.0/24"), netip.MustParsePrefix("fd00:10:244:7::/64")
	for _, c := range []struct {
		sn4, sn6 netip.Prefix
		key      string
	}{
		{sn4, netip.Prefix{}, "/p/subnets/10.244.7.0-24"},
		{sn4, sn6, "/p/subnets/10.244.7.0-24&fd00:10:244:7::-64"},
		{netip.Prefix{}, sn6, "/p/subnets/0.0.0.0-0&fd00:10:244:7::-64"},
	} {
		if got := LeaseKey("/p/", c.sn4, c.sn6); got != c.key {
			t.Errorf("LeaseKey(%v, %v) = %q, want %q", c.sn4, c.sn6, got, c.key)
		}
		g4, g6, err := ParseLeaseKey(c.key)
		if err != nil || g4 != c.sn4 || g6 != c.sn6 {
			t.Errorf("ParseLeaseKey(%q) = %v %v %v", c.key, g4, g6, err)
		}
	}
	for _, bad := range []string{
		"/p/subnets/fd00::-64",                   // IPv6 must follow "&"
		"/p/subnets/10.244.7.0-24&10.244.8.0-24", // not IPv6 after "&"
		"/p/subnets/10.244.7.0-24&fd00::-129",
		"/p/subnets/10.244.7.0-24&fd00::",
		"/p/subnets/0.0.0.0-0", // no subnet at all
		"/p/subnets/10.244.7.0-24&::ffff:10.0.0.0-120",
	} {
		if a, b, err := ParseLeaseKey(bad); err == nil {
			t.Errorf("ParseLeaseKey(%q) = %v %v, want an error", bad, a, b)
		}
	}
}

// A dual-stack lease value as Flannel writes it decodes; twill's encoding
// has the same field names and leaves out what is unset (Flannel's own
// parser fails on an empty address string).
func TestDualStackValueFlannelJSON(t *testing.T) {
	flannel := `{"PublicIP":"192.168.77.11","PublicIPv6":"fd00:77::11","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:74:c0:a8:4d:0b"},"BackendV6Data":{"VtepMAC":"0e:74:c0:a8:4d:6b"}}`
	l, err := Decode("/coreos.com/network/subnets/10.244.7.0-24&fd00:10:244:7::-64", []byte(flannel))
	if err != nil {
		t.Fatal(err)
	}
	if l.IPv6Subnet.String() != "fd00:10:244:7::/64" || l.Attrs.PublicIPv6.String() != "fd00:77::11" || l.Attrs.BackendV6Data.VtepMAC != "0e:74:c0:a8:4d:6b" {
		t.Fatalf("decoded %+v", l)
	}
	if got := string(l.Encode()); got != flannel {
		t.Fatalf("Encode = %s\nwant   %s", got, flannel)
	}
	v6 := Lease{IPv6Subnet: l.IPv6Subnet, Attrs: Attrs{PublicIPv6: l.Attrs.PublicIPv6, BackendType: "host-gw"}}
	if got := string(v6.Encode()); got != `{"PublicIPv6":"fd00:77::11","BackendType":"host-gw"}` {
		t.Fatalf("IPv6-only Encode = %s", got)
	}
	if _, err := Decode("/p/subnets/0.0.0.0-0&fd00::-64", []byte(`{"BackendType":"vxlan"}`)); err == nil || !strings.Contains(err.Error(), "PublicIP and PublicIPv6 are missing") {
		t.Fatalf("no address at all: %v", err)
	}
}
