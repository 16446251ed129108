package nodestate

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleSnapshot fills every kind of field the model has.
func sampleSnapshot() *Snapshot {
	mp := netip.MustParsePrefix
	ma := netip.MustParseAddr
	return &Snapshot{
		Version:    SchemaVersion,
		CapturedAt: time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC),
		Hostname:   "node-a",
		Netns:      "twill-lab-n1",
		Node:       "n1",
		Links: []Link{
			{Index: 1, Name: "lo", Kind: "loopback", MTU: 65536, Up: true, OperUp: true, LinkNetnsID: -1},
			{Index: 3, Name: "cni0", Kind: "bridge", MTU: 1450, MAC: "aa:bb:cc:00:00:01", Up: true, LinkNetnsID: -1,
				Bridge: &BridgeAttrs{Ports: []string{"veth1"}}},
			{Index: 4, Name: "veth1", Kind: "veth", MTU: 1450, Master: "cni0", ParentIndex: 2, LinkNetnsID: 1,
				BridgePort: &BridgePortAttrs{Hairpin: true}},
			{Index: 5, Name: "twill.1", Kind: "vxlan", MTU: 1450, LinkNetnsID: -1,
				Vxlan: &VxlanAttrs{VNI: 1, Port: 8472, Local: ma("192.168.77.11"), Dev: "eth0"}},
		},
		Addrs: []Addr{{Link: "cni0", Prefix: mp("10.244.1.1/24"), Scope: "global"}},
		Routes: []Route{
			{Table: TableMain, Type: "unicast", Dst: mp("10.244.2.0/24"), Gateway: ma("10.244.2.0"), Dev: "twill.1", Onlink: true, Scope: "global", Protocol: "boot"},
			{Table: TableLocal, Type: "local", Dst: mp("10.96.0.1/32"), Dev: "kube-ipvs0", Src: ma("10.96.0.1"), Scope: "host", Protocol: "kernel"},
		},
		Rules:     []Rule{{Priority: 100, Family: 4, Table: 100, Src: mp("10.244.0.0/16"), Mark: 0x10, Mask: 0xff, Action: "lookup"}},
		Neighbors: []Neighbor{{Dev: "twill.1", IP: ma("10.244.2.0"), MAC: "aa:bb:cc:00:00:02", State: "permanent"}},
		FDB:       []FDBEntry{{Dev: "twill.1", MAC: "aa:bb:cc:00:00:02", Dst: ma("192.168.77.12"), State: "permanent", Self: true}},
		Sysctls:   map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.twill.1.rp_filter": "0"},
		Conntrack: Conntrack{Count: 3, Max: 65536},
		Iptables: Iptables{
			Legacy: IptablesBackend{Available: true, Version: "iptables v1.8.9 (legacy)", Save: "*filter\nCOMMIT\n"},
			NFT:    IptablesBackend{Available: false, Err: "iptables-nft-save not found in PATH"},
		},
		Nftables: Nftables{Available: true, Version: "nftables v1.0.6", JSON: `{"nftables": []}`},
		IPVS: &IPVS{Services: []IPVSService{{Protocol: "TCP", Addr: netip.MustParseAddrPort("10.96.0.1:443"), Scheduler: "rr",
			Dests: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.5:8080")}}}},
		Files: Files{CNIConfDir: "/etc/cni/net.d", CNIConfigs: []File{{Path: "/etc/cni/net.d/10-twill.conflist", Exists: true, Content: "{}"}},
			CNIBinDir: "/opt/cni/bin", CNIPlugins: []string{"twill"}, SubnetFiles: []File{{Path: "/run/flannel/subnet.env"}}},
		Leases: []Lease{{Subnet: mp("10.244.2.0/24"), PublicIP: ma("192.168.77.12"), Backend: "vxlan", VtepMAC: "aa:bb:cc:00:00:02", Node: "n2"}},
		Errors: []CaptureError{{Source: "nft", Err: "nft not found"}},
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	want := sampleSnapshot()
	var buf bytes.Buffer
	if err := Save(&buf, want); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\n  \"version\": 1,") {
		t.Errorf("Save output is not indented or lacks the version:\n%.200s", buf.String())
	}
	got, err := Load(&buf, "mem")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, want)
	}
}

func TestSaveSetsVersionWithoutChangingInput(t *testing.T) {
	s := sampleSnapshot()
	s.Version = 0
	var buf bytes.Buffer
	if err := Save(&buf, s); err != nil {
		t.Fatal(err)
	}
	if s.Version != 0 {
		t.Error("Save modified its input")
	}
	got, err := Load(&buf, "mem")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != SchemaVersion {
		t.Errorf("version %d, want %d", got.Version, SchemaVersion)
	}
}

