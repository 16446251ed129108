package migrate

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// Directions of a migration.
const (
	FromFlannel = "from-flannel"
	ToFlannel   = "to-flannel"
)

// Actions of a Step: what the executor does.
const (
	// ActionWriteFile writes Content to Target (atomically).
	ActionWriteFile = "write-file"
	// ActionRemoveFile removes the file Target.
	ActionRemoveFile = "remove-file"
	// ActionIptables feeds Content to <Backend>-restore --noflush.
	ActionIptables = "iptables"
	// ActionNftDeleteTable deletes the nftables table Target ("ip flannel").
	ActionNftDeleteTable = "nft-delete-table"
	// ActionDeleteLink deletes the network device Target.
	ActionDeleteLink = "delete-link"
	// ActionKubeRemoveTwillSet removes twill's own annotations (twill.io/*)
	// from the Node named Target and keeps Flannel's (Kubernetes store).
	ActionKubeRemoveTwillSet = "kube-remove-twill-annotations"
	// ActionRemoveTwill removes twill's overlay (twill.1, its routes,
	// neighbours, FDB entries), its firewall rules, and its files: what
	// `twill uninstall --keep-bridge --keep-lease` removes.
	ActionRemoveTwill = "remove-twill"
)

// Step is one change the migration makes, in order.
type Step struct {
	Action string `json:"action"`
	// Target is what the step changes: a path, a device, an iptables
	// backend and table, an nft table.
	Target string `json:"target"`
	// Backend is the iptables backend (ActionIptables): "iptables-nft" or
	// "iptables-legacy".
	Backend string `json:"backend,omitempty"`
	// Content is the file content or the iptables-restore input.
	Content string `json:"content,omitempty"`
	// Why says what the step is for.
	Why string `json:"why"`
}

// Plan is a migration of one node, computed from its observed state.
type Plan struct {
	Direction string `json:"direction"`
	// Subnet is the node's pod subnet (kept as it is), with the gateway.
	Subnet string `json:"subnet"`
	// Network is the cluster's pod network.
	Network string `json:"network"`
	// Backend is the overlay backend the node uses ("vxlan", "host-gw").
	Backend string `json:"backend"`
	// CNINetwork is the CNI network name whose host-local allocations the
	// node's pods hold; the new CNI configuration keeps it.
	CNINetwork string `json:"cniNetwork"`
	// Allocations are the pod addresses allocated on the node (kept: no new
	// pod gets one of them).
	Allocations []string `json:"allocations"`
	// Steps are the changes, in order. Empty when there is nothing to do.
	Steps []Step `json:"steps"`
	// Next says what the operator (or the DaemonSet) does after the steps.
	Next []string `json:"next"`
}

// Observed is what a plan is computed from: the node's state.
type Observed struct {
	// Snap is the node's captured state (links, rules, files; file paths
	// carry the node's root).
	Snap *nodestate.Snapshot
	// Daemons are the network daemons running in the node's network
	// namespace ("flanneld", "twill agent"), each with its pid.
	Daemons []Daemon
	// Allocations maps a CNI network name to the addresses host-local (or
	// twill-cni) allocated in /var/lib/cni/networks/<name>.
	Allocations map[string][]string
	// KubeNode is the node's Node object with the Kubernetes store (its
	// podCIDR is the node's subnet; its annotations the lease); nil with
	// etcd.
	KubeNode *kube.NodeInfo
}

// Daemon is a running network daemon.
type Daemon struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// Names of the daemons Observed.Daemons lists.
const (
	DaemonFlanneld = "flanneld"
	DaemonTwill    = "twill agent"
)

// ErrNothingToMigrate is returned when the node shows no trace of the
// network it would be migrated from.
var ErrNothingToMigrate = errors.New("nothing to migrate")

// DefaultCNINetwork is the CNI network name of kube-flannel's conflist,
// used when the node has none: host-local keeps its allocations under it.
const DefaultCNINetwork = "cbr0"

