package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
)

// TestAgentMode builds an agent-mode lab per backend (real `twill agent`
// per node, pods through the real twill-cni) and checks what users depend
// on: every pod reaches every pod without NAT, Services answer, each node's
// lease is its planned subnet with the agent's VTEP MAC, `twill doctor`
// finds nothing wrong on any node (the CNI setup included), the agent's
// masquerade is in place, status shows ready agents; and (vxlan) that
// killing and restarting an agent or stopping etcd does not disturb pods.
func TestAgentMode(t *testing.T) {
	needRoot(t)
	for _, be := range []string{BackendVXLAN, BackendHostGW} {
		t.Run(be, func(t *testing.T) {
			c := agentConfig(t, be, 3, 2)
			st := upLab(t, c)
			ctx := context.Background()
			t.Run("pods-from-cni", func(t *testing.T) {
				for _, n := range st.Nodes {
					for _, p := range n.Pods {
						if !strings.HasPrefix(p.IP, strings.TrimSuffix(n.Gateway, "1")) || p.IP == n.Gateway {
							t.Errorf("pod %s has address %q, want one in %s other than the gateway", p.Name, p.IP, n.Subnet)
						}
						if !ifaceExists(t, n.Namespace, p.HostVeth) {
							t.Errorf("pod %s: host veth %s not on %s", p.Name, p.HostVeth, n.Name)
						}
					}
				}
			})
			t.Run("pod-to-pod", func(t *testing.T) { allPairs(t, st) })
			t.Run("services", func(t *testing.T) {
				for _, n := range st.Nodes {
					a, b := n.Pods[0], n.Pods[1]
					line, err := Call(ctx, a.Namespace, LocalVIP(n.Index).String(), 2*time.Second, false)
					if err != nil || !strings.HasPrefix(line, b.Name+" "+a.IP+":") {
						t.Errorf("%s -> %s: %q, %v; want an answer from %s", a.Name, LocalVIP(n.Index), line, err, b.Name)
					}
				}
				if line, err := Call(ctx, st.Nodes[0].Pods[0].Namespace, WebVIP.String(), 2*time.Second, false); err != nil {
					t.Errorf("lab/web %s: %q, %v", WebVIP, line, err)
				}
			})
			t.Run("leases", func(t *testing.T) {
				ls := listLeases(t, st)
				for _, n := range st.Nodes {
					l, ok := ls[n.Name]
					if !ok {
						t.Errorf("no lease for %s", n.Name)
						continue
					}
					if l.Subnet.String() != n.Subnet || l.Attrs.PublicIP.String() != n.IP || l.Attrs.BackendType != be {
						t.Errorf("lease of %s: %s %+v; want %s from %s, %s", n.Name, l.Subnet, l.Attrs, n.Subnet, n.IP, be)
					}
					if be == BackendVXLAN && (l.Attrs.BackendData == nil || l.Attrs.BackendData.VtepMAC != n.VtepMAC || n.VtepMAC != backend.VtepMAC(NodeIP(n.Index))) {
						t.Errorf("lease of %s: VtepMAC %+v, state says %s", n.Name, l.Attrs.BackendData, n.VtepMAC)
					}
				}
			})
			t.Run("doctor", func(t *testing.T) {
				for _, n := range st.Nodes {
					out, err := labExec(t, st, n.Name, c.Self, "doctor")
					if err != nil || strings.Contains(out, "ERROR") || strings.Contains(out, "TW051") {
						t.Errorf("twill doctor on %s (via lab exec): %v\n%s", n.Name, err, out)
					}
				}
			})
			t.Run("masquerade-is-the-agents", func(t *testing.T) {
				for _, n := range st.Nodes {
					nft, err := runIn(ctx, n.Namespace, "", "nft", "-s", "list", "ruleset")
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(nft, "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade") {
						t.Errorf("%s: no masquerade by the agent in nft:\n%s", n.Name, nft)
					}
					if nat := iptSave(t, &n, "iptables-nft-save", "nat"); strings.Contains(nat, "-j MASQUERADE\n") && strings.Contains(nat, "-A POSTROUTING -s 10.244.0.0/16") {
						t.Errorf("%s: the lab added its own masquerade in agent mode:\n%s", n.Name, nat)
					}
				}
			})
			t.Run("status", func(t *testing.T) {
				r, err := Status(ctx, st.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Healthy || r.Mode != ModeAgent {
					t.Errorf("status: healthy=%v mode=%s problems=%v", r.Healthy, r.Mode, r.Problems)
				}
				for _, n := range r.Nodes {
					if n.Agent == nil || !n.Agent.Alive || !n.Agent.Ready {
						t.Errorf("status of %s: agent %+v", n.Name, n.Agent)
					}
				}
			})
			if be != BackendVXLAN {
				return
			}
			n1, n2 := &st.Nodes[0], &st.Nodes[1]
			t.Run("agent-kill-start-keeps-stream", func(t *testing.T) {
				before := ownRules(t, n2)
				res := make(chan StreamResult, 1)
				go func() {
					res <- Stream(ctx, n1.Pods[0].Namespace, fmt.Sprintf("%s:%d", n2.Pods[0].IP, EchoPort), 5*time.Second, 20*time.Millisecond)
				}()
				time.Sleep(500 * time.Millisecond)
				if err := AgentControl(ctx, st.Name, n2.Name, AgentKill, testWriter{t}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond)
				if err := AgentControl(ctx, st.Name, n2.Name, AgentStart, testWriter{t}); err != nil {
					t.Fatal(err)
				}
				r := <-res
				t.Logf("stream: %s", r)
				if !r.OK() || r.RoundTrips < 20 {
					t.Errorf("stream across an agent kill -9 and restart: %s", r)
				}
				if l := listLeases(t, st)[n2.Name]; l.Subnet.String() != n2.Subnet {
					t.Errorf("after restart node2 holds %s, want its old %s", l.Subnet, n2.Subnet)
				}
				time.Sleep(2500 * time.Millisecond) // a resync after start: nothing may be added twice
				if after := ownRules(t, n2); after != before {
					t.Errorf("node2's rules changed across the restart:\n%s", diff(before, after))
				}
				reloaded, err := Load(st.Name)
				if err != nil {
					t.Fatal(err)
				}
				*st = *reloaded
			})
			t.Run("etcd-stop-start", func(t *testing.T) {
				if err := EtcdControl(ctx, st.Name, EtcdStop, testWriter{t}); err != nil {
					t.Fatal(err)
				}
				down := time.Now()
				for time.Since(down) < 5*time.Second { // a few resyncs with etcd gone
					wantCall(t, n1.Pods[0], fmt.Sprintf("%s:%d", st.Nodes[2].Pods[1].IP, ServerPort), true)
					time.Sleep(500 * time.Millisecond)
				}
				if err := EtcdControl(ctx, st.Name, EtcdStart, testWriter{t}); err != nil {
					t.Fatal(err)
				}
				reloaded, err := Load(st.Name)
				if err != nil {
					t.Fatal(err)
				}
				*st = *reloaded
				if err := WaitAgentsReady(ctx, st, 30*time.Second, testWriter{t}); err != nil {
					t.Fatalf("agents after etcd came back: %v", err)
				}
				for _, n := range st.Nodes {
					if err := AgentReady(ctx, &n); err != nil {
						t.Error(err)
					}
				}
				allPairs(t, st)
			})
			t.Run("agent-commands", func(t *testing.T) {
				n3 := &st.Nodes[2]
				for _, step := range []struct {
					action string
					paused bool
					alive  bool
				}{{AgentPause, true, true}, {AgentResume, false, true}, {AgentStop, false, false}, {AgentRestart, false, true}} {
					if err := AgentControl(ctx, st.Name, n3.Name, step.action, testWriter{t}); err != nil {
						t.Fatalf("%s: %v", step.action, err)
					}
					reloaded, _ := Load(st.Name)
					a := reloaded.Nodes[2].Agent
					if a.Alive() != step.alive || a.Paused() != step.paused {
						t.Errorf("after %s: alive=%v paused=%v, want %v %v", step.action, a.Alive(), a.Paused(), step.alive, step.paused)
					}
				}
				if err := AgentControl(ctx, st.Name, n3.Name, "jump", nil); err == nil || !strings.Contains(err.Error(), "restart") {
					t.Errorf("unknown action: %v, want the list of actions", err)
				}
			})
		})
	}
}

// allPairs calls every pod from every pod and checks the answer names the
// callee and shows the caller's own address (no NAT between pods).
func allPairs(t *testing.T, st *State) {
	t.Helper()
	for _, from := range allPods(st) {
		for _, to := range allPods(st) {
			target := fmt.Sprintf("%s:%d", to.IP, ServerPort)
			line, err := Call(context.Background(), from.Namespace, target, 2*time.Second, false)
			if err != nil {
				// One second try: a loaded machine can stall a single call
				// for 2 s; a broken path fails both.
				time.Sleep(500 * time.Millisecond)
				line, err = Call(context.Background(), from.Namespace, target, 3*time.Second, false)
			}
			if err != nil {
				t.Errorf("%s -> %s: %v", from.Name, to.Name, err)
				continue
			}
			if !strings.HasPrefix(line, to.Name+" "+from.IP+":") {
				t.Errorf("%s -> %s answered %q, want %q", from.Name, to.Name, line, to.Name+" "+from.IP+":<port>")
			}
		}
	}
}

// listLeases reads the leases in the lab's etcd, by node name.
func listLeases(t *testing.T, st *State) map[string]lease.Lease {
	t.Helper()
	var ls []lease.Lease
	withEtcd(t, st, func(ctx context.Context, c *clientv3.Client) (err error) {
		ls, err = leaseetcd.List(ctx, c, lease.DefaultPrefix)
		return err
	})
	out := map[string]lease.Lease{}
	for _, l := range ls {
		out[l.Attrs.Node] = l
	}
	return out
}

// labExec runs `twill lab exec --name <lab> NODE -- argv...` with the real
// binary and returns its combined output.
func labExec(t *testing.T, st *State, node string, twill string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"lab", "exec", "--name", st.Name, node, "--", twill}, argv...)
	out, err := exec.CommandContext(ctx, twill, args...).CombinedOutput()
	return string(out), err
}

// ownRules is a node's firewall as text: twill's nft table (stateless) and
// the iptables-nft dump without counters, so duplicates would show.
func ownRules(t *testing.T, n *Node) string {
	t.Helper()
	nft, err := runIn(context.Background(), n.Namespace, "", "nft", "-s", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return nft + iptSave(t, n, "iptables-nft-save", "filter") + iptSave(t, n, "iptables-nft-save", "nat")
}

// ifaceExists tells whether namespace ns has a link named name.
func ifaceExists(t *testing.T, ns, name string) bool {
	t.Helper()
	_, err := runIn(context.Background(), ns, "", "ip", "link", "show", "dev", name)
	return err == nil
}
