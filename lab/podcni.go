package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twillnet/twill/cni"
	"github.com/twillnet/twill/cni/invoke"
)

// cniCall is the plugin invocation for pod p of node n, as a container
// runtime on the node would make it (container ID = pod name).
func cniCall(n *Node, p *Pod) invoke.Call {
	return invoke.Call{
		Plugin:      cniPlugin(n.Root),
		NodeNetns:   n.Namespace,
		Root:        n.Root,
		ContainerID: p.Name,
		Netns:       filepath.Join(netnsDir, p.Namespace),
		Config:      twillPluginConfig(n.Root),
	}
}

// twillPluginConfig is twill's entry of the node's installed conflist
// (<root>/etc/cni/net.d/10-twill.conflist) with the list's name and
// cniVersion, as a runtime passes it; nil (the plugin's default config)
// when the node has none. A node migrated from Flannel keeps Flannel's
// network name there (cbr0), and with it host-local's allocations.
func twillPluginConfig(root string) []byte {
	b, err := os.ReadFile(filepath.Join(root, "etc/cni/net.d/10-twill.conflist"))
	if err != nil {
		return nil
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if json.Unmarshal(b, &list) != nil {
		return nil
	}
	for _, pl := range list.Plugins {
		if pl["type"] == "twill" {
			pl["name"], pl["cniVersion"] = list.Name, list.CNIVersion
			out, err := json.Marshal(pl)
			if err != nil {
				return nil
			}
			return out
		}
	}
	return nil
}

// AddPod creates one more pod on node of lab name through the node's
// current CNI plugin (twill-cni with the node's installed conflist, or
// bridge and host-local on a Flannel node), starts its server and records
// it once its server answers. It returns the new pod.
func AddPod(ctx context.Context, name, node string) (Pod, error) {
	if err := requireRoot(); err != nil {
		return Pod{}, err
	}
	st, err := Load(name)
	if err != nil {
		return Pod{}, err
	}
	if !st.AgentMode() {
		return Pod{}, fmt.Errorf("lab %s runs in static mode: pods are added through a CNI plugin in agent mode only", st.Name)
	}
	n, err := st.node(node)
	if err != nil {
		return Pod{}, err
	}
	k := len(n.Pods)
	if k >= 26 {
		return Pod{}, fmt.Errorf("node %s has %d pods already: pod names run out at %s", n.Name, k, PodName(n.Index, 25))
	}
	p := Pod{Index: k, Name: PodName(n.Index, k), Namespace: st.Name + "-" + PodName(n.Index, k), Node: n.Name}
	p.HostVeth = cni.HostVethName(p.Name, podIface)
	setup := setupPodCNI
	if n.Flannel {
		setup = setupPodFlannel
	}
	if err := setup(ctx, st, n, &p); err != nil {
		_ = deleteNS(p.Namespace)
		return Pod{}, err
	}
	n.Pods = append(n.Pods, p)
	if err := st.save(); err != nil {
		return p, err
	}
	one := &State{Name: st.Name, Nodes: []Node{{Name: n.Name, Pods: []Pod{p}}}}
	return p, waitServers(ctx, one, 5*time.Second)
}

// setupPodCNI creates pod p of node n through the twill-cni plugin (agent
// mode): the lab makes the pod's namespace, the plugin makes cni0, the veth
// and the address; the lab records the address the plugin chose and starts
// the pod's server.
func setupPodCNI(ctx context.Context, st *State, n *Node, p *Pod) error {
	if err := createNS(p.Namespace); err != nil {
		return err
	}
	res, err := cniCall(n, p).Add(ctx)
	if err != nil {
		return fmt.Errorf("pod %s: CNI ADD on %s: %w", p.Name, n.Name, err)
	}
	if len(res.IPs) == 0 {
		return fmt.Errorf("pod %s: CNI ADD on %s returned no address", p.Name, n.Name)
	}
	p.IP = res.IPs[0].Address.IP.String()
	if st.HasIPv6() {
		if err := recordFamilies(st, n, p, res.IPs); err != nil {
			return err
		}
	}
	return startServer(st, p)
}

// startServer starts pod p's `twill lab serve` daemon. In agent mode it also
// serves the echo port (static labs keep the single port they always had:
// test/difftrace relies on nothing else listening).
func startServer(st *State, p *Pod) error {
	argv := []string{st.Binary, "lab", "serve", "--port", strconv.Itoa(ServerPort), "--name", p.Name}
	if st.AgentMode() {
		argv = append(argv, "--echo-port", strconv.Itoa(EchoPort))
	}
	proc, err := startDaemon(p.Namespace, argv, filepath.Join(StateDir(st.Name), "logs", p.Name+".log"), nil)
	if err != nil {
		return fmt.Errorf("pod %s: server: %w", p.Name, err)
	}
	p.Server = proc
	return nil
}
