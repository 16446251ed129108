// Package testbed builds small throwaway clusters of network namespaces for
// the root tests (backend/kernel, firewall, and throwaway namespaces for
// netfilter, kubeproxy and remedy tests): an underlay bridge in its own
// namespace, node namespaces attached to it with an "eth0", one pod-like
// namespace behind each node, and an "outside" namespace on the underlay.
// Nothing here touches the caller's own namespace; everything is removed
// when the test ends (also on failure).
//
// It is test support: it takes a *testing.T and fails the test on error.
package testbed

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/nsrun"
)

// Segment is the underlay prefix of a testbed cluster.
var Segment = netip.MustParsePrefix("192.168.77.0/24")

// Network is the pod network of a testbed cluster.
var Network = netip.MustParsePrefix("10.244.0.0/16")

// Segment6 is the IPv6 underlay prefix of a cluster after AddIPv6.
var Segment6 = netip.MustParsePrefix("fd00:77::/64")

// Network6 is the IPv6 pod network of a cluster after AddIPv6.
var Network6 = netip.MustParsePrefix("fd00:10:244::/56")

// Node is one node namespace and the pod namespace behind it.
type Node struct {
	// Name is "node1", "node2", ...
	Name string
	// NS is the node's network namespace; its underlay device is "eth0".
	NS string
	// IP is the node's underlay address (192.168.77.1<i>).
	IP netip.Addr
	// Subnet is the node's pod subnet (10.244.<i>.0/24).
	Subnet netip.Prefix
	// Pod is the pod namespace; its address is PodIP, default route via the
	// node's gateway 10.244.<i>.1 on the node's device "vpod".
	Pod   string
	PodIP netip.Addr
	// IPv6, Subnet6 and PodIP6 are set by AddIPv6: the node's IPv6
	// underlay address (fd00:77::1<i>), pod subnet (fd00:10:244:<i>::/64)
	// and the pod's address (fd00:10:244:<i>::2, gateway ::1 on "vpod").
	IPv6    netip.Addr
	Subnet6 netip.Prefix
	PodIP6  netip.Addr
}

// Cluster is a testbed cluster.
type Cluster struct {
	// Underlay is the namespace holding the bridge "br0" all nodes attach to.
	Underlay string
	Nodes    []Node
	// Outside is a namespace on the underlay (192.168.77.200) with no route
	// to the pod network: what pods reach "outside the cluster".
	Outside   string
	OutsideIP netip.Addr
}

// RequireRoot fails the test when not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and kernel objects in them; run it as root (sudo go test ...)")
	}
}

// Netns creates an empty namespace named twill-t-<tag>-<random>, removed at
// the end of the test.
func Netns(t testing.TB, tag string) string {
	t.Helper()
	name := fmt.Sprintf("twill-t-%s-%06d", tag, rand.IntN(1000000))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	In(t, name, "ip", "link", "set", "lo", "up")
	return name
}

