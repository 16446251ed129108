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
		if !c.Network.Addr().Is4() || c.Network.Masked() != c.Network {
			t.Fatalf("accepted Network %s", c.Network)
		}
		if c.SubnetLen < c.Network.Bits()+2 || c.SubnetLen > MaxSubnetLen {
			t.Fatalf("accepted SubnetLen %d in %s", c.SubnetLen, c.Network)
		}
		if !c.Network.Contains(c.SubnetMin) || !c.Network.Contains(c.SubnetMax) || c.SubnetMax.Less(c.SubnetMin) {
			t.Fatalf("accepted bounds %s..%s in %s", c.SubnetMin, c.SubnetMax, c.Network)
		}
		if c.SubnetCount() < 1 {
			t.Fatalf("accepted a config with no subnets: %+v", c)
		}
		n := 0
		for sn := range c.Subnets() {
			if !c.Allocatable(sn) {
				t.Fatalf("Subnets yielded %s, not Allocatable", sn)
			}
			if n++; n > 3 {
				break
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
