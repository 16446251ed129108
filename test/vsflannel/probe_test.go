package vsflannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/test/perf"
)

// pinger sends ICMP echo requests from inside a namespace (a raw socket
// opened there) to one address, until the first reply or its deadline.
type pinger struct {
	conn net.PacketConn
	dst  netip.Addr
	id   uint16
}

// newPinger opens a raw ICMP socket inside namespace ns for pings to dst
// with identifier id (replies carrying another id are someone else's).
func newPinger(ns string, dst netip.Addr, id uint16) (*pinger, error) {
	var c net.PacketConn
	err := nsrun.Do(ns, func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw ICMP socket in %s: %w", ns, err)
	}
	return &pinger{conn: c, dst: dst, id: id}, nil
}

// firstReply sends a request every interval and returns the time the
// first reply from dst arrived; an error at deadline. It closes the socket.
func (p *pinger) firstReply(interval time.Duration, deadline time.Time) (time.Time, error) {
	defer p.conn.Close()
	done := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		to := &net.IPAddr{IP: p.dst.AsSlice()}
		for seq := uint16(1); time.Now().Before(deadline); seq++ {
			p.conn.WriteTo(EchoRequest(p.id, seq, []byte("twill-vs-flannel")), to) //nolint:errcheck // no route yet is expected
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
		}
	}()
	defer func() { close(done); <-sent }()
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return time.Time{}, err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return time.Time{}, fmt.Errorf("no echo reply from %s: %w", p.dst, err)
		}
		at := time.Now()
		ip, ok := from.(*net.IPAddr)
		if !ok || !ip.IP.Equal(p.dst.AsSlice()) {
			continue
		}
		if id, _, err := ParseEchoReply(buf[:n]); err == nil && id == p.id {
			return at, nil
		}
	}
}

// peerState is what of one peer a node's kernel holds: the route to its
// subnet, and for vxlan the neighbour entry of its VTEP address (the
// subnet's first address) and the FDB entry sending to its public IP.
// twill and Flannel program the same shape.
type peerState struct{ route, neigh, fdb bool }

func (s peerState) complete(vxlan bool) bool {
	if vxlan {
		return s.route && s.neigh && s.fdb
	}
	return s.route
}

func (s peerState) none() bool { return !s.route && !s.neigh && !s.fdb }

// readPeerState reads h's namespace for the peer with pod subnet subnet
// and underlay address public. For host-gw the route must go via public.
func readPeerState(h *netlink.Handle, subnet netip.Prefix, public netip.Addr, vxlan bool) (peerState, error) {
	var s peerState
	dst := &net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return s, fmt.Errorf("routes to %s: %w", subnet, err)
	}
	for _, r := range routes {
		if vxlan || r.Gw.Equal(public.AsSlice()) {
			s.route = true
		}
	}
	neigh, err := h.NeighList(0, unix.AF_INET)
	if err != nil {
		return s, fmt.Errorf("neighbours: %w", err)
	}
	for _, n := range neigh {
		if n.IP.Equal(subnet.Addr().AsSlice()) && n.State&netlink.NUD_PERMANENT != 0 {
			s.neigh = true
		}
	}
	fdb, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return s, fmt.Errorf("fdb: %w", err)
	}
	for _, n := range fdb {
		if n.IP.Equal(public.AsSlice()) {
			s.fdb = true
		}
	}
	return s, nil
}

// tcpRate sends TCP data for d from inside clientNS to a receiver listening
// inside serverNS on dst:port, and returns the bit rate the receiver
// measured (first byte to end of stream). Everything is bounded: the
// connection, the sending, the draining; listener and connections are
// closed when it returns.
func tcpRate(clientNS, serverNS string, dst netip.Addr, port uint16, d time.Duration) (float64, error) {
	addr := netip.AddrPortFrom(dst, port).String()
	var ln net.Listener
	if err := nsrun.Do(serverNS, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return 0, fmt.Errorf("receiver on %s in %s: %w", addr, serverNS, err)
	}
	defer ln.Close()
	limit := time.Now().Add(d + 15*time.Second)
	if err := ln.(*net.TCPListener).SetDeadline(limit); err != nil {
		return 0, err
	}
	type result struct {
		bytes int64
		took  time.Duration
		err   error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(limit) //nolint:errcheck // a fresh connection
		buf := make([]byte, 256<<10)
		var n int64
		var first time.Time
		for {
			k, err := c.Read(buf)
			if k > 0 && first.IsZero() {
				first = time.Now()
			}
			n += int64(k)
			if errors.Is(err, io.EOF) {
				got <- result{bytes: n, took: time.Since(first)}
				return
			}
			if err != nil {
				got <- result{err: fmt.Errorf("after %d bytes: %w", n, err)}
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nsrun.Dialer(clientNS)(ctx, addr)
	if err != nil {
		return 0, fmt.Errorf("connect from %s to %s: %w", clientNS, addr, err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(d + 10*time.Second)); err != nil {
		return 0, err
	}
	buf := make([]byte, 128<<10)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Write(buf); err != nil {
			return 0, fmt.Errorf("send from %s to %s: %w", clientNS, addr, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	r := <-got
	if r.err != nil {
		return 0, fmt.Errorf("receive on %s in %s: %w", addr, serverNS, r.err)
	}
	return perf.BitRate(r.bytes, r.took)
}
