package netfilter_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/netfilter"
)

// tenThousandServices renders kube-proxy's rules for 10,000 services with
// two endpoints each (about 60,000 rules, 30,000 chains).
func tenThousandServices() string {
	svcs := make([]kubeproxy.Service, 10000)
	for i := range svcs {
		svcs[i] = kubeproxy.Service{
			Namespace: fmt.Sprintf("ns%d", i%100), Name: fmt.Sprintf("svc%d", i), PortName: "http",
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Port: 80, Protocol: "tcp",
			Endpoints: []netip.AddrPort{
				netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 8080),
				netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)}), 8080),
			},
		}
	}
	return kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, svcs)
}

func BenchmarkParseIptablesSave10kServices(b *testing.B) {
	text := tenThousandServices()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	var rules int
	for b.Loop() {
		rs, err := netfilter.ParseIptablesSave("bench", text)
		if err != nil {
			b.Fatal(err)
		}
		rules = 0
		for _, c := range rs.Table("nat").Chains {
			rules += len(c.Rules)
		}
	}
	b.ReportMetric(float64(rules), "nat-rules")
}

// nftServicesJSON builds `nft -j list ruleset` output shaped like
// kube-proxy's nftables mode: one chain per service and per endpoint.
func nftServicesJSON(n int) []byte {
	type obj map[string]any
	list := []obj{{"metainfo": obj{"version": "1.0.6", "json_schema_version": 1}},
		{"table": obj{"family": "ip", "name": "kube-proxy", "handle": 1}},
		{"chain": obj{"family": "ip", "table": "kube-proxy", "name": "services", "handle": 2}},
		{"chain": obj{"family": "ip", "table": "kube-proxy", "name": "nat-prerouting", "handle": 3, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
		{"rule": obj{"family": "ip", "table": "kube-proxy", "chain": "nat-prerouting", "handle": 4, "expr": []any{obj{"jump": obj{"target": "services"}}}}},
	}
	handle := 5
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("service-%d", i)
		list = append(list, obj{"chain": obj{"family": "ip", "table": "kube-proxy", "name": svc, "handle": handle}})
		handle++
		list = append(list, obj{"rule": obj{"family": "ip", "table": "kube-proxy", "chain": "services", "handle": handle, "expr": []any{
			obj{"match": obj{"op": "==", "left": obj{"payload": obj{"protocol": "ip", "field": "daddr"}}, "right": fmt.Sprintf("10.96.%d.%d", i>>8&255, i&255)}},
			obj{"match": obj{"op": "==", "left": obj{"payload": obj{"protocol": "tcp", "field": "dport"}}, "right": 80}},
			obj{"goto": obj{"target": svc}},
		}}})
		handle++
		list = append(list, obj{"rule": obj{"family": "ip", "table": "kube-proxy", "chain": svc, "handle": handle, "comment": "ns/" + svc + ":http", "expr": []any{
			obj{"counter": obj{"packets": 0, "bytes": 0}},
			obj{"dnat": obj{"addr": fmt.Sprintf("10.244.%d.%d", i>>8&255, i&255), "port": 8080}},
		}}})
		handle++
	}
	b, err := json.Marshal(obj{"nftables": list})
	if err != nil {
		panic(err)
	}
	return b
}

func BenchmarkParseNftJSON(b *testing.B) {
	data := nftServicesJSON(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := netfilter.ParseNftJSON("bench", data); err != nil {
			b.Fatal(err)
		}
	}
}
