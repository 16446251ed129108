# twill: make demo runs the lab tour; make test runs every test. Both install
# what they need first (scripts/setup.sh: Debian packages and bin/etcd).
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
export TWILL_ETCD_BIN := $(CURDIR)/bin/etcd
GO ?= go

.PHONY: all tools tools-demo tools-kube build image conformance demo test bench bench-flannel fuzz vet pictures clean difftrace-seeds

# twill's version: the image tag and what `twill version` prints.
VERSION ?= $(shell git describe --tags --always --dirty)
# Every file in the image carries the last commit's time (reproducible builds).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct)
IMAGE_REPO ?= ghcr.io/twillnet/twill
IMAGE_OUT ?= bin/image
# Static, path-free binaries: the same sources give the same bytes.
STATIC := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false

all: build

tools:
	./scripts/setup.sh

# The demo's tools only: no flanneld and no CNI reference plugins.
tools-demo:
	./scripts/setup.sh --demo

# The tests also need kube-apiserver and kubectl (Kubernetes mode), the real
# nodes' kubelet, kube-proxy, ... and containerd 2.x (bin/containerd2/, for
# `twill lab up --kubernetes --containerd 2`).
tools-kube:
	./scripts/setup.sh --kube

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/twill ./cmd/twill
	$(GO) build -ldflags "-s -w -X main.version=$(VERSION)" -o bin/twill-cni ./cmd/twill-cni

## image: twill's container image, no Docker daemon or registry needed:
## $(IMAGE_OUT)/twill.oci.tar (OCI layout) and twill.docker.tar (docker-archive,
## for ctr images import), tagged $(IMAGE_REPO):$(VERSION), and twill.yaml
## (deploy/twill.yaml naming that image); also pause.docker.tar,
## testserver.docker.tar and (from bin/coredns of make tools-kube)
## coredns.docker.tar, the images of `twill lab up --kubernetes`. See README "Image".
image:
	@mkdir -p $(IMAGE_OUT)
	$(STATIC) -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_OUT)/twill ./cmd/twill
	$(STATIC) -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_OUT)/twill-cni ./cmd/twill-cni
	cd tools/cniplugins && v=$$($(GO) list -m -f '{{.Version}}' github.com/containernetworking/plugins) && \
	  $(STATIC) -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$$v" \
	  -o $(abspath $(IMAGE_OUT))/loopback github.com/containernetworking/plugins/plugins/main/loopback
	$(STATIC) -ldflags "-s -w" -o $(IMAGE_OUT)/twill-pause ./cmd/twill-pause
	$(STATIC) -ldflags "-s -w" -o $(IMAGE_OUT)/twill-testserver ./cmd/twill-testserver
	@[ -x bin/coredns ] || echo "make image: no bin/coredns (make tools-kube builds it): no coredns.docker.tar, which lab up --kubernetes needs"
	$(GO) run ./cmd/twill-image --twill $(IMAGE_OUT)/twill --twill-cni $(IMAGE_OUT)/twill-cni \
	  --loopback $(IMAGE_OUT)/loopback --ref $(IMAGE_REPO):$(VERSION) \
	  --pause $(IMAGE_OUT)/twill-pause --testserver $(IMAGE_OUT)/twill-testserver \
	  $$([ -x bin/coredns ] && echo --coredns bin/coredns --coredns-version $$(awk '$$1 == "github.com/coredns/coredns" { print $$2; exit }' tools/coredns/go.mod)) \
	  --source-date-epoch $(SOURCE_DATE_EPOCH) --manifest deploy/twill.yaml --out $(IMAGE_OUT)

## demo: lab up, pods talk, F1 broken, doctor finds it, --fix, works again, lab down.
demo: tools-demo build
	bin/twill lab demo

## test: every test, root ones included (run as root; they fail loudly otherwise);
## test/realnodes needs the images of make image (a real cluster, both kube-proxy modes).
test: tools-kube build image vet
	$(GO) test -p 2 -count=1 -timeout 30m ./...
	@echo "== the end-to-end suite again, with leases from the Kubernetes API (--store kubernetes)"
	TWILL_E2E_STORE=kubernetes $(GO) test -count=1 -timeout 30m ./test/e2e

## conformance: the [sig-network] [Conformance] tests of Kubernetes' own e2e suite
## (e2e.test of tools/kube/e2e) against a lab of real nodes running twill; not part of
## make test (a cold build of e2e.test takes tens of minutes, the run up to TIMEOUT).
## Writes bin/conformance/{summary.txt,report/,e2e.log}; see docs/conformance.md.
conformance: tools-kube build image
	./scripts/conformance.sh

## difftrace-seeds: the differential test of `twill trace` against the kernel over SEEDS
## random seeds (default 20) of CASES probes each (default 504, about 4 minutes per seed
## on 2 vCPUs; root), plus CASES6 IPv6 probes (default CASES/3) on dual-stack agent labs.
SEEDS ?= 20
CASES ?= 504
CASES6 ?=
difftrace-seeds: tools
	TWILL_DIFFTRACE_SEEDS=$(SEEDS) TWILL_DIFFTRACE_CASES=$(CASES) TWILL_DIFFTRACE_CASES6=$(CASES6) $(GO) test -count=1 -timeout 600m -run TestDifferential -v ./test/difftrace

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

## pictures: retake the screenshots of trace and doctor pages shown in docs/ (headless Chromium).
pictures: tools-kube
	$(GO) test -count=1 ./picture -run Browser -update

## bench: benchmarks with tables of results (also written to docs/benchmarks.md),
## twill beside the real flanneld among them (root).
bench: tools build
	./scripts/bench.sh

## bench-flannel: only the side-by-side table against flanneld (CNI ADD/DEL,
## convergence, RSS, throughput ratios); replaces its section of docs/benchmarks.md.
bench-flannel: tools build
	FLANNEL_ONLY=1 ./scripts/bench.sh

## fuzz: run each fuzzer for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./netfilter -run '^$$' -fuzz FuzzParseIptablesSave -fuzztime $(FUZZTIME)
	$(GO) test ./netfilter -run '^$$' -fuzz FuzzParseNftJSON -fuzztime $(FUZZTIME)
	$(GO) test ./nodestate -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)

clean:
	-bin/twill lab down 2>/dev/null
	rm -rf bin/twill $(IMAGE_OUT)
