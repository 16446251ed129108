package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/twillnet/twill/nsrun"
)

// OutsideServer listens on the underlay's own address (UnderlayGateway,
// outside the cluster network) at port, inside lab name's underlay
// namespace, and answers every connection with "outside <client address>":
// what the world sees of a pod's traffic once it left the cluster (its
// node's address when it is masqueraded). stop closes it.
func OutsideServer(name string, port int) (stop func(), err error) {
	return outsideServer(name, UnderlayGateway, port)
}

// outsideServer is OutsideServer on addr, one of br0's addresses.
func outsideServer(name string, addr netip.Addr, port int) (stop func(), err error) {
	var ln net.Listener
	if err := nsrun.Do(UnderlayNS(name), func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab %s: outside server: %w", name, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "outside %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return func() { ln.Close() }, nil
}
