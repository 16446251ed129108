package vsflannel

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestEchoRequestChecksumAndFields(t *testing.T) {
	// A request as ping(8) sends it: id 0x1234, seq 1, "abc" (odd length).
	b := EchoRequest(0x1234, 1, []byte("abc"))
	if len(b) != 11 || b[0] != 8 || b[1] != 0 {
		t.Fatalf("header % x", b)
	}
	if onesSum(b) != 0xffff {
		t.Fatalf("checksum %#04x does not verify", binary.BigEndian.Uint16(b[2:]))
	}
	// RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := onesSum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0xddf2 {
		t.Fatalf("RFC 1071 example: %#04x, want 0xddf2", got)
	}
	// Known good: type 8, id 1, seq 1, no payload: checksum f7fd.
	if got := binary.BigEndian.Uint16(EchoRequest(1, 1, nil)[2:]); got != 0xf7fd {
		t.Fatalf("checksum %#04x, want 0xf7fd", got)
	}
}

func TestParseEchoReply(t *testing.T) {
	// A reply is the request with type 0 and the checksum adjusted.
	req := EchoRequest(0xbeef, 7, []byte("payload"))
	rep := append([]byte(nil), req...)
	rep[0] = 0
	binary.BigEndian.PutUint16(rep[2:], 0)
	binary.BigEndian.PutUint16(rep[2:], ^onesSum(rep))
	id, seq, err := ParseEchoReply(rep)
	if err != nil || id != 0xbeef || seq != 7 {
		t.Fatalf("got id %#x seq %d err %v", id, seq, err)
	}
	if _, _, err := ParseEchoReply(req); err == nil || !strings.Contains(err.Error(), "not an echo reply") {
		t.Fatalf("a request: err = %v", err)
	}
	bad := append([]byte(nil), rep...)
	bad[9] ^= 0xff
	if _, _, err := ParseEchoReply(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("corrupted reply: err = %v", err)
	}
	if _, _, err := ParseEchoReply(rep[:5]); err == nil {
		t.Fatal("short message: want an error")
	}
}
