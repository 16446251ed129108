package doctor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/nodestate"
)

const dockerForward = `:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
`

// withDockerForward turns a filter table into what Docker leaves behind:
// FORWARD policy DROP and its chains before kube-proxy's.
func withDockerForward(save string) string {
	save = strings.Replace(save, ":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]", 1)
	return strings.Replace(save, ":KUBE-EXTERNAL-SERVICES - [0:0]\n", ":KUBE-EXTERNAL-SERVICES - [0:0]\n"+dockerForward, 1)
}

func TestChecks(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name   string
		mutate func(s *nodestate.Snapshot, cfg *Config)
		want   []string
	}{
		{"healthy", func(*nodestate.Snapshot, *Config) {}, nil},
		{"F2 ip_forward off", func(s *nodestate.Snapshot, _ *Config) { s.Sysctls["net.ipv4.ip_forward"] = "0" }, []string{"TW001"}},
		{"F1 bridge-nf-call-iptables off", func(s *nodestate.Snapshot, _ *Config) { s.Sysctls["net.bridge.bridge-nf-call-iptables"] = "0" }, []string{"TW002"}},
		{"F1 br_netfilter not loaded", func(s *nodestate.Snapshot, _ *Config) {
			delete(s.Sysctls, "net.bridge.bridge-nf-call-iptables")
			delete(s.Sysctls, "net.bridge.bridge-nf-call-ip6tables")
		}, []string{"TW002", "TW003"}},
		{"F3 docker FORWARD DROP", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = withDockerForward(s.Iptables.NFT.Save)
		}, []string{"TW010"}},
		{"F3 docker FORWARD DROP but pod network accepted in DOCKER-USER", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = strings.Replace(withDockerForward(s.Iptables.NFT.Save), "-A DOCKER-USER -j RETURN", "-A DOCKER-USER -s 10.244.0.0/16 -j ACCEPT\n-A DOCKER-USER -d 10.244.0.0/16 -j ACCEPT\n-A DOCKER-USER -j RETURN", 1)
		}, nil},
		{"F3 explicit DROP rule", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n", "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n", 1)
		}, []string{"TW010"}},
		{"F3 nftables forward chain drop", func(s *nodestate.Snapshot, _ *Config) {
			s.Nftables.JSON = nftForwardDrop("")
		}, []string{"TW011"}},
		{"F3 nftables forward chain drop with pod accept", func(s *nodestate.Snapshot, _ *Config) {
			s.Nftables.JSON = nftForwardDrop(`,{"rule":{"family":"inet","table":"fw","chain":"forward","handle":3,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"accept":null}]}},{"rule":{"family":"inet","table":"fw","chain":"forward","handle":4,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"accept":null}]}}`)
		}, nil},
		{"F4 rules split across backends", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.Legacy.Save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -s 10.244.0.0/16 -j ACCEPT\nCOMMIT\n"
		}, []string{"TW020"}},
		{"F4 lost mark match", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, `-m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP`, `-m comment --comment "kubernetes firewall for dropping marked packets" -j DROP`, 1)
			s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, `-m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT`, `-m comment --comment "kubernetes forwarding rules" -j ACCEPT`, 1)
		}, []string{"TW021"}},
		{"F5a kubernetes Service not translated", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = dropLine(s.Iptables.NFT.Save, `-A KUBE-SERVICES -d 10.96.0.1/32`)
		}, []string{"TW030"}},
		{"F5a Service chain reaches no DNAT", func(s *nodestate.Snapshot, _ *Config) {
			s.Iptables.NFT.Save = dropLine(s.Iptables.NFT.Save, `-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp`)
		}, []string{"TW030"}},
		{"F5a nftables kube-proxy: service-ips has no element for the VIP, its Service chain still names it", func(s *nodestate.Snapshot, _ *Config) {
			s.Nftables.JSON = nftKubeProxy(false)
		}, []string{"TW030"}},
		{"F5a nftables kube-proxy: the VIP only in no-endpoint-services (no endpoints: rejected)", func(s *nodestate.Snapshot, _ *Config) {
			s.Nftables.JSON = strings.Replace(nftKubeProxy(false), `{"chain": {"family": "ip", "table": "kube-proxy", "name": "service-2QRHZV4L`,
				`{"map": {"family": "ip", "name": "no-endpoint-services", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 52, "map": "verdict", "elem": [[{"concat": ["10.96.0.1", "tcp", 443]}, {"goto": {"target": "reject-chain"}}]]}},
{"chain": {"family": "ip", "table": "kube-proxy", "name": "service-2QRHZV4L`, 1)
		}, []string{"TW030"}},
		{"F5a nftables kube-proxy translates the VIP", func(s *nodestate.Snapshot, _ *Config) {
			s.Nftables.JSON = nftKubeProxy(true)
		}, nil},
		{"F5b IPVS local address without virtual server", func(s *nodestate.Snapshot, _ *Config) {
			s.Links = append(s.Links, nodestate.Link{Index: 9, Name: "kube-ipvs0", Kind: "dummy", MTU: 1500})
			s.Routes = append(s.Routes, nodestate.Route{Table: 255, Type: "local", Dst: netip.MustParsePrefix("10.96.0.1/32"), Dev: "kube-ipvs0", Src: a("10.96.0.1")})
		}, []string{"TW032"}},
		{"F5b IPVS local address with virtual server", func(s *nodestate.Snapshot, _ *Config) {
			s.Links = append(s.Links, nodestate.Link{Index: 9, Name: "kube-ipvs0", Kind: "dummy", MTU: 1500})
			s.Routes = append(s.Routes, nodestate.Route{Table: 255, Type: "local", Dst: netip.MustParsePrefix("10.96.0.1/32"), Dev: "kube-ipvs0", Src: a("10.96.0.1")})
			s.IPVS = &nodestate.IPVS{Services: []nodestate.IPVSService{{Protocol: "TCP", Addr: netip.MustParseAddrPort("10.96.0.1:443"), Scheduler: "rr"}}}
		}, nil},
		{"F6 route missing", func(s *nodestate.Snapshot, _ *Config) { s.Routes = slices.Delete(s.Routes, 3, 4) }, []string{"TW040"}},
		{"F6 neighbour stale (leases known)", func(s *nodestate.Snapshot, _ *Config) { s.Neighbors[0].MAC = "02:77:00:00:00:99" }, []string{"TW041"}},
		{"F6 neighbour stale (no leases)", func(s *nodestate.Snapshot, _ *Config) {
			s.Neighbors[0].MAC = "02:77:00:00:00:99"
			s.Leases = nil
		}, []string{"TW041"}},
		{"F6 neighbour missing", func(s *nodestate.Snapshot, _ *Config) { s.Neighbors = s.Neighbors[1:] }, []string{"TW041"}},
		{"F6 FDB missing (leases known)", func(s *nodestate.Snapshot, _ *Config) { s.FDB = s.FDB[1:] }, []string{"TW042"}},
		{"F6 FDB missing (no leases)", func(s *nodestate.Snapshot, _ *Config) {
			s.FDB = s.FDB[1:]
			s.Leases = nil
		}, []string{"TW042"}},
		{"F6 FDB stale destination", func(s *nodestate.Snapshot, _ *Config) { s.FDB[0].Dst = a("192.168.77.99") }, []string{"TW042"}},
		{"F6 pod MTU too large", func(s *nodestate.Snapshot, _ *Config) { s.Links[4].MTU = 1500 }, []string{"TW043"}},
		{"F6 vxlan MTU too large", func(s *nodestate.Snapshot, _ *Config) { s.Links[3].MTU = 1500 }, []string{"TW044"}},
		{"F6 subnet file missing", func(s *nodestate.Snapshot, _ *Config) {
			s.Files.SubnetFiles[0] = nodestate.File{Path: "/run/twill/subnet.env"}
		}, []string{"TW050"}},
		{"F6 CNI plugin missing", func(s *nodestate.Snapshot, _ *Config) { s.Files.CNIPlugins = []string{"twill"} }, []string{"TW051"}},
		// A Flannel node as kube-flannel installs it: its plugin delegates to
		// bridge with host-local and reads /run/flannel/subnet.env.
		{"F6 Flannel's CNI setup complete", flannelCNI(nil), nil},
		{"F6 Flannel's delegate missing", flannelCNI(func(s *nodestate.Snapshot) { s.Files.CNIPlugins = []string{"flannel", "host-local", "portmap"} }), []string{"TW051"}},
		{"F6 Flannel's IPAM missing", flannelCNI(func(s *nodestate.Snapshot) { s.Files.CNIPlugins = []string{"bridge", "flannel", "portmap"} }), []string{"TW051"}},
		{"F6 Flannel's plugin missing", flannelCNI(func(s *nodestate.Snapshot) { s.Files.CNIPlugins = []string{"bridge", "host-local", "portmap"} }), []string{"TW051"}},
		{"F6 Flannel's subnet file missing", flannelCNI(func(s *nodestate.Snapshot) { s.Files.SubnetFiles[1].Exists = false }), []string{"TW051"}},
		{"F6 Flannel's subnet file incomplete", flannelCNI(func(s *nodestate.Snapshot) {
			s.Files.SubnetFiles[1].Content = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
		}), []string{"TW051"}},
		{"F7 rp_filter strict", func(s *nodestate.Snapshot, _ *Config) { s.Sysctls["net.ipv4.conf.all.rp_filter"] = "1" }, []string{"TW060"}},
		{"F7 conntrack nearly full", func(s *nodestate.Snapshot, _ *Config) { s.Conntrack.Count = 250000 }, []string{"TW061"}},
		{"F7 pod network overlaps Services", func(s *nodestate.Snapshot, cfg *Config) {
			cfg.ServiceCIDR = netip.MustParsePrefix("10.244.128.0/17")
			cfg.KubernetesServiceIP = a("10.96.0.1")
		}, []string{"TW062"}},
		{"ignored finding", func(s *nodestate.Snapshot, cfg *Config) {
			s.Sysctls["net.ipv4.ip_forward"] = "0"
			cfg.Ignore = []string{"TW001"}
		}, nil},
	}
	// Checks expected to report "not checked" in some cases.
	skips := map[string][]string{
		"F6 neighbour stale (no leases)": {"TW040"},
		"F6 FDB missing (no leases)":     {"TW040"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := healthyNode(t)
			var cfg Config
			c.mutate(s, &cfg)
			r := Run(s, cfg)
			if got := r.IDs(); !slices.Equal(got, c.want) {
				for _, f := range r.Findings {
					t.Logf("%s", f.Headline())
					for _, ev := range f.Evidence {
						t.Logf("    %s", ev)
					}
				}
				t.Fatalf("finding IDs = %v, want %v", got, c.want)
			}
			var skipped []string
			for _, n := range r.NotChecked {
				skipped = append(skipped, n.ID)
			}
			if !slices.Equal(skipped, skips[c.name]) {
				t.Fatalf("not checked = %+v, want %v", r.NotChecked, skips[c.name])
			}
			for _, f := range r.Findings {
				if f.Title == "" || f.Explanation == "" || f.Fix == "" || len(f.Evidence) == 0 {
					t.Errorf("%s: incomplete finding: %+v", f.ID, f)
				}
			}
		})
	}
}

