package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/twillnet/twill/nsrun"
)

// Sysctls the lab sets in every node namespace (never in the root namespace).
const (
	SysctlIPForward = "net/ipv4/ip_forward"
	SysctlBridgeNF  = "net/bridge/bridge-nf-call-iptables"
	// SysctlBridgeNF6 is F1's IPv6 twin, broken with it on a lab with IPv6.
	SysctlBridgeNF6 = "net/bridge/bridge-nf-call-ip6tables"
	// SysctlIPv6Forward is F2's IPv6 twin, broken with it on a lab with IPv6.
	SysctlIPv6Forward = "net/ipv6/conf/all/forwarding"
)

// setSysctl writes a /proc/sys value from inside namespace ns.
func setSysctl(ns, key, value string) error {
	return nsrun.Do(ns, func() error {
		p := filepath.Join("/proc/sys", key)
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in netns %s: %w", strings.ReplaceAll(key, "/", "."), value, ns, err)
		}
		return nil
	})
}

// GetSysctl reads a /proc/sys value from inside namespace ns ("net/ipv4/ip_forward").
func GetSysctl(ns, key string) (string, error) {
	var v string
	err := nsrun.Do(ns, func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			return fmt.Errorf("sysctl %s in netns %s: %w", strings.ReplaceAll(key, "/", "."), ns, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}