// In runs a command inside ns and fails the test on error. It refuses the
// caller's own namespace.
func In(t testing.TB, ns string, argv ...string) string {
	t.Helper()
	out, err := Try(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Try runs a command inside ns and returns its output or error.
func Try(ns string, argv ...string) (string, error) {
	if ns == "" {
		return "", fmt.Errorf("refusing to run %v in the caller's own network namespace", argv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := nsrun.Output(ctx, ns, argv...)
	return string(out), err
}

// New builds a cluster of n nodes (1..9). Nodes have ip_forward=1 and no
// overlay: that is for the code under test.
func New(t testing.TB, tag string, n int) *Cluster {
	t.Helper()
	RequireRoot(t)
	c := &Cluster{Underlay: Netns(t, tag+"-u")}
	In(t, c.Underlay, "ip", "link", "add", "br0", "type", "bridge")
	In(t, c.Underlay, "ip", "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		nd := Node{
			Name:   fmt.Sprintf("node%d", i),
			NS:     Netns(t, fmt.Sprintf("%s-n%d", tag, i)),
			IP:     netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)}),
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
			Pod:    Netns(t, fmt.Sprintf("%s-p%d", tag, i)),
			PodIP:  netip.AddrFrom4([4]byte{10, 244, byte(i), 2}),
		}
		c.attach(t, nd.NS, fmt.Sprintf("n%d", i), netip.PrefixFrom(nd.IP, 24))
		In(t, nd.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		In(t, nd.NS, "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", nd.Pod)
		In(t, nd.NS, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "vpod")
		In(t, nd.NS, "ip", "link", "set", "vpod", "up")
		In(t, nd.Pod, "ip", "addr", "add", netip.PrefixFrom(nd.PodIP, 24).String(), "dev", "eth0")
		In(t, nd.Pod, "ip", "link", "set", "eth0", "up")
		In(t, nd.Pod, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		c.Nodes = append(c.Nodes, nd)
	}
	c.Outside = Netns(t, tag+"-o")
	c.OutsideIP = netip.MustParseAddr("192.168.77.200")
	c.attach(t, c.Outside, "out", netip.PrefixFrom(c.OutsideIP, 24))
	return c
}

// AddIPv6 makes the cluster dual-stack: every node gets an IPv6 underlay
// address and IPv6 forwarding, every pod an IPv6 address and default
// route, the outside namespace fd00:77::200. Addresses skip DAD, so they
// are usable at once.
func (c *Cluster) AddIPv6(t testing.TB) {
	t.Helper()
	for i := range c.Nodes {
		nd := &c.Nodes[i]
		k := i + 1
		nd.IPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:77::1%d", k))
		nd.Subnet6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%d::/64", k))
		nd.PodIP6 = netip.MustParseAddr(fmt.Sprintf("fd00:10:244:%d::2", k))
		In(t, nd.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
		In(t, nd.NS, "ip", "-6", "addr", "add", netip.PrefixFrom(nd.IPv6, 64).String(), "dev", "eth0", "nodad")
		In(t, nd.NS, "ip", "-6", "addr", "add", fmt.Sprintf("fd00:10:244:%d::1/64", k), "dev", "vpod", "nodad")
		In(t, nd.Pod, "ip", "-6", "addr", "add", netip.PrefixFrom(nd.PodIP6, 64).String(), "dev", "eth0", "nodad")
		In(t, nd.Pod, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:10:244:%d::1", k))
	}
	In(t, c.Outside, "ip", "-6", "addr", "add", "fd00:77::200/64", "dev", "eth0", "nodad")
	// The kernel's link-local addresses still run DAD (about a second);
	// until they are done, neighbour discovery on the underlay is not
	// reliable. Wait for them, bounded.
	for _, nd := range c.Nodes {
		for _, ns := range []string{nd.NS, nd.Pod} {
			deadline := time.Now().Add(5 * time.Second)
			for strings.TrimSpace(In(t, ns, "ip", "-6", "addr", "show", "tentative")) != "" {
				if time.Now().After(deadline) {
					t.Fatalf("%s: IPv6 addresses still tentative after 5 s:\n%s", ns, In(t, ns, "ip", "-6", "addr"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// attach connects ns to the underlay bridge with an "eth0" holding addr.
func (c *Cluster) attach(t testing.TB, ns, port string, addr netip.Prefix) {
	t.Helper()
	In(t, c.Underlay, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	In(t, c.Underlay, "ip", "link", "set", port, "master", "br0", "up")
	In(t, ns, "ip", "addr", "add", addr.String(), "dev", "eth0")
	In(t, ns, "ip", "link", "set", "eth0", "up")
}

// Serve listens on TCP port inside ns (IPv4 and IPv6) and answers every
// connection with one line: the client address it saw ("10.244.1.2",
// "fd00:10:244:1::2"). It stops at the end of the test.
func Serve(t testing.TB, ns string, port int) {
	t.Helper()
	var ln net.Listener
	err := nsrun.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			fmt.Fprintln(conn, host)
			conn.Close()
		}
	}()
}

// Call connects from ns to addr over TCP, bounded by 2 s, and returns the
// line the server sent (with Serve: the client address the server saw).
func Call(ns string, addr netip.Addr, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var conn net.Conn
	err := nsrun.Do(ns, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("%s -> %s:%d: %w", ns, addr, port, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s -> %s:%d: read: %w", ns, addr, port, err)
	}
	return strings.TrimSpace(line), nil
}

// SendUDP sends one datagram from ns to addr:port (a vxlan-looking packet
// when payload is a vxlan header plus a frame).
func SendUDP(ns string, addr netip.Addr, port int, payload []byte) error {
	return nsrun.Do(ns, func() error {
		conn, err := net.Dial("udp", netip.AddrPortFrom(addr, uint16(port)).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(payload)
		return err
	})
}
