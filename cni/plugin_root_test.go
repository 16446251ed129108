package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/cni/invoke"
)

// TestCNIAddTwoPodsTalk: two pods added with cnitool get distinct addresses
// of the node subnet, the subnet file's MTU, hairpin ports on cni0, routes
// via the gateway, and reach each other and the gateway over TCP. CHECK
// passes, then fails once the pod MTU is changed; DEL twice succeeds and
// removes the veth and the allocation.
func TestCNIAddTwoPodsTalk(t *testing.T) {
	n := newNode(t, "10.244.1.1/24", 1400)
	subnet := netip.MustParsePrefix("10.244.1.0/24")
	gw := netip.MustParseAddr("10.244.1.1")
	podA, podB := n.newPod(0), n.newPod(1)
	resA, resB := n.add(podA), n.add(podB)
	a, b := resultAddr(resA), resultAddr(resB)
	if a.Addr() == b.Addr() || !subnet.Contains(a.Addr()) || !subnet.Contains(b.Addr()) || a.Addr() == gw || b.Addr() == gw || a.Bits() != 24 {
		t.Fatalf("pod addresses %v and %v: want two distinct /24 addresses of %v other than %v", a, b, subnet, gw)
	}
	if len(resA.IPs) != 1 || resA.IPs[0].Gateway.String() != "10.244.1.1" {
		t.Errorf("result gateway %v", resA.IPs[0].Gateway)
	}

	// A repeated ADD of the same pod is idempotent: same address, no error.
	if again := resultAddr(n.add(podB)); again != b {
		t.Errorf("second ADD of pod B got %v, want %v", again, b)
	}

	// Bridge: gateway address, MTU, up.
	br := link(t, n.ns, "cni0")
	if br.Type() != "bridge" || br.Attrs().MTU != 1400 {
		t.Errorf("cni0: type %s MTU %d, want bridge with MTU 1400", br.Type(), br.Attrs().MTU)
	}
	withNS(t, n.ns, func(h *netlink.Handle) {
		addrs, _ := h.AddrList(br, unix.AF_INET)
		if !hasAddr(addrs, netip.MustParsePrefix("10.244.1.1/24")) {
			t.Errorf("cni0 addresses %v: want 10.244.1.1/24", addrs)
		}
	})
	for _, pod := range []string{podA, podB} {
		eth := link(t, pod, "eth0")
		if eth.Attrs().MTU != 1400 {
			t.Errorf("%s eth0 MTU %d, want 1400 (from the subnet file)", pod, eth.Attrs().MTU)
		}
		hostName := HostVethName(containerIDOf(pod), "eth0")
		host := link(t, n.ns, hostName)
		if host.Attrs().MTU != 1400 || host.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("host veth %s: MTU %d master %d, want 1400 and cni0 (%d)", hostName, host.Attrs().MTU, host.Attrs().MasterIndex, br.Attrs().Index)
		}
		withNS(t, n.ns, func(h *netlink.Handle) {
			pi, err := h.LinkGetProtinfo(host)
			if err != nil || !pi.Hairpin {
				t.Errorf("host veth %s hairpin: %+v %v, want on", hostName, pi, err)
			}
		})
		withNS(t, pod, func(h *netlink.Handle) {
			routes, _ := h.RouteList(eth, unix.AF_INET)
			if !hasRoute(routes, netip.MustParsePrefix("0.0.0.0/0"), gw) || !hasRoute(routes, netip.MustParsePrefix("10.244.0.0/16"), gw) {
				t.Errorf("%s routes %v: want default and 10.244.0.0/16 via %v", pod, routes, gw)
			}
		})
	}

	// Traffic: pod to pod both ways, pod to the gateway (the node).
	portA, portB := listen(t, podA, a.Addr()), listen(t, podB, b.Addr())
	portGW := listen(t, n.ns, gw)
	if r, err := dial(podA, b.Addr(), portB, "a"); err != nil || r != "echo:a" {
		t.Errorf("pod A -> pod B %v: %q %v", b.Addr(), r, err)
	}
	if r, err := dial(podB, a.Addr(), portA, "b"); err != nil || r != "echo:b" {
		t.Errorf("pod B -> pod A %v: %q %v", a.Addr(), r, err)
	}
	if r, err := dial(podA, gw, portGW, "gw"); err != nil || r != "echo:gw" {
		t.Errorf("pod A -> gateway %v: %q %v", gw, r, err)
	}

	// CHECK ok, then not ok after an MTU change in the pod.
	if _, err := n.cnitoolRun("check", podA); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	withNS(t, podA, func(h *netlink.Handle) {
		if err := h.LinkSetMTU(link(t, podA, "eth0"), 1500); err != nil {
			t.Fatal(err)
		}
	})
	_, err := n.cnitoolRun("check", podA)
	if err == nil || !strings.Contains(err.Error(), "pod interface eth0 has MTU 1500, want 1400 (from subnet file "+n.subnetFilePath()+")") {
		t.Fatalf("CHECK after MTU change: %v", err)
	}
	if _, err := n.cnitoolRun("check", podB); err != nil {
		t.Errorf("CHECK of the untouched pod B: %v", err)
	}

	// DEL twice.
	for i := 0; i < 2; i++ {
		if _, err := n.cnitoolRun("del", podA); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if linkExists(t, n.ns, HostVethName(containerIDOf(podA), "eth0")) || linkExists(t, podA, "eth0") {
		t.Error("after DEL the veth still exists")
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), a.Addr().String())); !os.IsNotExist(err) {
		t.Errorf("after DEL the allocation of %v still exists: %v", a.Addr(), err)
	}
	if r, err := dial(podB, gw, portGW, "still"); err != nil || r != "echo:still" {
		t.Errorf("pod B -> gateway after A's DEL: %q %v", r, err)
	}
}

