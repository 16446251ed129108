package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
)

func TestSummarize(t *testing.T) {
	s := &nodestate.Snapshot{
		Netns:     "twill-node1",
		Links:     make([]nodestate.Link, 3),
		Routes:    make([]nodestate.Route, 1),
		Sysctls:   map[string]string{"a": "1"},
		Iptables:  nodestate.Iptables{Legacy: nodestate.IptablesBackend{Available: true}},
		Nftables:  nodestate.Nftables{Available: true},
		Leases:    []nodestate.Lease{},
		Errors:    []nodestate.CaptureError{{Source: "iptables-nft", Err: "iptables-nft-save not found in PATH: install the iptables package"}},
		Neighbors: make([]nodestate.Neighbor, 2),
	}
	got := summarize(s, "n1.json")
	for _, want := range []string{
		"captured 3 links, 0 addresses, 1 route, 0 rules, 2 neighbours, 0 fdb entries, 1 sysctl, iptables-legacy+nftables, 0 leases from netns twill-node1 into n1.json",
		"; 1 part could not be captured: iptables-nft: iptables-nft-save not found in PATH",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q\n lacks %q", got, want)
		}
	}
	s.Errors = append(s.Errors, nodestate.CaptureError{Source: "nft", Err: "x"})
	s.Netns = ""
	got = summarize(s, "-")
	if !strings.Contains(got, "from the current netns; 2 parts could not be captured (iptables-nft, nft)") || strings.Contains(got, " into ") {
		t.Errorf("summary %q", got)
	}
}

func TestConvertLeases(t *testing.T) {
	in := []lease.Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.77.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "02:00:00:00:00:01"}, Node: "node1"}},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Attrs: lease.Attrs{BackendType: "host-gw"}},
	}
	got, err := convertLeases(in)
	want := []nodestate.Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), PublicIP: netip.MustParseAddr("192.168.77.11"), Backend: "vxlan", VtepMAC: "02:00:00:00:00:01", Node: "node1"},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Backend: "host-gw"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), `lease 10.244.2.0/24: PublicIP is not an IP address`) {
		t.Errorf("error %v", err)
	}
}

func snapRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates a network namespace to capture; run it as root")
	}
}

// snapTestNetns creates a namespace with lo up and a bridge, removed at the end.
func snapTestNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("twill-t-snapcmd-%06d", rand.IntN(1000000))
	if out, err := exec.Command("/usr/sbin/ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("/usr/sbin/ip", "netns", "del", name).Run() })
	ctx := context.Background()
	for _, argv := range [][]string{
		{"/usr/sbin/ip", "link", "set", "lo", "up"},
		{"/usr/sbin/ip", "link", "add", "cni0", "type", "bridge"},
		{"/usr/sbin/ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
	} {
		if err := nsrun.Run(ctx, name, argv...); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// runSnapshot runs `twill snapshot args...` in-process.
func runSnapshot(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newSnapshotCmd()
	var o, e bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	err = cmd.Execute()
	return o.String(), e.String(), err
}

func TestSnapshotCommandToFile(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "run/twill"), 0o755)
	os.WriteFile(filepath.Join(root, "run/twill/subnet.env"), []byte("TWILL_NETWORK=10.244.0.0/16\nTWILL_SUBNET=10.244.1.1/24\n"), 0o644)
	t.Setenv("TWILL_ETCD_ENDPOINTS", "")
	outDir := t.TempDir()
	out := filepath.Join(outDir, "node1.json")
	os.WriteFile(out, []byte("old"), 0o600)

	stdout, stderr, err := runSnapshot(t, "--netns", ns, "--root", root, "--node", "node1", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing when writing a file", stdout)
	}
	if !strings.HasPrefix(stderr, "captured ") || !strings.Contains(stderr, "from netns "+ns+" into "+out) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("summary %q", stderr)
	}
	s, err := nodestate.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != "node1" || s.Netns != ns || !slices.ContainsFunc(s.Links, func(l nodestate.Link) bool { return l.Name == "cni0" && l.Kind == "bridge" }) {
		t.Errorf("snapshot: node %q netns %q links %+v", s.Node, s.Netns, s.Links)
	}
	if len(s.Files.SubnetFiles) == 0 || !s.Files.SubnetFiles[0].Exists || s.Files.SubnetFiles[0].Path != filepath.Join(root, "run/twill/subnet.env") {
		t.Errorf("subnet files under --root: %+v", s.Files.SubnetFiles)
	}
	if s.Leases != nil {
		t.Errorf("leases %+v without a store", s.Leases)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Errorf("files left beside the output: %v", entries)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}

	// An output directory that does not exist is a clear error.
	_, _, err = runSnapshot(t, "--netns", ns, "-q", "-o", filepath.Join(outDir, "nope", "x.json"))
	if err == nil || !strings.Contains(err.Error(), "write snapshot") || !strings.Contains(err.Error(), "nope") {
		t.Errorf("error %v, want a write error naming the path", err)
	}
}

