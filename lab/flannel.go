package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/twillnet/twill/cni/invoke"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/subnetfile"
)

// Flannel nodes (Config.FlannelNodes): the first N nodes run the real
// flanneld (bin/flanneld, Flannel's own code built from its module) instead
// of `twill agent`, against the same etcd under Flannel's prefix, and their
// pods are wired by the standard bridge and host-local plugins with the
// configuration Flannel's CNI plugin delegates to them: bridge cni0,
// network cbr0, host-local's allocations in <root>/var/lib/cni/networks/cbr0.
// Everything a node keeps on disk stays under its root.

// FlannelNetwork is the CNI network name of Flannel's conflist (kube-flannel's
// "cbr0"): host-local keeps its allocations in /var/lib/cni/networks/cbr0.
const FlannelNetwork = "cbr0"

// FlannelConflistName is the file name of Flannel's conflist in /etc/cni/net.d.
const FlannelConflistName = "10-flannel.conflist"

// FlannelConflist is kube-flannel's conflist, installed on Flannel nodes
// for the record (a runtime would call the flannel plugin, which delegates
// to bridge; the lab calls bridge with that delegated config directly).
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
func flanneldArgv(st *State, n Node) []string {
	return []string{st.FlanneldBin,
		"--etcd-endpoints", EtcdEndpoint,
		"--etcd-prefix", st.prefix(),
		"--iface", nodeUplink,
		"--public-ip", n.IP,
		"--subnet-file", flannelSubnetFile(n.Root),
		"--ip-masq",
		"--iptables-resync", "5",
		"--healthz-ip", "127.0.0.1",
		"--healthz-port", AgentHealthPort,
	}
}

// installFlannelFiles installs on Flannel node n what kube-flannel's
// install step would: the bridge and host-local plugins, Flannel's conflist,
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

// flannelPlugins are the CNI plugins a Flannel node has, by name: the ones
// Flannel's plugin delegates to and portmap, which its conflist chains.
func flannelPlugins(st *State) map[string]string {
	return map[string]string{"bridge": st.BridgeBin, "host-local": st.HostLocalBin, "portmap": st.PortmapBin}
}

func readFlannelSubnetFile(root string) (subnetfile.Info, error) {
	p := flannelSubnetFile(root)
	b, err := os.ReadFile(p)
	if err != nil {
		return subnetfile.Info{}, fmt.Errorf("flanneld has not written %s yet: %w", p, err)
	}
	return subnetfile.Parse(p, string(b))
}

// flannelDelegate is the bridge configuration Flannel's CNI plugin hands
// to bridge for node n (from its subnet.env): cni0 as the pods' gateway,
// hairpin, the subnet's MTU, host-local over the node's subnet with a route
// to the whole pod network, IP masquerade left to flanneld (--ip-masq).
func flannelDelegate(n *Node) ([]byte, error) {
	info, err := readFlannelSubnetFile(n.Root)
	if err != nil {
		return nil, err
	}
	conf := map[string]any{
		"cniVersion":       "1.0.0",
		"name":             FlannelNetwork,
		"type":             "bridge",
		"bridge":           podBridge,
		"isGateway":        true,
		"isDefaultGateway": true,
		"hairpinMode":      true,
		"ipMasq":           !info.IPMasq,
		"mtu":              info.MTU,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": info.Subnet.Masked().String()}}},
			"routes":  []map[string]string{{"dst": info.Network.String()}},
			"dataDir": filepath.Join(n.Root, "var/lib/cni/networks"),
		},
	}
	return json.Marshal(conf)
}

// setupPodFlannel creates pod p of Flannel node n through the bridge plugin
// (with host-local), as Flannel's CNI plugin delegates it.
func setupPodFlannel(ctx context.Context, st *State, n *Node, p *Pod) error {
	if err := createNS(p.Namespace); err != nil {
		return err
	}
	conf, err := flannelDelegate(n)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	call := invoke.Call{
		Plugin:      filepath.Join(n.Root, "opt/cni/bin/bridge"),
		NodeNetns:   n.Namespace,
		ContainerID: p.Name,
		Netns:       filepath.Join(netnsDir, p.Namespace),
		Config:      conf,
	}
	res, err := call.Add(ctx)
	if err != nil {
		return fmt.Errorf("pod %s: CNI ADD (bridge, host-local) on %s: %w", p.Name, n.Name, err)
	}
	if len(res.IPs) == 0 {
		return fmt.Errorf("pod %s: CNI ADD on %s returned no address", p.Name, n.Name)
	}
	p.IP = res.IPs[0].Address.IP.String()
	for _, i := range res.Interfaces {
		if i.Sandbox == "" {
			p.HostVeth = i.Name
		}
	}
	return startServer(st, p)
}

// Leases returns the leases in lab name's etcd under its prefix (Flannel's
// and twill's alike), as every node's store sees them.
func Leases(ctx context.Context, name string) ([]lease.Lease, error) {
	st, err := Load(name)
	if err != nil {
		return nil, err
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
