package trace

import (
	"fmt"
	"github.com/twillnet/twill/checkid"
	"github.com/twillnet/twill/nodestate"
	"strings"
)

// diagnose names the FAILURES.md entry (and the doctor check) that a path's
// end matches, if any.
func diagnose(w *World, res *Result, p *Path) *Failure {
	o := p.Outcome
	v6 := w.isV6
	backends := map[string]bool{}
	dnat := false
	for _, s := range p.Forward {
		if (s.Backend == nodestate.BackendIptablesLegacy || s.Backend == nodestate.BackendIptablesNFT) && s.Rule > 0 {
			backends[s.Backend] = true
		}
		if s.nat == "DNAT" || s.nat == "REDIRECT" {
			dnat = true
		}
	}
	switch o.Kind {
	case Established:
		return nil
	case Reset:
		if len(p.bridgedNoNF) > 0 {
			key, check := "net.bridge.bridge-nf-call-iptables", checkid.BridgeNFCallIptables
			if v6 {
				key, check = "net.bridge.bridge-nf-call-ip6tables", checkid.BridgeNFCallIp6tables
			}
			return &Failure{ID: "F1", Check: check, Why: fmt.Sprintf("the reply was bridged on %s with %s off, so conntrack never reversed the Service DNAT; the client sees the pod address %s and resets", strings.Join(p.bridgedNoNF, ", "), key, o.ReplyFrom.Addr())}
		}
		return nil
	}
	var d *nfDecision
	if o.Cause == CauseNetfilter {
		d = p.decided
	}
	switch {
	case o.Cause == CauseForwardingOff:
		if v6 {
			return &Failure{ID: "F2", Check: checkid.IPv6Forwarding, Why: "the node does not forward IPv6 (net.ipv6.conf.all.forwarding=0)"}
		}
		return &Failure{ID: "F2", Check: checkid.IPForward, Why: "the node does not forward (net.ipv4.ip_forward=0)"}
	case d != nil && d.step.Chain == "KUBE-FIREWALL" && d.verdict == "drop" && d.step.Rule > 0 && !strings.Contains(d.step.Text, "--mark"):
		// The rule as dumped has lost its mark match.
		return &Failure{ID: "F4", Check: checkid.KubeRuleLostMatch, Why: "KUBE-FIREWALL's DROP lost its mark match (iptables version skew): it drops everything"}
	case d != nil && d.step.Hook == "FORWARD" && d.step.Rule == 0 && d.verdict == "drop" && d.step.Backend != nodestate.BackendNft:
		why := fmt.Sprintf("%s %s/FORWARD has policy DROP and no rule accepts this new forwarded flow (Docker sets this)", d.step.Backend, d.step.Table)
		if backends[nodestate.BackendIptablesLegacy] && backends[nodestate.BackendIptablesNFT] {
			why += "; rules are split across iptables-legacy and iptables-nft (F4, TW020)"
		}
		return &Failure{ID: "F3", Check: checkid.ForwardPolicyDrop, Why: why}
	case d != nil && d.step.Hook == "FORWARD" && d.step.Backend == nodestate.BackendNft && d.verdict == "drop":
		return &Failure{ID: "F3", Check: checkid.NftForwardDrop, Why: fmt.Sprintf("native nftables chain %s %s drops the forwarded flow; every base chain on the forward hook must accept", d.step.Table, d.step.Chain)}
	case o.Cause == CauseNoNeighbour || o.Cause == CauseStaleNeighbour:
		return &Failure{ID: "F6", Check: checkid.VxlanNeighbour, Why: "the vxlan neighbour entry of the peer's VTEP is missing or stale"}
	case o.Cause == CauseNoFDB:
		return &Failure{ID: "F6", Check: checkid.VxlanFDB, Why: "the vxlan FDB entry of the peer's VTEP MAC is missing"}
	case o.Kind == Local && o.Cause == CauseLocalRoute:
		return &Failure{ID: "F5b", Check: checkid.IPVSLocalWithoutVirtualServer, Why: "a local route (kube-ipvs0) accepts the Service IP on the node; without an IPVS virtual server nothing answers"}
	}
	if backends[nodestate.BackendIptablesLegacy] && backends[nodestate.BackendIptablesNFT] && o.Kind != Established {
		return &Failure{ID: "F4", Check: checkid.IptablesBackendsSplit, Why: "rules in both iptables-legacy and iptables-nft acted on this packet; their order is undefined"}
	}
	first := res.Packet.Dst
	if !dnat && w.podFor(first) == nil && !isHostAddr(w, first) && (o.Kind == Lost || o.Kind == Unreachable || o.Kind == Local) && hasKubeServices(w) {
		return &Failure{ID: "F5a", Check: checkid.ServiceVIPNotTranslated, Why: fmt.Sprintf("%s was not translated by any Service rule (no DNAT): kube-proxy's rule for it is missing", first)}
	}
	if (o.Kind == Lost || o.Kind == Unreachable) && w.podFor(first) != nil {
		return &Failure{ID: "F6", Check: checkid.OverlayRoute, Why: fmt.Sprintf("no route to the pod subnet of %s (the overlay route of that peer is missing)", first)}
	}
	return nil
}

func isHostAddr(w *World, a interface{ String() string }) bool {
	for _, h := range w.Hosts {
		for x := range h.local {
			if x.String() == a.String() {
				return true
			}
		}
	}
	return false
}

func hasKubeServices(w *World) bool {
	for _, h := range w.Hosts {
		for _, rs := range []*iptRuleset{h.legacy, h.nft} {
			if rs != nil && rs.tables["nat"] != nil && rs.tables["nat"].chains["KUBE-SERVICES"] != nil {
				return true
			}
		}
	}
	return false
}
