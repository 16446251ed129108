package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/nsrun"
)

// Iptables writes twill's rules as iptables chains (TWILL-POSTROUTING in
// nat, TWILL-FORWARD and TWILL-VXLAN-GUARD in filter) with one backend
// binary, inside Netns ("" for the caller's own namespace). The guard's
// peers live in the ipset IpsetPeers (hash:ip), so the guard is one rule and
// one hash lookup per packet whatever the number of peers.
type Iptables struct {
	Netns string
	// Binary is "iptables-nft" or "iptables-legacy" (as Detect says).
	Binary string
}

// Name returns the backend binary's name.
func (b *Iptables) Name() string { return b.Binary }

// Ensure creates the ipset, chains, rules and jumps that are missing,
// rewrites a chain whose rules differ from the Spec, syncs the ipset's
// members, and places the forward accepts. Checks run before any write
// (iptables -C); nothing is written when everything is in place.
func (b *Iptables) Ensure(ctx context.Context, s Spec) ([]Repair, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var repairs []Repair
	for _, f := range b.families(s) {
		r, err := syncIpset(b.Netns, f.ipset, f.v6, s.peers(f.v6))
		repairs = append(repairs, r...)
		if err != nil {
			return repairs, fmt.Errorf("firewall %s (netns %s): %w", f.binary, nsLabel(b.Netns), err)
		}
		err = nsrun.Do(b.Netns, func() error {
			ipt, err := newIptables(f.binary)
			if err != nil {
				return err
			}
			r, err := ensureChains(ipt, f.binary, f.rules)
			repairs = append(repairs, r...)
			return err
		})
		if err != nil {
			return repairs, fmt.Errorf("firewall %s (netns %s): %w", f.binary, nsLabel(b.Netns), err)
		}
	}
	fa, err := EnsureForwardAccepts(ctx, b.Netns, s)
	return append(repairs, fa...), err
}

// iptFamily is one family's share of the iptables backend: its binary
// (ip6tables of the same backend for IPv6), rules and peer ipset.
type iptFamily struct {
	v6     bool
	binary string
	rules  []IptablesRule
	ipset  string
}

// families returns the families s asks for, IPv4 first.
func (b *Iptables) families(s Spec) []iptFamily {
	var out []iptFamily
	if s.Network.IsValid() {
		out = append(out, iptFamily{false, b.Binary, IptablesRules(s), IpsetPeers})
	}
	if s.IPv6Network.IsValid() {
		out = append(out, iptFamily{true, ip6Binary(b.Binary), Ip6tablesRules(s), IpsetPeers6})
	}
	return out
}

// ip6Binary is the ip6tables binary of an iptables backend binary
// ("iptables-nft" -> "ip6tables-nft"): the same backend for both families.
func ip6Binary(binary string) string { return "ip6" + strings.TrimPrefix(binary, "ip") }

// ensureChains makes twill's chains hold exactly rules, and the jumps to
// them exist, with one binary; it returns what it changed.
func ensureChains(ipt *iptables.IPTables, binary string, rules []IptablesRule) ([]Repair, error) {
	var repairs []Repair
	for _, c := range IptablesChains {
		var want [][]string
		for _, r := range rules {
			if r.Chain == c.Chain {
				want = append(want, r.Args)
			}
		}
		exists, err := ipt.ChainExists(c.Table, c.Chain)
		if err != nil {
			return repairs, fmt.Errorf("-t %s %s: %w", c.Table, c.Chain, err)
		}
		ok := exists
		if exists {
			have, err := ipt.List(c.Table, c.Chain)
			if err != nil {
				return repairs, fmt.Errorf("-t %s -S %s: %w", c.Table, c.Chain, err)
			}
			n := 0
			for _, l := range have {
				if strings.HasPrefix(l, "-A ") {
					n++
				}
			}
			ok = n == len(want)
			for _, w := range want {
				if !ok {
					break
				}
				if ok, err = ipt.Exists(c.Table, c.Chain, w...); err != nil {
					return repairs, fmt.Errorf("-t %s -C %s: %w", c.Table, c.Chain, err)
				}
			}
		}
		if !ok {
			// ClearChain creates the chain when it is missing.
			if err := ipt.ClearChain(c.Table, c.Chain); err != nil {
				return repairs, fmt.Errorf("-t %s -F %s: %w", c.Table, c.Chain, err)
			}
			for _, w := range want {
				if err := ipt.Append(c.Table, c.Chain, w...); err != nil {
					return repairs, fmt.Errorf("-t %s -A %s %s: %w", c.Table, c.Chain, strings.Join(w, " "), err)
				}
				repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -A %s %s", binary, c.Table, c.Chain, strings.Join(w, " "))})
			}
			if len(want) == 0 && exists {
				repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -F %s (nothing wanted)", binary, c.Table, c.Chain)})
			}
		}
		jump := IptablesJump(c.Chain)
		ok, err = ipt.Exists(c.Table, c.From, jump...)
		if err != nil {
			return repairs, fmt.Errorf("-t %s -C %s: %w", c.Table, c.From, err)
		}
		if !ok {
			if err := ipt.Insert(c.Table, c.From, 1, jump...); err != nil {
				return repairs, fmt.Errorf("-t %s -I %s 1 -j %s: %w", c.Table, c.From, c.Chain, err)
			}
			repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -I %s 1 -j %s", binary, c.Table, c.From, c.Chain)})
		}
	}
	return repairs, nil
}

