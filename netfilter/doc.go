// Package netfilter parses netfilter rule dumps into a structured model:
// iptables-save text (legacy or nft backend) and `nft -j list ruleset` JSON.
//
// The parsers are pure functions. They never drop what they do not
// understand: an unknown match module is kept verbatim and flagged on the
// rule (Rule.Unknown), so a check or the tracer can say "uncertain" instead
// of silently guessing. Malformed input gives a *ParseError with the line.
package netfilter
