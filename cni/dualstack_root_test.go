package cni

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// podAddrs returns the global addresses of eth0 in a pod, with their flags.
func podAddrs(t *testing.T, pod string, family int) []netlink.Addr {
	t.Helper()
	var out []netlink.Addr
	withNS(t, pod, func(h *netlink.Handle) {
		addrs, err := h.AddrList(link(t, pod, "eth0"), family)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() {
				out = append(out, a)
			}
		}
	})
	return out
}

// TestCNIDualStack: on a dual-stack node each pod gets one address of each
// family (IPv4 first in the result, host-local's range-set order), both
// gateways on the bridge, both families' routes; the IPv6 address is
// usable at once (no DAD: never tentative), so pods talk over IPv6
// straight after ADD. CHECK covers both families; DEL and GC release both.
func TestCNIDualStack(t *testing.T) {
	n := newNode(t, "", 0)
	n.writeSubnetInfo(dualStackInfo(2, 1400))
	gw4, gw6 := netip.MustParseAddr("10.244.2.1"), netip.MustParseAddr("fd00:10:244:2::1")
	podA, podB := n.newPod(0), n.newPod(1)
	resA, resB := n.add(podA), n.add(podB)
	var v6 []netip.Addr
	for i, res := range []*current.Result{resA, resB} {
		if len(res.IPs) != 2 {
			t.Fatalf("pod %d: %d IPs in the result, want 2", i, len(res.IPs))
		}
		ip4, ip6 := mustPrefix(res.IPs[0].Address.String()), mustPrefix(res.IPs[1].Address.String())
		if !netip.MustParsePrefix("10.244.2.0/24").Contains(ip4.Addr()) || ip4.Bits() != 24 || res.IPs[0].Gateway.String() != gw4.String() {
			t.Errorf("IPv4 result %v via %s", ip4, res.IPs[0].Gateway)
		}
		if !netip.MustParsePrefix("fd00:10:244:2::/64").Contains(ip6.Addr()) || ip6.Bits() != 64 || res.IPs[1].Gateway.String() != gw6.String() || ip6.Addr() == gw6 {
			t.Errorf("IPv6 result %v via %s", ip6, res.IPs[1].Gateway)
		}
		v6 = append(v6, ip6.Addr())
	}
	a6, b6 := v6[0], v6[1]
	if a6 == b6 {
		t.Fatalf("both pods got %s", a6)
	}
	if len(resA.Routes) != 4 {
		t.Errorf("result routes %v: want the network and default route of each family", resA.Routes)
	}
	for _, pod := range []string{podA, podB} {
		v6 := podAddrs(t, pod, unix.AF_INET6)
		if len(v6) != 1 || v6[0].Flags&unix.IFA_F_TENTATIVE != 0 || v6[0].Flags&unix.IFA_F_NODAD == 0 {
			t.Errorf("%s IPv6 addresses %v: want one, with nodad, never tentative", pod, v6)
		}
		withNS(t, pod, func(h *netlink.Handle) {
			routes, _ := h.RouteList(link(t, pod, "eth0"), unix.AF_INET6)
			if !hasRoute(routes, netip.MustParsePrefix("::/0"), gw6) || !hasRoute(routes, netip.MustParsePrefix("fd00:10:244::/56"), gw6) {
				t.Errorf("%s IPv6 routes %v: want default and fd00:10:244::/56 via %v", pod, routes, gw6)
			}
		})
	}
	withNS(t, n.ns, func(h *netlink.Handle) {
		addrs, _ := h.AddrList(link(t, n.ns, "cni0"), netlink.FAMILY_ALL)
		if !hasAddr(addrs, netip.MustParsePrefix("10.244.2.1/24")) || !hasAddr(addrs, netip.MustParsePrefix("fd00:10:244:2::1/64")) {
			t.Errorf("cni0 addresses %v: want both gateways", addrs)
		}
	})

	// IPv6 traffic right after ADD: pod to pod, pod to the gateway.
	portB, portGW := listen(t, podB, b6), listen(t, n.ns, gw6)
	if r, err := dial(podA, b6, portB, "a"); err != nil || r != "echo:a" {
		t.Errorf("pod A -> pod B [%v]: %q %v", b6, r, err)
	}
	if r, err := dial(podA, gw6, portGW, "gw"); err != nil || r != "echo:gw" {
		t.Errorf("pod A -> gateway [%v]: %q %v", gw6, r, err)
	}

	// Host-local's state: one last_reserved_ip file per range set.
	for file, want := range map[string]string{"last_reserved_ip.0": resB.IPs[0].Address.IP.String(), "last_reserved_ip.1": b6.String()} {
		if got, err := os.ReadFile(filepath.Join(n.dataDir(), file)); err != nil || string(got) != want {
			t.Errorf("%s = %q %v, want %s", file, got, err, want)
		}
	}

	// CHECK passes, then names the missing IPv6 address.
	if _, err := n.cnitoolRun("check", podA); err != nil {
		t.Fatalf("CHECK of a healthy dual-stack pod: %v", err)
	}
	withNS(t, podA, func(h *netlink.Handle) {
		v6 := podAddrs(t, podA, unix.AF_INET6)[0]
		if err := h.AddrDel(link(t, podA, "eth0"), &v6); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := n.cnitoolRun("check", podA); err == nil || !strings.Contains(err.Error(), "lacks its address "+a6.String()+"/64") {
		t.Fatalf("CHECK without the IPv6 address: %v", err)
	}

	// DEL releases both addresses.
	if _, err := n.cnitoolRun("del", podA); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{resA.IPs[0].Address.IP.String(), a6.String()} {
		if _, err := os.Stat(filepath.Join(n.dataDir(), a)); !os.IsNotExist(err) {
			t.Errorf("allocation %s survives DEL: %v", a, err)
		}
	}
	// GC without valid attachments releases both of pod B's.
	store, err := NewStore(n.dataDir())
	if err != nil {
		t.Fatal(err)
	}
	freed, err := store.GC(nil)
	if err != nil || len(freed) != 2 {
		t.Fatalf("GC freed %v (%v), want pod B's two addresses", freed, err)
	}
}

// TestCNIIPv6Only: an IPv6-only subnet file gives pods one IPv6 address,
// no IPv4 at all, and a working path to the gateway.
func TestCNIIPv6Only(t *testing.T) {
	n := newNode(t, "", 0)
	info := dualStackInfo(3, 1400)
	info.Network, info.Subnet = netip.Prefix{}, netip.Prefix{}
	n.writeSubnetInfo(info)
	pod := n.newPod(0)
	res := n.add(pod)
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "fd00:10:244:3::2/64" || res.IPs[0].Gateway.String() != "fd00:10:244:3::1" {
		t.Fatalf("result IPs %v", res.IPs)
	}
	if v4 := podAddrs(t, pod, unix.AF_INET); len(v4) != 0 {
		t.Errorf("IPv6-only pod has IPv4 addresses %v", v4)
	}
	if mac := link(t, n.ns, "cni0").Attrs().HardwareAddr.String(); mac != "0a:58:00:00:00:01" {
		t.Errorf("bridge MAC %s, want 0a:58 and the IPv6 gateway's last four bytes", mac)
	}
	gw := netip.MustParseAddr("fd00:10:244:3::1")
	port := listen(t, n.ns, gw)
	if r, err := dial(pod, gw, port, "x"); err != nil || r != "echo:x" {
		t.Errorf("pod -> gateway [%v]: %q %v", gw, r, err)
	}
	if _, err := n.cnitoolRun("check", pod); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
