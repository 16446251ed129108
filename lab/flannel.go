package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/twillnet/twill/cni/invoke"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/subnetfile"
)

// Flannel nodes (Config.FlannelNodes): the first N nodes run the real
// flanneld (bin/flanneld, Flannel's own code built from its module) instead
// of `twill agent`: against the same etcd under Flannel's prefix, or with
// the Kubernetes store through the lab's kube-apiserver
// (--kube-subnet-mgr: the node's podCIDR, Flannel's annotations). They are
// laid out as kube-flannel's install lays out a node: Flannel's CNI plugin
// (opt/cni/bin/flannel) with bridge, host-local and portmap beside it, and
// kube-flannel's conflist; pods are made by calling the flannel plugin,
// which reads run/flannel/subnet.env and delegates to bridge (cni0) with
// host-local (network cbr0, allocations in <root>/var/lib/cni/networks/cbr0).
// Everything a node keeps on disk stays under its root.

// FlannelNetwork is the CNI network name of Flannel's conflist (kube-flannel's
// "cbr0"): host-local keeps its allocations in /var/lib/cni/networks/cbr0.
const FlannelNetwork = "cbr0"

// FlannelConflistName is the file name of Flannel's conflist in /etc/cni/net.d.
const FlannelConflistName = "10-flannel.conflist"

