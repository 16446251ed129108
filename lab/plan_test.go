package lab

import (
	"net/netip"
	"strings"
	"testing"
)

// Pure logic: no root needed.

func TestPlanNamesAndAddresses(t *testing.T) {
	c := Config{Name: "twill-e2e-abcd", Nodes: MaxNodes, Pods: MaxPods, Backend: BackendVXLAN}.withDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	st := plan(c)
	re := labNSPattern(c.Name)
	seen := map[string]bool{}
	check := func(ns string) {
		if !re.MatchString(ns) {
			t.Errorf("namespace %q would not be removed by `lab down` (pattern %s)", ns, re)
		}
		if seen[ns] {
			t.Errorf("namespace %q planned twice", ns)
		}
		seen[ns] = true
	}
	check(st.Underlay)
	for _, n := range st.Nodes {
		check(n.Namespace)
		if !strings.HasPrefix(n.Namespace, c.Name+"-") {
			t.Errorf("node namespace %q lacks the lab prefix", n.Namespace)
		}
		for _, name := range []string{underlayPort(n.Index), nodeUplink, podBridge, vxlanDev} {
			if len(name) > 15 {
				t.Errorf("interface name %q is longer than 15 characters", name)
			}
		}
		for _, p := range n.Pods {
			check(p.Namespace)
			if len(p.HostVeth) > 15 {
				t.Errorf("interface name %q is longer than 15 characters", p.HostVeth)
			}
		}
	}
	last := st.Nodes[len(st.Nodes)-1]
	if last.IP != "192.168.77.30" || last.Subnet != "10.244.20.0/24" || last.VtepMAC != "02:77:00:00:00:14" {
		t.Errorf("node %d: ip %s subnet %s mac %s", last.Index, last.IP, last.Subnet, last.VtepMAC)
	}
	if p := last.Pods[MaxPods-1]; p.Name != "node20-j" || p.IP != "10.244.20.19" || p.HostVeth != "veth20j" {
		t.Errorf("last pod: %+v", p)
	}
	if st.Nodes[0].Root != "/run/twill-lab/twill-e2e-abcd/nodes/node1/root" {
		t.Errorf("node root %s", st.Nodes[0].Root)
	}
}

