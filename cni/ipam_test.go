package cni

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestCandidatesSkipGatewayNetworkBroadcastAndRoundRobin(t *testing.T) {
	subnet := netip.MustParsePrefix("10.244.1.0/29")
	gw := netip.MustParseAddr("10.244.1.1")
	got := fmt.Sprint(slices.Collect(candidates(subnet, gw, netip.Addr{})))
	if got != "[10.244.1.2 10.244.1.3 10.244.1.4 10.244.1.5 10.244.1.6]" {
		t.Errorf("fresh: %s", got)
	}
	got = fmt.Sprint(slices.Collect(candidates(subnet, gw, netip.MustParseAddr("10.244.1.4"))))
	if got != "[10.244.1.5 10.244.1.6 10.244.1.2 10.244.1.3 10.244.1.4]" {
		t.Errorf("after .4: %s", got)
	}
	got = fmt.Sprint(slices.Collect(candidates(subnet, gw, netip.MustParseAddr("10.244.1.6"))))
	if got != "[10.244.1.2 10.244.1.3 10.244.1.4 10.244.1.5 10.244.1.6]" {
		t.Errorf("after the last: %s", got)
	}
	got = fmt.Sprint(slices.Collect(candidates(subnet, gw, netip.MustParseAddr("10.9.9.9"))))
	if got != "[10.244.1.2 10.244.1.3 10.244.1.4 10.244.1.5 10.244.1.6]" {
		t.Errorf("last outside the subnet (the node's subnet changed): %s", got)
	}
}

// IPv6 candidates are lazy (a /64 is never listed) and round robin like
// IPv4's; the subnet's last address is never handed out.
func TestCandidatesIPv6(t *testing.T) {
	subnet := netip.MustParsePrefix("fd00:10:244:1::/64")
	gw := netip.MustParseAddr("fd00:10:244:1::1")
	var got []netip.Addr
	for a := range candidates(subnet, gw, netip.MustParseAddr("fd00:10:244:1::7")) {
		if got = append(got, a); len(got) == 3 {
			break
		}
	}
	if fmt.Sprint(got) != "[fd00:10:244:1::8 fd00:10:244:1::9 fd00:10:244:1::a]" {
		t.Errorf("after ::7: %v", got)
	}
	small := netip.MustParsePrefix("fd00::/125")
	if got := fmt.Sprint(slices.Collect(candidates(small, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::6")))); got != "[fd00::2 fd00::3 fd00::4 fd00::5 fd00::6]" {
		t.Errorf("small subnet after the last: %s", got)
	}
	if lastAddr(subnet).String() != "fd00:10:244:1:ffff:ffff:ffff:ffff" || lastAddr(netip.MustParsePrefix("10.1.2.0/23")).String() != "10.1.3.255" {
		t.Errorf("lastAddr %v %v", lastAddr(subnet), lastAddr(netip.MustParsePrefix("10.1.2.0/23")))
	}
}

func TestStoreAllocateIsIdempotentAndReleaseFrees(t *testing.T) {
	s, err := NewStore(filepath.Join(t.TempDir(), "twill"))
	if err != nil {
		t.Fatal(err)
	}
	subnet := netip.MustParsePrefix("10.244.1.0/29")
	gw := netip.MustParseAddr("10.244.1.1")
	a, err := s.Allocate(subnet, gw, "c1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Allocate(subnet, gw, "c1", "eth0")
	if err != nil || again != a {
		t.Fatalf("second ADD of c1: %v %v, want %v", again, err, a)
	}
	// The file has host-local's format.
	data, err := os.ReadFile(filepath.Join(s.Dir(), a.String()))
	if err != nil || string(data) != "c1\r\neth0" {
		t.Fatalf("allocation file: %q %v", data, err)
	}
	seen := map[netip.Addr]bool{a: true}
	for i := 2; i <= 5; i++ {
		b, err := s.Allocate(subnet, gw, fmt.Sprintf("c%d", i), "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if seen[b] || b == gw || !subnet.Contains(b) {
			t.Fatalf("c%d got %v (seen %v)", i, b, seen)
		}
		seen[b] = true
	}
	_, err = s.Allocate(subnet, gw, "c6", "eth0")
	if err == nil || !strings.Contains(err.Error(), "no free address in 10.244.1.0/29: all 5") {
		t.Fatalf("full subnet: %v", err)
	}
	freed, err := s.Release("c3", "eth0")
	if err != nil || len(freed) != 1 {
		t.Fatalf("release c3: %v %v", freed, err)
	}
	if again, err := s.Release("c3", "eth0"); err != nil || len(again) != 0 {
		t.Fatalf("second release: %v %v", again, err)
	}
	got, err := s.Allocate(subnet, gw, "c6", "eth0")
	if err != nil || got != freed[0] {
		t.Fatalf("c6 got %v %v, want the freed %v", got, err, freed[0])
	}
	if l, err := s.Lookup(subnet, "c6", "eth0"); err != nil || l != got {
		t.Fatalf("lookup: %v %v", l, err)
	}
}

func TestStoreGCKeepsOnlyValidAttachments(t *testing.T) {
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	subnet := netip.MustParsePrefix("10.244.2.0/24")
	gw := netip.MustParseAddr("10.244.2.1")
	for _, id := range []string{"keep", "stale1", "stale2"} {
		if _, err := s.Allocate(subnet, gw, id, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	// An old-format file (container ID only) of a valid container stays.
	if err := os.WriteFile(filepath.Join(s.Dir(), "10.244.2.200"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	freed, err := s.GC(map[[2]string]bool{{"keep", "eth0"}: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 2 || freed[0].ContainerID != "stale1" || freed[1].ContainerID != "stale2" {
		t.Fatalf("freed %+v", freed)
	}
	left, err := s.List()
	if err != nil || len(left) != 2 || left[0].ContainerID != "keep" || left[1].Addr.String() != "10.244.2.200" {
		t.Fatalf("left %+v %v", left, err)
	}
}

// TestStoreConcurrentAllocations: many allocations at once (each with its
// own lock file descriptor, as separate processes have) never share an address.
func TestStoreConcurrentAllocations(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.244.3.0/24")
	gw := netip.MustParseAddr("10.244.3.1")
	const n = 60
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := NewStore(dir)
			if err == nil {
				got[i], err = s.Allocate(subnet, gw, fmt.Sprintf("pod-%d", i), "eth0")
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("pod-%d: %v", i, errs[i])
		}
		if j, dup := seen[got[i]]; dup {
			t.Fatalf("pod-%d and pod-%d both got %v", i, j, got[i])
		}
		seen[got[i]] = i
	}
}

func TestHostVethName(t *testing.T) {
	a := HostVethName("cnitool-0123456789abcdef", "eth0")
	if len(a) != 15 || !strings.HasPrefix(a, "veth") {
		t.Errorf("name %q: want veth + 11 hex digits", a)
	}
	if a == HostVethName("cnitool-0123456789abcdef", "eth1") || a != HostVethName("cnitool-0123456789abcdef", "eth0") {
		t.Error("name must be stable per (container, ifname) and differ between interfaces")
	}
}