func dropLine(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func nftForwardDrop(extraRules string) string {
	return `{"nftables":[{"metainfo":{"version":"1.0.6","json_schema_version":1}},` +
		`{"table":{"family":"inet","name":"fw","handle":1}},` +
		`{"chain":{"family":"inet","table":"fw","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},` +
		`{"rule":{"family":"inet","table":"fw","chain":"forward","handle":2,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}}` +
		extraRules + `]}`
}

func TestSysctlFindingReadsLikeKubeadm(t *testing.T) {
	s := healthyNode(t)
	s.Sysctls["net.bridge.bridge-nf-call-iptables"] = "0"
	r := Run(s, Config{})
	want := "[ERROR TW002 bridge-nf-call-iptables]: /proc/sys/net/bridge/bridge-nf-call-iptables contents are not set to 1"
	if len(r.Findings) != 1 || r.Findings[0].Headline() != want {
		t.Fatalf("got %v, want headline %q", r.Findings, want)
	}
	acts := r.Findings[0].Actions
	if len(acts) != 1 || acts[0].Kind != ActSysctl || acts[0].Name != "net.bridge.bridge-nf-call-iptables" || acts[0].Value != "1" {
		t.Fatalf("fix actions = %+v", acts)
	}
}

func TestForwardFixGoesWhereTheDropIs(t *testing.T) {
	// Docker's drop in the nft backend: the accept goes to DOCKER-USER there.
	s := healthyNode(t)
	s.Iptables.NFT.Save = withDockerForward(s.Iptables.NFT.Save)
	r := Run(s, Config{})
	if len(r.Findings) != 1 {
		t.Fatalf("findings: %v", r.IDs())
	}
	for _, act := range r.Findings[0].Actions {
		if act.Kind != ActForwardAccept || act.Placement == nil || *act.Placement != (firewall.Placement{Backend: "iptables-nft", Table: "filter", Chain: "DOCKER-USER"}) || act.Network.String() != "10.244.0.0/16" {
			t.Fatalf("action %+v: want an accept of 10.244.0.0/16 in iptables-nft filter/DOCKER-USER", act)
		}
	}
	// The same drop in the legacy backend (and kube-proxy in nft): the fix
	// goes to legacy, because an accept in nft does not override it.
	s = healthyNode(t)
	s.Iptables.Legacy.Save = withDockerForward("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\nCOMMIT\n")
	r = Run(s, Config{})
	if !slices.Equal(r.IDs(), []string{"TW010", "TW020"}) {
		t.Fatalf("findings: %v", r.IDs())
	}
	if act := r.Findings[0].Actions[0]; act.Placement == nil || act.Placement.Backend != "iptables-legacy" || act.Placement.Chain != "DOCKER-USER" {
		t.Fatalf("action %+v: want legacy DOCKER-USER", act)
	}
}

// Without a subnet file and --cluster-cidr the pod subnet comes from the
// pod bridge: same-node pod traffic is bridged through FORWARD
// (bridge-nf-call-iptables=1), so Docker's FORWARD DROP is still proven,
// and the evidence says what was assumed.
func TestForwardDropFromThePodBridgeAlone(t *testing.T) {
	s := healthyNode(t)
	s.Files.SubnetFiles = nil
	s.Iptables.NFT.Save = withDockerForward(s.Iptables.NFT.Save)
	r := Run(s, Config{})
	i := slices.IndexFunc(r.Findings, func(f Finding) bool { return f.ID == "TW010" })
	if i < 0 {
		t.Fatalf("findings %v, not checked %+v: want TW010", r.IDs(), r.NotChecked)
	}
	f := r.Findings[i]
	ev := strings.Join(f.Evidence, "\n")
	for _, want := range []string{
		"assumed: pod subnet 10.244.1.0/24 inferred from cni0; cluster CIDR unknown",
		"iptables-nft: tcp 10.244.1.2 -> 10.244.1.3:8080 (in cni0, out cni0, bridged veth1a -> veth1b, ctstate NEW) is dropped by filter/FORWARD policy DROP",
		"via FORWARD rule 1 -> DOCKER-USER",
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if len(f.Actions) != 1 || f.Actions[0].Network.String() != "10.244.1.0/24" || f.Actions[0].Placement.Chain != "DOCKER-USER" {
		t.Errorf("actions %+v: want the node's pod subnet accepted in DOCKER-USER", f.Actions)
	}
	if !strings.Contains(f.Fix, "--cluster-cidr") {
		t.Errorf("fix %q does not say how to accept the whole pod network", f.Fix)
	}
	// The same node without br_netfilter: bridged frames skip FORWARD and
	// nothing else can be probed without the cluster CIDR.
	delete(s.Sysctls, "net.bridge.bridge-nf-call-iptables")
	r = Run(s, Config{})
	if slices.Contains(r.IDs(), "TW010") {
		t.Errorf("TW010 without bridge-nf-call-iptables and without a cluster CIDR: %v", r.IDs())
	}
	if i := slices.IndexFunc(r.NotChecked, func(n NotChecked) bool { return n.ID == "TW010" }); i < 0 || !strings.Contains(r.NotChecked[i].Reason, "--cluster-cidr") {
		t.Errorf("not checked %+v: want TW010 with a reason naming --cluster-cidr", r.NotChecked)
	}
}

func TestWhatCouldNotBeChecked(t *testing.T) {
	s := healthyNode(t)
	s.Iptables.Legacy = nodestate.IptablesBackend{Err: "iptables-legacy-save not found in PATH: install the iptables package"}
	s.Iptables.NFT = nodestate.IptablesBackend{Err: "iptables-nft-save not found in PATH: install the iptables package"}
	s.Nftables = nodestate.Nftables{Err: "nft not found in PATH: install the nftables package"}
	r := Run(s, Config{})
	if len(r.Findings) != 0 {
		t.Fatalf("findings: %v", r.IDs())
	}
	var ids []string
	for _, n := range r.NotChecked {
		ids = append(ids, n.ID)
		if !strings.Contains(n.Reason, "not found") {
			t.Errorf("%s: reason %q does not say the tool is missing", n.ID, n.Reason)
		}
	}
	for _, id := range []string{"TW010", "TW011", "TW020", "TW021", "TW030", "TW031"} {
		if !slices.Contains(ids, id) {
			t.Errorf("%s missing from not-checked %v", id, ids)
		}
	}
}

func TestMalformedDumpIsNotCheckedWithLine(t *testing.T) {
	s := healthyNode(t)
	s.Iptables.NFT.Save = "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n"
	r := Run(s, Config{})
	found := false
	for _, n := range r.NotChecked {
		if n.ID == "TW010" && strings.Contains(n.Reason, "line 3") {
			found = true
		}
	}
	if !found {
		t.Fatalf("want TW010 not checked with the line of the error, got %+v", r.NotChecked)
	}
}

// iptables-legacy drops and iptables-nft rejects in FORWARD, both at
// priority 0: which one the packet meets first is the order the kernel
// registered the tables, which no snapshot records. TW020 says so, with
// both outcomes; TW010 names both places, each needing an accept.
func TestSplitBackendsOrderDependentOutcome(t *testing.T) {
	s := healthyNode(t)
	s.Iptables.Legacy.Save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 10.244.0.0/16 -j DROP\nCOMMIT\n"
	s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, ":FORWARD ACCEPT [0:0]\n", ":FORWARD ACCEPT [0:0]\n-A FORWARD -d 10.244.0.0/16 -j REJECT --reject-with icmp-port-unreachable\n", 1)
	r := Run(s, Config{})
	if !slices.Equal(r.IDs(), []string{"TW010", "TW020"}) {
		t.Fatalf("findings %v, want [TW010 TW020]", r.IDs())
	}
	var places []string
	for _, f := range r.Findings {
		if f.ID == "TW010" {
			places = append(places, f.Actions[0].Placement.String())
		}
	}
	slices.Sort(places)
	if !slices.Equal(places, []string{"iptables-legacy filter FORWARD", "iptables-nft filter FORWARD"}) {
		t.Errorf("TW010 places %v: want both backends' FORWARD", places)
	}
	ev := strings.Join(r.Findings[len(r.Findings)-1].Evidence, "\n")
	for _, want := range []string{
		"depends on the order the kernel registered the equal-priority hooks",
		"if node1 FORWARD (priority 0): iptables-legacy filter/FORWARD first, then iptables-nft filter/FORWARD: drop by iptables-legacy filter/FORWARD: filter/FORWARD rule 1: -A FORWARD -d 10.244.0.0/16 -j DROP",
		"if node1 FORWARD (priority 0): iptables-nft filter/FORWARD first, then iptables-legacy filter/FORWARD: reject by iptables-nft filter/FORWARD",
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("TW020 evidence lacks %q:\n%s", want, ev)
		}
	}
	// Only one backend drops: the accept in the other does not help,
	// whatever the order.
	s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, "-A FORWARD -d 10.244.0.0/16 -j REJECT --reject-with icmp-port-unreachable\n", "-A FORWARD -d 10.244.0.0/16 -j ACCEPT\n", 1)
	r = Run(s, Config{})
	ev = strings.Join(r.Findings[len(r.Findings)-1].Evidence, "\n")
	if want := "iptables-nft filter/FORWARD accepts, but iptables-legacy filter/FORWARD drops it whatever the order"; !strings.Contains(ev, want) {
		t.Errorf("TW020 evidence lacks %q:\n%s", want, ev)
	}
}

