//go:build linux

package nodestate

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/twillnet/twill/nsrun"
)

// captureNetfilter runs both iptables backends' save tools and nft inside the
// namespace and keeps their raw output; parsing is package netfilter's job.
// A missing tool marks its backend unavailable and records why.
func captureNetfilter(ctx context.Context, s *Snapshot, ns string) {
	s.Iptables.Legacy = captureIptables(ctx, s, ns, "legacy")
	s.Iptables.NFT = captureIptables(ctx, s, ns, "nft")
	s.Nftables = captureNft(ctx, s, ns)
}

// captureIptables captures one backend ("legacy" or "nft").
func captureIptables(ctx context.Context, s *Snapshot, ns, backend string) IptablesBackend {
	var b IptablesBackend
	save4 := "iptables-" + backend + "-save"
	save6 := "ip6tables-" + backend + "-save"
	out, err := runTool(ctx, ns, "iptables", save4)
	if err != nil {
		b.Err = err.Error()
		s.addErr("iptables-"+backend, err)
		return b
	}
	b.Available = true
	b.Save = out
	if out, err := runTool(ctx, ns, "iptables", save6); err != nil {
		b.Err = err.Error()
		s.addErr("ip6tables-"+backend, err)
	} else {
		b.Save6 = out
	}
	if out, err := toolVersion(ctx, ns, "iptables", "iptables-"+backend, "-V"); err != nil {
		s.addErr("iptables-"+backend+"-version", err)
	} else {
		b.Version = strings.TrimSpace(out)
	}
	return b
}

// captureNft captures `nft -j list ruleset`.
func captureNft(ctx context.Context, s *Snapshot, ns string) Nftables {
	var n Nftables
	out, err := runTool(ctx, ns, "nftables", "nft", "-j", "list", "ruleset")
	if err != nil {
		n.Err = err.Error()
		s.addErr("nft", err)
		return n
	}
	n.Available = true
	n.JSON = out
	if out, err := toolVersion(ctx, ns, "nftables", "nft", "-v"); err != nil {
		s.addErr("nft-version", err)
	} else {
		n.Version = strings.TrimSpace(out)
	}
	return n
}

// versions caches tool version strings: a binary's version does not change
// until the file does, and the agent captures every few seconds.
var versions sync.Map // "path|mtime|args" -> string

// toolVersion is runTool for a version query, answered from the cache while
// the binary file is unchanged.
func toolVersion(ctx context.Context, ns, pkg string, argv ...string) (string, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return runTool(ctx, ns, pkg, argv...)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return runTool(ctx, ns, pkg, argv...)
	}
	key := fmt.Sprintf("%s|%d|%s", path, fi.ModTime().UnixNano(), strings.Join(argv[1:], " "))
	if v, ok := versions.Load(key); ok {
		return v.(string), nil
	}
	out, err := runTool(ctx, ns, pkg, argv...)
	if err == nil {
		versions.Store(key, out)
	}
	return out, err
}

// runTool runs a tool inside the namespace. A tool that is not installed
// gives an error that names the Debian/Ubuntu package to install.
func runTool(ctx context.Context, ns, pkg string, argv ...string) (string, error) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return "", fmt.Errorf("%s not found in PATH: install the %s package", argv[0], pkg)
	}
	out, err := nsrun.Output(ctx, ns, argv...)
	if err != nil {
		return "", err
	}
	return string(out), nil
}
