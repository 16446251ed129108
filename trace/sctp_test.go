package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// prependNat puts iptables-nft rules at the head of a chain of the nat table.
func prependNat(s *nodestate.Snapshot, chain string, rules ...string) {
	save := s.Iptables.NFT.Save
	i := strings.Index(save, "*nat\n")
	s.Iptables.NFT.Save = save[:i] + strings.Replace(save[i:], "-A "+chain+" ", strings.Join(rules, "\n")+"\n-A "+chain+" ", 1)
}

func traceProto(t *testing.T, w *World, from, to, proto string) *Result {
	t.Helper()
	ap := netip.MustParseAddrPort(to)
	res, err := w.Trace(Request{From: from, To: ap.Addr(), Port: ap.Port(), Proto: proto})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// kube-proxy's SCTP Service rules (-p sctp -m sctp --dport) DNAT SCTP
// packets and leave TCP and UDP alone, without uncertainty.
func TestSCTPServiceIptables(t *testing.T) {
	w := worldWith(t, func(s *nodestate.Snapshot) {
		prependNat(s, "KUBE-SERVICES", "-A KUBE-SERVICES -d 10.96.7.7/32 -p sctp -m sctp --dport 5000 -j DNAT --to-destination 10.244.2.11:8080",
			"-A KUBE-SERVICES -d 10.96.7.7/32 -p sctp -m sctp --chunk-types any INIT -j DROP")
	}, "healthy-node2", "healthy-node1")
	r := traceProto(t, w, "node1-a", "10.96.7.7:5000", "sctp")
	if s := only(t, r); s.Kind != Established || s.Receiver != "node2-b" || r.Uncertain {
		t.Fatalf("sctp to the Service: got %+v uncertain=%v\n%s", s, r.Uncertain, text(r))
	}
	if !strings.Contains(text(r), "sctp 10.244.1.10:40000 -> 10.96.7.7:5000") {
		t.Errorf("the trace should show the SCTP packet:\n%s", text(r))
	}
	for _, proto := range []string{"udp", "tcp"} {
		r := traceProto(t, w, "node1-a", "10.96.7.7:5000", proto)
		if r.Uncertain {
			t.Errorf("%s: -p sctp excludes the packet before anything unknown is looked at:\n%s", proto, text(r))
		}
		for _, s := range r.Summaries() {
			if s.Kind == Established {
				t.Errorf("%s to an SCTP-only Service must not be DNATed: %+v", proto, s)
			}
		}
	}
}

// The same in nftables: sctp dport, meta l4proto sctp and th dport.
func TestSCTPServiceNft(t *testing.T) {
	w := worldWith(t, func(s *nodestate.Snapshot) {
		addNftRules(t, s,
			`[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "sctp"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "sctp", "field": "dport"}}, "right": 5001}}, {"drop": null}]`,
			`[{"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 5002}}, {"reject": null}]`)
	}, "healthy-node1", "healthy-node2")
	if s := only(t, traceProto(t, w, "node1-a", "10.244.2.10:5001", "sctp")); s.Kind != Dropped {
		t.Errorf("sctp dport 5001 drop: got %+v", s)
	}
	if s := only(t, traceProto(t, w, "node1-a", "10.244.2.10:5001", "udp")); s.Kind != Established {
		t.Errorf("udp is not sctp: got %+v", s)
	}
	if s := only(t, traceProto(t, w, "node1-a", "10.244.2.10:5002", "sctp")); s.Kind != Refused {
		t.Errorf("th dport 5002 reject applies to sctp: got %+v", s)
	}
}

// localhost NodePorts: a call from the node to 127.0.0.1:NODEPORT is DNATed
// to a pod; the kernel routes the loopback source out of cni0 only with
// route_localnet=1 (all or the device), and the reply's destination is
// 127.0.0.1 again after conntrack, received on cni0.
func TestRouteLocalnet(t *testing.T) {
	nodePort := func(all, cni0 string) func(s *nodestate.Snapshot) {
		return func(s *nodestate.Snapshot) {
			prependNat(s, "KUBE-SERVICES", "-A KUBE-SERVICES -d 127.0.0.1/32 -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.1.11:8080")
			prependNat(s, "POSTROUTING", "-A POSTROUTING -s 127.0.0.0/8 -j MASQUERADE")
			for k, v := range map[string]string{"all": all, "cni0": cni0} {
				if v != "" {
					s.Sysctls[nodestate.RouteLocalnetKey(k)] = v
				}
			}
		}
	}
	for _, c := range []struct {
		all, cni0 string
		ok        bool
	}{{"0", "0", false}, {"1", "0", true}, {"0", "1", true}} {
		w := worldWith(t, nodePort(c.all, c.cni0), "healthy-node1")
		r := traceOf(t, w, "node1", "127.0.0.1:30080")
		s := only(t, r)
		if c.ok {
			if s.Kind != Established || s.Receiver != "node1-b" {
				t.Errorf("all=%s cni0=%s: want established with node1-b, got %+v\n%s", c.all, c.cni0, s, text(r))
			}
			continue
		}
		if s.Kind != Dropped || !strings.Contains(s.Where, "net.ipv4.conf.all.route_localnet=0") || !strings.Contains(s.Where, "loopback source 127.0.0.1 routed out of cni0") {
			t.Errorf("all=%s cni0=%s: want dropped naming route_localnet, got %+v\n%s", c.all, c.cni0, s, text(r))
		}
	}
	// Not captured (older snapshots): the kernel default 0, and the trace says it assumed it.
	w := worldWith(t, nodePort("", ""), "healthy-node1")
	r := traceOf(t, w, "node1", "127.0.0.1:30080")
	if s := only(t, r); s.Kind != Dropped || !r.Uncertain {
		t.Errorf("unknown route_localnet: want dropped and uncertain, got %+v\n%s", s, text(r))
	}
}
