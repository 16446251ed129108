package lease

import (
	"net/netip"
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
