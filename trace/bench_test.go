package trace

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/nodestate"
)

// bigServices returns n Services with 1-3 endpoints among the lab's pods.
func bigServices(n int) []kubeproxy.Service {
	pods := labPods()
	var out []kubeproxy.Service
	for i := 0; i < n; i++ {
		s := kubeproxy.Service{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i), PortName: "http",
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(10 + i/250), byte(i%250 + 1)}), Port: 80, Protocol: "tcp"}
		for k := 0; k < 1+i%3; k++ {
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(pods[(i+k)%len(pods)].IP.Addr(), 8080))
		}
		out = append(out, s)
	}
	return out
}

// renderKubeProxyNft renders the shape of kube-proxy's nftables mode
// (table ip kube-proxy: a service-ips verdict map dispatching to per-Service
// chains, numgen random to per-endpoint chains, dnat, mark and masquerade)
// as `nft -j list ruleset` prints it.
func renderKubeProxyNft(svcs []kubeproxy.Service) string {
	type obj = map[string]any
	var objs []any
	add := func(kind string, v obj) {
		v["family"], v["table"] = "ip", "kube-proxy"
		objs = append(objs, obj{kind: v})
	}
	objs = append(objs, obj{"table": obj{"family": "ip", "name": "kube-proxy"}})
	match := func(left any, right any) obj {
		return obj{"match": obj{"op": "==", "left": left, "right": right}}
	}
	payload := func(p, f string) obj { return obj{"payload": obj{"protocol": p, "field": f}} }
	meta := func(k string) obj { return obj{"meta": obj{"key": k}} }
	var elems []any
	chains := map[string][][]any{}
	order := []string{}
	chain := func(name string, rules ...[]any) {
		if _, ok := chains[name]; !ok {
			order = append(order, name)
		}
		chains[name] = append(chains[name], rules...)
	}
	for i, s := range svcs {
		sc := fmt.Sprintf("service-%d", i)
		elems = append(elems, []any{obj{"concat": []any{s.ClusterIP.String(), "tcp", s.Port}}, obj{"goto": obj{"target": sc}}})
		chain(sc, []any{match(payload("ip", "daddr"), s.ClusterIP.String()), match(payload("tcp", "dport"), s.Port),
			obj{"match": obj{"op": "!=", "left": payload("ip", "saddr"), "right": obj{"prefix": obj{"addr": "10.244.0.0", "len": 16}}}},
			obj{"jump": obj{"target": "mark-for-masquerade"}}})
		var ng []any
		for k, ep := range s.Endpoints {
			ec := fmt.Sprintf("endpoint-%d-%d", i, k)
			ng = append(ng, []any{k, obj{"goto": obj{"target": ec}}})
			chain(ec, []any{match(payload("ip", "saddr"), ep.Addr().String()), obj{"jump": obj{"target": "mark-for-masquerade"}}},
				[]any{match(meta("l4proto"), "tcp"), obj{"dnat": obj{"family": "ip", "addr": ep.Addr().String(), "port": ep.Port()}}})
		}
		chain(sc, []any{obj{"vmap": obj{"key": obj{"numgen": obj{"mode": "random", "mod": len(s.Endpoints), "offset": 0}}, "data": obj{"set": ng}}}})
	}
	add("map", obj{"name": "service-ips", "type": []string{"ipv4_addr", "inet_proto", "inet_service"}, "map": "verdict", "elem": elems})
	chain("services", []any{obj{"vmap": obj{"key": obj{"concat": []any{payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")}}, "data": "@service-ips"}}})
	chain("mark-for-masquerade", []any{obj{"mangle": obj{"key": meta("mark"), "value": obj{"|": []any{meta("mark"), 0x4000}}}}})
	chain("masquerading",
		[]any{match(obj{"&": []any{meta("mark"), 0x4000}}, 0), obj{"return": nil}},
		[]any{obj{"mangle": obj{"key": meta("mark"), "value": obj{"^": []any{meta("mark"), 0x4000}}}}},
		[]any{obj{"masquerade": obj{"flags": "fully-random"}}})
	base := map[string]obj{
		"nat-prerouting":  {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
		"nat-output":      {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
		"nat-postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
		"filter-forward":  {"type": "filter", "hook": "forward", "prio": -110, "policy": "accept"},
	}
	chain("nat-prerouting", []any{obj{"jump": obj{"target": "services"}}})
	chain("nat-output", []any{obj{"jump": obj{"target": "services"}}})
	chain("nat-postrouting", []any{obj{"jump": obj{"target": "masquerading"}}})
	chain("filter-forward", []any{obj{"match": obj{"op": "in", "left": obj{"ct": obj{"key": "state"}}, "right": "invalid"}}, obj{"drop": nil}})
	for _, name := range order {
		c := obj{"name": name}
		for k, v := range base[name] {
			c[k] = v
		}
		add("chain", c)
	}
	for _, name := range order {
		for _, r := range chains[name] {
			add("rule", obj{"chain": name, "expr": r})
		}
	}
	b, err := json.Marshal(obj{"nftables": objs})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// bigSnapshots returns node1 and node2 with n Services in iptables or nftables form.
func bigSnapshots(t testing.TB, n int, nft bool) []*nodestate.Snapshot {
	svcs := bigServices(n)
	ipt := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, svcs)
	nftJSON := renderKubeProxyNft(svcs)
	var out []*nodestate.Snapshot
	for _, f := range []string{"healthy-node1", "healthy-node2"} {
		s, err := nodestate.LoadFile("testdata/" + f + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if nft {
			s.Iptables.NFT.Save, s.Iptables.Legacy.Save, s.Nftables.JSON = "", "", nftJSON
		} else {
			s.Iptables.NFT.Save, s.Nftables.JSON = ipt, ""
		}
		out = append(out, s)
	}
	return out
}

func benchWorld(b *testing.B, nft bool) {
	snaps := bigSnapshots(b, 10000, nft)
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := NewWorld(snaps, labPods()); err != nil {
				b.Fatal(err)
			}
		}
	})
	w, err := NewWorld(snaps, labPods())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("trace", func(b *testing.B) {
		i := 0
		for b.Loop() {
			vip := netip.AddrFrom4([4]byte{10, 96, byte(10 + (i%10000)/250), byte(i%250 + 1)})
			i += 37
			if _, err := w.Trace(Request{From: "node1-a", To: vip, Port: 80}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIptables10k: kube-proxy iptables mode with 10,000 Services.
func BenchmarkIptables10k(b *testing.B) { benchWorld(b, false) }

// BenchmarkNftables10k: kube-proxy nftables mode with 10,000 Services.
func BenchmarkNftables10k(b *testing.B) { benchWorld(b, true) }

// TestLargeRuleSets checks that both forms of a 10,000-Service rule set give
// the right endpoints. Speed is measured by the benchmarks above, not here.
func TestLargeRuleSets(t *testing.T) {
	for _, nft := range []bool{false, true} {
		w, err := NewWorld(bigSnapshots(t, 10000, nft), labPods())
		if err != nil {
			t.Fatal(err)
		}
		// Service 4321 has 1 + 4321%3 = 2 endpoints: pods 4321%4 and 4322%4.
		vip := netip.AddrFrom4([4]byte{10, 96, byte(10 + 4321/250), byte(4321%250 + 1)})
		res, err := w.Trace(Request{From: "node1-a", To: vip, Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, s := range res.Summaries() {
			got[s.Receiver+" "+s.Kind] += s.Prob
		}
		pods := labPods()
		want := map[string]float64{pods[4321%4].Name + " established": 0.5, pods[4322%4].Name + " established": 0.5}
		for k, p := range want {
			if d := got[k] - p; d > 1e-6 || d < -1e-6 {
				t.Errorf("nft=%v: %s: probability %.4f, want %.2f (all: %v)\n%s", nft, k, got[k], p, got, text(res))
			}
		}
	}
}
