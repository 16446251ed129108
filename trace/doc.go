// Package trace simulates one packet through the network state of one or
// more nodes (nodestate snapshots) the way the Linux kernel would handle it,
// and names every routing decision, bridge hop, netfilter rule, NAT rewrite
// and overlay encapsulation on the way — then follows the reply back through
// conntrack, so that failures such as a reply bridged without reverse NAT
// (FAILURES.md F1) are explained, not guessed.
//
// The model, in kernel order:
//
//   - pods: a minimal namespace per pod (its address, a default route via the
//     node bridge's address, on-link delivery inside its subnet);
//   - bridges: frames between two ports of a node bridge are bridged; with
//     net.bridge.bridge-nf-call-iptables=1 they pass the IP hooks
//     (PREROUTING, FORWARD, POSTROUTING) with physdev set, with 0 they do
//     not; a frame for the bridge's own MAC is routed; hairpin is needed to
//     send a frame back out of the port it came in on;
//   - routing: policy rules in priority order, tables local/main/custom,
//     longest prefix then lowest metric, onlink gateways, blackhole,
//     unreachable, prohibit and throw routes, local delivery,
//     net.ipv4.ip_forward;
//   - netfilter: at every hook, every base chain of every backend
//     (iptables-legacy, iptables-nft, native nftables) in priority order; a
//     packet continues only when each of them accepts. iptables semantics
//     are in ipt_*.go, nftables in nft_*.go. statistic/numgen random rules
//     fork the simulation: every branch is followed with its probability;
//   - conntrack: the NAT bindings of the forward packet are recorded per
//     node and applied in reverse to the reply where (and only where) the
//     reply passes the conntrack hooks;
//   - overlay: vxlan via route, neighbour and FDB entries to the next
//     node's snapshot (matched by underlay address), host-gw via routes.
//
// Anything the simulator cannot evaluate makes the result uncertain and the
// result names the rule; it never guesses silently.
//
// Entry points: NewWorld (snapshots and pods), World.Trace (one probe) and
// Result's Text and JSON renderings. Package trace/tracelab builds a World
// from a running lab and sends real probes (--live); trace itself imports no
// lab, etcd or Kubernetes client code (TestNoLabOrClientDependencies).
package trace
