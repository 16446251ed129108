// Package firewall owns twill's packet filter rules on a node: masquerade
// for pod traffic leaving the cluster network, an accept for the pod network
// on the forward path (also where another tool's drop is, FAILURES.md F3),
// and the vxlan guard (vxlan UDP only from current peers).
//
// The rules are rendered from a Spec by pure functions (NftRules,
// IptablesRules) and written by one of two adapters, chosen by Detect:
// native nftables through sigs.k8s.io/knftables (table "inet twill"), or
// iptables through github.com/coreos/go-iptables with the host's own
// backend binary (chains TWILL-*, guard peers in the ipset
// "twill-vxlan-peers"). Never both. The one exception is the forward accept:
// it goes into whichever backend and chain holds the drop (see Placements).
//
// Ensure is idempotent and reads before it writes: the agent calls it every
// resync, and it only changes what is missing or wrong, reporting each such
// repair. Remove deletes everything twill made. See docs/firewall.md.
package firewall