// flannelCNI returns a mutation that gives the node kube-flannel's CNI
// setup (its conflist, the flannel, bridge, host-local and portmap
// plugins, flanneld's subnet file) and then applies more.
func flannelCNI(more func(s *nodestate.Snapshot)) func(s *nodestate.Snapshot, _ *Config) {
	return func(s *nodestate.Snapshot, _ *Config) {
		s.Files.CNIConfigs = []nodestate.File{{Path: "/etc/cni/net.d/10-flannel.conflist", Exists: true,
			Content: `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`}}
		s.Files.CNIPlugins = []string{"bridge", "flannel", "host-local", "portmap"}
		s.Files.SubnetFiles[1] = nodestate.File{Path: "/run/flannel/subnet.env", Exists: true,
			Content: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"}
		if more != nil {
			more(s)
		}
	}
}

// nftKubeProxy is the part of kube-proxy's nftables-mode table that
// decides whether 10.96.0.1:443 is translated (recorded on a real node):
// the service-ips verdict map, with or without the kubernetes Service's
// element, and that Service's chain, whose masquerade rule names the VIP
// either way.
func nftKubeProxy(withVIP bool) string {
	elems := `[{"concat": ["10.96.0.10", "tcp", 80]}, {"goto": {"target": "service-URTH2HAX-lab/web/tcp/http"}}]`
	if withVIP {
		elems += `, [{"concat": ["10.96.0.1", "tcp", 443]}, {"goto": {"target": "service-2QRHZV4L-default/kubernetes/tcp/https"}}]`
	}
	return `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "kube-proxy", "handle": 1}},
{"map": {"family": "ip", "name": "service-ips", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 51, "map": "verdict", "elem": [` + elems + `]}},
{"chain": {"family": "ip", "table": "kube-proxy", "name": "service-2QRHZV4L-default/kubernetes/tcp/https", "handle": 56}},
{"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-2QRHZV4L-default/kubernetes/tcp/https", "handle": 57, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.1"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"jump": {"target": "mark-for-masquerade"}}]}},
{"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-2QRHZV4L-default/kubernetes/tcp/https", "handle": 59, "expr": [{"vmap": {"key": {"numgen": {"mode": "random", "mod": 1, "offset": 0}}, "data": {"set": [[0, {"goto": {"target": "endpoint-6FIGAJBK-default/kubernetes/tcp/https__192.168.77.1/6443"}}]]}}}]}}]}`
}