// TestCNIDelFreesAddress: on a /29 (5 pod addresses) the 6th ADD fails with
// a clear error; DEL (twice, once with the pod namespace already gone) frees
// an address that the next ADD gets.
func TestCNIDelFreesAddress(t *testing.T) {
	n := newNode(t, "10.244.2.1/29", 1450)
	var pods []string
	var addrs []netip.Addr
	for i := 0; i < 5; i++ {
		p := n.newPod(i)
		pods = append(pods, p)
		addrs = append(addrs, resultAddr(n.add(p)).Addr())
	}
	extra := n.newPod(5)
	_, err := n.cnitoolRun("add", extra)
	if err == nil || !strings.Contains(err.Error(), "no free address in 10.244.2.0/29: all 5 pod addresses are allocated") {
		t.Fatalf("ADD on a full subnet: %v", err)
	}
	if linkExists(t, extra, "eth0") {
		t.Error("a failed ADD left eth0 in the pod")
	}
	// Pod 2's namespace disappears before its DEL (the runtime lost it).
	if out, err := runCmd("ip", "netns", "del", pods[2]); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
	for i := 0; i < 2; i++ {
		if _, err := n.cnitoolRun("del", pods[2]); err != nil {
			t.Fatalf("DEL #%d of a pod whose namespace is gone: %v", i+1, err)
		}
	}
	if linkExists(t, n.ns, HostVethName(containerIDOf(pods[2]), "eth0")) {
		t.Error("host veth of the deleted pod still exists")
	}
	got := resultAddr(n.add(extra)).Addr()
	if got != addrs[2] {
		t.Fatalf("ADD after DEL got %v, want the freed %v", got, addrs[2])
	}
}

// TestCNIStatus: STATUS succeeds on a ready node and fails with code 50
// and the subnet file's path when the file is missing.
func TestCNIStatus(t *testing.T) {
	n := newNode(t, "10.244.3.1/24", 1450)
	pod := n.newPod(0)
	if _, err := n.cnitoolRun("status", pod); err != nil {
		t.Fatalf("STATUS on a ready node: %v", err)
	}
	if err := os.Remove(n.subnetFilePath()); err != nil {
		t.Fatal(err)
	}
	_, err := n.cnitoolRun("status", pod)
	if err == nil || !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), n.subnetFilePath()) {
		t.Fatalf("STATUS without a subnet file: %v", err)
	}
	out, _, err := n.plugin("STATUS", "", "", n.pluginConf(""))
	if err == nil {
		t.Fatal("plugin STATUS without a subnet file succeeded")
	}
	var e types.Error
	if jerr := json.Unmarshal([]byte(out), &e); jerr != nil || e.Code != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS error object %q: code %d, want %d (%v)", out, e.Code, types.ErrPluginNotAvailable, jerr)
	}
}

