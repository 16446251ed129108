package netconf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

// flannelKubeYAML is the net-conf.json of Flannel's kube-flannel.yml
// ConfigMap, verbatim.
const flannelKubeYAML = `{
  "Network": "10.244.0.0/16",
  "EnableNFTables": false,
  "Backend": {
    "Type": "vxlan"
  }
}
`

func TestParseAcceptsFlannelFiles(t *testing.T) {
	vxlan16 := Config{
		Network: mp("10.244.0.0/16"), SubnetLen: 24,
		SubnetMin: ma("10.244.1.0"), SubnetMax: ma("10.244.255.0"),
		Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472},
	}
	hostgw := vxlan16
	dual := vxlan16
	dual.IPv6Network, dual.IPv6SubnetLen, dual.IPv6SubnetMin, dual.IPv6SubnetMax = mp("fd00:10:244::/56"), 64, ma("fd00:10:244:1::"), ma("fd00:10:244:ff::")
	v6only := Config{IPv6Network: dual.IPv6Network, IPv6SubnetLen: 64, IPv6SubnetMin: dual.IPv6SubnetMin, IPv6SubnetMax: dual.IPv6SubnetMax, Backend: vxlan16.Backend}
	hostgw.Backend = Backend{Type: "host-gw"}
	for _, c := range []struct {
		name, in string
		want     Config
	}{
		{"kube-flannel.yml", flannelKubeYAML, vxlan16},
		{"minimal", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`, vxlan16},
		{"no backend", `{"Network": "10.244.0.0/16"}`, vxlan16},
		{"flannel ipv4 keys", `{"EnableIPv4": true, "EnableIPv6": false, "Network": "10.244.0.0/16", "IPv6Network": "2001:cafe:42::/56", "Backend": {"Type": "vxlan"}}`, vxlan16},
		{"case as encoding/json", `{"network": "10.244.0.0/16", "backend": {"type": "VXLAN"}}`, vxlan16},
		{"null is absent", `{"Network": "10.244.0.0/16", "SubnetLen": null, "Backend": null}`, vxlan16},
		{"host-gw", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`, hostgw},
		{"flannel vxlan extras", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "GBP": false, "Learning": false, "DirectRouting": true, "MacPrefix": "0e:2a", "MTU": 1400}}`,
			Config{Network: mp("10.244.0.0/16"), SubnetLen: 24, SubnetMin: ma("10.244.1.0"), SubnetMax: ma("10.244.255.0"),
				Backend: Backend{Type: "vxlan", VNI: 4096, Port: 4789, DirectRouting: true, MTU: 1400}}},
		{"all subnet keys", `{"Network": "10.0.0.0/8", "SubnetLen": 20, "SubnetMin": "10.10.0.0", "SubnetMax": "10.20.240.0"}`,
			Config{Network: mp("10.0.0.0/8"), SubnetLen: 20, SubnetMin: ma("10.10.0.0"), SubnetMax: ma("10.20.240.0"), Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472}}},
		{"small network: four subnets", `{"Network": "192.168.5.0/26"}`,
			Config{Network: mp("192.168.5.0/26"), SubnetLen: 28, SubnetMin: ma("192.168.5.16"), SubnetMax: ma("192.168.5.48"), Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472}}},
		{"dual stack", `{"EnableIPv4": true, "EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`, dual},
		{"ipv6 only", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`, v6only},
		{"ipv6 only ignores v4 keys", `{"EnableIPv4": false, "EnableIPv6": true, "Network": "10.244.0.0/16", "SubnetLen": 20, "IPv6Network": "fd00:10:244::/56"}`, v6only},
		{"ipv6 all keys", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "2001:db8::/48", "IPv6SubnetLen": 80, "IPv6SubnetMin": "2001:db8:0:10::", "IPv6SubnetMax": "2001:db8:0:20::", "Backend": {"Type": "host-gw", "MTU": 1280}}`,
			Config{IPv6Network: mp("2001:db8::/48"), IPv6SubnetLen: 80, IPv6SubnetMin: ma("2001:db8:0:10::"), IPv6SubnetMax: ma("2001:db8:0:20::"), Backend: Backend{Type: "host-gw", MTU: 1280}}},
		{"small ipv6 network: four subnets", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/120"}`,
			Config{IPv6Network: mp("fd00::/120"), IPv6SubnetLen: 122, IPv6SubnetMin: ma("fd00::40"), IPv6SubnetMax: ma("fd00::c0"), Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472}}},
		{"/62 keeps /64", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/62"}`,
			Config{IPv6Network: mp("fd00::/62"), IPv6SubnetLen: 64, IPv6SubnetMin: ma("fd00:0:0:1::"), IPv6SubnetMax: ma("fd00:0:0:3::"), Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472}}},
		{"/22 keeps /24", `{"Network": "10.1.0.0/22"}`,
			Config{Network: mp("10.1.0.0/22"), SubnetLen: 24, SubnetMin: ma("10.1.1.0"), SubnetMax: ma("10.1.3.0"), Backend: Backend{Type: "vxlan", VNI: 1, Port: 8472}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("net-conf.json", []byte(c.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
			again, err := Parse("again", got.JSON())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("JSON round trip: %s -> %+v, %v", got.JSON(), again, err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string // substrings of the error, each must appear
	}{
		{"not json", `{"Network": `, []string{"net-conf.json: not a JSON object"}},
		{"array", `[]`, []string{"not a JSON object"}},
		{"null", `null`, []string{"not a JSON object"}},
		{"no network", `{"Backend": {"Type": "vxlan"}}`, []string{"Network: required"}},
		{"bad cidr", `{"Network": "10.244.0.0/33"}`, []string{`Network "10.244.0.0/33": not a CIDR`}},
		{"not a string", `{"Network": 10}`, []string{"Network 10: want a CIDR string"}},
		{"host bits", `{"Network": "10.244.1.0/16"}`, []string{"Network 10.244.1.0/16: host bits are set; did you mean 10.244.0.0/16?"}},
		{"ipv6 in Network", `{"Network": "fd00::/48"}`, []string{`Network fd00::/48: an IPv6 CIDR, but Network is the IPv4 pod network; put it in IPv6Network with "EnableIPv6": true`}},
		{"whole space", `{"Network": "0.0.0.0/0"}`, []string{"Network 0.0.0.0/0: too wide: must be /8 or longer"}},
		{"too small", `{"Network": "10.0.0.0/29"}`, []string{"Network 10.0.0.0/29: too small: must be /28 or larger"}},
		{"subnetlen 33", `{"Network": "10.244.0.0/16", "SubnetLen": 33}`, []string{"net-conf.json: SubnetLen 33: must be between 18 and 30"}},
		{"subnetlen too short", `{"Network": "10.244.0.0/16", "SubnetLen": 16}`, []string{"SubnetLen 16: must be between 18 and 30"}},
		{"subnetlen string", `{"Network": "10.244.0.0/16", "SubnetLen": "24"}`, []string{`SubnetLen "24": want an integer`}},
		{"subnetlen float", `{"Network": "10.244.0.0/16", "SubnetLen": 24.5}`, []string{`SubnetLen 24.5: want an integer`}},
		{"min outside", `{"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}`, []string{"SubnetMin 10.245.0.0: outside Network 10.244.0.0/16"}},
		{"max outside", `{"Network": "10.244.0.0/16", "SubnetMax": "10.0.0.0"}`, []string{"SubnetMax 10.0.0.0: outside Network 10.244.0.0/16"}},
		{"min unaligned", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.5"}`, []string{"SubnetMin 10.244.1.5: not the start of a /24 subnet (SubnetLen 24); did you mean 10.244.1.0?"}},
		{"min with length", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0/24"}`, []string{`SubnetMin "10.244.1.0/24": not an IP address (write the subnet's address without a length: "10.244.1.0")`}},
		{"min ipv6", `{"Network": "10.244.0.0/16", "SubnetMin": "fd00::"}`, []string{"SubnetMin fd00::: must be an IPv4 address"}},
		{"min after max", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.3.0"}`, []string{"SubnetMin 10.244.9.0 is after SubnetMax 10.244.3.0"}},
		{"misspelled key", `{"Network": "10.244.0.0/16", "SubnetLenght": 24}`, []string{"SubnetLenght: unknown key (did you mean SubnetLen?)"}},
		{"unknown key", `{"Network": "10.244.0.0/16", "Pods": 3}`, []string{"Pods: unknown key; known keys: Network, SubnetLen"}},
		{"misspelled backend key", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VIN": 2}}`, []string{"Backend.VIN: unknown key (did you mean Backend.VNI?)"}},
		{"backend not object", `{"Network": "10.244.0.0/16", "Backend": "vxlan"}`, []string{`Backend "vxlan": want an object`}},
		{"unknown type", `{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}}`, []string{`Backend.Type "geneve": unknown backend; use "vxlan" or "host-gw"`}},
		{"flannel type", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}`, []string{`Backend.Type "wireguard": Flannel's wireguard backend is not supported`, `use "vxlan"`}},
		{"udp", `{"Network": "10.244.0.0/16", "Backend": {"Type": "UDP"}}`,
			[]string{`Backend.Type "UDP": Flannel's deprecated udp backend is not supported; use "vxlan" (same wire as Flannel's vxlan, VNI 1, port 8472)`}},
		{"ipip", `{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}`, []string{`Backend.Type "ipip": Flannel's ipip backend is not supported; use "host-gw"`}},
		{"learning", `{"Network": "10.244.0.0/16", "Backend": {"Learning": true}}`, []string{"Backend.Learning true: not supported", "set it to false"}},
		{"macprefix custom", `{"Network": "10.244.0.0/16", "Backend": {"MacPrefix": "0E:6A"}}`,
			[]string{`Backend.MacPrefix "0E:6A": not supported: twill derives its VTEP MACs itself`, `set it to "0E:2A"`}},
		{"macprefix number", `{"Network": "10.244.0.0/16", "Backend": {"MacPrefix": 14}}`, []string{`Backend.MacPrefix 14: want a string like "0E:2A"`}},
		{"vni 0", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 0}}`, []string{"Backend.VNI 0: must be between 1 and 16777215"}},
		{"vni big", `{"Network": "10.244.0.0/16", "Backend": {"VNI": 16777216}}`, []string{"Backend.VNI 16777216: must be between 1 and 16777215"}},
		{"port", `{"Network": "10.244.0.0/16", "Backend": {"Port": 70000}}`, []string{"Backend.Port 70000: must be between 1 and 65535"}},
		{"mtu", `{"Network": "10.244.0.0/16", "Backend": {"MTU": 20}}`, []string{"Backend.MTU 20: must be between 68 and 65535"}},
		{"directrouting string", `{"Network": "10.244.0.0/16", "Backend": {"DirectRouting": "yes"}}`, []string{`Backend.DirectRouting "yes": want true or false`}},
		{"gbp", `{"Network": "10.244.0.0/16", "Backend": {"GBP": true}}`, []string{"Backend.GBP true: not supported"}},
		{"ipv6 on without network", `{"Network": "10.244.0.0/16", "EnableIPv6": true}`, []string{"IPv6Network: required while EnableIPv6 is true"}},
		{"both families off", `{"Network": "10.244.0.0/16", "EnableIPv4": false}`, []string{"EnableIPv4 and EnableIPv6 are both false: pods would get no address"}},
		{"ipv4 on without network", `{"EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`, []string{`Network: required while EnableIPv4 is true`, `set "EnableIPv4": false`}},
		{"enable not bool", `{"Network": "10.244.0.0/16", "EnableIPv6": "yes"}`, []string{`EnableIPv6 "yes": want true or false`}},
		{"v6 network with v4 value", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "10.245.0.0/16"}`,
			[]string{"IPv6Network 10.245.0.0/16: an IPv4 CIDR, but IPv6Network is the IPv6 pod network"}},
		{"v6 network mapped v4", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "::ffff:10.0.0.0/104"}`,
			[]string{"IPv6Network ::ffff:10.0.0.0/104: overlaps ::/8 (loopback, unspecified and IPv4-mapped addresses)"}},
		{"v6 network link-local", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fe80::/64"}`, []string{"IPv6Network fe80::/64: overlaps fe80::/10 (link-local"}},
		{"v6 network multicast", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "ff05::/64"}`, []string{"IPv6Network ff05::/64: overlaps ff00::/8"}},
		{"v6 network whole space", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "::/0"}`, []string{"IPv6Network ::/0: too wide: must be /8 or longer"}},
		{"v6 network host bits", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::1/64"}`, []string{"IPv6Network fd00::1/64: host bits are set; did you mean fd00::/64?"}},
		{"v6 network too small", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/125"}`, []string{"IPv6Network fd00::/125: too small: must be /124 or larger"}},
		{"v6 network not cidr", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::"}`, []string{`IPv6Network "fd00::": not a CIDR (want e.g. "fd00:10:244::/56")`}},
		{"v6 subnetlen 127", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 127}`, []string{"IPv6SubnetLen 127: must be between 58 and 126"}},
		{"v6 subnetlen short", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetLen": 57}`, []string{"IPv6SubnetLen 57: must be between 58 and 126"}},
		{"v6 min with v4 value", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMin": "10.244.1.0"}`,
			[]string{`IPv6SubnetMin 10.244.1.0: must be an IPv6 address like "fd00:10:244:1::" (IPv4 subnet bounds go in SubnetMin and SubnetMax)`}},
		{"v4 min with v6 value", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56", "SubnetMin": "fd00:0:0:1::"}`,
			[]string{"SubnetMin fd00:0:0:1::: must be an IPv4 address (IPv6 subnet bounds go in IPv6SubnetMin and IPv6SubnetMax)"}},
		{"v6 min outside", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMin": "fd01::"}`, []string{"IPv6SubnetMin fd01::: outside IPv6Network fd00::/56"}},
		{"v6 max unaligned", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMax": "fd00:0:0:7::1"}`,
			[]string{"IPv6SubnetMax fd00:0:0:7::1: not the start of a /64 subnet (IPv6SubnetLen 64); did you mean fd00:0:0:7::?"}},
		{"v6 min after max", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMin": "fd00:0:0:9::", "IPv6SubnetMax": "fd00:0:0:3::"}`,
			[]string{"IPv6SubnetMin fd00:0:0:9:: is after IPv6SubnetMax fd00:0:0:3::"}},
		{"v6 min zone", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "IPv6SubnetMin": "fd00:0:0:9::%eth0"}`,
			[]string{"IPv6SubnetMin fd00:0:0:9::%eth0: an address with a zone cannot bound subnets"}},
		{"v6 mtu", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/56", "Backend": {"MTU": 1200}}`, []string{"Backend.MTU 1200: IPv6 needs a link MTU of at least 1280"}},
		{"both families bad at once", `{"Network": "10.244.0.0/33", "EnableIPv6": true, "IPv6Network": "10.0.0.0/8"}`,
			[]string{`Network "10.244.0.0/33": not a CIDR`, "IPv6Network 10.0.0.0/8: an IPv4 CIDR"}},
		{"all problems at once", `{"Network": "10.244.0.0/16", "SubnetLen": 40, "Backend": {"Type": "udp", "Port": 0}}`,
			[]string{"SubnetLen 40", `Backend.Type "udp"`, "Backend.Port 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("net-conf.json", []byte(c.in))
			if err == nil {
				t.Fatalf("Parse accepted %s as %+v", c.in, got)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("a failed Parse returned a non-zero Config %+v", got)
			}
		})
	}
}

func TestSubnets(t *testing.T) {
	c, err := Parse("t", []byte(`{"Network": "10.244.0.0/16", "SubnetMin": "10.244.250.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Collect(c.Subnets())
	want := []netip.Prefix{mp("10.244.250.0/24"), mp("10.244.251.0/24"), mp("10.244.252.0/24"), mp("10.244.253.0/24"), mp("10.244.254.0/24"), mp("10.244.255.0/24")}
	if !slices.Equal(got, want) || c.SubnetCount() != len(want) {
		t.Fatalf("Subnets %v (count %d), want %v", got, c.SubnetCount(), want)
	}

	def, _ := Parse("t", []byte(`{"Network": "10.244.0.0/16"}`))
	if n := def.SubnetCount(); n != 255 {
		t.Errorf("default /16 in /24s: %d subnets, want 255 (all but the first)", n)
	}
	first := true
	for sn := range def.Subnets() {
		if first && sn != mp("10.244.1.0/24") {
			t.Errorf("first subnet %s, want 10.244.1.0/24", sn)
		}
		first = false
		break // early stop must be honoured
	}

	// The top of the address space must not wrap around.
	top, err := Parse("t", []byte(`{"Network": "255.255.255.0/24", "SubnetLen": 26}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Collect(top.Subnets()); len(got) != 3 || got[2] != mp("255.255.255.192/26") {
		t.Errorf("top of the space: %v", got)
	}

	for sn, want := range map[netip.Prefix]bool{
		mp("10.244.250.0/24"): true,
		mp("10.244.255.0/24"): true,
		mp("10.244.249.0/24"): false, // below SubnetMin
		mp("10.244.250.0/25"): false, // wrong length
		mp("10.245.0.0/24"):   false,
		mp("fd00::/24"):       false,
		{}:                    false,
	} {
		if c.Allocatable(sn) != want {
			t.Errorf("Allocatable(%s) = %v, want %v", sn, !want, want)
		}
	}
	if (Config{}).SubnetCount() != 0 || len(slices.Collect(Config{}.Subnets())) != 0 || (Config{}).Allocatable(mp("10.0.0.0/24")) {
		t.Error("zero Config must have no subnets")
	}
}

func TestValidateNodeNetworks(t *testing.T) {
	c, _ := Parse("t", []byte(`{"Network": "10.244.0.0/16"}`))
	if err := c.Validate([]netip.Prefix{mp("192.168.1.10/24"), mp("fd00::1/64"), mp("10.245.0.1/16")}); err != nil {
		t.Fatalf("no overlap, got %v", err)
	}
	err := c.Validate([]netip.Prefix{mp("192.168.1.10/24"), mp("10.244.7.3/24")})
	if err == nil || !strings.Contains(err.Error(), "Network 10.244.0.0/16 overlaps the node network 10.244.7.0/24") {
		t.Fatalf("overlap not reported clearly: %v", err)
	}
	if err := c.Validate([]netip.Prefix{mp("10.0.0.1/8")}); err == nil {
		t.Fatal("a node network containing Network must be reported")
	}
}

func TestIPv6Pool(t *testing.T) {
	c, err := Parse("t", []byte(`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetMin": "fd00:10:244:fc::"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Families(), []Family{IPv4, IPv6}) || !c.EnableIPv4() || !c.EnableIPv6() {
		t.Fatalf("families %v", c.Families())
	}
	pl := c.Pool(IPv6)
	got := slices.Collect(pl.Subnets())
	want := []netip.Prefix{mp("fd00:10:244:fc::/64"), mp("fd00:10:244:fd::/64"), mp("fd00:10:244:fe::/64"), mp("fd00:10:244:ff::/64")}
	if !slices.Equal(got, want) || pl.Count() != 4 {
		t.Fatalf("Subnets %v (count %d), want %v", got, pl.Count(), want)
	}
	for n, w := range want {
		if sn, ok := pl.Nth(uint64(n)); !ok || sn != w {
			t.Errorf("Nth(%d) = %v %v, want %v", n, sn, ok, w)
		}
	}
	if sn, ok := pl.Nth(4); ok {
		t.Errorf("Nth(4) = %v past SubnetMax", sn)
	}
	if sn, ok := pl.Nth(1 << 63); ok {
		t.Errorf("Nth(2^63) = %v: overflow not caught", sn)
	}
	for sn, want := range map[netip.Prefix]bool{
		mp("fd00:10:244:fc::/64"):   true,
		mp("fd00:10:244:fb::/64"):   false, // below the minimum
		mp("fd00:10:244:fc::/65"):   false,
		mp("fd00:10:244:fc::1/64"):  false, // host bits (not masked)
		mp("::ffff:10.244.1.0/120"): false,
		mp("10.244.1.0/24"):         false, // the other family
	} {
		if pl.Allocatable(sn) != want {
			t.Errorf("Pool(IPv6).Allocatable(%s) = %v, want %v", sn, !want, want)
		}
	}
	if c.Allocatable(mp("fd00:10:244:fc::/64")) || !c.Allocatable(mp("10.244.1.0/24")) {
		t.Error("Config.Allocatable is the IPv4 pool's")
	}

	// 2^62 subnets: Count saturates, iteration still starts right.
	big, err := Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/8", "IPv6SubnetLen": 126}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := big.Pool(IPv6).Count(); n != math.MaxInt {
		t.Errorf("huge pool count %d, want saturated %d", n, math.MaxInt)
	}
	if big.SubnetCount() != 0 || big.EnableIPv4() || !slices.Equal(big.Families(), []Family{IPv6}) {
		t.Errorf("IPv6-only config has IPv4 subnets or family: %d %v", big.SubnetCount(), big.Families())
	}
	for sn := range big.Pool(IPv6).Subnets() {
		if sn != mp("fd00::4/126") {
			t.Errorf("first subnet %s, want fd00::4/126", sn)
		}
		break
	}
	// 2^62 - 1 subnets of /70: Nth reaches the last one exactly.
	wide, err := Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/8", "IPv6SubnetLen": 70}`))
	if err != nil {
		t.Fatal(err)
	}
	wp := wide.Pool(IPv6)
	if n := wp.Count(); n != 1<<62-1 {
		t.Errorf("count %d, want 2^62-1", n)
	}
	if last, ok := wp.Nth(1<<62 - 2); !ok || last != mp("fdff:ffff:ffff:ffff:fc00::/70") || last.Addr() != wp.SubnetMax {
		t.Errorf("last subnet %v %v, SubnetMax %s", last, ok, wp.SubnetMax)
	}
	if sn, ok := wp.Nth(1<<62 - 1); ok {
		t.Errorf("Nth past the end: %v", sn)
	}

	// The top of the IPv6 address space must not wrap around.
	top, err := Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fe00::/64", "IPv6SubnetLen": 66}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Collect(top.Pool(IPv6).Subnets()); len(got) != 3 || got[2] != mp("fe00::c000:0:0:0/66") {
		t.Errorf("three subnets of four expected: %v", got)
	}
}

func TestValidateNodeNetworksIPv6(t *testing.T) {
	c, _ := Parse("t", []byte(`{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56"}`))
	if err := c.Validate([]netip.Prefix{mp("fd00:1::5/64"), mp("fe80::1/64"), mp("192.168.1.1/24")}); err != nil {
		t.Fatalf("no overlap, got %v", err)
	}
	err := c.Validate([]netip.Prefix{mp("fd00:10:244:7::1/64")})
	if err == nil || !strings.Contains(err.Error(), "IPv6Network fd00:10:244::/56 overlaps the node network fd00:10:244:7::/64") {
		t.Fatalf("v6 overlap not reported clearly: %v", err)
	}
}

func TestJSONShapeDualStack(t *testing.T) {
	c, _ := Parse("t", []byte(`{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56"}`))
	want := `{"EnableIPv6":true,"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.255.0","IPv6Network":"fd00:10:244::/56","IPv6SubnetLen":64,"IPv6SubnetMin":"fd00:10:244:1::","IPv6SubnetMax":"fd00:10:244:ff::","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`
	if string(c.JSON()) != want {
		t.Fatalf("JSON %s\nwant %s", c.JSON(), want)
	}
	v6, _ := Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	if !strings.HasPrefix(string(v6.JSON()), `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network"`) {
		t.Fatalf("IPv6-only JSON %s", v6.JSON())
	}
}

func TestJSONShape(t *testing.T) {
	c, _ := Parse("t", []byte(`{"Network": "10.244.0.0/16"}`))
	want := `{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`
	if string(c.JSON()) != want {
		t.Fatalf("JSON %s\nwant %s", c.JSON(), want)
	}
}

func TestJSONOfPartialConfigParsesWithDefaults(t *testing.T) {
	c, err := Parse("t", Config{Network: mp("10.244.0.0/16")}.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if c.SubnetLen != 24 || c.SubnetMin != ma("10.244.1.0") || c.Backend.Type != "vxlan" || c.Backend.Port != 8472 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// Every Flannel backend type twill lacks is refused with its own reason and
// an alternative, never the generic "unknown backend".
func TestParseFlannelTypes(t *testing.T) {
	for typ, why := range flannelTypes {
		in := fmt.Sprintf(`{"Network": "10.244.0.0/16", "Backend": {"Type": %q}}`, typ)
		_, err := Parse("net-conf.json", []byte(in))
		if err == nil {
			t.Errorf("Parse accepted Backend.Type %q", typ)
			continue
		}
		want := fmt.Sprintf("Backend.Type %q: %s", typ, why)
		if !strings.Contains(err.Error(), want) || !strings.Contains(why, `use "`) {
			t.Errorf("Backend.Type %q: error %q\nwant %q with an alternative", typ, err, want)
		}
	}
}

// Free agrees with the definition (Subnets minus those overlapping a held
// prefix) for random held sets of every length, in both families.
func TestPoolFreeMatchesDefinition(t *testing.T) {
	for _, conf := range []string{
		`{"Network": "10.244.0.0/22", "SubnetLen": 26}`,
		`{"Network": "255.255.255.0/24", "SubnetLen": 28}`,
		`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/120", "IPv6SubnetLen": 124}`,
		"top of the IPv6 space",
	} {
		var pl Pool
		if c, err := Parse("t", []byte(conf)); err == nil {
			pl = c.Pool(c.Families()[0])
		} else if conf == "top of the IPv6 space" { // not a valid IPv6Network (multicast), but Pool must not wrap
			pl = Pool{Network: mp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"), SubnetLen: 124,
				SubnetMin: ma("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff10"), SubnetMax: ma("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0")}
		} else {
			t.Fatal(err)
		}
		all := slices.Collect(pl.Subnets())
		rng := rand.New(rand.NewPCG(uint64(len(conf)), 7))
		for range 300 {
			var held []netip.Prefix
			for range rng.IntN(6) {
				// A random prefix inside or around the network, any length.
				sn := all[rng.IntN(len(all))]
				a := sn.Addr()
				for range rng.IntN(20) {
					a = a.Next()
					if !a.IsValid() {
						a = sn.Addr()
					}
				}
				bits := pl.Network.Bits() - 2 + rng.IntN(a.BitLen()-pl.Network.Bits()+3)
				held = append(held, netip.PrefixFrom(a, min(bits, a.BitLen())))
			}
			if rng.IntN(4) == 0 {
				held = append(held, mp("192.0.2.0/24"), mp("2001:db8::/64")) // other family or outside
			}
			var want []netip.Prefix
			for _, sn := range all {
				if !slices.ContainsFunc(held, func(h netip.Prefix) bool { return h.Masked().Overlaps(sn) }) {
					want = append(want, sn)
				}
			}
			if got := slices.Collect(pl.Free(held)); !slices.Equal(got, want) {
				t.Fatalf("%s held %v:\nFree %v\nwant %v", conf, held, got, want)
			}
		}
	}
	// A wide held prefix in a 2^62-subnet pool is skipped in one step.
	big, _ := Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/8", "IPv6SubnetLen": 70}`))
	for sn := range big.Pool(IPv6).Free([]netip.Prefix{mp("fd00::/9")}) {
		if sn != mp("fd80::/70") {
			t.Fatalf("first free after fd00::/9: %s", sn)
		}
		break
	}
}

// With the Kubernetes store nodeipam hands out Network's subnets from the
// first one: NodeIPAMRange makes all of them allocatable, whatever the
// etcd-era bounds say.
func TestNodeIPAMRangeAcceptsTheFirstSubnet(t *testing.T) {
	c, err := Parse("test", []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	first := netip.MustParsePrefix("10.244.0.0/24")
	if c.Allocatable(first) {
		t.Fatalf("the default SubnetMin %s should exclude %s (etcd mode, as Flannel)", c.SubnetMin, first)
	}
	k := c.NodeIPAMRange()
	for _, sn := range []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.255.0/24"} {
		if !k.Allocatable(netip.MustParsePrefix(sn)) {
			t.Errorf("NodeIPAMRange: %s not allocatable (SubnetMin %s, SubnetMax %s)", sn, k.SubnetMin, k.SubnetMax)
		}
	}
	if k.Pool(IPv4).Count() != 256 {
		t.Errorf("NodeIPAMRange: %d subnets, want all 256 /24 of 10.244.0.0/16", k.SubnetCount())
	}
	if (Config{}).NodeIPAMRange() != (Config{}) {
		t.Error("NodeIPAMRange changed a Config that did not come from Parse")
	}
	// Dual stack: nodeipam hands out the first IPv6 subnet too.
	d, err := Parse("test", []byte(`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	if err != nil {
		t.Fatal(err)
	}
	first6 := netip.MustParsePrefix("fd00:10:244::/64")
	if d.Pool(IPv6).Allocatable(first6) || !d.NodeIPAMRange().Pool(IPv6).Allocatable(first6) || d.NodeIPAMRange().Pool(IPv6).Count() != 256 {
		t.Errorf("NodeIPAMRange IPv6: %+v", d.NodeIPAMRange().Pool(IPv6))
	}
}
