#!/usr/bin/env bash
# make conformance: run the [sig-network] [Conformance] tests of Kubernetes'
# own end-to-end suite (k8s.io/kubernetes/test/e2e, the version of
# tools/kube) against a lab of real nodes running twill (docs/conformance.md).
#
#   1. e2e.test (`go test -c` of k8s.io/kubernetes/test/e2e, module
#      tools/kube/e2e) and a static agnhost, with the version ldflags of the
#      node binaries; cached in bin/conformance by a stamp
#   2. the suite's images this host can build (cmd/twill-e2e-images):
#      agnhost, busybox, jessie-dnsutils and pause:3.10.1
#   3. twill lab up --kubernetes --nodes $NODES --name $LAB, the images
#      imported into every node's containerd
#   4. e2e.test with the focus below, bounded by $TIMEOUT, inside the lab's
#      underlay (where the API server is); JUnit in $OUT/report
#   5. a summary ($OUT/summary.txt), then lab down (kept with KEEP=1)
#
# Settings (environment): LAB (conform), NODES (2), TIMEOUT (ginkgo's bound,
# in minutes, 60m), FOCUS ('\[sig-network\].*\[Conformance\]'), SKIP (empty), KEEP (0),
# OUT (bin/conformance). Heavy builds run under nice -n 10.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

LAB=${LAB:-conform}
NODES=${NODES:-2}
TIMEOUT=${TIMEOUT:-60m}
FOCUS=${FOCUS:-'\[sig-network\].*\[Conformance\]'}
SKIP=${SKIP:-}
KEEP=${KEEP:-0}
OUT=${OUT:-bin/conformance}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
twill=$PWD/bin/twill

# The Debian programs the rebuilt test images ship (cmd/twill-e2e-images).
pkgs=(busybox-static curl netcat-openbsd iproute2 bind9-dnsutils bash)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "conformance: installing ${missing[*]}"
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# 1. e2e.test and agnhost, with the version the node binaries report (the
# same ldflags as scripts/setup.sh), rebuilt when the module or they change.
kver=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' tools/kube/e2e/go.mod)
kminor=${kver#v1.}
kminor=${kminor%%.*}
kldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor"
	kldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
stamp=$OUT/.build.stamp
want=$( (cat tools/kube/e2e/go.mod tools/kube/e2e/go.sum; echo "$kldflags") | sha256sum | cut -d' ' -f1)
if [ ! -x "$OUT/e2e.test" ] || [ ! -x "$OUT/agnhost" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "conformance: building e2e.test and agnhost from k8s.io/kubernetes $kver (cold: tens of minutes)"
	start=$(date +%s)
	(cd tools/kube/e2e && nice -n 10 go test -c -vet=off -ldflags "$kldflags" -o "$OUT/e2e.test" k8s.io/kubernetes/test/e2e)
	echo "conformance: e2e.test built in $(($(date +%s) - start)) s"
	# With e2e.test's flags (cgo, no -trimpath) it reuses e2e.test's compile
	# cache; the image ships the libc it loads.
	(cd tools/kube/e2e && nice -n 10 go build -ldflags "$kldflags" -o "$OUT/agnhost" k8s.io/kubernetes/test/images/agnhost)
	echo "$want" >"$stamp"
fi

# 2. the test images, under the tags e2e.test of $kver expects.
agnhost_src=$(cd tools/kube/e2e && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/twill-pause" ./cmd/twill-pause
go run ./cmd/twill-e2e-images --agnhost "$OUT/agnhost" --agnhost-src "$agnhost_src" \
	--pause "$OUT/twill-pause" --out "$OUT" --source-date-epoch "$(git log -1 --format=%ct)"

# 3. the lab.
down() {
	if [ "$KEEP" = 1 ]; then
		echo "conformance: KEEP=1: lab $LAB left up (twill lab down --name $LAB)"
	else
		"$twill" lab down --name "$LAB" >/dev/null 2>&1 || true
	fi
}
trap down EXIT
"$twill" lab down --name "$LAB" >/dev/null 2>&1 || true
"$twill" lab up --name "$LAB" --kubernetes --nodes "$NODES"
"$twill" lab import-image --name "$LAB" "$OUT"/agnhost.docker.tar "$OUT"/busybox.docker.tar \
	"$OUT"/jessie-dnsutils.docker.tar "$OUT"/pause.docker.tar
# The lab's API server runs in the underlay, not on a node, so it has no
# route to the pods; the suite expects the control plane to reach them (its
# Proxy tests go through the API server's pod and service proxy), as on a
# control-plane node of the pod network. Route each Node's podCIDR via its
# InternalIP, in the underlay only (docs/conformance.md).
"$twill" lab exec --name "$LAB" underlay -- kubectl get nodes \
	-o jsonpath='{range .items[*]}{.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' |
	while read -r cidr ip; do
		[ -n "$cidr" ] && [ -n "$ip" ] || continue
		echo "conformance: underlay route $cidr via $ip (API server to pods)"
		"$twill" lab exec --name "$LAB" underlay -- ip route replace "$cidr" via "$ip"
	done

# 4. the suite, in the underlay (lab exec sets KUBECONFIG to the admin's).
report=$OUT/report
rm -rf "$report"
mkdir -p "$report"
echo "conformance: e2e.test --ginkgo.focus='$FOCUS' (bounded by $TIMEOUT; log $OUT/e2e.log)"
rc=0
limit=$((${TIMEOUT%m} + 10))m
"$twill" lab exec --name "$LAB" underlay -- sh -c 'l=$0 b=$1; shift; exec timeout --kill-after=1m "$l" "$b" --kubeconfig "$KUBECONFIG" "$@"' \
	"$limit" "$OUT/e2e.test" --provider skeleton \
	--ginkgo.focus="$FOCUS" ${SKIP:+--ginkgo.skip="$SKIP"} --ginkgo.timeout="$TIMEOUT" \
	--ginkgo.no-color --ginkgo.v --report-dir "$report" \
	>"$OUT/e2e.log" 2>&1 || rc=$?

# 5. the summary: one line per spec that ran, then the counts.
python3 - "$report" "$OUT/summary.txt" <<'EOF'
import glob, sys, xml.etree.ElementTree as ET
report, out = sys.argv[1], sys.argv[2]
rows, counts = [], {"passed": 0, "failed": 0, "skipped": 0}
for f in sorted(glob.glob(report + "/junit*.xml")):
    for tc in ET.parse(f).getroot().iter("testcase"):
        name = tc.get("name", "")
        if "[sig-network]" not in name or "[Conformance]" not in name:
            continue
        if tc.find("failure") is not None or tc.find("error") is not None:
            state = "failed"
        elif tc.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        counts[state] += 1
        rows.append(f"{state:8} {float(tc.get('time', 0)):7.1f}s  {name}")
with open(out, "w") as w:
    w.write("\n".join(rows) + "\n")
    w.write("passed %(passed)d, failed %(failed)d, skipped %(skipped)d\n" % counts)
print(open(out).read(), end="")
EOF
echo "conformance: e2e.test exit $rc; JUnit in $report, log $OUT/e2e.log, summary $OUT/summary.txt"
exit "$rc"