// TestCNIMissingSubnetFile: ADD without a subnet file is a "try again
// later" error (code 11) that names the file and the agent.
func TestCNIMissingSubnetFile(t *testing.T) {
	n := newNode(t, "", 0)
	pod := n.newPod(0)
	_, err := n.cnitoolRun("add", pod)
	want := "subnet file not found: " + n.subnetFilePath()
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the twill agent writes it once it runs on this node and the node has a subnet (its Node's spec.podCIDR)") {
		t.Fatalf("ADD without subnet file: %v\nwant it to contain %q and the agent hint", err, want)
	}
	out, _, err := n.plugin("ADD", "c1", pod, n.pluginConf(""))
	var e types.Error
	if err == nil || json.Unmarshal([]byte(out), &e) != nil || e.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD error object %q: code %d, want %d (%v)", out, e.Code, types.ErrTryAgainLater, err)
	}
	if linkExists(t, n.ns, "cni0") || linkExists(t, pod, "eth0") {
		t.Error("a failed ADD changed the node or the pod")
	}
}

// TestCNIGC: GC with valid attachments keeps them and releases the rest
// (address and host veth); cnitool's GC (no valid attachments) releases
// everything.
func TestCNIGC(t *testing.T) {
	n := newNode(t, "10.244.4.1/24", 1450)
	keep, stale := n.newPod(0), n.newPod(1)
	keepAddr := resultAddr(n.add(keep)).Addr()
	staleAddr := resultAddr(n.add(stale)).Addr()
	// An allocation whose pod is long gone (no veth, no cache entry).
	orphan := filepath.Join(n.dataDir(), "10.244.4.200")
	if err := os.WriteFile(orphan, []byte("crashed-pod\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := fmt.Sprintf(`"cni.dev/valid-attachments":[{"containerID":%q,"ifname":"eth0"}]`, containerIDOf(keep))
	if _, _, err := n.plugin("GC", "", "", n.pluginConf(valid)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), keepAddr.String())); err != nil {
		t.Errorf("GC released the valid attachment's address: %v", err)
	}
	for _, a := range []string{staleAddr.String(), "10.244.4.200"} {
		if _, err := os.Stat(filepath.Join(n.dataDir(), a)); !os.IsNotExist(err) {
			t.Errorf("GC kept the stale allocation %s: %v", a, err)
		}
	}
	if linkExists(t, n.ns, HostVethName(containerIDOf(stale), "eth0")) || linkExists(t, stale, "eth0") {
		t.Error("GC kept the stale attachment's veth")
	}
	if !linkExists(t, keep, "eth0") {
		t.Error("GC removed the valid attachment's veth")
	}

	if _, err := n.cnitoolRun("gc", keep); err != nil {
		t.Fatalf("cnitool gc: %v", err)
	}
	left, err := os.ReadDir(n.dataDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			t.Errorf("after cnitool gc (no valid attachments) %s is still allocated", e.Name())
		}
	}
	if linkExists(t, keep, "eth0") {
		t.Error("after cnitool gc the pod's veth still exists")
	}
}

// TestCNIConcurrentAdds: 30 cnitool ADDs at once on a fresh node (no
// bridge yet) all succeed with distinct addresses and one bridge; 30 DELs
// at once leave no allocation.
func TestCNIConcurrentAdds(t *testing.T) {
	const pods = 30
	n := newNode(t, "10.244.5.1/24", 1450)
	names := make([]string, pods)
	for i := range names {
		names[i] = n.newPod(i)
	}
	addrs := make([]netip.Addr, pods)
	errs := make([]error, pods)
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := n.cnitoolRun("add", names[i])
			if err == nil {
				var res struct {
					IPs []struct{ Address string } `json:"ips"`
				}
				if err = json.Unmarshal([]byte(out), &res); err == nil && len(res.IPs) == 1 {
					var p netip.Prefix
					p, err = netip.ParsePrefix(res.IPs[0].Address)
					addrs[i] = p.Addr()
				}
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	seen := map[netip.Addr]string{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("concurrent ADD of %s: %v", names[i], errs[i])
		}
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both got %v", names[i], other, a)
		}
		seen[a] = names[i]
	}
	br := link(t, n.ns, "cni0")
	withNS(t, n.ns, func(h *netlink.Handle) {
		links, _ := h.LinkList()
		ports := 0
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				ports++
			}
		}
		if ports != pods {
			t.Errorf("cni0 has %d ports, want %d", ports, pods)
		}
	})
	for i := range names {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = n.cnitoolRun("del", names[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent DEL of %s: %v", names[i], err)
		}
	}
	s, _ := NewStore(n.dataDir())
	if left, err := s.List(); err != nil || len(left) != 0 {
		t.Errorf("after all DELs: allocations %v %v", left, err)
	}
}

