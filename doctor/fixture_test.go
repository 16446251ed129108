package doctor

import (
	"net/netip"
	"os"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// healthyNode returns the recorded state of a healthy lab node: node1 of a
// three-node vxlan cluster (10.244.0.0/16, node i owns 10.244.i.0/24,
// underlay 192.168.77.0/24), kube-proxy rules in the iptables-nft backend.
func healthyNode(t *testing.T) *nodestate.Snapshot {
	t.Helper()
	save, err := os.ReadFile("testdata/healthy-nft.save")
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	mac2, mac3 := "02:77:00:00:00:02", "02:77:00:00:00:03"
	return &nodestate.Snapshot{
		Version: nodestate.SchemaVersion,
		Node:    "node1",
		Links: []nodestate.Link{
			{Index: 1, Name: "lo", Kind: "loopback", MTU: 65536, Up: true},
			{Index: 2, Name: "eth0", Kind: "veth", MTU: 1500, Up: true},
			{Index: 3, Name: "cni0", Kind: "bridge", MTU: 1450, Up: true, Bridge: &nodestate.BridgeAttrs{Ports: []string{"veth1a", "veth1b"}}},
			{Index: 4, Name: "twill.1", Kind: "vxlan", MTU: 1450, Up: true, MAC: "02:77:00:00:00:01", Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472, Local: a("192.168.77.11"), Dev: "eth0"}},
			{Index: 5, Name: "veth1a", Kind: "veth", MTU: 1450, Up: true, Master: "cni0", BridgePort: &nodestate.BridgePortAttrs{Hairpin: true}},
			{Index: 6, Name: "veth1b", Kind: "veth", MTU: 1450, Up: true, Master: "cni0", BridgePort: &nodestate.BridgePortAttrs{Hairpin: true}},
		},
		Addrs: []nodestate.Addr{
			{Link: "lo", Prefix: p("127.0.0.1/8")},
			{Link: "eth0", Prefix: p("192.168.77.11/24")},
			{Link: "cni0", Prefix: p("10.244.1.1/24")},
			{Link: "twill.1", Prefix: p("10.244.1.0/32")},
		},
		Routes: []nodestate.Route{
			{Table: 254, Type: "unicast", Dst: p("0.0.0.0/0"), Gateway: a("192.168.77.1"), Dev: "eth0"},
			{Table: 254, Type: "unicast", Dst: p("192.168.77.0/24"), Dev: "eth0", Scope: "link"},
			{Table: 254, Type: "unicast", Dst: p("10.244.1.0/24"), Dev: "cni0", Scope: "link"},
			{Table: 254, Type: "unicast", Dst: p("10.244.2.0/24"), Gateway: a("10.244.2.0"), Dev: "twill.1", Onlink: true},
			{Table: 254, Type: "unicast", Dst: p("10.244.3.0/24"), Gateway: a("10.244.3.0"), Dev: "twill.1", Onlink: true},
			{Table: 255, Type: "local", Dst: p("192.168.77.11/32"), Dev: "eth0"},
		},
		Neighbors: []nodestate.Neighbor{
			{Dev: "twill.1", IP: a("10.244.2.0"), MAC: mac2, State: "permanent"},
			{Dev: "twill.1", IP: a("10.244.3.0"), MAC: mac3, State: "permanent"},
		},
		FDB: []nodestate.FDBEntry{
			{Dev: "twill.1", MAC: mac2, Dst: a("192.168.77.12"), State: "permanent", Self: true},
			{Dev: "twill.1", MAC: mac3, Dst: a("192.168.77.13"), State: "permanent", Self: true},
		},
		Sysctls: map[string]string{
			"net.ipv4.ip_forward":                 "1",
			"net.ipv6.conf.all.forwarding":        "0",
			"net.bridge.bridge-nf-call-iptables":  "1",
			"net.bridge.bridge-nf-call-ip6tables": "1",
			"net.ipv4.conf.all.rp_filter":         "0",
			"net.ipv4.conf.cni0.rp_filter":        "0",
			"net.ipv4.conf.twill.1.rp_filter":     "0",
			"net.netfilter.nf_conntrack_max":      "262144",
			"net.netfilter.nf_conntrack_count":    "12",
		},
		Conntrack: nodestate.Conntrack{Count: 12, Max: 262144},
		Iptables: nodestate.Iptables{
			Legacy: nodestate.IptablesBackend{Available: true, Version: "iptables v1.8.9 (legacy)"},
			NFT:    nodestate.IptablesBackend{Available: true, Version: "iptables v1.8.9 (nf_tables)", Save: string(save)},
		},
		Nftables: nodestate.Nftables{Available: true, Version: "nftables v1.0.6", JSON: `{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}}]}`},
		Files: nodestate.Files{
			CNIConfDir: "/etc/cni/net.d",
			CNIConfigs: []nodestate.File{{Path: "/etc/cni/net.d/10-twill.conflist", Exists: true, Content: `{"cniVersion":"1.1.0","name":"twill","plugins":[{"type":"twill"},{"type":"portmap"}]}`}},
			CNIBinDir:  "/opt/cni/bin",
			CNIPlugins: []string{"portmap", "twill"},
			SubnetFiles: []nodestate.File{
				{Path: "/run/twill/subnet.env", Exists: true, Content: "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true\nTWILL_BACKEND=vxlan\n"},
				{Path: "/run/flannel/subnet.env"},
			},
		},
		Leases: []nodestate.Lease{
			{Node: "node1", Subnet: p("10.244.1.0/24"), PublicIP: a("192.168.77.11"), Backend: "vxlan", VtepMAC: "02:77:00:00:00:01"},
			{Node: "node2", Subnet: p("10.244.2.0/24"), PublicIP: a("192.168.77.12"), Backend: "vxlan", VtepMAC: mac2},
			{Node: "node3", Subnet: p("10.244.3.0/24"), PublicIP: a("192.168.77.13"), Backend: "vxlan", VtepMAC: mac3},
		},
	}
}
