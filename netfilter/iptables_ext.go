package netfilter

// This file lists the match modules and targets the iptables-save parser
// models, with the number of words each option takes. An option missing
// from these tables is still kept (see Option.Unknown); a module missing
// from them is kept verbatim (Match.Known false).

// optSpec maps an option name to the number of value words it takes.
type optSpec map[string]int

// matchSpecs are the known -m modules.
var matchSpecs = map[string]optSpec{
	"comment":  {"--comment": 1},
	"mark":     {"--mark": 1},
	"connmark": {"--mark": 1},
	"conntrack": {
		"--ctstate": 1, "--ctproto": 1, "--ctstatus": 1, "--ctexpire": 1, "--ctdir": 1,
		"--ctorigsrc": 1, "--ctorigdst": 1, "--ctreplsrc": 1, "--ctrepldst": 1,
		"--ctorigsrcport": 1, "--ctorigdstport": 1, "--ctreplsrcport": 1, "--ctrepldstport": 1,
	},
	"state":     {"--state": 1},
	"addrtype":  {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
	"statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
	"tcp": {
		"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1,
		"--tcp-flags": 2, "--syn": 0, "--tcp-option": 1,
	},
	"udp":       {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1},
	"sctp":      {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1, "--chunk-types": 2},
	"icmp":      {"--icmp-type": 1},
	"icmp6":     {"--icmpv6-type": 1},
	"multiport": {"--ports": 1, "--sports": 1, "--dports": 1, "--source-ports": 1, "--destination-ports": 1},
	"set": {
		"--match-set": 2, "--return-nomatch": 0, "--update-counters": 0, "--update-subcounters": 0,
		"--packets-eq": 1, "--packets-lt": 1, "--packets-gt": 1,
		"--bytes-eq": 1, "--bytes-lt": 1, "--bytes-gt": 1,
	},
	"physdev": {
		"--physdev-in": 1, "--physdev-out": 1,
		"--physdev-is-in": 0, "--physdev-is-out": 0, "--physdev-is-bridged": 0,
	},
	"mac":     {"--mac-source": 1},
	"pkttype": {"--pkt-type": 1},
	"recent": {
		"--name": 1, "--set": 0, "--rcheck": 0, "--update": 0, "--remove": 0,
		"--seconds": 1, "--reap": 0, "--hitcount": 1, "--rttl": 0,
		"--rsource": 0, "--rdest": 0, "--mask": 1,
	},
	"nfacct":  {"--nfacct-name": 1},
	"limit":   {"--limit": 1, "--limit-burst": 1},
	"owner":   {"--uid-owner": 1, "--gid-owner": 1, "--socket-exists": 0, "--suppl-groups": 0},
	"iprange": {"--src-range": 1, "--dst-range": 1},
	"length":  {"--length": 1},
	"ttl":     {"--ttl-eq": 1, "--ttl-gt": 1, "--ttl-lt": 1},
	"string": {
		"--algo": 1, "--from": 1, "--to": 1, "--string": 1, "--hex-string": 1, "--icase": 0,
	},
	"hashlimit": {
		"--hashlimit-upto": 1, "--hashlimit-above": 1, "--hashlimit-burst": 1,
		"--hashlimit-mode": 1, "--hashlimit-srcmask": 1, "--hashlimit-dstmask": 1,
		"--hashlimit-name": 1, "--hashlimit-htable-size": 1, "--hashlimit-htable-max": 1,
		"--hashlimit-htable-expire": 1, "--hashlimit-htable-gcinterval": 1,
		"--hashlimit-rate-match": 0, "--hashlimit-rate-interval": 1,
	},
	"connlimit": {
		"--connlimit-upto": 1, "--connlimit-above": 1, "--connlimit-mask": 1,
		"--connlimit-saddr": 0, "--connlimit-daddr": 0,
	},
	"policy": {
		"--dir": 1, "--pol": 1, "--strict": 0, "--reqid": 1, "--spi": 1, "--proto": 1,
		"--mode": 1, "--tunnel-src": 1, "--tunnel-dst": 1, "--next": 0,
	},
	"socket":   {"--transparent": 0, "--nowildcard": 0, "--restore-skmark": 0},
	"dscp":     {"--dscp": 1, "--dscp-class": 1},
	"tos":      {"--tos": 1},
	"helper":   {"--helper": 1},
	"u32":      {"--u32": 1},
	"devgroup": {"--src-group": 1, "--dst-group": 1},
	"cgroup":   {"--path": 1, "--cgroup": 1},
	"rpfilter": {"--loose": 0, "--validmark": 0, "--accept-local": 0, "--invert": 0},
}

// protoMatch maps a -p value to the match module it loads implicitly, so
// that `-p tcp --dport 80` is legal without `-m tcp`.
var protoMatch = map[string]string{
	"tcp": "tcp", "6": "tcp",
	"udp": "udp", "17": "udp",
	"icmp": "icmp", "1": "icmp",
	"sctp": "sctp", "132": "sctp",
	"ipv6-icmp": "icmp6", "icmpv6": "icmp6", "58": "icmp6",
}

// targetSpecs are the known -j targets other than user chains. Standard
// verdicts take no options.
var targetSpecs = map[string]optSpec{
	"ACCEPT": {}, "DROP": {}, "RETURN": {}, "QUEUE": {}, "NOTRACK": {},
	"REJECT":     {"--reject-with": 1},
	"DNAT":       {"--to-destination": 1, "--random": 0, "--persistent": 0, "--random-fully": 0},
	"SNAT":       {"--to-source": 1, "--random": 0, "--persistent": 0, "--random-fully": 0},
	"MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
	"REDIRECT":   {"--to-ports": 1, "--random": 0},
	"MARK": {
		"--set-xmark": 1, "--set-mark": 1, "--or-mark": 1, "--and-mark": 1, "--xor-mark": 1,
	},
	"CONNMARK": {
		"--set-xmark": 1, "--set-mark": 1, "--save-mark": 0, "--restore-mark": 0,
		"--nfmask": 1, "--ctmask": 1, "--mask": 1,
		"--and-mark": 1, "--or-mark": 1, "--xor-mark": 1,
	},
	"LOG": {
		"--log-level": 1, "--log-prefix": 1, "--log-tcp-sequence": 0, "--log-tcp-options": 0,
		"--log-ip-options": 0, "--log-uid": 0, "--log-macdecode": 0,
	},
	"NFLOG": {
		"--nflog-group": 1, "--nflog-prefix": 1, "--nflog-range": 1,
		"--nflog-size": 1, "--nflog-threshold": 1,
	},
	"TCPMSS": {"--set-mss": 1, "--clamp-mss-to-pmtu": 0},
	"CT": {
		"--notrack": 0, "--helper": 1, "--ctevents": 1, "--expevents": 1,
		"--zone": 1, "--zone-orig": 1, "--zone-reply": 1, "--timeout": 1,
	},
	"CHECKSUM": {"--checksum-fill": 0},
	"TPROXY":   {"--on-port": 1, "--on-ip": 1, "--tproxy-mark": 1},
	"NFQUEUE": {
		"--queue-num": 1, "--queue-balance": 1, "--queue-bypass": 0,
		"--fail-open": 0, "--queue-cpu-fanout": 0,
	},
	"DSCP": {"--set-dscp": 1, "--set-dscp-class": 1},
}

// KnownMatch reports whether the parser models the match module (its
// options are checked and counted); other modules are kept verbatim.
func KnownMatch(module string) bool {
	_, ok := matchSpecs[module]
	return ok
}