// Conflist file names in the CNI configuration directory.
const (
	FlannelConflist = "10-flannel.conflist"
	TwillConflist   = "10-twill.conflist"
)

// PlanOptions change what a plan does.
type PlanOptions struct {
	// LeaveDevice (from-flannel) leaves Flannel's vxlan device to the agent,
	// started with --take-over-flannel-device: it deletes the device right
	// before it creates its own, once it holds the lease and knows the
	// peers, so the overlay is down only between the two.
	LeaveDevice bool
}

// PlanFor computes the migration of a node in direction dir from its observed
// state. It changes nothing; an error means the node is not in a state
// the migration can start from, and says what to do.
func PlanFor(dir string, o Observed, opt PlanOptions) (Plan, error) {
	if o.Snap == nil {
		return Plan{}, errors.New("migrate: no node state")
	}
	switch dir {
	case FromFlannel:
		return planFromFlannel(o, opt)
	case ToFlannel:
		return planToFlannel(o)
	}
	return Plan{}, fmt.Errorf("migrate: direction %q: want %s or %s", dir, FromFlannel, ToFlannel)
}

func planFromFlannel(o Observed, opt PlanOptions) (Plan, error) {
	if d, ok := running(o, DaemonFlanneld); ok {
		return Plan{}, fmt.Errorf("flanneld (pid %d) still runs on this node: stop it first (take the node out of Flannel's DaemonSet with a node label, or systemctl stop flanneld), then migrate; nothing was changed", d.PID)
	}
	if d, ok := running(o, DaemonTwill); ok {
		return Plan{}, fmt.Errorf("twill agent (pid %d) already runs on this node: migrate before the agent starts (the DaemonSet's init step), or stop it first; nothing was changed", d.PID)
	}
	s := o.Snap
	flEnv := subnetFile(s, subnetfile.FlannelPath)
	twEnv := subnetFile(s, subnetfile.TwillPath)
	dev := flannelDevice(s)
	if (flEnv == nil || !flEnv.Exists) && dev == nil {
		return Plan{}, fmt.Errorf("%w: this node shows no trace of Flannel (no %s, no flannel.<VNI> vxlan device)", ErrNothingToMigrate, subnetfile.FlannelPath)
	}
	var info subnetfile.Info
	var err error
	src := ""
	switch {
	case flEnv != nil && flEnv.Exists:
		src = flEnv.Path
		if info, err = subnetfile.Parse(flEnv.Path, flEnv.Content); err != nil {
			return Plan{}, fmt.Errorf("Flannel's subnet file: %w; fix or remove it (flanneld rewrites it at start), nothing was changed", err)
		}
	case twEnv != nil && twEnv.Exists:
		// A second run after the subnet file is gone (an interrupted
		// migration resumed): twill's, written in step 1, says it.
		src = twEnv.Path
		if info, err = subnetfile.Parse(twEnv.Path, twEnv.Content); err != nil {
			return Plan{}, fmt.Errorf("twill's subnet file: %w; nothing was changed", err)
		}
	default:
		return Plan{}, fmt.Errorf("%s is missing, so this node's subnet is unknown: start flanneld once more to write it (or write it by hand), then migrate; nothing was changed", subnetfile.FlannelPath)
	}
	if !info.Subnet.IsValid() || !info.Network.IsValid() {
		return Plan{}, fmt.Errorf("%s names no subnet or network: start flanneld once more to rewrite it, then migrate; nothing was changed", src)
	}
	be := netconf.BackendHostGW
	if dev != nil {
		be = netconf.BackendVXLAN
	}
	if err := samePodCIDR(o.KubeNode, src, info); err != nil {
		return Plan{}, err
	}
	p := Plan{Direction: FromFlannel, Subnet: info.Subnet.String(), Network: info.Network.String(), Backend: be}

	// 1. twill's subnet file with Flannel's subnet: the agent asks for it
	// (and adopts the Flannel lease of this node's address).
	tw := info
	tw.Backend = be
	twPath := rootedPath(s, subnetfile.TwillPath)
	p.Steps = append(p.Steps, Step{Action: ActionWriteFile, Target: twPath, Content: tw.Render(),
		Why: "twill's subnet file with Flannel's subnet " + info.Subnet.Masked().String() + ": the agent asks for this subnet and adopts the Flannel lease of this node's PublicIP"})

	// 2. The CNI configuration: twill's plugin, under Flannel's network
	// name, so twill-cni allocates from host-local's allocations.
	conf, name, old, err := twillConflist(s)
	if err != nil {
		return Plan{}, err
	}
	p.CNINetwork = name
	p.Allocations = slices.Clone(o.Allocations[name])
	p.Steps = append(p.Steps, Step{Action: ActionWriteFile, Target: filepath.Join(s.Files.CNIConfDir, TwillConflist), Content: conf,
		Why: fmt.Sprintf("twill's CNI configuration under Flannel's network name %q: twill-cni allocates next to host-local's %d allocations in /var/lib/cni/networks/%s, never one of them", name, len(p.Allocations), name)})
	if old != "" {
		p.Steps = append(p.Steps, Step{Action: ActionRemoveFile, Target: old, Why: "Flannel's CNI configuration: the runtime would pick it first and call the flannel plugin"})
	}

	// 3. Flannel's leftover rules, in every backend that holds them.
	p.Steps = append(p.Steps, flannelRuleSteps(s)...)

	// 4. Flannel's subnet file.
	if flEnv != nil && flEnv.Exists {
		p.Steps = append(p.Steps, Step{Action: ActionRemoveFile, Target: flEnv.Path, Why: "Flannel's subnet file: twill-cni would read it when twill's is missing, and the agent warns about it"})
	}

	// 5. Last, the vxlan device: from here until the agent has created
	// twill.<VNI> (well under a second), cross-node packets are dropped and
	// retransmitted, not reset.
	agent := "start twill agent now"
	if dev != nil && opt.LeaveDevice {
		agent = "start twill agent now with --take-over-flannel-device (it replaces " + dev.Name + " with its own device at its first reconcile)"
	}
	if dev != nil && !opt.LeaveDevice {
		p.Steps = append(p.Steps, Step{Action: ActionDeleteLink, Target: dev.Name,
			Why: fmt.Sprintf("Flannel's vxlan device holds VNI %d port %d, which twill's needs; deleted last, so the gap until the agent's own device is short (packets in it are retransmitted, TCP streams keep going)", dev.Vxlan.VNI, dev.Vxlan.Port)})
	}
	p.Next = []string{
		agent + " (with the same etcd and --etcd-prefix as Flannel's, e.g. /coreos.com/network): it adopts this node's lease " + info.Subnet.Masked().String() + " and programs the overlay",
		fmt.Sprintf("install twill-cni as /opt/cni/bin/twill if the node has none (twill install-cni), with the conflist's name %q in twill's ConfigMap (cni-conf.json)", name),
		"check the node: twill doctor",
	}
	return p, nil
}

