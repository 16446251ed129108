package cni

import (
	"strings"
	"testing"
)

func TestParseConfigDefaultsUnderRoot(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"twill","type":"twill"}`), "/tmp/node1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/tmp/node1/run/twill/subnet.env", "/tmp/node1/run/flannel/subnet.env"}
	if strings.Join(c.SubnetFiles, ",") != strings.Join(want, ",") {
		t.Errorf("subnet files %v, want %v", c.SubnetFiles, want)
	}
	if c.Bridge != "cni0" || c.DataDir != "/tmp/node1/var/lib/cni/networks/twill" || !c.Hairpin || !c.DefaultGateway || c.MTU != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"pods","type":"twill"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.SubnetFiles[0] != "/run/twill/subnet.env" || c.DataDir != "/var/lib/cni/networks/pods" {
		t.Errorf("root /: %+v", c)
	}
}

func TestParseConfigExplicitKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"twill","type":"twill","subnetFile":"/etc/s.env",
		"bridge":"br-pods","dataDir":"/srv/ipam","mtu":1400,"hairpinMode":false,"isDefaultGateway":false,
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`), "/root-ignored-for-explicit-paths")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SubnetFiles) != 1 || c.SubnetFiles[0] != "/etc/s.env" || c.Bridge != "br-pods" || c.DataDir != "/srv/ipam" ||
		c.MTU != 1400 || c.Hairpin || c.DefaultGateway || len(c.ValidAttachments) != 1 {
		t.Errorf("got %+v", c)
	}
	// The legacy key libcni also sends.
	c, err = ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"twill","cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}]}`), "")
	if err != nil || len(c.ValidAttachments) != 1 || c.ValidAttachments[0].IfName != "eth1" {
		t.Errorf("legacy attachments: %+v %v", c, err)
	}
}

func TestParseConfigPrevResult(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.0.0","name":"twill","type":"twill","prevResult":{"cniVersion":"1.0.0",
		"interfaces":[{"name":"eth0"}],"ips":[{"interface":0,"address":"10.244.1.5/24","gateway":"10.244.1.1"}]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.PrevResult == nil || len(c.PrevResult.IPs) != 1 || c.PrevResult.IPs[0].Address.String() != "10.244.1.5/24" {
		t.Fatalf("prevResult: %+v", c.PrevResult)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		`{"name":"twill","mtu":9}`:                            "mtu 9",
		`{"name":"twill","bridge":"a-very-long-bridge-name"}`: "bridge",
		`{"name":"twill","dataDir":"relative/dir"}`:           "dataDir",
		`{"name":"twill","subnetFile":"subnet.env"}`:          "subnetFile",
		`{"name":"../etc"}`:                                   "name",
		`{"name":"twill","type":"bridge"}`:                    "type",
		`{"name":`:                                            "CNI config",
	}
	for in, want := range cases {
		_, err := ParseConfig([]byte(in), "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%s) = %v, want an error naming %q", in, err, want)
		}
	}
}
