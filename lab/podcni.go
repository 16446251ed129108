package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

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
	}
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
