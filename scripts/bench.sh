#!/usr/bin/env bash
# Runs twill's benchmarks and prints a table; the same table goes to
# docs/benchmarks.md. Figures are medians of COUNT runs on this machine;
# compare ratios (against the baseline measured in the same run), not
# absolutes: these machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

echo "bench: running go test -bench over doctor and netfilter (count=$COUNT)..." >&2
go test -run '^$' -bench . -benchmem -count "$COUNT" ./doctor ./netfilter | tee "$raw" >&2

table=$(awk '
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		n[name]++; v[name, n[name]]=$3
		for (i=4; i<=NF; i++) { if ($(i)=="B/op") bop[name]=$(i-1); if ($(i)=="allocs/op") aop[name]=$(i-1) }
		if (!(name in order)) { order[name]=++k; names[k]=name }
	}
	END {
		for (j=1; j<=k; j++) {
			name=names[j]; m=n[name]
			# median of the runs
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

echo
echo "$table"
{
	echo "# Benchmarks"
	echo
	echo "Measured with \`make bench\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), median of $COUNT runs."
	echo "Baseline for the doctor rows: \`BenchmarkRunHealthyNode\` (a small recorded lab node), measured in the same run."
	echo
	echo "$table"
	echo
	echo "- \`BenchmarkRun10kServices\`: every doctor check, parsing included, on a node whose iptables"
	echo "  hold kube-proxy's rules for 10,000 Services (2 endpoints each, ~60,000 rules). Goal: under 1 s."
	echo "- \`BenchmarkParseIptablesSave10kServices\`: the iptables-save parser alone on the same dump."
} > docs/benchmarks.md
echo "bench: table written to docs/benchmarks.md" >&2
