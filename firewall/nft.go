package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/twillnet/twill/nsrun"
	"sigs.k8s.io/knftables"
)

// Nft writes twill's rules as the native nftables table "inet twill"
// through knftables, inside Netns ("" for the caller's own namespace).
type Nft struct {
	Netns string
	// client is made on first use (it runs `nft --version` and a dry run)
	// and kept: the agent calls Ensure every few seconds. It is only used
	// inside nsrun.Do(Netns), so its commands run in the namespace.
	client knftables.Interface
}

// nft returns the knftables client; call it inside nsrun.Do(b.Netns).
func (b *Nft) nft() (knftables.Interface, error) {
	if b.client == nil {
		c, err := knftables.New(knftables.InetFamily, NftTable)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		b.client = c
	}
	return b.client, nil
}

// Name returns BackendNft.
func (b *Nft) Name() string { return BackendNft }

// Ensure creates table inet twill with its chains, set and rules where
// missing, rewrites a chain whose rules differ from the Spec (one
// transaction), brings the peer set up to date element by element, and
// places the forward accepts. It reads everything first and writes nothing
// when all is in place.
func (b *Nft) Ensure(ctx context.Context, s Spec) ([]Repair, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var repairs []Repair
	err := nsrun.Do(b.Netns, func() error {
		nft, err := b.nft()
		if err != nil {
			return err
		}
		repairs, err = ensureNftTable(ctx, nft, s)
		return err
	})
	if err != nil {
		return repairs, fmt.Errorf("firewall nft (netns %s): %w", nsLabel(b.Netns), err)
	}
	fa, err := EnsureForwardAccepts(ctx, b.Netns, s)
	return append(repairs, fa...), err
}

func ensureNftTable(ctx context.Context, nft knftables.Interface, s Spec) ([]Repair, error) {
	var repairs []Repair
	tx := nft.NewTransaction()
	chains, err := nft.List(ctx, "chain")
	tableMissing := knftables.IsNotFound(err)
	if err != nil && !tableMissing {
		return nil, fmt.Errorf("list chains of inet %s: %w", NftTable, err)
	}
	if tableMissing {
		tx.Add(&knftables.Table{Comment: knftables.PtrTo("twill: pod network (masquerade, forward, vxlan guard)")})
	}
	sets, err := nft.List(ctx, "set")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("list sets of inet %s: %w", NftTable, err)
	}
	setMissing := !slices.Contains(sets, NftPeerSet)
	if setMissing {
		tx.Add(&knftables.Set{Name: NftPeerSet, Type: "ipv4_addr", Comment: knftables.PtrTo("twill: underlay addresses of current peers")})
	}
	set6Missing := !slices.Contains(sets, NftPeerSet6)
	if s.IPv6Network.IsValid() && set6Missing {
		tx.Add(&knftables.Set{Name: NftPeerSet6, Type: "ipv6_addr", Comment: knftables.PtrTo("twill: IPv6 underlay addresses of current peers")})
	}
	rules := NftRules(s)
	for _, c := range NftChains {
		var want []NftRule
		for _, r := range rules {
			if r.Chain == c.Name {
				want = append(want, r)
			}
		}
		exists := slices.Contains(chains, c.Name)
		if exists {
			have, err := nft.ListRules(ctx, c.Name)
			if err != nil {
				return nil, fmt.Errorf("list rules of inet %s %s: %w", NftTable, c.Name, err)
			}
			if sameComments(have, want) {
				continue
			}
			tx.Flush(&knftables.Chain{Name: c.Name})
		} else {
			tx.Add(&knftables.Chain{
				Name:     c.Name,
				Type:     knftables.PtrTo(knftables.BaseChainType(c.Type)),
				Hook:     knftables.PtrTo(knftables.BaseChainHook(c.Hook)),
				Priority: knftables.PtrTo(knftables.BaseChainPriority(c.Priority)),
			})
		}
		for _, r := range want {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r.Rule, Comment: knftables.PtrTo(r.Comment)})
			repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("nft inet %s %s: %s", NftTable, c.Name, r.Rule)})
		}
		if len(want) == 0 && exists {
			repairs = append(repairs, Repair{Kind: c.Kind, Object: fmt.Sprintf("nft inet %s %s: flushed (nothing wanted)", NftTable, c.Name)})
		}
	}
	peerSets := []struct {
		name    string
		missing bool
		want    []netip.Addr
	}{{NftPeerSet, setMissing, s.peers(false)}}
	if s.IPv6Network.IsValid() {
		peerSets = append(peerSets, struct {
			name    string
			missing bool
			want    []netip.Addr
		}{NftPeerSet6, set6Missing, s.peers(true)})
	}
	for _, ps := range peerSets {
		r, err := syncNftSet(ctx, nft, tx, ps.name, ps.missing, ps.want)
		if err != nil {
			return nil, err
		}
		repairs = append(repairs, r...)
	}
	if tx.NumOperations() == 0 {
		return nil, nil
	}
	if err := nft.Run(ctx, tx); err != nil {
		return nil, fmt.Errorf("write table inet %s: %w", NftTable, err)
	}
	return repairs, nil
}

