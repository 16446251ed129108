package migrate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

const root = "/run/lab/node1/root"

// flannelSave is what flanneld (--ip-masq) leaves in iptables-nft, beside a
// rule of someone else's that must stay.
const flannelSave = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FORWARD -s 10.9.0.0/16 -j ACCEPT
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
COMMIT
`

const kubeFlannelConflist = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`

// flannelNode is a node flanneld (vxlan) ran on, with two pods.
func flannelNode() Observed {
	return Observed{
		Snap: &nodestate.Snapshot{
			Links: []nodestate.Link{
				{Name: "eth0", Kind: "veth"},
				{Name: "flannel.1", Kind: "vxlan", Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472}},
				{Name: "cni0", Kind: "bridge"},
			},
			Iptables: nodestate.Iptables{NFT: nodestate.IptablesBackend{Available: true, Save: flannelSave}},
			Files: nodestate.Files{
				CNIConfDir: root + "/etc/cni/net.d",
				CNIConfigs: []nodestate.File{{Path: root + "/etc/cni/net.d/10-flannel.conflist", Exists: true, Content: kubeFlannelConflist}},
				SubnetFiles: []nodestate.File{
					{Path: root + subnetfile.TwillPath},
					{Path: root + subnetfile.FlannelPath, Exists: true, Content: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"},
				},
			},
		},
		Allocations: map[string][]string{"cbr0": {"10.244.1.2", "10.244.1.3"}},
	}
}

func stepOf(p Plan, action, target string) *Step {
	for i, s := range p.Steps {
		if s.Action == action && strings.Contains(s.Target, target) {
			return &p.Steps[i]
		}
	}
	return nil
}