// FlannelConflist is kube-flannel's conflist, installed on Flannel nodes.
const FlannelConflist = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}` + "\n"

// FindFlanneld resolves the flanneld binary: explicit (flag), then
// $TWILL_FLANNELD_BIN, then next to twill, ./bin, $PATH.
func FindFlanneld(explicit string) (string, error) {
	return findBinary("flanneld", explicit, "--flanneld-bin", "TWILL_FLANNELD_BIN",
		"flanneld not found: run `make tools` (scripts/setup.sh builds bin/flanneld) or pass --flanneld-bin")
}

// findCNIPlugin resolves an upstream CNI plugin (bridge, host-local,
// portmap) the lab installs on Flannel nodes: in cni/ next to flanneld
// (where scripts/setup.sh builds them), else ./bin/cni. They live in a
// directory of their own because their names are those of system commands
// (iproute2's bridge): in bin/, which `lab exec` puts first on PATH in a
// Kubernetes lab, `bridge fdb show` would run the CNI plugin.
func findCNIPlugin(name, flanneld string) (string, error) {
	for _, dir := range []string{filepath.Join(filepath.Dir(flanneld), "cni"), filepath.Join("bin", "cni")} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%s (CNI plugin) not found in cni/ next to %s or in ./bin/cni: run `make tools` (scripts/setup.sh builds bin/cni/bridge, host-local and portmap)", name, flanneld)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// prefix is the etcd prefix of the lab's network: Flannel's when the lab
// was built with Flannel nodes (so both speak one store), else twill's.
func (st *State) prefix() string {
	if st.EtcdPrefix != "" {
		return st.EtcdPrefix
	}
	return lease.DefaultPrefix
}

// Prefix is the etcd prefix under which the lab's nodes keep their leases
// and net-conf.json.
func (st *State) Prefix() string { return st.prefix() }

// flannelSubnetFile is where node n's flanneld writes its subnet.env.
func flannelSubnetFile(root string) string { return filepath.Join(root, subnetfile.FlannelPath) }

// flanneldArgv is node n's flanneld command line, as kube-flannel runs it
// (--ip-masq), with its subnet file inside the node's root.
//
// With the Kubernetes store it runs Flannel's Kubernetes subnet manager as
// kube-flannel does (--kube-subnet-mgr, net-conf.json from a file), with
// the node's kubeconfig (its user is bound to the ClusterRole twill ships,
// which grants what flanneld needs too: nodes get/list/watch/patch,
// nodes/status patch) and its name in NODE_NAME (flanneldEnv).
func flanneldArgv(st *State, n Node) []string {
	store := []string{"--etcd-endpoints", EtcdEndpoint, "--etcd-prefix", st.prefix()}
	if st.Store == StoreKubernetes {
		store = []string{"--kube-subnet-mgr", "--kubeconfig-file", nodeKubeconfig(n.Root), "--net-config-path", flannelNetConf(n.Root)}
	}
	return append([]string{st.FlanneldBin}, append(store,
		"--iface", nodeUplink,
		"--public-ip", n.IP,
		"--subnet-file", flannelSubnetFile(n.Root),
		"--ip-masq",
		"--iptables-resync", "5",
		"--healthz-ip", "127.0.0.1",
		"--healthz-port", AgentHealthPort,
	)...)
}

// flanneldEnv is node n's flanneld environment: with the Kubernetes store,
// NODE_NAME (kube-flannel sets it from the pod's spec.nodeName).
func flanneldEnv(st *State, n Node) []string {
	if st.Store != StoreKubernetes {
		return nil
	}
	return []string{"NODE_NAME=" + n.Name}
}

// flannelNetConf is where flanneld --kube-subnet-mgr reads net-conf.json on
// node root (where kube-flannel mounts its ConfigMap).
func flannelNetConf(root string) string { return filepath.Join(root, "etc/kube-flannel/net-conf.json") }

// installFlannelFiles installs on Flannel node n what kube-flannel's
// install step would: Flannel's CNI plugin and the plugins it delegates to
// and chains (bridge, host-local, portmap), Flannel's conflist,
// and a seed subnet.env naming the node's planned subnet (flanneld asks for
// the subnet of its previous subnet file first, which keeps node i on
// 10.244.i.0/24).
func installFlannelFiles(st *State, n *Node) error {
	for name, src := range flannelPlugins(st) {
		if err := copyFile(src, filepath.Join(n.Root, "opt/cni/bin", name), 0o755); err != nil {
			return fmt.Errorf("node %s: install the %s plugin: %w", n.Name, name, err)
		}
	}
	conf := filepath.Join(n.Root, "etc/cni/net.d", FlannelConflistName)
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := os.WriteFile(conf, []byte(FlannelConflist), 0o644); err != nil {
		return fmt.Errorf("node %s: write %s: %w", n.Name, conf, err)
	}
	seed := subnetfile.Info{
		Network: ClusterCIDR,
		Subnet:  subnetfile.Gateway(netip.MustParsePrefix(n.Subnet)),
		MTU:     PodMTU(st.Backend),
		IPMasq:  true,
	}
	return subnetfile.WriteContent(flannelSubnetFile(n.Root), seed.RenderFlannel())
}

// flannelPlugins are the CNI plugins a Flannel node has, by name: Flannel's
// own, the ones it delegates to and portmap, which its conflist chains.
func flannelPlugins(st *State) map[string]string {
	return map[string]string{"flannel": st.FlannelCNIBin, "bridge": st.BridgeBin, "host-local": st.HostLocalBin, "portmap": st.PortmapBin}
}

func readFlannelSubnetFile(root string) (subnetfile.Info, error) {
	p := flannelSubnetFile(root)
	b, err := os.ReadFile(p)
	if err != nil {
		return subnetfile.Info{}, fmt.Errorf("flanneld has not written %s yet: %w", p, err)
	}
	return subnetfile.Parse(p, string(b))
}

// flannelPluginConfig is the flannel entry of kube-flannel's conflist
// (FlannelConflist) with the list's name and cniVersion, as a runtime
// passes it to the plugin, plus where node n keeps its files: the subnet
// file, the plugin's scratch directory and host-local's allocations are
// under the node's root (a real node has them at their defaults:
// /run/flannel/subnet.env, /var/lib/cni/flannel, /var/lib/cni/networks).
func flannelPluginConfig(n *Node) ([]byte, error) {
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(FlannelConflist), &list); err != nil {
		return nil, err
	}
	conf := list.Plugins[0]
	conf["name"], conf["cniVersion"] = list.Name, list.CNIVersion
	conf["subnetFile"] = flannelSubnetFile(n.Root)
	conf["dataDir"] = filepath.Join(n.Root, "var/lib/cni/flannel")
	conf["ipam"] = map[string]any{"dataDir": filepath.Join(n.Root, "var/lib/cni/networks")}
	return json.Marshal(conf)
}

// setupPodFlannel creates pod p of Flannel node n through Flannel's CNI
// plugin, which delegates to bridge with host-local.
func setupPodFlannel(ctx context.Context, st *State, n *Node, p *Pod) error {
	if err := createNS(p.Namespace); err != nil {
		return err
	}
	if _, err := readFlannelSubnetFile(n.Root); err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	conf, err := flannelPluginConfig(n)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	call := invoke.Call{
		Plugin:      filepath.Join(n.Root, "opt/cni/bin/flannel"),
		NodeNetns:   n.Namespace,
		ContainerID: p.Name,
		Netns:       filepath.Join(netnsDir, p.Namespace),
		Config:      conf,
	}
	res, err := call.Add(ctx)
	if err != nil {
		return fmt.Errorf("pod %s: CNI ADD (flannel, delegating to bridge and host-local) on %s: %w", p.Name, n.Name, err)
	}
	if len(res.IPs) == 0 {
		return fmt.Errorf("pod %s: CNI ADD on %s returned no address", p.Name, n.Name)
	}
	p.IP = res.IPs[0].Address.IP.String()
	for _, i := range res.Interfaces {
		if i.Sandbox == "" && i.Name != podBridge {
			p.HostVeth = i.Name
		}
	}
	return startServer(st, p)
}

// Leases returns the leases of lab name as every node's store sees them:
// in etcd under its prefix (Flannel's and twill's alike), or with the
// Kubernetes store the lease each Node object publishes (its podCIDR and
// twill's or Flannel's annotations, as kube.LeaseOf reads them; a Node
// that publishes none is left out).
func Leases(ctx context.Context, name string) ([]lease.Lease, error) {
	st, err := Load(name)
	if err != nil {
		return nil, err
	}
	if st.KubeMode() {
		nodes, err := KubeNodes(ctx, name)
		if err != nil {
			return nil, err
		}
		var out []lease.Lease
		for _, n := range nodes {
			l, ok, err := kube.LeaseOf(n, netconf.Config{Network: ClusterCIDR})
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, l)
			}
		}
		return out, nil
	}
	c, err := etcdClient(st)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return leaseetcd.List(ctx, c, st.prefix())
}

// KubeNodes returns what twill reads of every Node object of lab name
// (Kubernetes store): name, podCIDRs and annotations.
func KubeNodes(ctx context.Context, name string) ([]kube.NodeInfo, error) {
	st, err := Load(name)
	if err != nil {
		return nil, err
	}
	c, err := kubeAdmin(st)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("kube: list Nodes: %w", err)
	}
	out := make([]kube.NodeInfo, 0, len(list.Items))
	for _, n := range list.Items {
		out = append(out, kube.NodeInfo{Name: n.Name, PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs, Annotations: n.Annotations})
	}
	return out, nil
}
