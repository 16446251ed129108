#!/usr/bin/env bash
# Installs what twill's lab, demo and tests need on a Debian machine where you
# are root: the Debian packages below (with --kube, for the tests, also
# chromium, containerd and runc), and real etcd, cnitool, flanneld, bridge,
# host-local, portmap and (with --kube) kube-apiserver, kubectl, kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy and coredns binaries,
# plus containerd 2.x in bin/containerd2/, built from the Go module proxy into
# bin/ (cached: rebuilt only when tools/ changes).
#
#   scripts/setup.sh          what the lab and the tests without Kubernetes need
#                             (make tools: make bench, the lab's Flannel nodes)
#   scripts/setup.sh --demo   only what `make demo` needs: no flanneld and no
#                             CNI reference plugins (they take a minute to build)
#   scripts/setup.sh --kube   everything (make test): also the Kubernetes binaries
set -euo pipefail
cd "$(dirname "$0")/.."

kube=0
flannel=1
for arg in "$@"; do
	case "$arg" in
	--kube) kube=1 ;;
	--demo) flannel=0 ;;
	*)
		echo "setup: unknown option $arg: want --demo (make demo), --kube (make test) or nothing (make tools)" >&2
		exit 1
		;;
	esac
done
if [ "$kube" = 1 ] && [ "$flannel" = 0 ]; then
	echo "setup: --kube and --demo together: --kube builds everything (the tests need flanneld), --demo only the demo's tools; pick one" >&2
	exit 1
fi

pkgs=(iptables nftables iproute2 conntrack iperf3 tcpdump ethtool ipset procps)
# The tests (--kube, make test) also open the HTML pages of trace and doctor
# in headless Chromium; the demo does not need it. The real nodes of
# `twill lab up --kubernetes` run Debian's containerd (1.6) and runc.
if [ "$kube" = 1 ]; then
	pkgs+=(chromium containerd runc)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing Debian packages: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: need root to install packages (run as root, or: sudo $0)" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH=$PATH:/usr/local/go/bin
	else
		echo "setup: Go is not installed: install Go 1.26 from https://go.dev/dl/ into /usr/local/go" >&2
		exit 1
	fi
fi

