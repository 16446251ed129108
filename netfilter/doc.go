// Package netfilter parses netfilter rule dumps into a structured model:
// iptables-save text (legacy or nft backend) and `nft -j list ruleset` JSON.
//
// Entry points: ParseIptablesSave (text of iptables-save / ip6tables-save,
// with or without -c counters) gives a *Ruleset; ParseNftJSON gives an
// *NftRuleset. Table.Chain and NftTable.Chain are O(1) on parsed input.
//
// The parsers are pure functions. They never drop what they do not
// understand: an unknown match module, target or option is kept verbatim
// and flagged on the rule (Rule.Unknown), so a check or the tracer can say
// "uncertain" instead of silently guessing. Malformed input gives a
// *ParseError with the line (iptables) or the object index (nft).
//
// Option values are the words as iptables-save prints them, unsplit
// ("RELATED,ESTABLISHED", "0x4000/0x4000"); comments and other quoted
// strings are unquoted with iptables-restore's rules.
//
// testdata/ holds dumps recorded from the real binaries in a network
// namespace (see testdata/README.md); the parsers are fuzzed
// (FuzzParseIptablesSave, FuzzParseNftJSON) and benchmarked on 10,000
// kube-proxy Services.
package netfilter
