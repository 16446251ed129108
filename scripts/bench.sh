#!/usr/bin/env bash
# Runs twill's benchmarks and prints two tables; the same tables go to
# docs/benchmarks.md.
#  1. CPU benchmarks of the pure code (doctor, parsers, trace): medians of
#     COUNT runs, with ratios against a baseline measured in the same run.
#  2. System benchmarks (root: real namespaces, etcd, agents, CNI plugin,
#     iperf3): one run each, every metric they report (latency percentiles,
#     time to program peers, agent RSS, throughput ratios vs the underlay).
# These machines are shared and noisy: compare ratios, not absolutes.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
raw=$(mktemp)
sys=$(mktemp)
trap 'rm -f "$raw" "$sys"' EXIT

echo "bench: CPU benchmarks (doctor, netfilter, trace, kubeproxy; count=$COUNT)..." >&2
go test -run '^$' -bench . -benchmem -count "$COUNT" ./doctor ./netfilter ./trace ./kubeproxy | tee "$raw" >&2

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

echo "bench: system benchmarks (root; CNI, agent, throughput)..." >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "bench: the system benchmarks need root (network namespaces): run make bench as root" >&2
	exit 1
fi
# The agent benchmarks run the built binary (make bench builds it first).
TWILL_BIN=$PWD/bin/twill go test -run '^$' -bench 'CNIAddDel|ProgramPeers|LeaseToProgrammed|PodThroughput' -benchtime 1x -timeout 30m ./cni ./test/perf | tee "$sys" >&2
system=$(awk '
	BEGIN { printf "| benchmark | figures |\n|---|---|\n" }
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		figs=""
		for (i=3; i<NF; i+=2) { if ($(i+1)=="ns/op") continue; figs=figs sprintf("%s %s; ", $(i), $(i+1)) }
		printf "| %s | %s |\n", name, figs
	}' "$sys")

echo
echo "$cpu"
echo
echo "$system"
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
	echo "- \`BenchmarkCNIAddDelVsFlannel\`: the same beside the chain Flannel's CNI plugin delegates to (bridge + host-local with flannel's configuration), alternating on two nodes; the ratios are twill's over Flannel's (below 1: twill is faster). The flannel plugin's own process is not counted (its module is not served here)."
	echo "- \`BenchmarkProgramPeers\`, \`BenchmarkLeaseToProgrammed\`, \`BenchmarkPodThroughput\`: see docs/performance.md."
} > docs/benchmarks.md
echo "bench: tables written to docs/benchmarks.md" >&2
