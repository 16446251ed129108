package netconf

import (
	"fmt"
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
		{"ipv6", `{"Network": "fd00::/48"}`, []string{"Network fd00::/48: IPv6 networks are not supported yet"}},
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
		{"ipv6 on", `{"Network": "10.244.0.0/16", "EnableIPv6": true}`, []string{"EnableIPv6 true: IPv6 (dual stack) is not supported yet"}},
		{"ipv4 off", `{"Network": "10.244.0.0/16", "EnableIPv4": false}`, []string{"EnableIPv4 false: twill needs IPv4"}},
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
	if k.SubnetCount() != 256 {
		t.Errorf("NodeIPAMRange: %d subnets, want all 256 /24 of 10.244.0.0/16", k.SubnetCount())
	}
	if (Config{}).NodeIPAMRange() != (Config{}) {
		t.Error("NodeIPAMRange changed a Config that did not come from Parse")
	}
}