func TestFromFlannelKeepsSubnetAndAllocations(t *testing.T) {
	p, err := PlanFor(FromFlannel, flannelNode(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Subnet != "10.244.1.1/24" || p.Network != "10.244.0.0/16" || p.Backend != "vxlan" {
		t.Fatalf("plan subnet %s network %s backend %s", p.Subnet, p.Network, p.Backend)
	}
	// twill's subnet file names Flannel's subnet: the agent asks for it.
	w := stepOf(p, ActionWriteFile, subnetfile.TwillPath)
	if w == nil || w.Target != root+subnetfile.TwillPath {
		t.Fatalf("no write of twill's subnet file under the root: %+v", p.Steps)
	}
	info, err := subnetfile.Parse(w.Target, w.Content)
	if err != nil || info.Subnet.String() != "10.244.1.1/24" || info.MTU != 1450 || info.Backend != "vxlan" {
		t.Fatalf("twill's subnet file %q: %+v %v", w.Content, info, err)
	}
	// The CNI network keeps Flannel's name (host-local's allocations) and portmap.
	c := stepOf(p, ActionWriteFile, TwillConflist)
	if c == nil {
		t.Fatalf("no twill conflist: %+v", p.Steps)
	}
	var cl conflist
	if err := json.Unmarshal([]byte(c.Content), &cl); err != nil {
		t.Fatal(err)
	}
	if cl.Name != "cbr0" || len(cl.Plugins) != 2 || cl.Plugins[0]["type"] != "twill" || cl.Plugins[1]["type"] != "portmap" {
		t.Fatalf("twill's conflist %s: want name cbr0, plugins twill then portmap", c.Content)
	}
	if p.CNINetwork != "cbr0" || strings.Join(p.Allocations, ",") != "10.244.1.2,10.244.1.3" {
		t.Fatalf("CNI network %q allocations %v", p.CNINetwork, p.Allocations)
	}
	if stepOf(p, ActionRemoveFile, FlannelConflist) == nil || stepOf(p, ActionRemoveFile, subnetfile.FlannelPath) == nil {
		t.Fatalf("Flannel's conflist and subnet file are not removed: %+v", p.Steps)
	}
	// The vxlan device goes last: the shortest gap before the agent's own.
	last := p.Steps[len(p.Steps)-1]
	if last.Action != ActionDeleteLink || last.Target != "flannel.1" {
		t.Fatalf("last step %+v, want delete-link flannel.1", last)
	}
}

// The iptables steps, applied to the dump, leave no FLANNEL- chain or jump
// and keep every other rule.
func TestFromFlannelRemovesExactlyFlannelsRules(t *testing.T) {
	p, err := PlanFor(FromFlannel, flannelNode(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netfilter.ParseIptablesSave("test", flannelSave)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range p.Steps {
		if s.Action != ActionIptables {
			continue
		}
		n++
		if s.Backend != nodestate.BackendIptablesNFT {
			t.Errorf("step %+v: backend %q, want iptables-nft (the only one holding the rules)", s, s.Backend)
		}
		applyRestore(t, rs, s.Content)
	}
	if n != 2 {
		t.Fatalf("%d iptables steps, want 2 (filter, nat)", n)
	}
	var left []string
	for _, tb := range rs.Tables {
		for _, c := range tb.Chains {
			if strings.HasPrefix(c.Name, "FLANNEL-") {
				left = append(left, c.Name)
			}
			for _, r := range c.Rules {
				left = append(left, r.Text)
			}
		}
	}
	if got := strings.Join(left, "\n"); got != "-A FORWARD -s 10.9.0.0/16 -j ACCEPT" {
		t.Fatalf("left after the steps:\n%s\nwant only the other rule", got)
	}
}

// applyRestore carries out an iptables-restore --noflush input of -D, -F
// and -X lines on a parsed rule set, failing on a line that matches nothing
// (iptables-restore would fail the same way).
func applyRestore(t *testing.T, rs *netfilter.Ruleset, in string) {
	t.Helper()
	var tb *netfilter.Table
	for _, l := range strings.Split(strings.TrimSpace(in), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			tb = rs.Table(l[1:])
		case l == "COMMIT":
		case strings.HasPrefix(l, "-D "):
			chain, _, _ := strings.Cut(l[3:], " ")
			c := tb.Chain(chain)
			found := false
			for i, r := range c.Rules {
				if r.Text == "-A "+l[3:] {
					c.Rules = append(c.Rules[:i], c.Rules[i+1:]...)
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("%q deletes no rule", l)
			}
		case strings.HasPrefix(l, "-F "):
			tb.Chain(l[3:]).Rules = nil
		case strings.HasPrefix(l, "-X "):
			for i, c := range tb.Chains {
				if c.Name == l[3:] {
					if len(c.Rules) > 0 {
						t.Fatalf("%q: chain not empty", l)
					}
					tb.Chains = append(tb.Chains[:i], tb.Chains[i+1:]...)
					tb.Reindex()
					break
				}
			}
		default:
			t.Fatalf("unexpected restore line %q", l)
		}
	}
}

func TestFromFlannelCanLeaveTheDeviceToTheAgent(t *testing.T) {
	p, err := PlanFor(FromFlannel, flannelNode(), PlanOptions{LeaveDevice: true})
	if err != nil {
		t.Fatal(err)
	}
	if stepOf(p, ActionDeleteLink, "") != nil || !strings.Contains(p.Next[0], "--take-over-flannel-device") {
		t.Fatalf("with LeaveDevice: steps %+v, next %q", p.Steps, p.Next[0])
	}
}

func TestFromFlannelHostGWHasNoDeviceStep(t *testing.T) {
	o := flannelNode()
	o.Snap.Links = o.Snap.Links[:1]
	p, err := PlanFor(FromFlannel, o, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Backend != "host-gw" || stepOf(p, ActionDeleteLink, "") != nil {
		t.Fatalf("host-gw plan: backend %s, steps %+v", p.Backend, p.Steps)
	}
}

func TestFromFlannelWithoutConflistUsesFlannelsNetworkName(t *testing.T) {
	o := flannelNode()
	o.Snap.Files.CNIConfigs = nil
	p, err := PlanFor(FromFlannel, o, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := stepOf(p, ActionWriteFile, TwillConflist)
	if c == nil || !strings.Contains(c.Content, `"name":"cbr0"`) || stepOf(p, ActionRemoveFile, FlannelConflist) != nil {
		t.Fatalf("steps %+v", p.Steps)
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	running := func(d Daemon) func(*Observed) { return func(o *Observed) { o.Daemons = append(o.Daemons, d) } }
	for _, tc := range []struct {
		name, dir, want string
		edit            func(*Observed)
	}{
		{"flanneld still runs", FromFlannel, "flanneld (pid 42) still runs", running(Daemon{DaemonFlanneld, 42})},
		{"the agent already runs", FromFlannel, "twill agent (pid 7) already runs", running(Daemon{DaemonTwill, 7})},
		{"subnet file garbage", FromFlannel, "Flannel's subnet file", func(o *Observed) {
			o.Snap.Files.SubnetFiles[1].Content = "FLANNEL_SUBNET=banana\n"
		}},
		{"subnet file gone, device left", FromFlannel, "is missing", func(o *Observed) { o.Snap.Files.SubnetFiles[1].Exists = false }},
		{"broken Flannel conflist", FromFlannel, "10-flannel.conflist", func(o *Observed) {
			o.Snap.Files.CNIConfigs[0].Content = `{"type":"flannel",`
		}},
		{"the agent still runs (back)", ToFlannel, "twill agent (pid 9) still runs", running(Daemon{DaemonTwill, 9})},
		{"bad direction", "sideways", "want from-flannel or to-flannel", func(*Observed) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := flannelNode()
			tc.edit(&o)
			p, err := PlanFor(tc.dir, o, PlanOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if tc.dir != "sideways" && !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("error %q does not say that nothing was changed", err)
			}
			if len(p.Steps) != 0 {
				t.Fatalf("a refused plan has steps: %+v", p.Steps)
			}
		})
	}
}

// A migration interrupted after Flannel's subnet file was removed resumes:
// twill's file (its first step) says the subnet, and the device still goes.
func TestFromFlannelResumes(t *testing.T) {
	first, err := PlanFor(FromFlannel, flannelNode(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := flannelNode()
	w := stepOf(first, ActionWriteFile, subnetfile.TwillPath)
	o.Snap.Files.SubnetFiles = []nodestate.File{{Path: w.Target, Exists: true, Content: w.Content}, {Path: root + subnetfile.FlannelPath}}
	p, err := PlanFor(FromFlannel, o, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Subnet != "10.244.1.1/24" || p.Steps[len(p.Steps)-1].Target != "flannel.1" {
		t.Fatalf("resumed plan: subnet %s, steps %+v", p.Subnet, p.Steps)
	}
	o.Snap.Files.SubnetFiles[0].Content = "TWILL_MTU=1450\n"
	if _, err := PlanFor(FromFlannel, o, PlanOptions{}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("resume with a subnet file naming no subnet: %v", err)
	}
}

func TestNothingToMigrate(t *testing.T) {
	o := Observed{Snap: &nodestate.Snapshot{Links: []nodestate.Link{{Name: "eth0", Kind: "veth"}}}}
	for _, dir := range []string{FromFlannel, ToFlannel} {
		if _, err := PlanFor(dir, o, PlanOptions{}); !errors.Is(err, ErrNothingToMigrate) {
			t.Errorf("%s on a bare node: %v, want ErrNothingToMigrate", dir, err)
		}
	}
}

// twillNode is flannelNode after from-flannel and a running agent.
func twillNode(t *testing.T) Observed {
	t.Helper()
	p, err := PlanFor(FromFlannel, flannelNode(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := flannelNode()
	o.Snap.Links[1] = nodestate.Link{Name: "twill.1", Kind: "vxlan", Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472}}
	o.Snap.Iptables.NFT.Save = ""
	c := stepOf(p, ActionWriteFile, TwillConflist)
	o.Snap.Files.CNIConfigs = []nodestate.File{{Path: c.Target, Exists: true, Content: c.Content}}
	w := stepOf(p, ActionWriteFile, subnetfile.TwillPath)
	o.Snap.Files.SubnetFiles = []nodestate.File{{Path: w.Target, Exists: true, Content: w.Content}, {Path: root + subnetfile.FlannelPath}}
	return o
}

func TestToFlannelIsTheWayBack(t *testing.T) {
	p, err := PlanFor(ToFlannel, twillNode(t), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := stepOf(p, ActionWriteFile, subnetfile.FlannelPath)
	if w == nil || w.Target != root+subnetfile.FlannelPath {
		t.Fatalf("no write of Flannel's subnet file: %+v", p.Steps)
	}
	if !strings.Contains(w.Content, "FLANNEL_SUBNET=10.244.1.1/24") || !strings.Contains(w.Content, "FLANNEL_NETWORK=10.244.0.0/16") {
		t.Fatalf("Flannel's subnet file:\n%s", w.Content)
	}
	c := stepOf(p, ActionWriteFile, FlannelConflist)
	var cl conflist
	if c == nil || json.Unmarshal([]byte(c.Content), &cl) != nil {
		t.Fatalf("no Flannel conflist: %+v", p.Steps)
	}
	if cl.Name != "cbr0" || cl.Plugins[0]["type"] != "flannel" || cl.Plugins[1]["type"] != "portmap" {
		t.Fatalf("Flannel's conflist %s", c.Content)
	}
	if last := p.Steps[len(p.Steps)-1]; last.Action != ActionRemoveTwill {
		t.Fatalf("last step %+v, want remove-twill", last)
	}
}

// TestKubeStore: with the Kubernetes store a node whose podCIDR is not its
// subnet file's subnet is refused; to-flannel removes twill's own
// annotations (and only when there are some), from-flannel leaves the
// annotations to the agent.
func TestKubeStore(t *testing.T) {
	flannelAnn := map[string]string{kube.FlannelAnnotationKubeSubnetManager: "true", kube.FlannelAnnotationPublicIP: "192.168.77.11", kube.FlannelAnnotationBackendType: "vxlan"}
	node := func(podCIDR string, ann map[string]string) *kube.NodeInfo {
		return &kube.NodeInfo{Name: "node1", PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}, Annotations: ann}
	}
	o := flannelNode()
	o.KubeNode = node("10.244.1.0/24", flannelAnn)
	p, err := PlanFor(FromFlannel, o, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := stepOf(p, ActionKubeRemoveTwillSet, ""); s != nil {
		t.Errorf("from-flannel touches the annotations: %+v", s)
	}
	o.KubeNode = node("10.244.7.0/24", flannelAnn)
	if _, err := PlanFor(FromFlannel, o, PlanOptions{}); err == nil || !strings.Contains(err.Error(), "10.244.7.0/24") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("from-flannel with another podCIDR: %v, want a refusal naming it", err)
	}

	both := map[string]string{kube.AnnotationPublicIP: "192.168.77.11", kube.AnnotationBackendType: "vxlan"}
	for k, v := range flannelAnn {
		both[k] = v
	}
	tn := twillNode(t)
	tn.KubeNode = node("10.244.1.0/24", both)
	p, err = PlanFor(ToFlannel, tn, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := stepOf(p, ActionKubeRemoveTwillSet, "node1")
	if s == nil || !strings.Contains(s.Why, kube.AnnotationPublicIP) {
		t.Fatalf("to-flannel does not remove twill's annotations: %+v", p.Steps)
	}
	tn.KubeNode = node("10.244.1.0/24", flannelAnn)
	if p, err = PlanFor(ToFlannel, tn, PlanOptions{}); err != nil || stepOf(p, ActionKubeRemoveTwillSet, "") != nil {
		t.Errorf("to-flannel on a Node without twill's set: %v, %+v", err, p.Steps)
	}
	tn.KubeNode = node("10.244.2.0/24", both)
	if _, err := PlanFor(ToFlannel, tn, PlanOptions{}); err == nil || !strings.Contains(err.Error(), "10.244.2.0/24") {
		t.Errorf("to-flannel with another podCIDR: %v, want a refusal", err)
	}
}
