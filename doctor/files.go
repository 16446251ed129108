package doctor

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

func checkSubnetFile(e *env) ([]Finding, string) {
	if err, ok := e.parseErr["subnet file"]; ok {
		return []Finding{{Severity: Error, Failure: "F6",
			Title:       "the subnet file is malformed",
			Evidence:    []string{err.Error()},
			Explanation: "The CNI plugin reads the node's subnet and MTU from this file; with it unreadable no pod can start on this node.",
			Fix:         "restart the network agent so it rewrites the file (twill agent writes it atomically)"}}, ""
	}
	if e.subnetInfo != nil || !e.isPodNode() {
		return nil, ""
	}
	var paths []string
	for _, f := range e.snap.Files.SubnetFiles {
		paths = append(paths, f.Path)
	}
	return []Finding{{Severity: Error, Failure: "F6",
		Title:       "no subnet file: " + strings.Join(paths, " and ") + " do not exist",
		Evidence:    []string{fmt.Sprintf("checked %s", strings.Join(paths, ", "))},
		Explanation: "The CNI plugin cannot learn this node's pod subnet, so pods stay in ContainerCreating (`open /run/flannel/subnet.env: no such file or directory`). The network agent is not running, has not got a lease yet, or crashed.",
		Fix:         "check the network agent on this node (twill agent logs; /readyz), it writes the file once it holds a lease"}}, ""
}

// cniConf is the part of a CNI configuration doctor reads: a single
// plugin's (.conf) or a list's (.conflist).
type cniConf struct {
	Name string `json:"name"`
	cniPluginConf
	Plugins []cniPluginConf `json:"plugins"`
}

// cniPluginConf is the part of one plugin's configuration doctor reads.
// Flannel's plugin (type "flannel") runs further plugins: it reads its
// subnet file (subnetFile, default /run/flannel/subnet.env) and delegates
// to delegate.type (default bridge) with ipam.type (default host-local).
type cniPluginConf struct {
	Type       string `json:"type"`
	SubnetFile string `json:"subnetFile"`
	Delegate   struct {
		Type string `json:"type"`
	} `json:"delegate"`
	IPAM struct {
		Type string `json:"type"`
	} `json:"ipam"`
}

// flannelSubnetKeys are the keys Flannel's CNI plugin requires in its
// subnet file (it fails every ADD naming the missing ones).
var flannelSubnetKeys = []string{"FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"}

// pluginUse is one plugin a CNI configuration makes the runtime run, and
// why (directly, or delegated to by Flannel's plugin).
type pluginUse struct{ typ, via string }

// uses lists the plugins p makes the runtime run: itself and, for
// Flannel's plugin, the plugins it delegates to.
func (p cniPluginConf) uses() []pluginUse {
	if p.Type == "" {
		return nil
	}
	out := []pluginUse{{p.Type, ""}}
	if p.Type == "flannel" {
		d, ipam := p.Delegate.Type, p.IPAM.Type
		if d == "" {
			d = "bridge"
		}
		if ipam == "" {
			ipam = "host-local"
		}
		out = append(out, pluginUse{d, "flannel's delegate"}, pluginUse{ipam, "the IPAM of flannel's delegate"})
	}
	return out
}

func checkCNIPlugins(e *env) ([]Finding, string) {
	files := e.snap.Files
	if len(files.CNIConfigs) == 0 {
		if !e.isPodNode() || files.CNIConfDir == "" {
			return nil, ""
		}
		return []Finding{{Severity: Warning, Failure: "F6",
			Title:       fmt.Sprintf("no CNI configuration in %s", files.CNIConfDir),
			Evidence:    []string{files.CNIConfDir + " holds no *.conf, *.conflist or *.json file"},
			Explanation: "kubelet reports the node NotReady (`network plugin is not ready: cni config uninitialized`) and no pod can get a network.",
			Fix:         "install the pod network's CNI configuration (twill's DaemonSet init container writes it)"}}, ""
	}
	var out []Finding
	for _, f := range files.CNIConfigs {
		var c cniConf
		if err := json.Unmarshal([]byte(f.Content), &c); err != nil {
			out = append(out, Finding{Severity: Error, Failure: "F6",
				Title:       fmt.Sprintf("CNI configuration %s is not valid JSON", f.Path),
				Evidence:    []string{err.Error()},
				Explanation: "kubelet and the container runtime skip or reject this network configuration.",
				Fix:         "fix or reinstall " + f.Path})
			continue
		}
		var uses []pluginUse
		seen := map[string]bool{}
		for _, p := range append([]cniPluginConf{c.cniPluginConf}, c.Plugins...) {
			for _, u := range p.uses() {
				if !seen[u.typ] {
					seen[u.typ] = true
					uses = append(uses, u)
				}
			}
			if p.Type == "flannel" {
				out = append(out, flannelSubnetFinding(e, f.Path, p)...)
			}
		}
		for _, u := range uses {
			if slices.Contains(files.CNIPlugins, u.typ) {
				continue
			}
			how := fmt.Sprintf("%s uses plugin %q", f.Path, u.typ)
			if u.via != "" {
				how = fmt.Sprintf("%s uses plugin flannel, which runs %q as %s", f.Path, u.typ, u.via)
			}
			out = append(out, Finding{Severity: Error, Failure: "F6",
				Title:       fmt.Sprintf("failed to find plugin %q in path [%s]", u.typ, files.CNIBinDir),
				Evidence:    []string{fmt.Sprintf("%s; %s holds %v", how, files.CNIBinDir, files.CNIPlugins)},
				Explanation: "Every pod sandbox on this node fails to start: the runtime cannot run a plugin the configuration names.",
				Fix:         fmt.Sprintf("install the plugin binary %s/%s (twill's init container installs its own; Flannel's DaemonSet installs flannel; reference plugins such as bridge and host-local come from the containernetworking-plugins package)", files.CNIBinDir, u.typ)})
		}
	}
	return out, ""
}

