package doctor

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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

// cniConf is the part of a CNI configuration doctor reads.
type cniConf struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Plugins []struct {
		Type string `json:"type"`
	} `json:"plugins"`
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
		types := []string{c.Type}
		for _, p := range c.Plugins {
			types = append(types, p.Type)
		}
		for _, t := range types {
			if t == "" || slices.Contains(files.CNIPlugins, t) {
				continue
			}
			out = append(out, Finding{Severity: Error, Failure: "F6",
				Title:       fmt.Sprintf("failed to find plugin %q in path [%s]", t, files.CNIBinDir),
				Evidence:    []string{fmt.Sprintf("%s uses plugin %q; %s holds %v", f.Path, t, files.CNIBinDir, files.CNIPlugins)},
				Explanation: "Every pod sandbox on this node fails to start: the runtime cannot run a plugin the configuration names.",
				Fix:         fmt.Sprintf("install the plugin binary %s/%s (twill's init container installs its own; reference plugins come from the containernetworking-plugins package)", files.CNIBinDir, t)})
		}
	}
	return out, ""
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
