#!/usr/bin/env bash
# Runs twill's benchmarks and prints two tables; the same tables go to
# docs/benchmarks.md.
#  1. CPU benchmarks of the pure code (doctor, parsers, trace): medians of
#     COUNT runs, with ratios against a baseline measured in the same run.
#  2. System benchmarks (root: real namespaces, etcd, agents, CNI plugin,
#     iperf3): one run each, every metric they report (latency percentiles,
#     time to program peers, agent RSS, throughput ratios vs the underlay).
#  3. twill beside Flannel (root; the real flanneld in the same lab harness):
#     CNI ADD/DEL, convergence, daemon RSS, pod TCP throughput over the
#     underlay's, with twill, Flannel and twill/Flannel columns.
# These machines are shared and noisy: compare ratios, not absolutes.
#
# FLANNEL_ONLY=1 runs only part 3 and replaces only its section of
# docs/benchmarks.md (make bench-flannel).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
FLANNEL_ONLY=${FLANNEL_ONLY:-}
raw=$(mktemp)
sys=$(mktemp)
trap 'rm -f "$raw" "$sys"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# flannel_table prints the side-by-side table from benchmark output (file
# $1): every metric twill-X / flannel-X of the *VsFlannel benchmarks is a
# row X with both values and twill's over Flannel's.
flannel_table() {
	awk '
	function label(ctx, stem,    part) {
		if (stem ~ /^(add|del)-p[0-9]+-ms$/) { split(stem, part, "-"); return "CNI " toupper(part[1]) " " part[2] " (ms)" }
		if (stem == "conv-p50-ms") return ctx ": convergence p50 (ms)"
		if (stem == "conv-p99-ms") return ctx ": convergence p99 (ms)"
		if (stem == "prog-p50-ms") return ctx ": kernel programmed p50 (ms)"
		if (stem == "rss-MB") return ctx ": daemon RSS, steady state (MiB)"
		if (stem == "tcp-ratio") return ctx ": pod TCP / underlay TCP"
		if (stem == "pod-Gbps") return ctx ": pod TCP (Gbit/s)"
		if (stem == "underlay-Gbps") return ctx ": underlay TCP (Gbit/s)"
		return ctx ": " stem
	}
	BEGIN {
		n = split("add-p50-ms add-p99-ms del-p50-ms del-p99-ms conv-p50-ms conv-p99-ms prog-p50-ms rss-MB tcp-ratio pod-Gbps underlay-Gbps", st, " ")
		for (i = 1; i <= n; i++) rank[st[i]] = i
	}
	/^Benchmark[^ ]*VsFlannel/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		ctx = name; sub(/^BenchmarkVsFlannel\//, "", ctx)
		if (name ~ /CNIAddDel/) ctx = "CNI"
		if (!(ctx in corder)) corder[ctx] = ++nc
		for (i = 3; i < NF; i += 2) {
			unit = $(i+1)
			if (unit ~ /^twill-/) { stem = substr(unit, 7); who = "tw" }
			else if (unit ~ /^flannel-/) { stem = substr(unit, 9); who = "fl" }
			else continue
			key = ctx SUBSEP stem
			if (who == "tw") tw[key] = $(i); else fl[key] = $(i)
			if (!(key in seen)) { seen[key] = 1; keys[++k] = key; ord[k] = corder[ctx] * 100 + (stem in rank ? rank[stem] : 99) }
		}
	}
	END {
		for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++) if (ord[y] < ord[x]) {
			t = ord[x]; ord[x] = ord[y]; ord[y] = t; t = keys[x]; keys[x] = keys[y]; keys[y] = t
		}
		printf "| figure | twill | Flannel | twill/Flannel |\n|---|---:|---:|---:|\n"
		for (j = 1; j <= k; j++) {
			split(keys[j], p, SUBSEP)
			r = (keys[j] in tw && keys[j] in fl && fl[keys[j]] > 0) ? sprintf("%.2f", tw[keys[j]] / fl[keys[j]]) : ""
			printf "| %s | %s | %s | %s |\n", label(p[1], p[2]), tw[keys[j]], fl[keys[j]], r
		}
	}' "$1"
}

# flannel_section is the section of docs/benchmarks.md with the table $1.
flannel_section() {
	echo "<!-- vsflannel:begin (scripts/bench.sh writes this section) -->"
	echo "## twill beside Flannel, same run"
	echo
	echo "Measured on $(date -u +%Y-%m-%d) beside flanneld $(grep -m1 'github.com/flannel-io/flannel ' tools/flannel/go.mod | awk '{print $2}') (Flannel's own code, \`bin/flanneld\`), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average $load_before before and $(cut -d' ' -f1-3 /proc/loadavg) after (a shared machine: compare the ratios)."
	echo
	echo "$1"
	echo
	echo "- twill/Flannel: below 1 is better for latencies and memory, above 1 for pod TCP / underlay TCP."
	echo "- CNI rows: \`BenchmarkCNIAddDelVsFlannel\` (./cni): twill-cni beside the chain Flannel's CNI plugin delegates to (bridge + host-local with Flannel's configuration), 100 pods each, alternating; the flannel plugin's own process is not counted (its module is not served here), so Flannel's real chain costs at least this much."
	echo "- vxlan and host-gw rows: \`BenchmarkVsFlannel\` (./test/vsflannel): two 3-node labs built side by side (\`twill lab up\` and \`twill lab up --flannel-nodes 3\`), each figure measured on both alternately. Convergence: node3's daemon stopped, its lease deleted and written back 12 times; from the write until node1 and node2 both have the route (vxlan: and the neighbour and FDB entry) and pings from their pods (every 5 ms) reach node3's pod; \"kernel programmed\" is the route/neighbour/FDB part alone. RSS: the daemon process (VmRSS), mean of the 3 nodes, median of 5 readings a second apart. TCP: a Go sender and receiver opened inside the namespaces, 2 s per run, node1 to node2, underlay (eth0 to eth0) then pods, 3 rounds; the ratio is the median of pod over the underlay run just before it."
	echo "<!-- vsflannel:end -->"
}