// TestCNIRefusesForeignInterface: ADD into a pod that already has an eth0
// twill did not create fails clearly and leaves it (and the IPAM) alone.
func TestCNIRefusesForeignInterface(t *testing.T) {
	n := newNode(t, "10.244.7.1/24", 1450)
	pod := n.newPod(0)
	if out, err := runCmd("ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "other0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	_, err := n.cnitoolRun("add", pod)
	if err == nil || !strings.Contains(err.Error(), "already has an interface eth0 that twill did not create") {
		t.Fatalf("ADD over a foreign eth0: %v", err)
	}
	if !linkExists(t, pod, "eth0") || !linkExists(t, pod, "other0") {
		t.Error("the failed ADD removed the pod's own interface")
	}
	s, _ := NewStore(n.dataDir())
	if left, err := s.List(); err != nil || len(left) != 0 {
		t.Errorf("the failed ADD left allocations %v %v", left, err)
	}
	// The runtime's DEL after the refused ADD leaves the foreign eth0 alone.
	if _, err := n.cnitoolRun("del", pod); err != nil {
		t.Fatalf("DEL after a refused ADD: %v", err)
	}
	if !linkExists(t, pod, "eth0") || !linkExists(t, pod, "other0") {
		t.Error("DEL after a refused ADD deleted the pod's own interface")
	}
}

// TestCNISubnetChange: when the node's subnet changes (new lease), the next
// ADD moves the bridge to the new gateway (the old cluster address is
// removed) and allocates from the new subnet.
func TestCNISubnetChange(t *testing.T) {
	n := newNode(t, "10.244.8.1/24", 1450)
	n.add(n.newPod(0))
	n.writeSubnetFile("10.244.9.1/24", 1450)
	got := resultAddr(n.add(n.newPod(1)))
	if !netip.MustParsePrefix("10.244.9.0/24").Contains(got.Addr()) {
		t.Errorf("pod address %v after the subnet changed to 10.244.9.0/24", got)
	}
	withNS(t, n.ns, func(h *netlink.Handle) {
		addrs, _ := h.AddrList(link(t, n.ns, "cni0"), unix.AF_INET)
		if len(addrs) != 1 || !hasAddr(addrs, netip.MustParsePrefix("10.244.9.1/24")) {
			t.Errorf("cni0 addresses %v: want only 10.244.9.1/24", addrs)
		}
	})
}

// TestInvokeAddDel: package invoke (what the lab calls) creates a pod and
// deletes it, and reports a plugin failure as the CNI error object.
func TestInvokeAddDel(t *testing.T) {
	n := newNode(t, "10.244.10.1/24", 1450)
	pod := n.newPod(0)
	if out, err := runCmd("ip", "-n", pod, "link", "set", "lo", "down"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	call := invoke.Call{Plugin: filepath.Join(n.bin, PluginType), NodeNetns: n.ns, Root: n.root,
		ContainerID: "lab-node1-a", Netns: netnsPath(pod), Config: []byte(n.pluginConf(""))}
	res, err := call.Add(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := resultAddr(res); got.String() != "10.244.10.2/24" {
		t.Errorf("first pod of a fresh node got %v, want 10.244.10.2/24", got)
	}
	if !linkExists(t, pod, "eth0") {
		t.Fatal("no eth0 in the pod")
	}
	if link(t, pod, "lo").Attrs().Flags&net.FlagUp == 0 {
		t.Error("ADD left the pod's loopback down")
	}
	if err := call.Del(context.Background()); err != nil {
		t.Fatal(err)
	}
	if linkExists(t, pod, "eth0") {
		t.Error("eth0 still in the pod after DEL")
	}
	if err := os.Remove(n.subnetFilePath()); err != nil {
		t.Fatal(err)
	}
	_, err = call.Add(context.Background())
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD without subnet file: %v, want a CNI error with code 11", err)
	}
}
