package nodestate

// Names of the three netfilter rule sets a node can hold, as snapshots,
// doctor findings, traces and the firewall name them. Use these constants
// instead of spelling the names: they are also the names of the binaries
// (iptables-legacy, iptables-nft, nft) whose rules they are.
const (
	// BackendIptablesLegacy is iptables on the legacy x_tables kernel API
	// (Snapshot.Iptables.Legacy).
	BackendIptablesLegacy = "iptables-legacy"
	// BackendIptablesNFT is iptables on nf_tables (Snapshot.Iptables.NFT):
	// the tables iptables-nft manages.
	BackendIptablesNFT = "iptables-nft"
	// BackendNft is native nftables: every nf_tables table that
	// iptables-nft does not manage (Snapshot.Nftables).
	BackendNft = "nft"
)