// Remove deletes the jumps, twill's chains, the ipset and the forward
// accepts twill placed. It does not create legacy tables that do not exist.
func (b *Iptables) Remove(ctx context.Context) error {
	var errs []error
	for _, binary := range []string{b.Binary, ip6Binary(b.Binary)} {
		if err := removeChains(b.Netns, binary, binary != b.Binary); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeForwardAccepts(ctx, b.Netns); err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{IpsetPeers, IpsetPeers6} {
		if err := destroyIpset(b.Netns, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("firewall %s (netns %s): remove: %w", b.Binary, nsLabel(b.Netns), errors.Join(errs...))
	}
	return nil
}

// removeChains deletes twill's chains and the jumps to them with one
// binary. For ip6tables (v6) a missing binary or legacy table means there
// is nothing to remove.
func removeChains(ns, binary string, v6 bool) error {
	return nsrun.Do(ns, func() error {
		ipt, err := newIptables(binary)
		if err != nil {
			if v6 {
				return nil
			}
			return err
		}
		for _, c := range IptablesChains {
			if strings.HasSuffix(binary, "-legacy") && !legacyTableExists(c.Table, v6) {
				continue
			}
			exists, err := ipt.ChainExists(c.Table, c.Chain)
			if err != nil {
				return err
			}
			if v6 && !exists {
				continue // no chain, so no jump to it: twill never ran IPv6 here
			}
			if err := ipt.DeleteIfExists(c.Table, c.From, IptablesJump(c.Chain)...); err != nil {
				return fmt.Errorf("-t %s -D %s -j %s: %w", c.Table, c.From, c.Chain, err)
			}
			if exists {
				if err := ipt.ClearAndDeleteChain(c.Table, c.Chain); err != nil {
					return fmt.Errorf("-t %s -X %s: %w", c.Table, c.Chain, err)
				}
			}
		}
		return nil
	})
}

// syncIpset creates the peer ipset name (family inet6 when v6) when
// missing and makes its members the peers, one add or delete per
// difference.
func syncIpset(ns, name string, v6 bool, peers []netip.Addr) ([]Repair, error) {
	h, err := nsrun.NetlinkHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var repairs []Repair
	var have []netip.Addr
	res, err := h.IpsetList(name)
	if err != nil {
		opts, what := netlink.IpsetCreateOptions{}, " hash:ip"
		if v6 {
			opts.Family, what = unix.AF_INET6, " hash:ip family inet6"
		}
		if err := h.IpsetCreate(name, "hash:ip", opts); err != nil {
			return nil, fmt.Errorf("ipset create %s%s: %w", name, what, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: "ipset create " + name + what})
	} else {
		for _, e := range res.Entries {
			if a, ok := netip.AddrFromSlice(e.IP); ok {
				have = append(have, a.Unmap())
			}
		}
	}
	add, del := setDiff(peers, have)
	for _, a := range add {
		if err := h.IpsetAdd(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice())}); err != nil {
			return repairs, fmt.Errorf("ipset add %s %s: %w", name, a, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("ipset add %s %s", name, a)})
	}
	for _, a := range del {
		if err := h.IpsetDel(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice())}); err != nil {
			return repairs, fmt.Errorf("ipset del %s %s: %w", name, a, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("ipset del %s %s", name, a)})
	}
	return repairs, nil
}

func destroyIpset(ns, name string) error {
	h, err := nsrun.NetlinkHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.IpsetList(name); err != nil {
		return nil // not there
	}
	if err := h.IpsetDestroy(name); err != nil {
		return fmt.Errorf("ipset destroy %s: %w", name, err)
	}
	return nil
}