// syncNftSet adds to tx what makes the set's elements want (the set is
// new when missing).
func syncNftSet(ctx context.Context, nft knftables.Interface, tx *knftables.Transaction, name string, missing bool, want []netip.Addr) ([]Repair, error) {
	var have []netip.Addr
	if !missing {
		els, err := nft.ListElements(ctx, "set", name)
		if err != nil {
			return nil, fmt.Errorf("list set inet %s %s: %w", NftTable, name, err)
		}
		for _, e := range els {
			if len(e.Key) == 1 {
				if a, err := netip.ParseAddr(e.Key[0]); err == nil {
					have = append(have, a)
				}
			}
		}
	}
	var repairs []Repair
	add, del := setDiff(want, have)
	for _, a := range add {
		tx.Add(&knftables.Element{Set: name, Key: []string{a.String()}})
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("nft set %s: add %s", name, a)})
	}
	for _, a := range del {
		tx.Delete(&knftables.Element{Set: name, Key: []string{a.String()}})
		repairs = append(repairs, Repair{Kind: KindGuard, Object: fmt.Sprintf("nft set %s: delete %s", name, a)})
	}
	return repairs, nil
}

// sameComments reports whether a chain holds exactly the wanted rules, by
// their comments (which encode each rule's content).
func sameComments(have []*knftables.Rule, want []NftRule) bool {
	if len(have) != len(want) {
		return false
	}
	for i, h := range have {
		if h.Comment == nil || *h.Comment != want[i].Comment {
			return false
		}
	}
	return true
}

// setDiff returns the addresses to add and to delete, sorted.
func setDiff(want, have []netip.Addr) (add, del []netip.Addr) {
	w, h := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, a := range want {
		w[a] = true
	}
	for _, a := range have {
		h[a] = true
	}
	for a := range w {
		if !h[a] {
			add = append(add, a)
		}
	}
	for a := range h {
		if !w[a] {
			del = append(del, a)
		}
	}
	sort.Slice(add, func(i, j int) bool { return add[i].Less(add[j]) })
	sort.Slice(del, func(i, j int) bool { return del[i].Less(del[j]) })
	return add, del
}

// Remove deletes table inet twill and the forward accepts twill placed.
func (b *Nft) Remove(ctx context.Context) error {
	err := nsrun.Do(b.Netns, func() error {
		nft, err := b.nft()
		if err != nil {
			return err
		}
		tx := nft.NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
			return fmt.Errorf("delete table inet %s: %w", NftTable, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("firewall nft (netns %s): %w", nsLabel(b.Netns), err)
	}
	return removeForwardAccepts(ctx, b.Netns)
}

func nsLabel(ns string) string {
	if ns == "" {
		return "own"
	}
	return ns
}
