//go:build linux

package nodestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/nsrun"
)

// captureRoutes fills s.Routes with the routes of all tables (main, local,
// custom), IPv4 and IPv6. A multipath route gives one Route per next hop.
func captureRoutes(s *Snapshot, h *netlink.Handle, names linkNames) {
	for _, fam := range []struct {
		family int
		name   string
	}{{netlink.FAMILY_V4, "routes-v4"}, {netlink.FAMILY_V6, "routes-v6"}} {
		routes, err := h.RouteListFiltered(fam.family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if dumpErr(s, fam.name, err) {
			continue
		}
		for _, r := range routes {
			s.Routes = append(s.Routes, convertRoute(r, fam.family, names)...)
		}
	}
}

func convertRoute(r netlink.Route, family int, names linkNames) []Route {
	base := Route{
		Table:    r.Table,
		Type:     RouteTypeWord(r.Type),
		Dst:      routeDst(r.Dst, family),
		Gateway:  addrFromIP(r.Gw),
		Dev:      names.name(r.LinkIndex),
		Src:      addrFromIP(r.Src),
		Scope:    ScopeWord(int(r.Scope)),
		Protocol: ProtocolWord(int(r.Protocol)),
		Metric:   r.Priority,
		Onlink:   r.Flags&unix.RTNH_F_ONLINK != 0,
	}
	if len(r.MultiPath) == 0 {
		return []Route{base}
	}
	out := make([]Route, 0, len(r.MultiPath))
	for _, nh := range r.MultiPath {
		hop := base
		hop.Gateway = addrFromIP(nh.Gw)
		hop.Dev = names.name(nh.LinkIndex)
		hop.Onlink = nh.Flags&unix.RTNH_F_ONLINK != 0
		out = append(out, hop)
	}
	return out
}

// routeDst returns the destination prefix; the kernel omits it for default
// routes.
func routeDst(dst *net.IPNet, family int) netip.Prefix {
	if dst == nil {
		if family == netlink.FAMILY_V6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	return prefixFromIPNet(dst)
}

// captureRules fills s.Rules. The rules are dumped with a netlink socket
// opened inside the namespace, because the netlink package's rule list does
// not report the rule's action (lookup, blackhole, ...).
func captureRules(s *Snapshot, ns string) {
	for _, fam := range []struct {
		family int
		name   string
	}{{unix.AF_INET, "rules-v4"}, {unix.AF_INET6, "rules-v6"}} {
		var msgs [][]byte
		err := nsrun.Do(ns, func() error {
			req := nl.NewNetlinkRequest(unix.RTM_GETRULE, unix.NLM_F_DUMP)
			req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(fam.family)}})
			var err error
			msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWRULE)
			return err
		})
		if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
			s.addErr(fam.name, err)
			continue
		}
		for _, m := range msgs {
			r, err := parseRuleMsg(m)
			if err != nil {
				s.addErr(fam.name, err)
				continue
			}
			if r.Family != 0 {
				s.Rules = append(s.Rules, r)
			}
		}
	}
}

// parseRuleMsg decodes one RTM_NEWRULE message (struct fib_rule_hdr, which
// has the layout of struct rtmsg, followed by FRA_* attributes).
func parseRuleMsg(m []byte) (Rule, error) {
	if len(m) < unix.SizeofRtMsg {
		return Rule{}, fmt.Errorf("rule message of %d bytes is too short", len(m))
	}
	hdr := nl.DeserializeRtMsg(m)
	r := Rule{Table: int(hdr.Table), Action: RuleActionWord(int(hdr.Type))}
	switch hdr.Family {
	case unix.AF_INET:
		r.Family = 4
	case unix.AF_INET6:
		r.Family = 6
	default:
		return r, nil
	}
	r.Invert = hdr.Flags&unix.FIB_RULE_INVERT != 0
	attrs, err := nl.ParseRouteAttr(m[hdr.Len():])
	if err != nil {
		return Rule{}, fmt.Errorf("rule attributes: %w", err)
	}
	u32 := func(b []byte) uint32 {
		if len(b) < 4 {
			return 0
		}
		return binary.NativeEndian.Uint32(b)
	}
	name := func(b []byte) string {
		for i, c := range b {
			if c == 0 {
				return string(b[:i])
			}
		}
		return string(b)
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case nl.FRA_TABLE:
			r.Table = int(u32(a.Value))
		case nl.FRA_PRIORITY:
			r.Priority = int(u32(a.Value))
		case nl.FRA_SRC:
			r.Src = netip.PrefixFrom(addrFromIP(a.Value), int(hdr.Src_len))
		case nl.FRA_DST:
			r.Dst = netip.PrefixFrom(addrFromIP(a.Value), int(hdr.Dst_len))
		case nl.FRA_FWMARK:
			r.Mark = u32(a.Value)
		case nl.FRA_FWMASK:
			r.Mask = u32(a.Value)
		case nl.FRA_IIFNAME:
			r.IifName = name(a.Value)
		case nl.FRA_OIFNAME:
			r.OifName = name(a.Value)
		}
	}
	return r, nil
}
