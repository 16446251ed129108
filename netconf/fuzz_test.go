package netconf

import (
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics, whatever it accepts satisfies the
// invariants the allocator relies on, and JSON round-trips.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		flannelKubeYAML,
		`{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`,
		`{"Network": "10.0.0.0/8", "SubnetLen": 20, "SubnetMin": "10.10.0.0", "SubnetMax": "10.20.240.0"}`,
		`{"Network": "192.168.5.0/26", "Backend": {"VNI": 7, "Port": 4789, "MTU": 1400, "DirectRouting": true}}`,
		`{"EnableIPv6": true, "Network": "10.244.0.0/16"}`,
		`{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56"}`,
		`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:db8::/48", "IPv6SubnetLen": 80, "IPv6SubnetMin": "2001:db8:0:10::"}`,
		`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fe00::/120", "IPv6SubnetLen": 126}`,
		`{"Network": "255.255.255.0/24", "SubnetLen": 30}`,
		`{"network": null}`, `[]`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		if len(c.Families()) == 0 {
			t.Fatalf("accepted a config without a family: %+v", c)
		}
		for _, f := range c.Families() {
			pl, maxLen := c.Pool(f), MaxSubnetLen
			if f == IPv6 {
				maxLen = MaxIPv6SubnetLen
			}
			if FamilyOf(pl.Network.Addr()) != f || pl.Network.Addr().Is4In6() || pl.Network.Masked() != pl.Network {
				t.Fatalf("accepted %s network %s", f, pl.Network)
			}
			if pl.SubnetLen < pl.Network.Bits()+2 || pl.SubnetLen > maxLen {
				t.Fatalf("accepted %s subnet length %d in %s", f, pl.SubnetLen, pl.Network)
			}
			if !pl.Network.Contains(pl.SubnetMin) || !pl.Network.Contains(pl.SubnetMax) || pl.SubnetMax.Less(pl.SubnetMin) {
				t.Fatalf("accepted bounds %s..%s in %s", pl.SubnetMin, pl.SubnetMax, pl.Network)
			}
			if pl.Count() < 1 {
				t.Fatalf("accepted a config with no %s subnets: %+v", f, c)
			}
			n := 0
			for sn := range pl.Subnets() {
				if !pl.Allocatable(sn) {
					t.Fatalf("Subnets yielded %s, not Allocatable", sn)
				}
				if nth, ok := pl.Nth(uint64(n)); !ok || nth != sn {
					t.Fatalf("Nth(%d) = %v %v, Subnets yielded %s", n, nth, ok, sn)
				}
				if n++; n > 3 {
					break
				}
			}
		}
		if c.Backend.Type != BackendVXLAN && c.Backend.Type != BackendHostGW {
			t.Fatalf("accepted Backend.Type %q", c.Backend.Type)
		}
		again, err := Parse("again", c.JSON())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip of %s: %+v, %v", c.JSON(), again, err)
		}
	})
}