func planToFlannel(o Observed) (Plan, error) {
	if d, ok := running(o, DaemonTwill); ok {
		return Plan{}, fmt.Errorf("twill agent (pid %d) still runs on this node: stop it first (take the node out of twill's DaemonSet with a node label, or systemctl stop), then migrate; nothing was changed", d.PID)
	}
	if d, ok := running(o, DaemonFlanneld); ok {
		return Plan{}, fmt.Errorf("flanneld (pid %d) already runs on this node: stop it, migrate, then start it again; nothing was changed", d.PID)
	}
	s := o.Snap
	twEnv := subnetFile(s, subnetfile.TwillPath)
	dev := twillDevice(s)
	if (twEnv == nil || !twEnv.Exists) && dev == nil {
		return Plan{}, fmt.Errorf("%w: this node shows no trace of twill (no %s, no %s vxlan device)", ErrNothingToMigrate, subnetfile.TwillPath, backend.DeviceName(1))
	}
	if twEnv == nil || !twEnv.Exists {
		return Plan{}, fmt.Errorf("%s is missing, so this node's subnet is unknown: start twill agent once more to write it, then migrate; nothing was changed", subnetfile.TwillPath)
	}
	info, err := subnetfile.Parse(twEnv.Path, twEnv.Content)
	if err != nil {
		return Plan{}, fmt.Errorf("twill's subnet file: %w; nothing was changed", err)
	}
	if !info.Subnet.IsValid() || !info.Network.IsValid() {
		return Plan{}, fmt.Errorf("%s names no SUBNET or NETWORK: start twill agent once more to rewrite it; nothing was changed", twEnv.Path)
	}
	if err := samePodCIDR(o.KubeNode, twEnv.Path, info); err != nil {
		return Plan{}, err
	}
	p := Plan{Direction: ToFlannel, Subnet: info.Subnet.String(), Network: info.Network.String(), Backend: info.Backend}
	fl := info
	fl.Backend, fl.DirectRouting = "", false
	p.Steps = append(p.Steps, Step{Action: ActionWriteFile, Target: rootedPath(s, subnetfile.FlannelPath), Content: fl.RenderFlannel(),
		Why: "Flannel's subnet file with this node's subnet " + info.Subnet.Masked().String() + ": flanneld asks for it, and adopts the lease of this node's PublicIP"})
	conf, name, old, err := flannelConflist(s)
	if err != nil {
		return Plan{}, err
	}
	p.CNINetwork = name
	p.Allocations = slices.Clone(o.Allocations[name])
	p.Steps = append(p.Steps, Step{Action: ActionWriteFile, Target: filepath.Join(s.Files.CNIConfDir, FlannelConflist), Content: conf,
		Why: fmt.Sprintf("Flannel's CNI configuration under the network name %q: host-local allocates next to the %d allocations of the running pods", name, len(p.Allocations))})
	if old != "" && filepath.Base(old) != TwillConflist {
		p.Steps = append(p.Steps, Step{Action: ActionRemoveFile, Target: old, Why: "twill's CNI configuration: the runtime would call twill-cni"})
	}
	if o.KubeNode != nil {
		if keys := kube.TwillKeys(o.KubeNode.Annotations); len(keys) > 0 {
			p.Steps = append(p.Steps, Step{Action: ActionKubeRemoveTwillSet, Target: o.KubeNode.Name,
				Why: fmt.Sprintf("twill's annotations (%s) on Node %s: on a Node with both sets twill's wins, so the peers would keep twill's lease; Flannel's set (same address and VTEP MAC, which flanneld reuses) stays for flanneld to take over", strings.Join(keys, ", "), o.KubeNode.Name)})
		}
	}
	p.Steps = append(p.Steps, Step{Action: ActionRemoveTwill, Target: "twill.1, twill's rules and files",
		Why: "flanneld refuses to start while twill's vxlan device holds VNI 1 port 8472; twill's rules, subnet file, CNI configuration and plugin go too (the pod bridge cni0, the pods, the lease and host-gw's routes to the peers stay: flanneld programs the same)"})
	p.Next = []string{
		"start flanneld now (the Flannel DaemonSet's pod, or systemctl start flanneld): it adopts this node's lease " + info.Subnet.Masked().String() + " by its PublicIP and creates flannel.1",
		"the flannel CNI plugin must be in /opt/cni/bin (Flannel's DaemonSet installs it)",
	}
	return p, nil
}