mkdir -p bin
# Upstream programs pinned by tools/go.mod: rebuilt only when it changes.
stamp=bin/.tools.stamp
want=$(cat tools/go.mod tools/go.sum tools/tools.go tools/etcd/main.go | sha256sum | cut -d' ' -f1)
if [ ! -x bin/etcd ] || [ ! -x bin/cnitool ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "setup: building etcd and cnitool from the Go module proxy into bin/ (first time: a minute or two)"
	(cd tools && go build -o ../bin/etcd ./etcd && go build -o ../bin/cnitool github.com/containernetworking/cni/cnitool)
	echo "$want" > "$stamp"
fi
# Flannel for the lab's Flannel nodes (twill lab up --flannel-nodes): a small
# flanneld (tools/flannel: Flannel's own etcd and Kubernetes subnet managers,
# vxlan and host-gw backends as a library), Flannel's CNI plugin
# (tools/flannelcni: containernetworking/plugins v0.9.1's plugins/meta/flannel,
# the same plugin before it moved to flannel-io/cni-plugin, which the module
# proxy refuses), the bridge and host-local plugins it delegates to, and
# portmap, which kube-flannel's conflist chains (tools/cniplugins). A module of
# its own each. Not for the demo (--demo).
if [ "$flannel" = 1 ]; then
fstamp=bin/.flannel.stamp
fwant=$(cat tools/flannel/go.mod tools/flannel/go.sum tools/flannel/flanneld/main.go tools/cniplugins/go.mod tools/cniplugins/go.sum tools/cniplugins/tools.go tools/flannelcni/go.mod tools/flannelcni/go.sum | sha256sum | cut -d' ' -f1)
if [ ! -x bin/flanneld ] || [ ! -x bin/cni/flannel ] || [ ! -x bin/cni/bridge ] || [ ! -x bin/cni/host-local ] || [ ! -x bin/cni/portmap ] || [ "$(cat "$fstamp" 2>/dev/null)" != "$fwant" ]; then
	echo "setup: building flanneld, Flannel's CNI plugin, bridge, host-local and portmap from the Go module proxy into bin/ (first time: 10-50 minutes, most of it k8s.io/client-go)"
	(cd tools/flannel && go build -o ../../bin/flanneld ./flanneld)
	# In bin/cni, not bin/: their names are system commands' (iproute2's bridge).
	mkdir -p bin/cni
	(cd tools/cniplugins && go build -o ../../bin/cni/bridge github.com/containernetworking/plugins/plugins/main/bridge &&
		go build -o ../../bin/cni/host-local github.com/containernetworking/plugins/plugins/ipam/host-local &&
		go build -o ../../bin/cni/portmap github.com/containernetworking/plugins/plugins/meta/portmap)
	(cd tools/flannelcni && go build -o ../../bin/cni/flannel github.com/containernetworking/plugins/plugins/meta/flannel)
	echo "$fwant" > "$fstamp"
fi
fi
# The real kube-apiserver and kubectl for the lab's Kubernetes mode and its
# tests, and kubelet, kube-controller-manager, kube-scheduler and kube-proxy
# for its real nodes (lab up --kubernetes): a separate module (k8s.io/kubernetes
# needs its staging modules replaced); the cold build takes 10-15 minutes
# (kubelet alone about 3), then it is cached.
# Only with --kube (make test): the demo does not need them.
if [ "$kube" = 1 ]; then
kstamp=bin/.kube.stamp
# The version the binaries report (kubectl version, the API's /version): without
# it they say v0.0.0-master+$Format:%H$ and kubectl version fails to parse it.
# Part of the stamp: changing it relinks them (the compile cache stays warm).
kver=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' tools/kube/go.mod)
kminor=${kver#v1.}; kminor=${kminor%%.*}
kldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor"
	kldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
kbins=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)
kwant=$( (cat tools/kube/go.mod tools/kube/go.sum tools/kube/*/main.go; echo "$kldflags") | sha256sum | cut -d' ' -f1)
kmissing=0
for b in "${kbins[@]}"; do [ -x "bin/$b" ] || kmissing=1; done
if [ "$kmissing" = 1 ] || [ "$(cat "$kstamp" 2>/dev/null)" != "$kwant" ]; then
	echo "setup: building ${kbins[*]} from k8s.io/kubernetes into bin/ (first time: 10-15 minutes)"
	for b in "${kbins[@]}"; do
		(cd tools/kube && go build -ldflags "$kldflags" -o "../../bin/$b" "./$b")
	done
	echo "$kwant" > "$kstamp"
fi
# CoreDNS, the cluster DNS of the real-node lab (lab up --kubernetes; make
# image puts it in coredns.docker.tar): tools/coredns links only the plugins
# the lab's Corefile uses (the full build, every plugin, takes over an hour);
# static, so it runs in an image holding nothing else. Its version string
# (coredns -version) carries the module version as the commit, as CoreDNS's
# own Makefile sets git describe.
cstamp=bin/.coredns.stamp
cver=$(awk '$1 == "github.com/coredns/coredns" { print $2; exit }' tools/coredns/go.mod)
cldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$cver"
cwant=$( (cat tools/coredns/go.mod tools/coredns/go.sum tools/coredns/coredns/main.go; echo "$cldflags") | sha256sum | cut -d' ' -f1)
if [ ! -x bin/coredns ] || [ "$(cat "$cstamp" 2>/dev/null)" != "$cwant" ]; then
	echo "setup: building coredns $cver (errors, health, ready, kubernetes, forward, cache, loop, reload, loadbalance, log) into bin/ (first time: 10-50 minutes, most of it k8s.io/client-go)"
	(cd tools/coredns && CGO_ENABLED=0 go build -trimpath -ldflags "$cldflags" -o ../../bin/coredns ./coredns)
	echo "$cwant" > "$cstamp"
fi
# containerd 2.x for `twill lab up --kubernetes --containerd 2` (Debian's 1.6
# is the default runtime): containerd, its runc shim and ctr from the
# github.com/containerd/containerd/v2 module pinned by tools/containerd2,
# side by side in bin/containerd2/ (containerd runs the shim next to it; the
# lab puts that directory first on its PATH). Static, without the btrfs,
# devmapper and zfs snapshotters (they need cgo); about 2 minutes cold.
c2stamp=bin/.containerd2.stamp
# (go.mod has it as "require <module> <version>" or inside a require block)
c2ver=$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/containerd/containerd/v2") { print $(i + 1); exit } }' tools/containerd2/go.mod)
if [ -z "$c2ver" ]; then
	echo "setup: tools/containerd2/go.mod does not require github.com/containerd/containerd/v2" >&2
	exit 1
fi
c2ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$c2ver"
c2bins=(containerd containerd-shim-runc-v2 ctr)
c2want=$( (cat tools/containerd2/go.mod tools/containerd2/go.sum tools/containerd2/tools.go; echo "$c2ldflags") | sha256sum | cut -d' ' -f1)
c2missing=0
for b in "${c2bins[@]}"; do [ -x "bin/containerd2/$b" ] || c2missing=1; done
if [ "$c2missing" = 1 ] || [ "$(cat "$c2stamp" 2>/dev/null)" != "$c2want" ]; then
	echo "setup: building containerd $c2ver (${c2bins[*]}) from github.com/containerd/containerd/v2 into bin/containerd2/ (first time: about 2 minutes)"
	mkdir -p bin/containerd2
	for b in "${c2bins[@]}"; do
		(cd tools/containerd2 && CGO_ENABLED=0 go build -trimpath -tags no_btrfs,no_devmapper,no_zfs -ldflags "$c2ldflags" \
			-o "../../bin/containerd2/$b" "github.com/containerd/containerd/v2/cmd/$b")
	done
	echo "$c2want" > "$c2stamp"
fi
fi
echo "setup: ok ($(bin/etcd --version 2>/dev/null | head -1); $(cd bin && ls | tr '\n' ' '))"
