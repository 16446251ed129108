package subnetfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlannelFormat(t *testing.T) {
	info, err := Parse("subnet.env", "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
	if err != nil {
		t.Fatal(err)
	}
	if info.Network.String() != "10.244.0.0/16" || info.Subnet.String() != "10.244.1.1/24" || info.MTU != 1450 || !info.IPMasq {
		t.Fatalf("got %+v", info)
	}
}

func TestRoundTripThroughFile(t *testing.T) {
	want, err := Parse("x", "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.3.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=false\nTWILL_BACKEND=host-gw\n")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "run", "subnet.env")
	if err := Write(p, want); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(p, string(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("round trip: got %+v want %+v", got, want)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := map[string]string{
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.300.1/24\n":            "line 2: SUBNET",
		"TWILL_NETWORK=10.244.0.0/16\ngarbage\n":                                 "line 2",
		"TWILL_SUBNET=10.244.1.1/24\n":                                           "no NETWORK",
		"TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\nTWILL_MTU=9\n": "line 3: MTU",
	}
	for in, want := range cases {
		_, err := Parse("f", in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestFlannelRenderParsesBack(t *testing.T) {
	want, _ := Parse("x", "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.3.1/24\nTWILL_MTU=1450\nTWILL_IPMASQ=true\n")
	text := want.RenderFlannel()
	if !strings.HasPrefix(text, "FLANNEL_NETWORK=10.244.0.0/16\n") || strings.Contains(text, "BACKEND") {
		t.Fatalf("flannel format:\n%s", text)
	}
	got, err := Parse("y", text)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}