// samePodCIDR refuses a migration on the Kubernetes store when the node's
// podCIDR is not the subnet its subnet file (path) names: the daemon taking
// over leases the podCIDR, and the running pods, addressed from the
// subnet file's subnet, would lose their routes.
func samePodCIDR(node *kube.NodeInfo, path string, info subnetfile.Info) error {
	if node == nil {
		return nil
	}
	sn, err := kube.Subnet(*node, info.Network)
	if err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	if sn != info.Subnet.Masked() {
		return fmt.Errorf("Node %s's podCIDR is %s, but %s says the node's pods are in %s: the daemon taking over would lease the podCIDR and the running pods would lose their routes; find out which is right (kubectl get node %s -o jsonpath='{.spec.podCIDR}'), nothing was changed", node.Name, sn, path, info.Subnet.Masked(), node.Name)
	}
	return nil
}

func running(o Observed, name string) (Daemon, bool) {
	for _, d := range o.Daemons {
		if d.Name == name {
			return d, true
		}
	}
	return Daemon{}, false
}

// subnetFile finds the captured subnet file whose node path is p.
func subnetFile(s *nodestate.Snapshot, p string) *nodestate.File {
	for i := range s.Files.SubnetFiles {
		if strings.HasSuffix(s.Files.SubnetFiles[i].Path, p) {
			return &s.Files.SubnetFiles[i]
		}
	}
	return nil
}

