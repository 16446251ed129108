package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/subnetfile"
)

// TestTraffic builds a lab per backend and checks that every pod reaches
// every other pod (same node and across nodes) without NAT, that Services
// answer, and that etcd and the subnet files say what the nodes are.
func TestTraffic(t *testing.T) {
	needRoot(t)
	for _, backend := range []string{BackendVXLAN, BackendHostGW} {
		t.Run(backend, func(t *testing.T) {
			st := upLab(t, testConfig(t, backend, 3, 2))
			ctx := context.Background()
			t.Run("pod-to-pod", func(t *testing.T) {
				for _, from := range allPods(st) {
					for _, to := range allPods(st) {
						line, err := Call(ctx, from.Namespace, fmt.Sprintf("%s:%d", to.IP, ServerPort), 2*time.Second, false)
						if err != nil {
							t.Errorf("%s -> %s: %v", from.Name, to.Name, err)
							continue
						}
						// The server names itself and sees the client's own pod IP (no NAT inside the pod network).
						if !strings.HasPrefix(line, to.Name+" "+from.IP+":") {
							t.Errorf("%s -> %s answered %q, want %q", from.Name, to.Name, line, to.Name+" "+from.IP+":<port>")
						}
					}
				}
			})
			t.Run("udp", func(t *testing.T) {
				from, to := st.Nodes[0].Pods[0], st.Nodes[1].Pods[0]
				line, err := Call(ctx, from.Namespace, fmt.Sprintf("%s:%d", to.IP, ServerPort), 2*time.Second, true)
				if err != nil || !strings.HasPrefix(line, to.Name+" ") {
					t.Errorf("udp %s -> %s: %q, %v", from.Name, to.Name, line, err)
				}
			})
			t.Run("services", func(t *testing.T) {
				for _, n := range st.Nodes {
					a, b := n.Pods[0], n.Pods[1]
					line, err := Call(ctx, a.Namespace, LocalVIP(n.Index).String(), 2*time.Second, false)
					if err != nil || !strings.HasPrefix(line, b.Name+" "+a.IP+":") {
						t.Errorf("%s -> %s (lab/local-%s): %q, %v; want an answer from %s", a.Name, LocalVIP(n.Index), n.Name, line, err, b.Name)
					}
				}
				seen := map[string]bool{}
				for i := 0; i < 20; i++ {
					line, err := Call(ctx, st.Nodes[0].Pods[0].Namespace, WebVIP.String(), 2*time.Second, false)
					if err != nil {
						t.Fatalf("call lab/web %s: %v", WebVIP, err)
					}
					seen[strings.Fields(line)[0]] = true
				}
				if len(seen) < 2 {
					t.Errorf("20 calls to lab/web all went to %v; want the load spread over several pods", seen)
				}
			})
			t.Run("etcd-leases", func(t *testing.T) {
				c, err := etcdClient(st)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				ls, err := leaseetcd.List(cctx, c, lease.DefaultPrefix)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]lease.Lease{}
				for _, l := range ls {
					got[l.Subnet.String()] = l
				}
				for _, n := range st.Nodes {
					l, ok := got[n.Subnet]
					if !ok {
						t.Errorf("no lease for %s (%s) in etcd; have %v", n.Name, n.Subnet, got)
						continue
					}
					if l.Attrs.PublicIP.String() != n.IP || l.Attrs.BackendType != backend || l.Attrs.Node != n.Name {
						t.Errorf("lease %s = %+v, want PublicIP %s, backend %s, node %s", n.Subnet, l.Attrs, n.IP, backend, n.Name)
					}
					if backend == BackendVXLAN && (l.Attrs.BackendData == nil || l.Attrs.BackendData.VtepMAC != VtepMAC(n.Index)) {
						t.Errorf("lease %s: VtepMAC %+v, want %s", n.Subnet, l.Attrs.BackendData, VtepMAC(n.Index))
					}
				}
			})
			t.Run("subnet-files", func(t *testing.T) {
				for _, n := range st.Nodes {
					p := n.Root + subnetfile.TwillPath
					b, err := os.ReadFile(p)
					if err != nil {
						t.Fatalf("node %s: %v", n.Name, err)
					}
					info, err := subnetfile.Parse(p, string(b))
					if err != nil {
						t.Fatal(err)
					}
					want := subnetfile.Info{Network: ClusterCIDR, Subnet: netip.MustParsePrefix(n.Gateway + "/24"), MTU: PodMTU(backend), IPMasq: true, Backend: backend}
					if info != want {
						t.Errorf("node %s subnet file = %+v, want %+v", n.Name, info, want)
					}
				}
			})
			t.Run("firewall", func(t *testing.T) {
				for _, n := range st.Nodes {
					nat := iptSave(t, &n, "iptables-nft-save", "nat")
					for _, want := range []string{
						"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
						"-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE\n",
						"-A KUBE-SERVICES -d 10.96.0.1/32 ",
					} {
						if !strings.Contains(nat, want) {
							t.Errorf("node %s nat table lacks %q:\n%s", n.Name, want, nat)
						}
					}
					if filter := iptSave(t, &n, "iptables-nft-save", "filter"); !strings.Contains(filter, ":FORWARD ACCEPT") {
						t.Errorf("node %s: FORWARD policy is not ACCEPT:\n%s", n.Name, filter)
					}
				}
			})
			t.Run("status", func(t *testing.T) {
				r, err := Status(ctx, st.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Healthy || !r.EtcdHealthy {
					t.Errorf("status of a fresh lab: healthy=%v etcd=%v problems=%v", r.Healthy, r.EtcdHealthy, r.Problems)
				}
			})
		})
	}
}

func allPods(st *State) []Pod {
	var ps []Pod
	for _, n := range st.Nodes {
		ps = append(ps, n.Pods...)
	}
	return ps
}
