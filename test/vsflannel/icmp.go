package vsflannel

import (
	"encoding/binary"
	"fmt"
)

// ICMPv4 message types the pinger uses.
const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
)

// EchoRequest returns an ICMPv4 echo request message (RFC 792: type 8,
// code 0) with the given identifier, sequence number and payload, its
// checksum filled in. It is what a raw "ip4:icmp" socket sends (the kernel
// adds the IP header).
func EchoRequest(id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], ^onesSum(b))
	return b
}

// ParseEchoReply reads an ICMPv4 message (without its IP header) and
// returns the identifier and sequence number of an echo reply. Any other
// message type, a short message or a bad checksum is an error.
func ParseEchoReply(b []byte) (id, seq uint16, err error) {
	if len(b) < 8 {
		return 0, 0, fmt.Errorf("ICMP message of %d bytes: an echo reply has at least 8", len(b))
	}
	if b[0] != icmpEchoReply || b[1] != 0 {
		return 0, 0, fmt.Errorf("ICMP type %d code %d: not an echo reply (type 0 code 0)", b[0], b[1])
	}
	if onesSum(b) != 0xffff {
		return 0, 0, fmt.Errorf("ICMP echo reply: bad checksum %#04x", binary.BigEndian.Uint16(b[2:]))
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), nil
}

// onesSum is the 16-bit ones' complement sum of b (RFC 1071), an odd last
// byte padded with zero. A message whose checksum field is right sums to
// 0xffff.
func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
