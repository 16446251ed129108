package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nsrun"
	"sigs.k8s.io/knftables"
)

// EnsureForwardAccepts inserts the pod-network accepts for s.Network at
// the top of every placement's chain (s.ForwardAccept) where they are
// missing (FAILURES.md F3), in the named network namespace ("" for the
// caller's own). This is the one place twill writes outside its own
// backend: the accept must be in the backend and chain that holds the drop,
// or the drop still wins. Backends call it from Ensure; `twill doctor
// --fix` calls it for the places doctor found.
func EnsureForwardAccepts(ctx context.Context, ns string, s Spec) ([]Repair, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var repairs []Repair
	var errs []error
	for _, p := range s.ForwardAccept {
		fs := s
		fs.Network = s.networkOf(p)
		err := nsrun.Do(ns, func() error {
			switch p.Backend {
			case BackendIptablesLegacy, BackendIptablesNft:
				ipt, err := newIptables(p.tool())
				if err != nil {
					return err
				}
				rules := ForwardAcceptIptables(fs)
				// Insert in reverse so they end up in order at the top.
				for i := len(rules) - 1; i >= 0; i-- {
					ok, err := ipt.Exists("filter", p.Chain, rules[i]...)
					if err != nil {
						return fmt.Errorf("check %s: %w", p, err)
					}
					if ok {
						continue
					}
					if err := ipt.Insert("filter", p.Chain, 1, rules[i]...); err != nil {
						return fmt.Errorf("insert into %s: %w", p, err)
					}
					repairs = append(repairs, Repair{Kind: KindForwardAccept, Object: fmt.Sprintf("%s: -I %s 1 %s", p, p.Chain, strings.Join(rules[i], " "))})
				}
				return nil
			case BackendNft:
				nft, err := knftables.New(knftables.Family(p.Family), p.Table)
				if err != nil {
					return fmt.Errorf("nftables: %w", err)
				}
				have, err := nft.ListRules(ctx, p.Chain)
				if err != nil {
					return fmt.Errorf("list %s: %w", p, err)
				}
				tx := nft.NewTransaction()
				for _, r := range ForwardAcceptNft(fs) {
					if slices.ContainsFunc(have, func(h *knftables.Rule) bool { return h.Comment != nil && *h.Comment == r.Comment }) {
						continue
					}
					tx.Insert(&knftables.Rule{Chain: p.Chain, Rule: r.Rule, Comment: knftables.PtrTo(r.Comment)})
					repairs = append(repairs, Repair{Kind: KindForwardAccept, Object: fmt.Sprintf("%s: insert %s", p, r.Rule)})
				}
				if tx.NumOperations() == 0 {
					return nil
				}
				if err := nft.Run(ctx, tx); err != nil {
					return fmt.Errorf("insert into %s: %w", p, err)
				}
				return nil
			}
			return fmt.Errorf("placement %s: unknown backend", p)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return repairs, fmt.Errorf("firewall forward accept (netns %s): %w", nsLabel(ns), errors.Join(errs...))
	}
	return repairs, nil
}

// newIptables returns go-iptables bound to one backend binary
// ("iptables-nft" or "iptables-legacy"). Call it inside the namespace.
func newIptables(backend string) (*iptables.IPTables, error) {
	path, err := exec.LookPath(backend)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (install the iptables package)", backend, err)
	}
	proto := iptables.ProtocolIPv4
	if strings.HasPrefix(backend, "ip6") {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.Path(path), iptables.Timeout(5), iptables.IPFamily(proto))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", backend, err)
	}
	return ipt, nil
}

// legacyTableExists reports whether the legacy iptables (v6: ip6tables)
// table exists in the current namespace, without creating it (reading it
// would).
func legacyTableExists(table string, v6 bool) bool {
	names := "/proc/thread-self/net/ip_tables_names" // this thread's netns, not the process's
	if v6 {
		names = "/proc/thread-self/net/ip6_tables_names"
	}
	b, err := os.ReadFile(names)
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(string(b)), table)
}

