package subnetfile

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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

func TestGatewayIsTheSubnetsFirstAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.1.0/24":   "10.244.1.1/24",
		"10.244.1.77/24":  "10.244.1.1/24", // any address of the subnet names it
		"10.244.0.128/25": "10.244.0.129/25",
		"10.42.0.0/16":    "10.42.0.1/16",
	} {
		if got := Gateway(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("Gateway(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestDirectRoutingRoundTrips(t *testing.T) {
	in := Info{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.1/24"), MTU: 1450, IPMasq: true, Backend: "vxlan", DirectRouting: true}
	text := in.Render()
	if !strings.Contains(text, "TWILL_DIRECT_ROUTING=true\n") {
		t.Fatalf("render:\n%s", text)
	}
	got, err := Parse("x", text)
	if err != nil || got != in {
		t.Fatalf("got %+v, %v; want %+v", got, err, in)
	}
	if fl := in.RenderFlannel(); strings.Contains(fl, "DIRECT") {
		t.Fatalf("Flannel's format has no DirectRouting key:\n%s", fl)
	}
	if _, err := Parse("f", "TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\nTWILL_DIRECT_ROUTING=maybe\n"); err == nil || !strings.Contains(err.Error(), "line 3: DIRECT_ROUTING") {
		t.Fatalf("bad DIRECT_ROUTING: %v", err)
	}
}

// TestWriteIsDurable: the new content is fsynced before it is renamed into
// place, and the directory after, so a crash leaves the old or the new file.
func TestWriteIsDurable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "twill")
	path := filepath.Join(dir, "subnet.env")
	var synced []string
	orig := syncFile
	t.Cleanup(func() { syncFile = orig })
	syncFile = func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			// The rename has happened: the directory entry is what is flushed.
			if _, err := os.Stat(path); err != nil {
				t.Errorf("directory fsynced before the rename: %v", err)
			}
			synced = append(synced, "dir "+f.Name())
		} else {
			if _, err := os.Stat(path); err == nil {
				t.Errorf("file fsynced after the rename")
			}
			b, _ := os.ReadFile(f.Name())
			synced = append(synced, "file "+string(b))
		}
		return orig(f)
	}
	if err := WriteContent(path, "TWILL_MTU=1450\n"); err != nil {
		t.Fatal(err)
	}
	want := []string{"file TWILL_MTU=1450\n", "dir " + dir}
	if !slices.Equal(synced, want) {
		t.Fatalf("fsyncs %q, want %q", synced, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("written file: %v %v", fi, err)
	}
}

// TestFailedWriteKeepsTheOldFile: when the data cannot be made durable the
// old file stays as it was and no temporary file is left behind.
func TestFailedWriteKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	if err := WriteContent(path, "old\n"); err != nil {
		t.Fatal(err)
	}
	orig := syncFile
	t.Cleanup(func() { syncFile = orig })
	syncFile = func(*os.File) error { return errors.New("disk on fire") }
	err := WriteContent(path, "new\n")
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want the fsync error naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Fatalf("content %q, want the old file", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// Flannel's dual-stack and IPv6-only files (FLANNEL_IPV6_NETWORK,
// FLANNEL_IPV6_SUBNET) parse, and twill's renderings parse back.
func TestIPv6Lines(t *testing.T) {
	dual := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	info, err := Parse("flannel", dual)
	if err != nil {
		t.Fatal(err)
	}
	if info.IPv6Network != netip.MustParsePrefix("fd00:10:244::/56") || info.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:1::1/64") || info.Subnet != netip.MustParsePrefix("10.244.1.1/24") {
		t.Fatalf("parsed %+v", info)
	}
	if got := info.RenderFlannel(); got != dual {
		t.Fatalf("RenderFlannel:\n%s\nwant\n%s", got, dual)
	}
	v6 := "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n"
	info, err = Parse("flannel", v6)
	if err != nil || info.Network.IsValid() || info.Subnet.IsValid() || info.MTU != 1430 {
		t.Fatalf("IPv6-only: %+v %v", info, err)
	}
	if again, err := Parse("twill", info.Render()); err != nil || again != info {
		t.Fatalf("IPv6-only round trip: %+v %v", again, err)
	}
	for in, want := range map[string]string{
		"FLANNEL_IPV6_SUBNET=fd00::1/64\nFLANNEL_MTU=1430\n":                                           "IPV6_SUBNET without an IPV6_NETWORK line",
		"FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_MTU=1430\n":                                           "IPV6_NETWORK without an IPV6_SUBNET line",
		"FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00::1/64\nFLANNEL_SUBNET=10.0.0.1/24\n": "no NETWORK line",
		"FLANNEL_IPV6_NETWORK=fd00::/56x\n":                                                            "line 1: IPV6_NETWORK",
	} {
		if _, err := Parse("f", in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", in, err, want)
		}
	}
}
