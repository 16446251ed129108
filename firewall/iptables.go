package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/nsrun"
	"github.com/vishvananda/netlink"
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
	repairs, err := syncIpset(b.Netns, s.Peers)
	if err != nil {
		return repairs, fmt.Errorf("firewall %s (netns %s): %w", b.Binary, nsLabel(b.Netns), err)
	}
	err = nsrun.Do(b.Netns, func() error {
		ipt, err := newIptables(b.Binary)
		if err != nil {
			return err
		}
		rules := IptablesRules(s)
		for _, c := range IptablesChains {
			var want [][]string
			for _, r := range rules {
				if r.Chain == c.Chain {
					want = append(want, r.Args)
				}
			}
			exists, err := ipt.ChainExists(c.Table, c.Chain)
			if err != nil {
				return fmt.Errorf("-t %s %s: %w", c.Table, c.Chain, err)
			}
			ok := exists
			if exists {
				have, err := ipt.List(c.Table, c.Chain)
				if err != nil {
					return fmt.Errorf("-t %s -S %s: %w", c.Table, c.Chain, err)
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
						return fmt.Errorf("-t %s -C %s: %w", c.Table, c.Chain, err)
					}
				}
			}
			if !ok {
				// ClearChain creates the chain when it is missing.
				if err := ipt.ClearChain(c.Table, c.Chain); err != nil {
					return fmt.Errorf("-t %s -F %s: %w", c.Table, c.Chain, err)
				}
				for _, w := range want {
					if err := ipt.Append(c.Table, c.Chain, w...); err != nil {
						return fmt.Errorf("-t %s -A %s %s: %w", c.Table, c.Chain, strings.Join(w, " "), err)
					}
					repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -A %s %s", b.Binary, c.Table, c.Chain, strings.Join(w, " "))})
				}
				if len(want) == 0 && exists {
					repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -F %s (nothing wanted)", b.Binary, c.Table, c.Chain)})
				}
			}
			jump := IptablesJump(c.Chain)
			ok, err = ipt.Exists(c.Table, c.From, jump...)
			if err != nil {
				return fmt.Errorf("-t %s -C %s: %w", c.Table, c.From, err)
			}
			if !ok {
				if err := ipt.Insert(c.Table, c.From, 1, jump...); err != nil {
					return fmt.Errorf("-t %s -I %s 1 -j %s: %w", c.Table, c.From, c.Chain, err)
				}
				repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("%s -t %s -I %s 1 -j %s", b.Binary, c.Table, c.From, c.Chain)})
			}
		}
		return nil
	})
	if err != nil {
		return repairs, fmt.Errorf("firewall %s (netns %s): %w", b.Binary, nsLabel(b.Netns), err)
	}
	fa, err := EnsureForwardAccepts(ctx, b.Netns, s)
	return append(repairs, fa...), err
}

// Remove deletes the jumps, twill's chains, the ipset and the forward
// accepts twill placed. It does not create legacy tables that do not exist.
func (b *Iptables) Remove(ctx context.Context) error {
	var errs []error
	err := nsrun.Do(b.Netns, func() error {
		ipt, err := newIptables(b.Binary)
		if err != nil {
			return err
		}
		for _, c := range IptablesChains {
			if b.Binary == BackendIptablesLegacy && !legacyTableExists(c.Table) {
				continue
			}
			exists, err := ipt.ChainExists(c.Table, c.Chain)
			if err != nil {
				return err
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
	if err != nil {
		errs = append(errs, err)
	}
	if err := removeForwardAccepts(ctx, b.Netns); err != nil {
		errs = append(errs, err)
	}
	if err := destroyIpset(b.Netns); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("firewall %s (netns %s): remove: %w", b.Binary, nsLabel(b.Netns), errors.Join(errs...))
	}
	return nil
}

// syncIpset creates the peer ipset when missing and makes its members the
// peers, one add or delete per difference.
func syncIpset(ns string, peers []netip.Addr) ([]Repair, error) {
	h, err := nsrun.NetlinkHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var repairs []Repair
	var have []netip.Addr
	res, err := h.IpsetList(IpsetPeers)
	if err != nil {
		if err := h.IpsetCreate(IpsetPeers, "hash:ip", netlink.IpsetCreateOptions{}); err != nil {
			return nil, fmt.Errorf("ipset create %s hash:ip: %w", IpsetPeers, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: "ipset create " + IpsetPeers + " hash:ip"})
	} else {
		for _, e := range res.Entries {
			if a, ok := netip.AddrFromSlice(e.IP); ok {
				have = append(have, a.Unmap())
			}
		}
	}
	add, del := setDiff(peers, have)
	for _, a := range add {
		if err := h.IpsetAdd(IpsetPeers, &netlink.IPSetEntry{IP: net.IP(a.AsSlice())}); err != nil {
			return repairs, fmt.Errorf("ipset add %s %s: %w", IpsetPeers, a, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("ipset add %s %s", IpsetPeers, a)})
	}
	for _, a := range del {
		if err := h.IpsetDel(IpsetPeers, &netlink.IPSetEntry{IP: net.IP(a.AsSlice())}); err != nil {
			return repairs, fmt.Errorf("ipset del %s %s: %w", IpsetPeers, a, err)
		}
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("ipset del %s %s", IpsetPeers, a)})
	}
	return repairs, nil
}

func destroyIpset(ns string) error {
	h, err := nsrun.NetlinkHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.IpsetList(IpsetPeers); err != nil {
		return nil // not there
	}
	if err := h.IpsetDestroy(IpsetPeers); err != nil {
		return fmt.Errorf("ipset destroy %s: %w", IpsetPeers, err)
	}
	return nil
}
