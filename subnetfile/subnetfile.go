// Package subnetfile reads and writes the node's subnet file: the small
// KEY=VALUE file that tells the CNI plugin (and doctor) the cluster network,
// this node's subnet and the pod MTU.
//
// Two formats are understood: twill's own (TWILL_* keys, default path
// /run/twill/subnet.env) and Flannel's (/run/flannel/subnet.env, FLANNEL_*
// keys), so a node moving from Flannel keeps working.
package subnetfile

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Default paths of the subnet files.
const (
	TwillPath   = "/run/twill/subnet.env"
	FlannelPath = "/run/flannel/subnet.env"
)

// Info is the content of a subnet file.
type Info struct {
	// Network is the whole cluster pod network, e.g. 10.244.0.0/16; zero
	// in an IPv6-only file.
	Network netip.Prefix
	// Subnet is this node's pod subnet with the gateway address, e.g.
	// 10.244.1.1/24; zero in an IPv6-only file.
	Subnet netip.Prefix
	// IPv6Network is the cluster's IPv6 pod network (IPV6_NETWORK, as
	// Flannel's FLANNEL_IPV6_NETWORK); zero without IPv6.
	IPv6Network netip.Prefix
	// IPv6Subnet is this node's IPv6 pod subnet with the gateway address,
	// e.g. fd00:10:244:1::1/64 (IPV6_SUBNET); zero without IPv6.
	IPv6Subnet netip.Prefix
	// MTU is the MTU pods must use.
	MTU int
	// IPMasq tells whether the node masquerades pod traffic leaving the network.
	IPMasq bool
	// Backend is "vxlan" or "host-gw" (twill format only).
	Backend string
	// DirectRouting is the vxlan backend's DirectRouting option (twill
	// format only): peers on this node's segment are routed directly.
	// doctor reads it to expect the routes the agent programs.
	DirectRouting bool
}

// Gateway is the pod gateway of a node's pod subnet: its first address,
// with the subnet's length (10.244.1.0/24 -> 10.244.1.1/24). The agent
// writes it as SUBNET, the CNI plugin puts it on the pod bridge and makes
// it the pods' default route, and the lab does the same: one decision.
func Gateway(subnet netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(subnet.Masked().Addr().Next(), subnet.Bits())
}

// Parse reads a subnet file's content. src names it in errors. Both TWILL_ and
// FLANNEL_ prefixes are accepted; unknown keys are ignored; a missing
// NETWORK or SUBNET, or a malformed value, is an error with its line.
func Parse(src, content string) (Info, error) {
	var info Info
	sc := bufio.NewScanner(strings.NewReader(content))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return Info{}, fmt.Errorf("%s: line %d: %q is not KEY=VALUE", src, n, line)
		}
		key = strings.TrimPrefix(strings.TrimPrefix(key, "TWILL_"), "FLANNEL_")
		val = strings.Trim(val, `"`)
		var err error
		switch key {
		case "NETWORK":
			info.Network, err = netip.ParsePrefix(val)
		case "SUBNET":
			info.Subnet, err = netip.ParsePrefix(val)
		case "IPV6_NETWORK":
			info.IPv6Network, err = netip.ParsePrefix(val)
		case "IPV6_SUBNET":
			info.IPv6Subnet, err = netip.ParsePrefix(val)
		case "MTU":
			info.MTU, err = strconv.Atoi(val)
			if err == nil && (info.MTU < 576 || info.MTU > 65535) {
				err = fmt.Errorf("MTU %d out of range 576-65535", info.MTU)
			}
		case "IPMASQ":
			info.IPMasq, err = strconv.ParseBool(val)
		case "BACKEND":
			info.Backend = val
		case "DIRECT_ROUTING":
			info.DirectRouting, err = strconv.ParseBool(val)
		}
		if err != nil {
			return Info{}, fmt.Errorf("%s: line %d: %s: %w", src, n, key, err)
		}
	}
	v6 := info.IPv6Network.IsValid() || info.IPv6Subnet.IsValid()
	switch {
	case v6 && !info.IPv6Network.IsValid():
		return Info{}, fmt.Errorf("%s: IPV6_SUBNET without an IPV6_NETWORK line", src)
	case v6 && !info.IPv6Subnet.IsValid():
		return Info{}, fmt.Errorf("%s: IPV6_NETWORK without an IPV6_SUBNET line", src)
	case v6 && !info.Network.IsValid() && !info.Subnet.IsValid():
		return info, nil // IPv6 only
	case !info.Network.IsValid():
		return Info{}, fmt.Errorf("%s: no NETWORK line", src)
	case !info.Subnet.IsValid():
		return Info{}, fmt.Errorf("%s: no SUBNET line", src)
	}
	return info, nil
}

// Render returns the file content in twill's format.
func (i Info) Render() string { return i.render("TWILL_", true) }

// RenderFlannel returns the file content in Flannel's format (FLANNEL_*
// keys, no backend line), for tools that read /run/flannel/subnet.env.
func (i Info) RenderFlannel() string { return i.render("FLANNEL_", false) }

func (i Info) render(prefix string, backend bool) string {
	var b strings.Builder
	if i.Network.IsValid() || !i.IPv6Network.IsValid() {
		fmt.Fprintf(&b, "%sNETWORK=%s\n", prefix, i.Network)
		fmt.Fprintf(&b, "%sSUBNET=%s\n", prefix, i.Subnet)
	}
	if i.IPv6Network.IsValid() {
		fmt.Fprintf(&b, "%sIPV6_NETWORK=%s\n", prefix, i.IPv6Network)
		fmt.Fprintf(&b, "%sIPV6_SUBNET=%s\n", prefix, i.IPv6Subnet)
	}
	fmt.Fprintf(&b, "%sMTU=%d\n", prefix, i.MTU)
	fmt.Fprintf(&b, "%sIPMASQ=%t\n", prefix, i.IPMasq)
	if backend && i.Backend != "" {
		fmt.Fprintf(&b, "%sBACKEND=%s\n", prefix, i.Backend)
	}
	if backend && i.DirectRouting {
		fmt.Fprintf(&b, "%sDIRECT_ROUTING=true\n", prefix)
	}
	return b.String()
}

// Write writes the file in twill's format durably (see WriteContent),
// creating its directory.
func Write(path string, i Info) error { return WriteContent(path, i.Render()) }

// WriteContent writes already rendered content atomically and durably: a
// temporary file in the same directory is written and fsynced, renamed over
// path, and the directory is fsynced, so after a crash or power loss the
// file holds either the old or the new content, never a torn or empty one.
func WriteContent(path, content string) error {
	if err := writeDurably(path, []byte(content)); err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	return nil
}

// syncFile flushes a file or directory to stable storage; tests wrap it to
// see the calls.
var syncFile = func(f *os.File) error { return f.Sync() }

func writeDurably(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := syncFile(f); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := syncFile(d); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
