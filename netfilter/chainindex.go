package netfilter

// chainByName finds the chain called name in chains, through index (chain
// name to position) when index covers every chain, else by a scan. Every
// index hit is verified, so an index left stale by a hand edit of chains
// never returns the wrong chain. It serves both Table.Chain and
// NftTable.Chain.
func chainByName[C any](chains []*C, index map[string]int, name string, nameOf func(*C) string) *C {
	if index != nil && len(index) == len(chains) {
		// The index covers every chain: trust it, also for misses.
		i, ok := index[name]
		if !ok {
			return nil
		}
		if nameOf(chains[i]) == name {
			return chains[i]
		}
	}
	for _, c := range chains {
		if nameOf(c) == name {
			return c
		}
	}
	return nil
}