func TestSnapshotCommandToStdoutWithRootFromEnv(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	root := t.TempDir()
	t.Setenv("TWILL_ROOT", root)
	t.Setenv("TWILL_ETCD_ENDPOINTS", "")
	stdout, stderr, err := runSnapshot(t, "--netns", ns, "-q")
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "" {
		t.Errorf("stderr %q with -q", stderr)
	}
	s, err := nodestate.Load(strings.NewReader(stdout), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if s.Files.CNIConfDir != filepath.Join(root, "etc/cni/net.d") {
		t.Errorf("cni conf dir %q, want it under TWILL_ROOT %s", s.Files.CNIConfDir, root)
	}
}

func TestSnapshotCommandMissingNetns(t *testing.T) {
	_, _, err := runSnapshot(t, "--netns", "twill-t-snapcmd-missing", "-q")
	if err == nil || !strings.Contains(err.Error(), "ip netns list") {
		t.Errorf("error %v, want one that says how to list namespaces", err)
	}
}

func TestSnapshotCommandStoreDown(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	start := time.Now()
	// Nothing listens on port 1 inside the namespace.
	stdout, stderr, err := runSnapshot(t, "--netns", ns, "--root", t.TempDir(), "--etcd-endpoints", "http://127.0.0.1:1")
	if err != nil {
		t.Fatalf("a store that is down failed the snapshot: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v with the store down, want about %v", d, storeTimeout)
	}
	s, err := nodestate.Load(strings.NewReader(stdout), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(s.Errors, func(e nodestate.CaptureError) bool { return e.Source == "leases" })
	if i < 0 || !strings.Contains(s.Errors[i].Err, "etcd http://127.0.0.1:1") {
		t.Errorf("errors %+v, want a leases error naming the endpoint", s.Errors)
	}
	if !strings.Contains(stderr, "could not be captured") || !strings.Contains(stderr, "leases") {
		t.Errorf("summary %q does not report the store", stderr)
	}
}

// snapEtcdBin is the real etcd built by `make tools`.
func snapEtcdBin(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../bin/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real etcd needed at %s: run `make tools` first (%v)", p, err)
	}
	return p
}

// snapStartEtcd runs a real etcd on 127.0.0.1 inside ns and returns a client
// that dials from inside ns.
func snapStartEtcd(t *testing.T, ns string) (*clientv3.Client, string) {
	t.Helper()
	dir := t.TempDir()
	endpoint := "http://127.0.0.1:2379"
	cmd := exec.Command(snapEtcdBin(t), "--name", "t", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "t=http://127.0.0.1:2380", "--log-level", "warn")
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := nsrun.Do(ns, cmd.Start); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsrun.Do(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx, endpoint)
		cancel()
		if err == nil {
			return c, endpoint
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Fatalf("etcd not healthy after 20s: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSnapshotCommandReadsLeases(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	c, endpoint := snapStartEtcd(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := "/twill-test/network"
	for _, l := range []lease.Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.77.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "02:00:00:00:00:01"}, Node: "node1"}},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.77.12"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "02:00:00:00:00:02"}, Node: "node2"}},
	} {
		if err := etcd.Put(ctx, c, prefix, l, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TWILL_ETCD_ENDPOINTS", endpoint) // the flag's default comes from the environment
	stdout, stderr, err := runSnapshot(t, "--netns", ns, "--root", t.TempDir(), "--etcd-prefix", prefix)
	if err != nil {
		t.Fatal(err)
	}
	s, err := nodestate.Load(strings.NewReader(stdout), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	want := []nodestate.Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), PublicIP: netip.MustParseAddr("192.168.77.11"), Backend: "vxlan", VtepMAC: "02:00:00:00:00:01", Node: "node1"},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: netip.MustParseAddr("192.168.77.12"), Backend: "vxlan", VtepMAC: "02:00:00:00:00:02", Node: "node2"},
	}
	if !slices.Equal(s.Leases, want) {
		t.Errorf("leases %+v\nwant %+v", s.Leases, want)
	}
	if !strings.Contains(stderr, "2 leases") {
		t.Errorf("summary %q", stderr)
	}
}

func TestSnapshotCommandReport(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	t.Setenv("TWILL_ETCD_ENDPOINTS", "")
	dir := t.TempDir()
	out, report := filepath.Join(dir, "node1.json"), filepath.Join(dir, "node1.html")
	if _, _, err := runSnapshot(t, "--netns", ns, "--root", t.TempDir(), "--node", "node1", "-q", "-o", out, "--report", report); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "twill doctor: node1 (netns " + ns + ")", `id="findings"`, `id="snapshot-download" download="node1.json" href="data:application/json;base64,`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("want the snapshot and the report, got %v", entries)
	}
}
