package nodestate

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// recordedIPVS is /proc/net/ip_vs as the kernel prints it
// (ip_vs_info_seq_show): a kube-proxy IPVS node with the kubernetes Service
// (two endpoints), a DNS UDP Service, a persistent service, an IPv6 service
// and a firewall-mark service. Trailing spaces are as the kernel prints them.
const recordedIPVS = "IP Virtual Server version 1.2.1 (size=4096)\n" +
	"Prot LocalAddress:Port Scheduler Flags\n" +
	"  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n" +
	"TCP  0A600001:01BB rr \n" +
	"  -> C0A84D0B:192B      Masq    1      0          0         \n" +
	"  -> C0A84D0C:192B      Masq    1      2          1         \n" +
	"UDP  0A60000A:0035 rr \n" +
	"  -> 0AF40105:0035      Masq    1      0          3         \n" +
	"TCP  0A600064:0050 sh persistent 10800 FFFFFFFF\n" +
	"TCP  [fd00:0000:0000:0000:0000:0000:0000:0001]:01BB rr \n" +
	"  -> [fd00:0000:0000:0000:0000:0000:0244:0105]:1F90      Masq    1      0          0         \n" +
	"FWM  00000001 wrr \n" +
	"  -> 0AF40106:0000      Route   1      0          0         \n"

func TestParseProcIPVS(t *testing.T) {
	got, err := ParseProcIPVS(recordedIPVS)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := &IPVS{Services: []IPVSService{
		{Protocol: "TCP", Addr: ap("10.96.0.1:443"), Scheduler: "rr", Dests: []netip.AddrPort{ap("192.168.77.11:6443"), ap("192.168.77.12:6443")}},
		{Protocol: "UDP", Addr: ap("10.96.0.10:53"), Scheduler: "rr", Dests: []netip.AddrPort{ap("10.244.1.5:53")}},
		{Protocol: "TCP", Addr: ap("10.96.0.100:80"), Scheduler: "sh"},
		{Protocol: "TCP", Addr: ap("[fd00::1]:443"), Scheduler: "rr", Dests: []netip.AddrPort{ap("[fd00::244:105]:8080")}},
		{Protocol: "FWM", Scheduler: "wrr", Dests: []netip.AddrPort{ap("10.244.1.6:0")}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseProcIPVSEmptyTable(t *testing.T) {
	got, err := ParseProcIPVS("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n")
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got.Services) != 0 {
		t.Errorf("got %+v, want no services", got)
	}
}

func TestParseProcIPVSErrors(t *testing.T) {
	cases := map[string]string{
		"  -> 0AF40105:1F90      Masq    1      0          0\n": "line 1: destination",
		"TCP  0A6000:01BB rr\n":                                 "line 1: address \"0A6000:01BB\": want 8 hex digits",
		"TCP  0A600001:XYZ rr\n":                                "port \"XYZ\"",
		"TCP  0A600001:01BB\n":                                  "want \"<proto> <addr>:<port> <scheduler>\"",
		"TCP  0A600001:01BB rr\n  -> [zz]:0050 Masq 1 0 0\n":    "line 2: address \"[zz]:0050\": bad IPv6",
		"TCP  0A600001:01BB rr\n  -> 0A600001 Masq 1 0 0\n":     "want ADDR:PORT",
		"UDP  [fd00::1]:0035 rr\nFWM 1\n":                       "line 2: want \"FWM <mark> <scheduler>\"",
	}
	for in, want := range cases {
		_, err := ParseProcIPVS(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseProcIPVS(%q) error %v, want it to contain %q", in, err, want)
		}
	}
}
