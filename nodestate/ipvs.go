package nodestate

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseProcIPVS parses the kernel's IPVS table as printed in /proc/net/ip_vs
// (net/netfilter/ipvs/ip_vs_ctl.c):
//
//	IP Virtual Server version 1.2.1 (size=4096)
//	Prot LocalAddress:Port Scheduler Flags
//	  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
//	TCP  0A600001:01BB rr
//	  -> 0AF40105:1F90      Masq    1      0          0
//	TCP  [2001:0db8:0000:0000:0000:0000:0000:0001]:0050 rr
//	FWM  00000001 rr
//
// IPv4 addresses and all ports are hexadecimal in network order; IPv6
// addresses are bracketed. Firewall-mark services ("FWM") have no address:
// they get Protocol "FWM" and a zero Addr. A malformed line is an error that
// names its line number.
func ParseProcIPVS(text string) (*IPVS, error) {
	out := &IPVS{Services: []IPVSService{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		fields := strings.Fields(trimmed)
		switch {
		case trimmed == "",
			strings.HasPrefix(trimmed, "IP Virtual Server"),
			strings.HasPrefix(trimmed, "Prot "),
			strings.HasPrefix(trimmed, "-> RemoteAddress"):
			continue
		case fields[0] == "->":
			if len(out.Services) == 0 {
				return nil, fmt.Errorf("ip_vs line %d: destination %q before any service", n, trimmed)
			}
			if len(fields) < 2 {
				return nil, fmt.Errorf("ip_vs line %d: destination line %q has no address", n, trimmed)
			}
			ap, err := parseIPVSAddrPort(fields[1])
			if err != nil {
				return nil, fmt.Errorf("ip_vs line %d: %w", n, err)
			}
			svc := &out.Services[len(out.Services)-1]
			svc.Dests = append(svc.Dests, ap)
		case fields[0] == "FWM":
			if len(fields) < 3 {
				return nil, fmt.Errorf("ip_vs line %d: want \"FWM <mark> <scheduler>\", got %q", n, trimmed)
			}
			out.Services = append(out.Services, IPVSService{Protocol: "FWM", Scheduler: fields[2]})
		default:
			if len(fields) < 3 {
				return nil, fmt.Errorf("ip_vs line %d: want \"<proto> <addr>:<port> <scheduler>\", got %q", n, trimmed)
			}
			ap, err := parseIPVSAddrPort(fields[1])
			if err != nil {
				return nil, fmt.Errorf("ip_vs line %d: %w", n, err)
			}
			out.Services = append(out.Services, IPVSService{Protocol: fields[0], Addr: ap, Scheduler: fields[2]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ip_vs: %w", err)
	}
	return out, nil
}

// parseIPVSAddrPort parses "0A600001:01BB" or "[2001:0db8::1]:0050".
func parseIPVSAddrPort(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q: want ADDR:PORT", s)
	}
	host, portHex := s[:i], s[i+1:]
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port %q is not 4 hex digits", s, portHex)
	}
	var addr netip.Addr
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		addr, err = netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !addr.Is6() {
			return netip.AddrPort{}, fmt.Errorf("address %q: bad IPv6 address", s)
		}
	} else {
		b, err := hex.DecodeString(host)
		if err != nil || len(b) != 4 {
			return netip.AddrPort{}, fmt.Errorf("address %q: want 8 hex digits for an IPv4 address", s)
		}
		addr = netip.AddrFrom4([4]byte(b)) // printed most significant byte first
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