// twillRulesIn lists the rules commented "twill:..." of one iptables
// binary's table (backend: iptables-nft, iptables-legacy or their
// ip6tables twins) that are not in twill's own chains, as (chain, args).
func twillRulesIn(ctx context.Context, backend, table string) ([][]string, error) {
	if strings.HasSuffix(backend, "-legacy") && !legacyTableExists(table, strings.HasPrefix(backend, "ip6")) {
		return nil, nil
	}
	path, err := exec.LookPath(backend + "-save")
	if err != nil {
		return nil, nil // backend not installed: nothing of ours can be there
	}
	out, err := exec.CommandContext(ctx, path, "-t", table).Output()
	if err != nil {
		return nil, fmt.Errorf("%s-save -t %s: %w", backend, table, err)
	}
	var rules [][]string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, "twill:") || strings.HasPrefix(line, "-A TWILL-") {
			continue
		}
		words := splitWords(line)
		if len(words) >= 2 && hasTwillComment(words) {
			rules = append(rules, words[1:])
		}
	}
	return rules, nil
}

func hasTwillComment(words []string) bool {
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "--comment" && strings.HasPrefix(words[i+1], "twill:") {
			return true
		}
	}
	return false
}

// splitWords splits an iptables-save line into words, honouring double
// quotes (as iptables-save quotes comments).
func splitWords(line string) []string {
	var out []string
	var cur strings.Builder
	inQ, has := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inQ && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQ, has = !inQ, true
		case c == ' ' && !inQ:
			if has || cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if has || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// removeForwardAccepts deletes every rule commented "twill:" outside twill's
// own chains and table, in both iptables backends and in native nftables
// tables: the forward accepts twill placed, and the jumps to its chains.
func removeForwardAccepts(ctx context.Context, ns string) error {
	var errs []error
	for _, backend := range []string{BackendIptablesLegacy, BackendIptablesNft, "ip6tables-legacy", "ip6tables-nft"} {
		for _, table := range []string{"filter", "nat"} {
			err := nsrun.Do(ns, func() error {
				rules, err := twillRulesIn(ctx, backend, table)
				if err != nil || len(rules) == 0 {
					return err
				}
				ipt, err := newIptables(backend)
				if err != nil {
					return err
				}
				for _, r := range rules {
					if err := ipt.DeleteIfExists(table, r[0], r[1:]...); err != nil {
						return fmt.Errorf("%s -t %s -D %s: %w", backend, table, strings.Join(r, " "), err)
					}
				}
				return nil
			})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	err := nsrun.Do(ns, func() error {
		if _, err := exec.LookPath("nft"); err != nil {
			return nil
		}
		out, err := exec.CommandContext(ctx, "nft", "-j", "list", "ruleset").Output()
		if err != nil {
			return fmt.Errorf("nft -j list ruleset: %w", err)
		}
		rs, err := netfilter.ParseNftJSON("nft -j list ruleset", out)
		if err != nil {
			return err
		}
		for _, t := range rs.Tables {
			if t.Name == NftTable {
				continue
			}
			var dels []*knftables.Rule
			for _, c := range t.Chains {
				for _, r := range c.Rules {
					if strings.HasPrefix(r.Comment, "twill:") {
						dels = append(dels, &knftables.Rule{Chain: c.Name, Handle: knftables.PtrTo(r.Handle)})
					}
				}
			}
			if len(dels) == 0 {
				continue
			}
			nft, err := knftables.New(knftables.Family(t.Family), t.Name)
			if err != nil {
				return fmt.Errorf("nftables: %w", err)
			}
			tx := nft.NewTransaction()
			for _, d := range dels {
				tx.Delete(d)
			}
			if err := nft.Run(ctx, tx); err != nil {
				return fmt.Errorf("delete twill's rules from %s %s: %w", t.Family, t.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("firewall remove (netns %s): %w", nsLabel(ns), errors.Join(errs...))
	}
	return nil
}