func TestLabPatternIsNarrow(t *testing.T) {
	re := labNSPattern("twill")
	for ns, want := range map[string]bool{
		"twill-underlay": true, "twill-node1": true, "twill-node12-b": true,
		"twill-e2e-x-node1": false, "twill-t-capture-1": false, "twillx-node1": false,
		"twill-node1-ab": false, "twill-node": false, "other-node1": false,
	} {
		if got := re.MatchString(ns); got != want {
			t.Errorf("lab twill matches %q = %v, want %v", ns, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{
		{Name: "Bad_Name"}, {Name: "-x"}, {Name: strings.Repeat("a", 40)},
		{Nodes: MaxNodes + 1}, {Pods: -1}, {Backend: "ipip"},
		{Backend: BackendHostGW, DirectRouting: true, Agent: true}, // a vxlan option
		{DirectRouting: true}, // static: no agent to program it
	} {
		if err := c.withDefaults().Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if err := (Config{}).withDefaults().Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
	if err := (Config{DirectRouting: true, Agent: true}).withDefaults().Validate(); err != nil {
		t.Errorf("vxlan DirectRouting in agent mode rejected: %v", err)
	}
}

func TestLookupScenario(t *testing.T) {
	for name, want := range map[string]string{"f1": "F1", "bridge-nf": "F1", "IP-FORWARD": "F2", "forward-drop": "F3", "no-dnat": "F5a", "F6-mtu": "F6-mtu"} {
		s, err := LookupScenario(name)
		if err != nil || s.ID != want {
			t.Errorf("LookupScenario(%q) = %q, %v; want %s", name, s.ID, err, want)
		}
	}
	if _, err := LookupScenario("F9"); err == nil {
		t.Error("F9 found")
	}
	for _, s := range Scenarios() {
		if s.Check == "" || s.Section == "" || s.Summary == "" || s.apply == nil || s.undo == nil {
			t.Errorf("scenario %s incomplete", s.ID)
		}
	}
}

func TestCorruptRules(t *testing.T) {
	in := strings.Join([]string{
		`-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
		`-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP`,
		`-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT`,
		`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`,
	}, "\n")
	out, n := corruptRules(in)
	want := strings.Join([]string{
		`-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
		`-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -j DROP`,
		`-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -j ACCEPT`,
		`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`,
	}, "\n")
	if n != 2 || out != want {
		t.Errorf("corruptRules changed %d rules:\n%s\nwant 2:\n%s", n, out, want)
	}
}

func TestDropServiceRule(t *testing.T) {
	in := "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -j KUBE-SVC-A\n-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -j KUBE-SVC-B\n-A KUBE-SVC-A -d 10.96.0.1/32 -j KUBE-MARK-MASQ"
	out, n := dropServiceRule(in, netip.MustParseAddr("10.96.0.1"))
	if n != 1 || out != "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -j KUBE-SVC-B\n-A KUBE-SVC-A -d 10.96.0.1/32 -j KUBE-MARK-MASQ" {
		t.Errorf("dropServiceRule removed %d:\n%s", n, out)
	}
	in6 := "-A KUBE-SERVICES -d fd00:96::1/128 -p tcp -j KUBE-SVC-A\n-A KUBE-SERVICES -d fd00:96::10/128 -p tcp -j KUBE-SVC-B"
	if out, n := dropServiceRule(in6, netip.MustParseAddr("fd00:96::1")); n != 1 || out != "-A KUBE-SERVICES -d fd00:96::10/128 -p tcp -j KUBE-SVC-B" {
		t.Errorf("dropServiceRule (IPv6) removed %d:\n%s", n, out)
	}
}

func TestPlanAgentMode(t *testing.T) {
	c := Config{Name: "twill-x", Nodes: 2, Pods: 2, Agent: true, Self: "/usr/bin/twill"}.withDefaults()
	st := plan(c)
	if st.Mode != ModeAgent || !st.AgentMode() {
		t.Fatalf("mode %q", st.Mode)
	}
	n := st.Nodes[1]
	if n.VtepMAC != "0e:74:c0:a8:4d:0c" { // backend.VtepMAC(192.168.77.12): what the agent publishes
		t.Errorf("node2 VTEP MAC %s", n.VtepMAC)
	}
	want := "/usr/bin/twill agent --node node2 --root /run/twill-lab/twill-x/nodes/node2/root --etcd-endpoints http://192.168.77.1:2379 --etcd-prefix /twill.io/network --iface eth0 --resync 2s --health-addr 127.0.0.1:9473 --etcd-ttl 5m0s"
	if got := strings.Join(n.Agent.Argv, " "); got != want {
		t.Errorf("agent argv:\n%s\nwant\n%s", got, want)
	}
	if p := n.Pods[0]; p.IP != "" || !strings.HasPrefix(p.HostVeth, "veth") || len(p.HostVeth) > 15 {
		t.Errorf("pod before CNI ADD: %+v (no address yet; the plugin's veth name)", p)
	}
	if plan(Config{Name: "twill-x", Nodes: 1, Pods: 1}.withDefaults()).Mode != ModeStatic {
		t.Error("the library default must stay static")
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP twill_repairs_total x\ntwill_repairs_total{kind=\"fdb\"} 2\ntwill_repairs_total{kind=\"sysctl\"} 3\ntwill_ready 1\n"
	if v, ok := MetricValue(text, `twill_repairs_total{kind="sysctl"}`); !ok || v != 3 {
		t.Errorf("sysctl = %v, %v", v, ok)
	}
	if v, ok := MetricValue(text, `twill_repairs_total{kind="route"}`); ok || v != 0 {
		t.Errorf("absent route = %v, %v", v, ok)
	}
}

func TestFindCNIErrors(t *testing.T) {
	if _, err := FindCNI("/nonexistent/twill-cni"); err == nil || !strings.Contains(err.Error(), "/nonexistent/twill-cni") || !strings.Contains(err.Error(), "--cni-bin") {
		t.Errorf("missing explicit plugin: %v", err)
	}
	t.Setenv("TWILL_CNI_BIN", "/nonexistent/env-cni")
	if _, err := FindCNI(""); err == nil || !strings.Contains(err.Error(), "TWILL_CNI_BIN") {
		t.Errorf("missing plugin from the environment: %v", err)
	}
}
