// Package image assembles twill's container image without a Docker daemon or
// a registry: the static twill and twill-cni binaries, the loopback CNI
// plugin, and the nft, iptables-nft and iptables-legacy programs taken from
// the host's installed Debian packages with exactly the shared libraries
// (the DT_NEEDED closure, dynamic loader included) and xtables modules they
// load. The result is written as an OCI image layout tarball and as a
// docker-archive tarball (for `ctr images import`, `docker load` or
// `crane push`).
//
// Builds are reproducible: every file gets the same timestamp (the
// SOURCE_DATE_EPOCH the caller passes, the last commit's time in make
// image), uid/gid 0 and a fixed mode (0755 for directories and executables,
// 0644 for other files), and entries are sorted, so the same inputs give the
// same image digest. cmd/twill-image is the command line; make image runs it.
package image