func TestLoadEmptyCollectionsStayEmpty(t *testing.T) {
	got, err := Load(strings.NewReader(`{"version":1,"links":[],"routes":null,"sysctls":{}}`), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if got.Links == nil || len(got.Links) != 0 {
		t.Errorf("links = %#v, want empty non-nil", got.Links)
	}
	if got.Routes != nil {
		t.Errorf("routes = %#v, want nil", got.Routes)
	}
	if got.Sysctls == nil {
		t.Error("sysctls: want empty map")
	}
}

func TestLoadErrors(t *testing.T) {
	valid := func() string {
		var b bytes.Buffer
		if err := Save(&b, sampleSnapshot()); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}()
	cases := []struct {
		name  string
		input string
		want  []string // substrings of the error
	}{
		{"empty", "", []string{"snap.json: empty file", "not a twill snapshot"}},
		{"blank", " \n\t", []string{"snap.json: empty file"}},
		{"empty object", "{}", []string{"snap.json: not a twill snapshot", `no "version" field`}},
		{"array", "[1,2]", []string{"snap.json: not a twill snapshot", "top level is an array"}},
		{"string", `"x"`, []string{"top level is a string"}},
		{"syntax", "{\n  \"version\": 1,\n  \"links\": [}\n", []string{"snap.json: line 3, column 13: invalid JSON", "invalid character '}'"}},
		{"truncated", valid[:len(valid)/2], []string{"snap.json: line ", "truncated"}},
		{"newer", `{"version": 7}`, []string{"snapshot version 7 was written by a newer twill", "this build reads version 1", "upgrade"}},
		{"zero version", `{"version": 0}`, []string{"snapshot version 0 is not valid"}},
		{"string version", `{"version": "1"}`, []string{`field "version": want a whole number, got a string`}},
		{"route dst type", "{\"version\":1,\n\"routes\":[{},{},{},\n  {\"dst\": 17}]}", []string{`snap.json: line 3, column 11: field "routes[3].dst": want an IP prefix`, "got a number"}},
		{"route dst text", `{"version":1,"routes":[{"dst":"10.0.0.0/99"}]}`, []string{`line 1, column 31: field "routes[0].dst"`, "10.0.0.0/99"}},
		{"int as string", `{"version":1,"links":[{"mtu":"1500"}]}`, []string{`field "links[0].mtu": want a whole number, got a string`}},
		{"nested pointer", `{"version":1,"links":[{"vxlan":{"vni":true}}]}`, []string{`field "links[0].vxlan.vni": want a whole number, got a boolean`}},
		{"object for array", `{"version":1,"links":{}}`, []string{`field "links": want an array, got an object`}},
		{"map value", `{"version":1,"sysctls":{"net.ipv4.ip_forward":1}}`, []string{`field "sysctls[\"net.ipv4.ip_forward\"]": want a string, got a number`}},
		{"bad time", `{"version":1,"capturedAt":"yesterday"}`, []string{`field "capturedAt"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(c.input), "snap.json")
			if err == nil {
				t.Fatalf("Load(%q) succeeded, want an error", c.input)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(f, sampleSnapshot()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "n1" {
		t.Errorf("node %q", got.Node)
	}
	_, err = LoadFile(filepath.Join(dir, "missing.json"))
	if err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: error %v, want one naming the file", err)
	}
	os.WriteFile(p, []byte("{\"version\":1,\n\"links\":[{\"index\":\"x\"}]}"), 0o644)
	_, err = LoadFile(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+": line 2, column 19: field \"links[0].index\"") {
		t.Errorf("error %v, want it located in %s", err, p)
	}
}

func FuzzLoad(f *testing.F) {
	var b bytes.Buffer
	Save(&b, sampleSnapshot())
	f.Add(b.Bytes())
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"version":1,"links":[{"vxlan":{"local":"1.2.3.4"}}],"ipvs":{"services":[{"addr":"1.2.3.4:5"}]}}`))
	f.Add([]byte(`{"version":1,"sysctls":{"a":"b"},"routes":[{"dst":"::/0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error does not name its source: %v", err)
			}
			return
		}
		// What loads must save and load again to the same thing.
		var out bytes.Buffer
		if err := Save(&out, s); err != nil {
			t.Fatalf("save of a loaded snapshot: %v", err)
		}
		if _, err := Load(&out, "again"); err != nil {
			t.Fatalf("reload: %v\n%s", err, out.Bytes())
		}
	})
}

func TestLoadRefusesTooLargeInput(t *testing.T) {
	_, err := LoadMax(strings.NewReader(`{"version":1,"links":[]}`+strings.Repeat(" ", 2000)), "big.json", 1000)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.json") || !strings.Contains(err.Error(), "--max-snapshot-size") {
		t.Fatalf("2 KB input with a 1000-byte limit: %v", err)
	}
	if _, err := LoadMax(strings.NewReader(`{"version":1}`), "small.json", 1000); err != nil {
		t.Fatalf("a small snapshot under the limit: %v", err)
	}
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := LoadMax(f, "/dev/zero", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/dev/zero: %v", err)
	}
}
