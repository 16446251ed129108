package nodestate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/twillnet/twill/nsrun"
)

// Tools are called by absolute path so that tests which strip PATH can still
// build their namespaces.
const (
	ipBin     = "/usr/sbin/ip"
	bridgeBin = "/usr/sbin/bridge"
	sysctlBin = "/usr/sbin/sysctl"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and kernel objects in them; run it as root (sudo go test ./nodestate/)")
	}
}

// testNetns creates a uniquely named namespace, removed when the test ends.
func testNetns(t *testing.T, what string) string {
	t.Helper()
	name := fmt.Sprintf("twill-t-cap-%s-%06d", what, rand.IntN(1000000))
	if out, err := exec.Command(ipBin, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipBin, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// inNs runs one command inside ns (never in the caller's namespace).
func inNs(t *testing.T, ns string, argv ...string) {
	t.Helper()
	if ns == "" {
		t.Fatal("refusing to change the root network namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nsrun.Run(ctx, ns, argv...); err != nil {
		t.Fatal(err)
	}
}

const peerMAC = "02:42:0a:f4:02:00"

// buildNode builds a twill-like vxlan node in ns, with veth peers in peer.
func buildNode(t *testing.T, ns, peer string) {
	t.Helper()
	steps := [][]string{
		{ipBin, "link", "set", "lo", "up"},
		{ipBin, "link", "add", "cni0", "type", "bridge"},
		{ipBin, "addr", "add", "10.244.1.1/24", "dev", "cni0"},
		{ipBin, "link", "set", "cni0", "up"},
		{ipBin, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", peer},
		{ipBin, "link", "set", "veth0", "master", "cni0"},
		{ipBin, "link", "set", "veth0", "up"},
		{bridgeBin, "link", "set", "dev", "veth0", "hairpin", "on"},
		{ipBin, "link", "add", "under0", "type", "veth", "peer", "name", "under0p", "netns", peer},
		{ipBin, "addr", "add", "192.168.77.11/24", "dev", "under0"},
		{ipBin, "link", "set", "under0", "up"},
		{ipBin, "link", "add", "twill.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "192.168.77.11", "dev", "under0", "nolearning"},
		{ipBin, "addr", "add", "10.244.1.0/32", "dev", "twill.1"},
		{ipBin, "link", "set", "twill.1", "up"},
		{ipBin, "route", "add", "10.244.2.0/24", "via", "10.244.2.0", "dev", "twill.1", "onlink"},
		{ipBin, "neigh", "add", "10.244.2.0", "lladdr", peerMAC, "dev", "twill.1", "nud", "permanent"},
		{bridgeBin, "fdb", "append", peerMAC, "dev", "twill.1", "dst", "192.168.77.12"},
		{ipBin, "route", "add", "10.99.0.0/16", "dev", "cni0", "table", "100"},
		{ipBin, "rule", "add", "from", "10.244.0.0/16", "lookup", "100", "priority", "1000"},
		{ipBin, "rule", "add", "fwmark", "0x10/0xff", "blackhole", "priority", "1001"},
		{"/usr/sbin/iptables-legacy", "-A", "FORWARD", "-s", "10.244.0.0/16", "-j", "ACCEPT"},
		{"/usr/sbin/iptables-nft", "-P", "FORWARD", "DROP"},
		{"/usr/sbin/nft", "add", "table", "inet", "twilltest"},
		{"/usr/sbin/nft", "add", "chain", "inet", "twilltest", "guard", "{ type filter hook forward priority 0; policy accept; }"},
		{sysctlBin, "-w", "net.ipv4.ip_forward=1"},
		{sysctlBin, "-w", "net.bridge.bridge-nf-call-iptables=0"},
		{sysctlBin, "-w", "net.ipv4.conf.twill/1.rp_filter=2"},
		{sysctlBin, "-w", "net.ipv4.conf.all.route_localnet=1"},
		{sysctlBin, "-w", "net.ipv4.conf.cni0.route_localnet=1"},
	}
	for _, s := range steps {
		inNs(t, ns, s...)
	}
}

// buildFiles lays out a node's files under root.
func buildFiles(t *testing.T, root string) {
	t.Helper()
	write := func(p, content string, mode os.FileMode) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/cni/net.d/10-twill.conflist", `{"cniVersion":"1.0.0","name":"twill","plugins":[{"type":"twill"}]}`, 0o644)
	write("etc/cni/net.d/README.md", "not a config", 0o644)
	write("opt/cni/bin/twill", "#!/bin/sh\n", 0o755)
	write("opt/cni/bin/bridge", "#!/bin/sh\n", 0o755)
	write("opt/cni/bin/notes.txt", "not a plugin", 0o644)
	write("run/twill/subnet.env", "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true\n", 0o644)
}

func findLink(t *testing.T, s *Snapshot, name string) Link {
	t.Helper()
	for _, l := range s.Links {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("link %s not captured; links: %+v", name, s.Links)
	return Link{}
}

func linkIndexIn(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func TestCaptureVxlanNode(t *testing.T) {
	requireRoot(t)
	ns := testNetns(t, "node")
	peer := testNetns(t, "peer")
	buildNode(t, ns, peer)
	root := t.TempDir()
	buildFiles(t, root)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Capture(ctx, CaptureOptions{Netns: ns, Root: root, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	mp, ma := netip.MustParsePrefix, netip.MustParseAddr

	if s.Version != SchemaVersion || s.Netns != ns || s.Node != "n1" || s.Hostname == "" || time.Since(s.CapturedAt) > time.Minute {
		t.Errorf("header: version %d netns %q node %q hostname %q at %v", s.Version, s.Netns, s.Node, s.Hostname, s.CapturedAt)
	}
	if len(s.Errors) != 0 {
		t.Errorf("capture errors on a healthy namespace: %+v", s.Errors)
	}

	// Links.
	if lo := findLink(t, s, "lo"); lo.Kind != "loopback" || !lo.Up {
		t.Errorf("lo: %+v", lo)
	}
	cni0 := findLink(t, s, "cni0")
	if cni0.Kind != "bridge" || cni0.Bridge == nil || !reflect.DeepEqual(cni0.Bridge.Ports, []string{"veth0"}) || !cni0.Up {
		t.Errorf("cni0: %+v bridge %+v", cni0, cni0.Bridge)
	}
	veth0 := findLink(t, s, "veth0")
	if veth0.Kind != "veth" || veth0.Master != "cni0" || veth0.BridgePort == nil || !veth0.BridgePort.Hairpin {
		t.Errorf("veth0: %+v port %+v", veth0, veth0.BridgePort)
	}
	if want := linkIndexIn(t, peer, "eth0"); veth0.ParentIndex != want || veth0.LinkNetnsID < 0 {
		t.Errorf("veth0 peer: parentIndex %d (want %d, eth0 in %s), linkNetnsId %d (want >= 0)", veth0.ParentIndex, want, peer, veth0.LinkNetnsID)
	}
	if under := findLink(t, s, "under0"); under.BridgePort != nil || under.Master != "" || len(under.MAC) != 17 {
		t.Errorf("under0: %+v", under)
	}
	vx := findLink(t, s, "twill.1")
	wantVx := &VxlanAttrs{VNI: 1, Port: 8472, Local: ma("192.168.77.11"), Dev: "under0", Learning: false}
	if vx.Kind != "vxlan" || !reflect.DeepEqual(vx.Vxlan, wantVx) {
		t.Errorf("twill.1: %+v vxlan %+v, want %+v", vx, vx.Vxlan, wantVx)
	}
	if under := findLink(t, s, "under0"); vx.ParentIndex != under.Index {
		t.Errorf("twill.1 parentIndex %d, want under0's %d", vx.ParentIndex, under.Index)
	}

	// Addresses.
	for _, want := range []Addr{
		{Link: "cni0", Prefix: mp("10.244.1.1/24"), Scope: "global"},
		{Link: "twill.1", Prefix: mp("10.244.1.0/32"), Scope: "global"},
		{Link: "lo", Prefix: mp("127.0.0.1/8"), Scope: "host"},
	} {
		if !slices.Contains(s.Addrs, want) {
			t.Errorf("address %+v not captured; got %+v", want, s.Addrs)
		}
	}

	// Routes of every table.
	for _, want := range []Route{
		{Table: TableMain, Type: "unicast", Dst: mp("10.244.2.0/24"), Gateway: ma("10.244.2.0"), Dev: "twill.1", Scope: "global", Protocol: "boot", Onlink: true},
		{Table: TableMain, Type: "unicast", Dst: mp("10.244.1.0/24"), Dev: "cni0", Src: ma("10.244.1.1"), Scope: "link", Protocol: "kernel"},
		{Table: 100, Type: "unicast", Dst: mp("10.99.0.0/16"), Dev: "cni0", Scope: "link", Protocol: "boot"},
		{Table: TableLocal, Type: "local", Dst: mp("10.244.1.1/32"), Dev: "cni0", Src: ma("10.244.1.1"), Scope: "host", Protocol: "kernel"},
	} {
		if !slices.Contains(s.Routes, want) {
			t.Errorf("route %+v not captured; got %+v", want, s.Routes)
		}
	}
	if !slices.ContainsFunc(s.Routes, func(r Route) bool { return r.Dst.Addr().Is6() && r.Table == TableLocal }) {
		t.Error("no IPv6 local-table route captured")
	}

	// Policy rules, with their actions.
	for _, want := range []Rule{
		{Priority: 1000, Family: 4, Table: 100, Src: mp("10.244.0.0/16"), Action: "lookup"},
		{Priority: 1001, Family: 4, Mark: 0x10, Mask: 0xff, Action: "blackhole"},
		{Priority: 32766, Family: 4, Table: TableMain, Action: "lookup"},
		{Priority: 0, Family: 6, Table: TableLocal, Action: "lookup"},
	} {
		if !slices.Contains(s.Rules, want) {
			t.Errorf("rule %+v not captured; got %+v", want, s.Rules)
		}
	}

	// Overlay neighbour and FDB entry.
	if want := (Neighbor{Dev: "twill.1", IP: ma("10.244.2.0"), MAC: peerMAC, State: "permanent"}); !slices.Contains(s.Neighbors, want) {
		t.Errorf("neighbour %+v not captured; got %+v", want, s.Neighbors)
	}
	if want := (FDBEntry{Dev: "twill.1", MAC: peerMAC, Dst: ma("192.168.77.12"), State: "permanent", Self: true}); !slices.Contains(s.FDB, want) {
		t.Errorf("fdb entry %+v not captured; got %+v", want, s.FDB)
	}
	if !slices.ContainsFunc(s.FDB, func(e FDBEntry) bool { return e.Dev == "veth0" && e.Master == "cni0" && e.MAC == veth0.MAC }) {
		t.Errorf("no bridge FDB entry for veth0's own MAC with master cni0; got %+v", s.FDB)
	}

	// Sysctls of this namespace, not the caller's.
	for k, want := range map[string]string{
		"net.ipv4.ip_forward":                "1",
		"net.bridge.bridge-nf-call-iptables": "0",
		RPFilterKey("twill.1"):               "2",
		RouteLocalnetKey("all"):              "1",
		RouteLocalnetKey("default"):          "0",
		RouteLocalnetKey("cni0"):             "1",
		RouteLocalnetKey("twill.1"):          "0",
	} {
		if got, ok := s.Sysctls[k]; !ok || got != want {
			t.Errorf("sysctl %s = %q (present %t), want %q", k, got, ok, want)
		}
	}
	if _, ok := s.Sysctls[RPFilterKey("cni0")]; !ok {
		t.Error("rp_filter of cni0 not captured")
	}
	if max, ok := s.Sysctls["net.netfilter.nf_conntrack_max"]; ok && fmt.Sprint(s.Conntrack.Max) != max {
		t.Errorf("conntrack max %d, sysctl %q", s.Conntrack.Max, max)
	}

	// Netfilter, both iptables backends and nftables, raw.
	ipt := s.Iptables
	if !ipt.Legacy.Available || !strings.Contains(ipt.Legacy.Save, "-A FORWARD -s 10.244.0.0/16 -j ACCEPT") || !strings.Contains(ipt.Legacy.Version, "legacy") {
		t.Errorf("iptables legacy: %+v", ipt.Legacy)
	}
	if !ipt.NFT.Available || !strings.Contains(ipt.NFT.Save, ":FORWARD DROP") || !strings.Contains(ipt.NFT.Version, "nf_tables") {
		t.Errorf("iptables nft: %+v", ipt.NFT)
	}
	if !s.Nftables.Available || !strings.Contains(s.Nftables.JSON, `"twilltest"`) || !strings.HasPrefix(s.Nftables.Version, "nftables v") {
		t.Errorf("nftables: %+v", s.Nftables)
	}
	if s.IPVS != nil {
		t.Errorf("IPVS on a kernel without it: %+v", s.IPVS)
	}

	// Files under the root.
	f := s.Files
	if f.CNIConfDir != filepath.Join(root, "etc/cni/net.d") || len(f.CNIConfigs) != 1 || !strings.Contains(f.CNIConfigs[0].Content, `"name":"twill"`) || !f.CNIConfigs[0].Exists {
		t.Errorf("cni configs: %+v", f)
	}
	if !reflect.DeepEqual(f.CNIPlugins, []string{"bridge", "twill"}) {
		t.Errorf("cni plugins %v, want [bridge twill]", f.CNIPlugins)
	}
	wantSubnet := []File{
		{Path: filepath.Join(root, "run/twill/subnet.env"), Exists: true, Content: "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true\n"},
		{Path: filepath.Join(root, "run/flannel/subnet.env")},
	}
	if !reflect.DeepEqual(f.SubnetFiles, wantSubnet) {
		t.Errorf("subnet files %+v, want %+v", f.SubnetFiles, wantSubnet)
	}

	// What was captured survives Save and Load unchanged.
	var buf bytes.Buffer
	if err := Save(&buf, s); err != nil {
		t.Fatal(err)
	}
	back, err := Load(&buf, "capture")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("Save/Load changed the snapshot:\n got %+v\nwant %+v", back, s)
	}
}

func TestCaptureWithoutNetfilterTools(t *testing.T) {
	requireRoot(t)
	ns := testNetns(t, "nopath")
	inNs(t, ns, ipBin, "link", "add", "cni0", "type", "bridge")
	inNs(t, ns, ipBin, "link", "set", "lo", "up")
	t.Setenv("PATH", t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Capture(ctx, CaptureOptions{Netns: ns, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	findLink(t, s, "cni0")
	checks := []struct {
		avail bool
		err   string
		want  string
	}{
		{s.Iptables.Legacy.Available, s.Iptables.Legacy.Err, "iptables-legacy-save not found in PATH: install the iptables package"},
		{s.Iptables.NFT.Available, s.Iptables.NFT.Err, "iptables-nft-save not found in PATH: install the iptables package"},
		{s.Nftables.Available, s.Nftables.Err, "nft not found in PATH: install the nftables package"},
	}
	for _, c := range checks {
		if c.avail || c.err != c.want {
			t.Errorf("available %t, error %q; want unavailable with %q", c.avail, c.err, c.want)
		}
	}
	var sources []string
	for _, e := range s.Errors {
		sources = append(sources, e.Source)
	}
	for _, want := range []string{"iptables-legacy", "iptables-nft", "nft"} {
		if !slices.Contains(sources, want) {
			t.Errorf("no capture error for %s; errors: %+v", want, s.Errors)
		}
	}
	if len(s.Routes) == 0 || s.Sysctls["net.ipv4.ip_forward"] != "0" {
		t.Errorf("the rest of the capture is missing: routes %d, ip_forward %q", len(s.Routes), s.Sysctls["net.ipv4.ip_forward"])
	}
}

func TestCaptureMissingNetns(t *testing.T) {
	_, err := Capture(context.Background(), CaptureOptions{Netns: "twill-t-cap-no-such-netns"})
	if err == nil {
		t.Fatal("capture of a missing namespace succeeded")
	}
	if !errors.Is(err, ErrNoNetns) || !strings.Contains(err.Error(), "ip netns list") || !strings.Contains(err.Error(), "twill-t-cap-no-such-netns") {
		t.Errorf("error %q: want ErrNoNetns naming the namespace and how to list them", err)
	}
}

// TestCaptureIPv6Node: what doctor's IPv6 checks read is captured from a
// namespace holding an IPv6 vxlan overlay (device on an IPv6 underlay,
// route, permanent neighbour, FDB entry to an IPv6 underlay address), the
// IPv6 sysctls and an ip6tables rule set.
func TestCaptureIPv6Node(t *testing.T) {
	requireRoot(t)
	ns, peer := testNetns(t, "v6"), testNetns(t, "v6peer")
	for _, step := range [][]string{
		{ipBin, "link", "set", "lo", "up"},
		{ipBin, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer},
		{ipBin, "addr", "add", "fd00:77::11/64", "dev", "eth0", "nodad"},
		{ipBin, "link", "set", "eth0", "up"},
		{ipBin, "link", "add", "twill-v6.1", "type", "vxlan", "id", "1", "local", "fd00:77::11", "dev", "eth0", "dstport", "8472", "nolearning"},
		{ipBin, "link", "set", "twill-v6.1", "mtu", "1430", "up"},
		{ipBin, "addr", "add", "fd00:10:244:1::/128", "dev", "twill-v6.1", "nodad"},
		{ipBin, "-6", "route", "add", "fd00:10:244:2::/64", "via", "fd00:10:244:2::", "dev", "twill-v6.1", "onlink"},
		{ipBin, "-6", "neigh", "add", "fd00:10:244:2::", "lladdr", "da:5d:c2:a4:0e:df", "dev", "twill-v6.1", "nud", "permanent"},
		{bridgeBin, "fdb", "append", "da:5d:c2:a4:0e:df", "dev", "twill-v6.1", "dst", "fd00:77::12", "self", "permanent"},
		{sysctlBin, "-qw", "net.ipv6.conf.all.forwarding=1"},
		{sysctlBin, "-qw", "net.bridge.bridge-nf-call-ip6tables=0"},
		{"ip6tables-nft", "-P", "FORWARD", "DROP"},
	} {
		inNs(t, ns, step...)
	}
	s, err := Capture(context.Background(), CaptureOptions{Netns: ns, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	vx := findLink(t, s, "twill-v6.1")
	if vx.Vxlan == nil || vx.Vxlan.Local != netip.MustParseAddr("fd00:77::11") || vx.Vxlan.Dev != "eth0" || vx.MTU != 1430 {
		t.Errorf("twill-v6.1 captured as %+v (vxlan %+v), want local fd00:77::11 dev eth0 mtu 1430", vx, vx.Vxlan)
	}
	if !slices.ContainsFunc(s.Routes, func(r Route) bool {
		return r.Table == TableMain && r.Dst == netip.MustParsePrefix("fd00:10:244:2::/64") && r.Gateway == netip.MustParseAddr("fd00:10:244:2::") && r.Dev == "twill-v6.1" && r.Onlink
	}) {
		t.Errorf("IPv6 overlay route not captured: %+v", s.Routes)
	}
	if !slices.ContainsFunc(s.Neighbors, func(n Neighbor) bool {
		return n.Dev == "twill-v6.1" && n.IP == netip.MustParseAddr("fd00:10:244:2::") && n.MAC == "da:5d:c2:a4:0e:df" && strings.Contains(n.State, "permanent")
	}) {
		t.Errorf("IPv6 neighbour not captured: %+v", s.Neighbors)
	}
	if !slices.ContainsFunc(s.FDB, func(f FDBEntry) bool {
		return f.Dev == "twill-v6.1" && f.MAC == "da:5d:c2:a4:0e:df" && f.Dst == netip.MustParseAddr("fd00:77::12")
	}) {
		t.Errorf("FDB entry to an IPv6 underlay not captured: %+v", s.FDB)
	}
	for k, want := range map[string]string{"net.ipv6.conf.all.forwarding": "1", "net.bridge.bridge-nf-call-ip6tables": "0"} {
		if got := s.Sysctls[k]; got != want {
			t.Errorf("sysctl %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(s.Iptables.NFT.Save6, ":FORWARD DROP") {
		t.Errorf("ip6tables-nft-save not captured with the FORWARD policy: %q", s.Iptables.NFT.Save6)
	}
}