// rootedPath is node path p under the root the snapshot's files were read
// from (the lab's nodes keep their files under a root of their own).
func rootedPath(s *nodestate.Snapshot, p string) string {
	for _, f := range s.Files.SubnetFiles {
		if root, ok := strings.CutSuffix(f.Path, subnetfile.TwillPath); ok {
			return filepath.Join(root, p)
		}
		if root, ok := strings.CutSuffix(f.Path, subnetfile.FlannelPath); ok {
			return filepath.Join(root, p)
		}
	}
	return p
}

func flannelDevice(s *nodestate.Snapshot) *nodestate.Link {
	for i, l := range s.Links {
		if l.Kind == "vxlan" && l.Vxlan != nil && strings.HasPrefix(l.Name, "flannel.") {
			return &s.Links[i]
		}
	}
	return nil
}

func twillDevice(s *nodestate.Snapshot) *nodestate.Link {
	for i, l := range s.Links {
		if l.Kind == "vxlan" && strings.HasPrefix(l.Name, "twill.") {
			return &s.Links[i]
		}
	}
	return nil
}

// conflist is the part of a CNI conflist the migration rewrites; the
// plugins are kept as raw JSON objects so other plugins (portmap,
// bandwidth) and their keys survive.
type conflist struct {
	CNIVersion string           `json:"cniVersion"`
	Name       string           `json:"name"`
	Plugins    []map[string]any `json:"plugins"`
}

// findConflist returns the first conflist in the node's CNI directory with
// a plugin of type typ, its path and that plugin's index.
func findConflist(s *nodestate.Snapshot, typ string) (*conflist, string, int, error) {
	files := slices.Clone(s.Files.CNIConfigs)
	slices.SortFunc(files, func(a, b nodestate.File) int { return strings.Compare(a.Path, b.Path) })
	for _, f := range files {
		if !f.Exists || !strings.HasSuffix(f.Path, ".conflist") {
			continue
		}
		var c conflist
		if err := json.Unmarshal([]byte(f.Content), &c); err != nil {
			if strings.Contains(f.Content, `"`+typ+`"`) {
				return nil, "", 0, fmt.Errorf("CNI configuration %s: %v: fix or remove it; nothing was changed", f.Path, err)
			}
			continue
		}
		for i, pl := range c.Plugins {
			if pl["type"] == typ {
				return &c, f.Path, i, nil
			}
		}
	}
	return nil, "", 0, nil
}

// twillConflist is the node's Flannel conflist with the flannel plugin
// replaced by twill's (its name and other plugins kept), or a conflist of
// twill alone named DefaultCNINetwork when the node has none. It returns
// the content, the network name and the Flannel conflist's path.
func twillConflist(s *nodestate.Snapshot) (string, string, string, error) {
	return swapPlugin(s, "flannel", "1.0.0", map[string]any{"type": "twill"})
}