// flannelSubnetFinding checks the subnet file Flannel's plugin p (in
// configuration conf) reads: present, with every key the plugin needs. A
// subnetFile path the snapshot did not record is not judged.
func flannelSubnetFinding(e *env, conf string, p cniPluginConf) []Finding {
	var file *nodestate.File
	for i, f := range e.snap.Files.SubnetFiles {
		if (p.SubnetFile == "" && strings.HasSuffix(f.Path, subnetfile.FlannelPath)) || (p.SubnetFile != "" && f.Path == p.SubnetFile) {
			file = &e.snap.Files.SubnetFiles[i]
		}
	}
	if file == nil {
		return nil
	}
	if !file.Exists {
		return []Finding{{Severity: Error, Failure: "F6",
			Title:       fmt.Sprintf("Flannel's CNI plugin has no subnet file: %s does not exist", file.Path),
			Evidence:    []string{fmt.Sprintf("%s uses plugin flannel, which reads %s", conf, file.Path)},
			Explanation: "Every pod sandbox on this node fails to start (`failed to load flannel 'subnet.env' file: open /run/flannel/subnet.env: no such file or directory`): flanneld writes the file once it holds a lease, so it is not running, not ready, or this node moved to another network with Flannel's CNI configuration left behind.",
			Fix:         "check flanneld on this node (its pod's logs); on a node moved to twill, run `twill migrate from-flannel`, which replaces Flannel's CNI configuration"}}
	}
	var missing []string
	for _, k := range flannelSubnetKeys {
		if !strings.Contains("\n"+file.Content, "\n"+k+"=") {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Finding{{Severity: Error, Failure: "F6",
		Title:       fmt.Sprintf("Flannel's subnet file %s lacks %s", file.Path, strings.Join(missing, ", ")),
		Evidence:    []string{fmt.Sprintf("%s uses plugin flannel, which needs %s in %s", conf, strings.Join(flannelSubnetKeys, ", "), file.Path)},
		Explanation: "Every pod sandbox on this node fails to start: Flannel's plugin refuses a subnet file without these keys.",
		Fix:         "restart flanneld so it rewrites the file"}}
}

func checkCIDROverlap(e *env) ([]Finding, string) {
	if !e.cluster.IsValid() {
		return nil, ""
	}
	var evidence []string
	if e.cluster.Overlaps(e.cfg.ServiceCIDR) {
		evidence = append(evidence, fmt.Sprintf("pod network %s overlaps the Service range %s", e.cluster, e.cfg.ServiceCIDR))
	}
	vx := map[string]bool{}
	for _, l := range e.vxlanLinks() {
		vx[l.Name] = true
	}
	br := e.podBridge()
	for _, a := range e.snap.Addrs {
		l := e.links[a.Link]
		if a.Link == br || vx[a.Link] || a.Link == "lo" || (l != nil && l.Master == br) || !a.Prefix.Addr().Is4() {
			continue
		}
		if e.cluster.Overlaps(a.Prefix.Masked()) {
			evidence = append(evidence, fmt.Sprintf("pod network %s overlaps %s on %s (node network)", e.cluster, a.Prefix, a.Link))
		}
	}
	if len(evidence) == 0 {
		return nil, ""
	}
	return []Finding{{Severity: Error, Failure: "F7",
		Title:       "the pod network overlaps another network of this node",
		Evidence:    evidence,
		Explanation: "Routes for pods and for the other network compete: some pods, Services or hosts become unreachable depending on which route wins.",
		Fix:         "choose a pod network (net-conf.json Network, kubeadm --pod-network-cidr) that overlaps neither the node networks nor the Service range"}}, ""
}
