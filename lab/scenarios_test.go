package lab

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestScenarios breaks and fixes every scenario on one shared lab per mode
// (static, and agent mode with real agents, where break must pause node1's
// agent so the failure stays and fix must resume it). For each it asserts
// the specific kernel state that changed, that no other node changed, that
// fix restores node1 exactly (sysctls, routes, permanent neighbours, FDB,
// MTUs, both iptables backends, twill's nft table), and the traffic effect
// where it is the point of the scenario.
func TestScenarios(t *testing.T) {
	needRoot(t)
	t.Run("static", func(t *testing.T) { testScenarios(t, testConfig(t, BackendVXLAN, 2, 2)) })
	t.Run("agent", func(t *testing.T) { testScenarios(t, agentConfig(t, BackendVXLAN, 2, 2)) })
}

func testScenarios(t *testing.T, c Config) {
	st := upLab(t, c)
	ctx := context.Background()
	n1, n2 := &st.Nodes[0], &st.Nodes[1]
	healthy := map[string]string{n1.Name: fingerprint(t, st, n1), n2.Name: fingerprint(t, st, n2)}
	local := LocalVIP(1).String()
	cross := fmt.Sprintf("%s:%d", n1.Pods[0].IP, ServerPort) // node2-a -> node1-a

	cases := []struct {
		id      string
		broken  func(t *testing.T) // asserts the state after break
		traffic func(t *testing.T, broken bool)
	}{
		{"F1", func(t *testing.T) { wantSysctl(t, n1, SysctlBridgeNF, "0") }, func(t *testing.T, broken bool) {
			wantCall(t, n1.Pods[0], local, !broken)
			wantCall(t, n1.Pods[0], fmt.Sprintf("%s:%d", n1.Pods[1].IP, ServerPort), true) // direct pod call unaffected
		}},
		{"F2", func(t *testing.T) { wantSysctl(t, n1, SysctlIPForward, "0") }, func(t *testing.T, broken bool) {
			wantCall(t, n2.Pods[0], cross, !broken)
		}},
		{"F3", func(t *testing.T) {
			save := iptSave(t, n1, "iptables-nft-save", "filter")
			for _, want := range []string{":FORWARD DROP", ":DOCKER-USER", ":DOCKER-ISOLATION-STAGE-1", ":DOCKER-ISOLATION-STAGE-2", ":DOCKER ",
				"-A DOCKER-USER -j RETURN"} {
				if !strings.Contains(save, want) {
					t.Errorf("after F3, node1 filter table lacks %q:\n%s", want, save)
				}
			}
			if fwd := ruleLines(save, "-A FORWARD "); len(fwd) < 2 || fwd[0] != "-A FORWARD -j DOCKER-USER" || fwd[1] != "-A FORWARD -j DOCKER-ISOLATION-STAGE-1" {
				t.Errorf("after F3, FORWARD should start with DOCKER-USER, DOCKER-ISOLATION-STAGE-1: %q", fwd)
			}
		}, func(t *testing.T, broken bool) { wantCall(t, n2.Pods[0], cross, !broken) }},
		{"F4-split", func(t *testing.T) {
			if rules := ruleLines(iptSave(t, n1, "iptables-legacy-save", "filter"), "-A "); len(rules) == 0 {
				t.Error("after F4-split, the legacy backend holds no rules")
			}
			if rules := ruleLines(iptSave(t, n1, "iptables-nft-save", "filter"), "-A KUBE-FORWARD"); len(rules) == 0 {
				t.Error("after F4-split, the nft backend lost its rules")
			}
		}, nil},
		{"F4-corrupt", func(t *testing.T) {
			save := iptSave(t, n1, "iptables-nft-save", "filter")
			for _, want := range []string{
				`-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -j DROP`,
				`-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -j ACCEPT`,
			} {
				if !strings.Contains(save, want+"\n") {
					t.Errorf("after F4-corrupt, node1 lacks %q:\n%s", want, save)
				}
			}
		}, nil},
		{"F5a", func(t *testing.T) {
			nat := iptSave(t, n1, "iptables-nft-save", "nat")
			if strings.Contains(nat, "-A KUBE-SERVICES -d 10.96.0.1/32") {
				t.Errorf("after F5a, KUBE-SERVICES still translates 10.96.0.1")
			}
			if !strings.Contains(nat, "-A KUBE-SERVICES -d 10.96.0.10/32") {
				t.Errorf("F5a removed other Services too")
			}
		}, nil},
		{"F6-fdb", func(t *testing.T) {
			if strings.Contains(fdbOf(t, n1), n2.VtepMAC) {
				t.Errorf("after F6-fdb, node1 still has an FDB entry for %s", n2.VtepMAC)
			}
		}, func(t *testing.T, broken bool) {
			wantCall(t, n1.Pods[0], fmt.Sprintf("%s:%d", n2.Pods[0].IP, ServerPort), !broken)
		}},
		{"F6-neigh", func(t *testing.T) {
			if got := neighOf(t, n1); !strings.Contains(got, "10.244.2.0 "+StaleMAC(2)) {
				t.Errorf("after F6-neigh, node1 neighbours = %q, want 10.244.2.0 at %s", got, StaleMAC(2))
			}
		}, func(t *testing.T, broken bool) {
			wantCall(t, n1.Pods[0], fmt.Sprintf("%s:%d", n2.Pods[0].IP, ServerPort), !broken)
		}},
		{"F6-route", func(t *testing.T) {
			if strings.Contains(routesOf(t, n1), "10.244.2.0/24") {
				t.Error("after F6-route, node1 still routes 10.244.2.0/24")
			}
		}, func(t *testing.T, broken bool) {
			wantCall(t, n1.Pods[0], fmt.Sprintf("%s:%d", n2.Pods[0].IP, ServerPort), !broken)
		}},
		{"F6-mtu", func(t *testing.T) {
			got := mtusOf(t, n1)
			for _, want := range []string{"cni0=1500", "twill.1=1450", n1.Pods[0].HostVeth + "=1500", n1.Pods[1].HostVeth + "=1500", "node1-a/eth0=1500", "node1-b/eth0=1500"} {
				if !strings.Contains(got, want) {
					t.Errorf("after F6-mtu, node1 MTUs %q lack %s", got, want)
				}
			}
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			var out strings.Builder
			if _, err := Break(ctx, st.Name, c.id, n1.Name, &out); err != nil {
				t.Fatalf("break: %v", err)
			}
			if got := recorded(t, st.Name); got != c.id+"@node1" {
				t.Errorf("state.json scenarios after break = %q, want %s@node1", got, c.id)
			}
			if st.AgentMode() {
				if !n1.Agent.Paused() || !strings.Contains(out.String(), "Paused node1's agent") {
					t.Errorf("break in agent mode: node1's agent paused=%v; output:\n%s", n1.Agent.Paused(), out.String())
				}
				time.Sleep(2500 * time.Millisecond) // more than a resync: the failure must stay
			}
			c.broken(t)
			if fingerprint(t, st, n1) == healthy[n1.Name] {
				t.Errorf("break %s did not change node1's state", c.id)
			}
			if got := fingerprint(t, st, n2); got != healthy[n2.Name] {
				t.Errorf("break %s on node1 changed node2:\n%s", c.id, diff(healthy[n2.Name], got))
			}
			if c.traffic != nil {
				c.traffic(t, true)
			}
			for i := 0; i < 2; i++ { // fix is idempotent
				if err := Fix(ctx, st.Name, c.id, n1.Name, nil); err != nil {
					t.Fatalf("fix #%d: %v", i+1, err)
				}
			}
			if st.AgentMode() && (n1.Agent.Paused() || !n1.Agent.Alive()) {
				t.Errorf("after fix, node1's agent paused=%v alive=%v; want it running", n1.Agent.Paused(), n1.Agent.Alive())
			}
			if got := fingerprint(t, st, n1); got != healthy[n1.Name] {
				t.Errorf("fix %s did not restore node1:\n%s", c.id, diff(healthy[n1.Name], got))
			}
			if got := recorded(t, st.Name); got != "" {
				t.Errorf("state.json scenarios after fix = %q, want none", got)
			}
			if c.traffic != nil {
				c.traffic(t, false)
			}
		})
	}

	t.Run("fix-keeps-other-iptables-scenarios", func(t *testing.T) {
		for _, id := range []string{"F3", "F5a"} {
			if _, err := Break(ctx, st.Name, id, n1.Name, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := Fix(ctx, st.Name, "F3", n1.Name, nil); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(iptSave(t, n1, "iptables-nft-save", "nat"), "-A KUBE-SERVICES -d 10.96.0.1/32") {
			t.Error("fixing F3 silently undid F5a, which is still recorded")
		}
		if strings.Contains(iptSave(t, n1, "iptables-nft-save", "filter"), ":FORWARD DROP") {
			t.Error("F3 not fixed")
		}
		if err := Fix(ctx, st.Name, "F5a", n1.Name, nil); err != nil {
			t.Fatal(err)
		}
		if got := fingerprint(t, st, n1); got != healthy[n1.Name] {
			t.Errorf("node1 not healthy after fixing both:\n%s", diff(healthy[n1.Name], got))
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := Break(ctx, st.Name, "F9", n1.Name, nil); err == nil || !strings.Contains(err.Error(), "F6-mtu") {
			t.Errorf("unknown scenario: %v, want the list of scenarios", err)
		}
		if _, err := Break(ctx, st.Name, "F1", "node7", nil); err == nil || !strings.Contains(err.Error(), "node7") {
			t.Errorf("unknown node: %v", err)
		}
		if _, err := Break(ctx, st.Name, "bridge-nf", "node1-a", nil); err == nil || !strings.Contains(err.Error(), "not a node") {
			t.Errorf("pod as node: %v", err)
		}
	})
}

// wantCall asserts a call from pod to addr succeeds (ok) or fails.
func wantCall(t *testing.T, from Pod, addr string, ok bool) {
	t.Helper()
	line, err := Call(context.Background(), from.Namespace, addr, 1500*time.Millisecond, false)
	if ok && err != nil {
		t.Errorf("%s -> %s should work: %v", from.Name, addr, err)
	}
	if !ok && err == nil {
		t.Errorf("%s -> %s should fail, answered %q", from.Name, addr, line)
	}
}

func wantSysctl(t *testing.T, n *Node, key, want string) {
	t.Helper()
	got, err := GetSysctl(n.Namespace, key)
	if err != nil || got != want {
		t.Errorf("%s %s = %q (%v), want %q", n.Name, key, got, err, want)
	}
}

// recorded lists the applied scenarios in state.json as "ID@node,...".
func recorded(t *testing.T, name string) string {
	t.Helper()
	st, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range st.Scenarios {
		out = append(out, a.Scenario+"@"+a.Node)
	}
	return strings.Join(out, ",")
}

var counters = regexp.MustCompile(` \[\d+:\d+\]`)

// iptSave dumps one table of one backend without counters and comments.
func iptSave(t *testing.T, n *Node, bin, table string) string {
	t.Helper()
	out, err := runIn(context.Background(), n.Namespace, "", bin, "-t", table)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, counters.ReplaceAllString(l, ""))
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

func ruleLines(save, prefix string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// fingerprint is node n's state that scenarios touch, as sorted text.
func fingerprint(t *testing.T, st *State, n *Node) string {
	t.Helper()
	var b strings.Builder
	for _, k := range []string{SysctlIPForward, SysctlBridgeNF} {
		v, err := GetSysctl(n.Namespace, k)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "sysctl %s=%s\n", k, v)
	}
	b.WriteString(routesOf(t, n) + neighOf(t, n) + fdbOf(t, n) + mtusOf(t, n))
	if st.AgentMode() {
		nft, err := runIn(context.Background(), n.Namespace, "", "nft", "-s", "list", "table", "inet", "twill")
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(nft)
	}
	for _, table := range []string{"filter", "nat"} {
		b.WriteString(iptSave(t, n, "iptables-nft-save", table))
		// Legacy: rules and non-default policies only (an emptied legacy table stays registered).
		for _, l := range strings.Split(iptSave(t, n, "iptables-legacy-save", table), "\n") {
			if strings.HasPrefix(l, "-A ") || strings.Contains(l, " DROP") {
				b.WriteString("legacy " + l + "\n")
			}
		}
	}
	return b.String()
}

func routesOf(t *testing.T, n *Node) string {
	t.Helper()
	var out []string
	err := withHandle(n.Namespace, func(h *netlink.Handle) error {
		rs, err := h.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range rs {
			l, _ := h.LinkByIndex(r.LinkIndex)
			out = append(out, fmt.Sprintf("route %s via %s dev %s flags %d", r.Dst, r.Gw, l.Attrs().Name, r.Flags))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

func neighOf(t *testing.T, n *Node) string {
	t.Helper()
	var out []string
	err := withHandle(n.Namespace, func(h *netlink.Handle) error {
		ns, err := h.NeighList(0, unix.AF_INET)
		for _, e := range ns {
			if e.State&netlink.NUD_PERMANENT != 0 {
				out = append(out, fmt.Sprintf("neigh %s %s", e.IP, e.HardwareAddr))
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

func fdbOf(t *testing.T, n *Node) string {
	t.Helper()
	var out []string
	err := withHandle(n.Namespace, func(h *netlink.Handle) error {
		vx, err := h.LinkByName(vxlanDev)
		if err != nil {
			return err
		}
		ns, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		for _, e := range ns {
			out = append(out, fmt.Sprintf("fdb %s dst %s state %d", e.HardwareAddr, e.IP, e.State))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

func mtusOf(t *testing.T, n *Node) string {
	t.Helper()
	var out []string
	err := withHandle(n.Namespace, func(h *netlink.Handle) error {
		ls, err := h.LinkList()
		for _, l := range ls {
			out = append(out, fmt.Sprintf("%s=%d", l.Attrs().Name, l.Attrs().MTU))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range n.Pods {
		err := withHandle(p.Namespace, func(h *netlink.Handle) error {
			l, err := h.LinkByName(podIface)
			if err == nil {
				out = append(out, fmt.Sprintf("%s/eth0=%d", p.Name, l.Attrs().MTU))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(out)
	return "mtu " + strings.Join(out, " ") + "\n"
}

// diff shows the lines only in a or only in b.
func diff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