cpu=$(awk '
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		n[name]++; v[name, n[name]]=$3
		for (i=4; i<=NF; i++) { if ($(i)=="B/op") bop[name]=$(i-1); if ($(i)=="allocs/op") aop[name]=$(i-1) }
		if (!(name in order)) { order[name]=++k; names[k]=name }
	}
	END {
		for (j=1; j<=k; j++) {
			name=names[j]; m=n[name]
			for (a=1; a<=m; a++) s[a]=v[name, a]
			for (a=1; a<=m; a++) for (b=a+1; b<=m; b++) if (s[b] < s[a]) { t=s[a]; s[a]=s[b]; s[b]=t }
			med[name]=s[int((m+1)/2)]
		}
		base=med["BenchmarkRunHealthyNode"]
		printf "| benchmark | median time/op | B/op | allocs/op | vs. baseline |\n|---|---:|---:|---:|---:|\n"
		for (j=1; j<=k; j++) {
			name=names[j]; t=med[name]
			if (t >= 1e6) ts=sprintf("%.1f ms", t/1e6); else if (t >= 1e3) ts=sprintf("%.1f µs", t/1e3); else ts=sprintf("%d ns", t)
			ratio = (base > 0 && name ~ /^BenchmarkRun/) ? sprintf("%.0fx", t/base) : ""
			printf "| %s | %s | %s | %s | %s |\n", name, ts, bop[name], aop[name], ratio
		}
	}' "$raw")

echo "bench: system benchmarks (root; CNI, agent, throughput, twill beside flanneld)..." >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "bench: the system benchmarks need root (network namespaces): run make bench as root" >&2
	exit 1
fi
if [ -n "$FLANNEL_ONLY" ]; then
	grep -q '^<!-- vsflannel:begin' docs/benchmarks.md || { echo "bench: docs/benchmarks.md has no twill-beside-Flannel section to replace: run make bench once" >&2; exit 1; }
	echo "bench: twill beside Flannel (root; CNI, two 3-node labs per backend)..." >&2
	TWILL_BIN=$PWD/bin/twill go test -run '^$' -bench 'VsFlannel' -benchtime 1x -timeout 30m ./cni ./test/vsflannel | tee "$sys" >&2
	table=$(flannel_table "$sys")
	echo
	echo "$table"
	section=$(flannel_section "$table")
	section="$section" awk '
		/^<!-- vsflannel:begin/ { print ENVIRON["section"]; skip = 1; next }
		/^<!-- vsflannel:end/ { skip = 0; next }
		!skip' docs/benchmarks.md > docs/benchmarks.md.new
	mv docs/benchmarks.md.new docs/benchmarks.md
	echo "bench: table written to docs/benchmarks.md" >&2
	exit 0
fi

echo "bench: CPU benchmarks (doctor, netfilter, trace, kubeproxy; count=$COUNT)..." >&2
go test -run '^$' -bench . -benchmem -count "$COUNT" ./doctor ./netfilter ./trace ./kubeproxy | tee "$raw" >&2
# The agent benchmarks run the built binary (make bench builds it first).
TWILL_BIN=$PWD/bin/twill go test -run '^$' -bench 'CNIAddDel|ProgramPeers|LeaseToProgrammed|PodThroughput|VsFlannel' -benchtime 1x -timeout 45m ./cni ./test/perf ./test/vsflannel | tee "$sys" >&2
system=$(awk '
	BEGIN { printf "| benchmark | figures |\n|---|---|\n" }
	/^Benchmark[^ ]*VsFlannel/ { next }
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		figs=""
		for (i=3; i<NF; i+=2) { if ($(i+1)=="ns/op") continue; figs=figs sprintf("%s %s; ", $(i), $(i+1)) }
		printf "| %s | %s |\n", name, figs
	}' "$sys")

table=$(flannel_table "$sys")

echo
echo "$cpu"
echo
echo "$system"
echo
echo "$table"
{
	echo "# Benchmarks"
	echo
	echo "Measured with \`make bench\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), a shared machine."
	echo
	echo "## CPU (pure code), median of $COUNT runs"
	echo
	echo "Baseline for the doctor rows: \`BenchmarkRunHealthyNode\` (a small recorded lab node), measured in the same run."
	echo
	echo "$cpu"
	echo
	echo "- \`BenchmarkRun10kServices\`: every doctor check, parsing included, on a node whose iptables"
	echo "  hold kube-proxy's rules for 10,000 Services (2 endpoints each, ~60,000 rules). Goal: under 1 s."
	echo "- \`BenchmarkParseIptablesSave10kServices\`: the iptables-save parser alone on the same dump."
	echo "- \`BenchmarkIptables10k\` / \`BenchmarkNftables10k\` (trace): one packet trace (with its reply) on"
	echo "  10,000 Services after loading; see docs/trace.md. Goal: under 10 ms."
	echo
	echo "## System (root, real namespaces), one run each"
	echo
	echo "$system"
	echo
	echo "- \`BenchmarkCNIAddDel\`: twill-cni ADD and DEL latency over 100 pods, run as a new process each time (docs/cni.md)."
	echo "- \`BenchmarkProgramPeers\`, \`BenchmarkLeaseToProgrammed\`, \`BenchmarkPodThroughput\`: see docs/performance.md."
	echo
	flannel_section "$table"
} > docs/benchmarks.md
echo "bench: tables written to docs/benchmarks.md" >&2
