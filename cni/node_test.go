package cni

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twillnet/twill/subnetfile"
)

func TestReadNodePrefersTwillThenFlannel(t *testing.T) {
	root := t.TempDir()
	c, err := ParseConfig([]byte(`{"name":"twill"}`), root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ReadNode(c)
	if !errors.Is(err, ErrNoSubnetFile) || !strings.Contains(err.Error(), filepath.Join(root, "run/twill/subnet.env")) ||
		!strings.Contains(err.Error(), "the twill agent writes it once it runs on this node and the node has a subnet") {
		t.Fatalf("missing file: %v", err)
	}
	flannel := filepath.Join(root, "run/flannel/subnet.env")
	writeFile(t, flannel, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
	n, err := ReadNode(c)
	if err != nil {
		t.Fatal(err)
	}
	if n.File != flannel || n.Subnet.String() != "10.244.7.0/24" || n.Gateway.String() != "10.244.7.1" || n.MTU != 1450 ||
		n.GatewayPrefix().String() != "10.244.7.1/24" || n.Network.String() != "10.244.0.0/16" {
		t.Fatalf("flannel file: %+v", n)
	}
	twill := filepath.Join(root, "run/twill/subnet.env")
	writeFile(t, twill, "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.3.1/24\nTWILL_MTU=1400\n")
	n, err = ReadNode(c)
	if err != nil || n.File != twill || n.Gateway.String() != "10.244.3.1" {
		t.Fatalf("twill file first: %+v %v", n, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNodeFromInfo(t *testing.T) {
	parse := func(s string) subnetfile.Info { return parseInfo(t, s) }
	n, err := NodeFromInfo("f", parse("TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.9.0/24\nTWILL_MTU=1450\n"), 1300)
	if err != nil {
		t.Fatal(err)
	}
	if n.Gateway.String() != "10.244.9.1" || n.MTU != 1300 {
		t.Errorf("network-form subnet and MTU override: %+v", n)
	}
	bad := map[string]string{
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.99.1.1/24\nTWILL_MTU=1450\n":    "not inside NETWORK",
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/31\nTWILL_MTU=1450\n":   "too small",
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\n":                   "no MTU",
		"TWILL_NETWORK=fd00::/64\nTWILL_SUBNET=fd00::1/80\nTWILL_MTU=1450\n":          "must be IPv4",
		"TWILL_NETWORK=0.0.0.0/0\nTWILL_SUBNET=10.244.1.1/24\nTWILL_MTU=1450\n":       "NETWORK: Network 0.0.0.0/0: too wide",
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.255/24\nTWILL_MTU=1450\n": "broadcast",
	}
	for in, want := range bad {
		if _, err := NodeFromInfo("f", parse(in), 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NodeFromInfo(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestNodeFromInfoIPv6(t *testing.T) {
	parse := func(s string) subnetfile.Info { return parseInfo(t, s) }
	n, err := NodeFromInfo("f", parse("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:9::/64\nFLANNEL_MTU=1450\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	nets := n.Nets()
	if len(nets) != 2 || nets[0].Gateway.String() != "10.244.9.1" || nets[1].Gateway.String() != "fd00:10:244:9::1" ||
		nets[1].Subnet.String() != "fd00:10:244:9::/64" || nets[1].GatewayPrefix().String() != "fd00:10:244:9::1/64" {
		t.Fatalf("dual-stack node %+v", n)
	}
	v6, err := NodeFromInfo("f", parse("FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:9::1/64\nFLANNEL_MTU=1450\n"), 0)
	if err != nil || len(v6.Nets()) != 1 || v6.Subnet.IsValid() || v6.Nets()[0].Gateway.String() != "fd00:10:244:9::1" {
		t.Fatalf("IPv6-only node %+v %v", v6, err)
	}
	bad := map[string]string{
		"TWILL_IPV6_NETWORK=fd00:10:244::/56\nTWILL_IPV6_SUBNET=fd00:10:245:1::1/64\nTWILL_MTU=1450\n":                  "IPV6_SUBNET fd00:10:245:1::1/64 is not inside IPV6_NETWORK fd00:10:244::/56",
		"TWILL_IPV6_NETWORK=fd00:10:244::/56\nTWILL_IPV6_SUBNET=fd00:10:244:1::1/127\nTWILL_MTU=1450\n":                 "too small for pods (at most /126)",
		"TWILL_IPV6_NETWORK=10.0.0.0/8\nTWILL_IPV6_SUBNET=10.0.0.1/24\nTWILL_MTU=1450\n":                                "must be IPv6",
		"TWILL_IPV6_NETWORK=fe80::/56\nTWILL_IPV6_SUBNET=fe80:0:0:1::1/64\nTWILL_MTU=1450\n":                            "IPV6_NETWORK: IPv6Network fe80::/56: overlaps fe80::/10",
		"TWILL_IPV6_NETWORK=fd00:10:244::/56\nTWILL_IPV6_SUBNET=fd00:10:244:1:ffff:ffff:ffff:ffff/64\nTWILL_MTU=1450\n": "the gateway cannot be the subnet's last",
		"TWILL_IPV6_NETWORK=fd00:10:244::/56\nTWILL_IPV6_SUBNET=fd00:10:244:1::1/64\nTWILL_MTU=1200\n":                  "MTU 1200 is below 1280",
	}
	for in, want := range bad {
		if _, err := NodeFromInfo("f", parse(in), 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NodeFromInfo(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func parseInfo(t *testing.T, s string) subnetfile.Info {
	t.Helper()
	i, err := subnetfile.Parse("f", s)
	if err != nil {
		t.Fatal(err)
	}
	return i
}