// flannelConflist is the way back: twill's conflist with twill's plugin
// replaced by flannel's (kube-flannel's delegate keys).
func flannelConflist(s *nodestate.Snapshot) (string, string, string, error) {
	return swapPlugin(s, "twill", "0.3.1", map[string]any{"type": "flannel", "delegate": map[string]any{"hairpinMode": true, "isDefaultGateway": true}})
}

// swapPlugin replaces the plugin of type from in the node's conflist with
// to (a new conflist of to alone when there is none), in spec version
// version.
func swapPlugin(s *nodestate.Snapshot, from, version string, to map[string]any) (string, string, string, error) {
	c, path, i, err := findConflist(s, from)
	if err != nil {
		return "", "", "", err
	}
	if c == nil {
		c = &conflist{Name: DefaultCNINetwork, Plugins: []map[string]any{{}}}
	}
	c.CNIVersion = version
	c.Plugins[i] = to
	b, err := json.Marshal(c)
	if err != nil {
		return "", "", "", err
	}
	return string(b) + "\n", c.Name, path, nil
}

// flannelChainPrefix starts the name of every iptables chain flanneld makes
// (FLANNEL-POSTRTG, FLANNEL-FWD).
const flannelChainPrefix = "FLANNEL-"

// flannelRuleSteps remove Flannel's iptables chains and the rules jumping
// to them, per backend, and its nftables tables.
func flannelRuleSteps(s *nodestate.Snapshot) []Step {
	var out []Step
	for _, b := range []struct {
		name string
		dump nodestate.IptablesBackend
	}{{nodestate.BackendIptablesNFT, s.Iptables.NFT}, {nodestate.BackendIptablesLegacy, s.Iptables.Legacy}} {
		if !b.dump.Available || !strings.Contains(b.dump.Save, flannelChainPrefix) {
			continue
		}
		rs, err := netfilter.ParseIptablesSave(b.name, b.dump.Save)
		if err != nil {
			continue
		}
		for _, t := range rs.Tables {
			var jumps, chains []string
			for _, c := range t.Chains {
				if strings.HasPrefix(c.Name, flannelChainPrefix) {
					chains = append(chains, c.Name)
					continue
				}
				for _, r := range c.Rules {
					if strings.HasPrefix(r.Target, flannelChainPrefix) {
						if rest, ok := strings.CutPrefix(r.Text, "-A "); ok {
							jumps = append(jumps, "-D "+rest)
						}
					}
				}
			}
			if len(jumps)+len(chains) == 0 {
				continue
			}
			var in strings.Builder
			fmt.Fprintf(&in, "*%s\n", t.Name)
			for _, j := range jumps {
				fmt.Fprintln(&in, j)
			}
			for _, c := range chains {
				fmt.Fprintf(&in, "-F %s\n", c)
			}
			for _, c := range chains {
				fmt.Fprintf(&in, "-X %s\n", c)
			}
			fmt.Fprintln(&in, "COMMIT")
			out = append(out, Step{Action: ActionIptables, Backend: b.name, Target: b.name + " table " + t.Name, Content: in.String(),
				Why: fmt.Sprintf("Flannel's chains %s and the rules jumping to them: twill's agent puts its own masquerade and forward rules in place", strings.Join(chains, ", "))})
		}
	}
	if s.Nftables.Available && s.Nftables.JSON != "" {
		if rs, err := netfilter.ParseNftJSON("nft", []byte(s.Nftables.JSON)); err == nil {
			for _, t := range rs.Tables {
				if t.Name == "flannel" {
					out = append(out, Step{Action: ActionNftDeleteTable, Target: t.Family + " " + t.Name,
						Why: "Flannel's nftables table (EnableNFTables): twill's agent puts its own rules in place"})
				}
			}
		}
	}
	return out
}
