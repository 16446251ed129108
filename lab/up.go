package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"
)

// ErrExists is returned by Up when a lab of that name already exists.
var ErrExists = errors.New("lab already exists")

// Up builds the lab described by c and returns its state. It refuses if the
// lab exists (state dir or any of its namespaces). On any failure, or when
// ctx is cancelled (Ctrl-C), it tears down everything it made before
// returning the error.
func Up(ctx context.Context, c Config) (st *State, err error) {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(StateDir(c.Name)); err == nil {
		return nil, fmt.Errorf("lab %q: %w (%s); remove it first with `twill lab down --name %s`, or pick another --name", c.Name, ErrExists, StateDir(c.Name), c.Name)
	}
	if nss, _ := labNamespaces(c.Name); len(nss) > 0 {
		return nil, fmt.Errorf("lab %q: %w: namespaces %v are left over; remove them with `twill lab down --name %s`", c.Name, ErrExists, nss, c.Name)
	}
	if c.EtcdBin, err = FindEtcd(c.EtcdBin); err != nil {
		return nil, err
	}
	if c.Self == "" {
		if c.Self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the twill binary for the pod servers: %w", err)
		}
	}
	if c.Agent && !c.Kubernetes {
		if c.CNIBin, err = FindCNI(c.CNIBin); err != nil {
			return nil, err
		}
	}
	if c.FlannelNodes > 0 {
		if c.FlanneldBin, err = FindFlanneld(c.FlanneldBin); err != nil {
			return nil, err
		}
		if c.bridgeBin, err = findCNIPlugin("bridge", c.FlanneldBin); err != nil {
			return nil, err
		}
		if c.hostLocalBin, err = findCNIPlugin("host-local", c.FlanneldBin); err != nil {
			return nil, err
		}
		if c.portmapBin, err = findCNIPlugin("portmap", c.FlanneldBin); err != nil {
			return nil, err
		}
		if c.flannelCNIBin, err = findCNIPlugin("flannel", c.FlanneldBin); err != nil {
			return nil, err
		}
	}
	if c.Store == StoreKubernetes {
		if c.KubeAPIServerBin, err = FindKubeAPIServer(c.KubeAPIServerBin); err != nil {
			return nil, err
		}
		if c.KubectlBin, err = FindKubectl(c.KubectlBin); err != nil {
			return nil, err
		}
	}
	var real RealState
	if c.Kubernetes {
		if c.ImageDir, err = FindImageDir(c.ImageDir); err != nil {
			return nil, err
		}
		real.Containerd = c.Containerd
		if err := findRealBinaries(&real); err != nil {
			return nil, err
		}
		if err = readImageRefs(c.ImageDir, &real); err != nil {
			return nil, err
		}
	}
	st = plan(c)
	if st.Real != nil {
		real.ProxyMode, real.ImageDir = st.Real.ProxyMode, st.Real.ImageDir
		*st.Real = real
	}
	started := time.Now()
	defer func() {
		if err != nil && c.KeepOnFailure {
			fmt.Fprintf(c.Out, "lab up failed: the lab is left as it is for inspection (logs in %s); remove it with `twill lab down --name %s`\n", filepath.Join(StateDir(c.Name), "logs"), c.Name)
			return
		}
		if err != nil {
			fmt.Fprintf(c.Out, "lab up failed: cleaning up what was made ...\n")
			if derr := Down(context.Background(), c.Name, nil); derr != nil {
				err = fmt.Errorf("%w (and cleanup failed: %v)", err, derr)
			}
			st = nil
		}
	}()
	if err := os.MkdirAll(filepath.Join(StateDir(c.Name), "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: state dir: %w", c.Name, err)
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	mode := st.Mode
	switch {
	case st.RealMode():
		mode += " (real nodes: kubelet, containerd " + st.Real.Containerd + ", kube-proxy " + st.Real.ProxyMode + "; twill from its image)"
	case st.KubeMode():
		mode += " (leases through kube-apiserver)"
	}
	if st.HasIPv6() {
		mode += ", IP family " + st.Family()
	}
	switch {
	case c.FlannelNodes > 0 && st.KubeMode():
		mode += fmt.Sprintf(", flanneld --kube-subnet-mgr on node1..node%d", c.FlannelNodes)
	case c.FlannelNodes > 0:
		mode += fmt.Sprintf(", flanneld on node1..node%d (etcd prefix %s)", c.FlannelNodes, st.prefix())
	}
	fmt.Fprintf(c.Out, "Building lab %q: %d nodes x %d pods, backend %s, %s mode (state in %s)\n", c.Name, c.Nodes, c.Pods, st.BackendName(), mode, StateDir(c.Name))
	steps := staticSteps(ctx, c, st)
	switch {
	case st.RealMode():
		steps = realSteps(ctx, c, st)
	case st.KubeMode():
		steps = kubeSteps(ctx, c, st)
	case c.Agent:
		steps = agentSteps(ctx, c, st)
	}
	p := &progress{w: c.Out, total: len(steps)}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		if err := p.step(s.title, s.fn); err != nil {
			return nil, err
		}
		if err := st.save(); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(c.Out, "Lab %q is up (%s).\n\n", c.Name, since(started))
	return st, nil
}

// step is one numbered step of Up.
type step struct {
	title string
	fn    func() error
}

// underlaySteps build the underlay, etcd and the nodes' uplinks (both modes).
func underlaySteps(ctx context.Context, st *State) []step {
	return []step{
		{fmt.Sprintf("underlay: namespace %s, bridge %s %s/24", st.Underlay, underlayBridge, UnderlayGateway), func() error { return setupUnderlay(st) }},
		{fmt.Sprintf("etcd: %s in %s, waiting until healthy", EtcdEndpoint, st.Underlay), func() error { return startEtcd(ctx, st) }},
		{fmt.Sprintf("nodes: %d namespaces, eth0 on %s, 192.168.77.11..%d", len(st.Nodes), underlayBridge, 10+len(st.Nodes)), func() error {
			return eachNode(ctx, st, func(n *Node) error { return setupNodeUplink(st, n) })
		}},
	}
}

// agentSteps build an agent-mode lab: real agents, pods through twill-cni.
func agentSteps(ctx context.Context, c Config, st *State) []step {
	return append(underlaySteps(ctx, st), []step{
		{fmt.Sprintf("net-conf.json in etcd (%s, Backend %s); CNI plugin and conflist and a seed subnet file in each node's root", st.networksText(), st.BackendName()), func() error {
			if err := putNetConf(ctx, st); err != nil {
				return err
			}
			return eachNode(ctx, st, func(n *Node) error {
				if n.Flannel {
					return installFlannelFiles(st, n)
				}
				if err := installCNI(st, n); err != nil {
					return err
				}
				// The agent asks for the subnet of its last subnet file: this
				// keeps node i on 10.244.i.0/24.
				return writeNodeFiles(st, n)
			})
		}},
		agentsStep(ctx, c, st, "`twill agent`", readLeases),
		podsStep(ctx, c, st),
		servicesStep(ctx, st),
		{"checking: every pod server is up", func() error { return waitServers(ctx, st, 5*time.Second) }},
	}...)
}

// kubeSteps build an agent-mode lab whose agents lease through a real
// kube-apiserver (Config.Store = StoreKubernetes).
func kubeSteps(ctx context.Context, c Config, st *State) []step {
	return append(underlaySteps(ctx, st), []step{
		{fmt.Sprintf("kube-apiserver: %s in %s (etcd prefix %s, RBAC, token users), waiting for /readyz (10-30 s)", KubeAPIServerURL, st.Underlay, KubeEtcdPrefix), func() error {
			if err := startKubeAPIServer(ctx, st, c.Out); err != nil {
				return err
			}
			return setupKubeRBAC(ctx, st)
		}},
		{fmt.Sprintf("Node objects with spec.podCIDR 10.244.<i>.0/24; in each node's root: kubeconfig (user twill-<node>, bound to ClusterRole twill), net-conf.json (Backend %s), CNI plugin and conflist", st.BackendName()), func() error {
			if err := registerNodes(ctx, st); err != nil {
				return err
			}
			return eachNode(ctx, st, func(n *Node) error {
				if err := writeNetConfFile(st, n, nodeNetConf(n.Root)); err != nil {
					return err
				}
				if n.Alt != nil {
					if err := writeNetConfFile(st, n, flannelNetConf(n.Root)); err != nil {
						return err
					}
				}
				if n.Flannel {
					return installFlannelFiles(st, n)
				}
				if err := installCNI(st, n); err != nil {
					return err
				}
				return writeNodeFiles(st, n)
			})
		}},
		agentsStep(ctx, c, st, "`twill agent --store kubernetes`", readKubeLeases),
		podsStep(ctx, c, st),
		servicesStep(ctx, st),
		{fmt.Sprintf("API objects: Pods (status: their real addresses), Services and EndpointSlices in namespace %s", KubeNamespace), func() error {
			return registerWorkloads(ctx, st)
		}},
		{"checking: every pod server is up", func() error { return waitServers(ctx, st, 5*time.Second) }},
	}...)
}

// staticSteps build a static-mode lab: the lab programs the pod network.
func staticSteps(ctx context.Context, c Config, st *State) []step {
	return append(underlaySteps(ctx, st), []step{
		{fmt.Sprintf("pod network (%s): sysctls, %s, routes to peers, leases in etcd, subnet files", st.Backend, podBridge), func() error { return setupPodNetwork(ctx, st) }},
		{fmt.Sprintf("pods: %d per node, each running `twill lab serve` on :%d", c.Pods, ServerPort), func() error {
			return eachNode(ctx, st, func(n *Node) error {
				for k := range n.Pods {
					if err := setupPod(st, n, &n.Pods[k]); err != nil {
						return err
					}
				}
				return nil
			})
		}},
		{"services: kube-proxy iptables rules and masquerade on every node", func() error {
			return eachNode(ctx, st, func(n *Node) error { return applyFirewall(ctx, st, n) })
		}},
		{"checking: every pod server is up", func() error { return waitServers(ctx, st, 5*time.Second) }},
	}...)
}

// eachNode runs fn for every node, stopping at the first error or when ctx is done.
func eachNode(ctx context.Context, st *State, fn func(n *Node) error) error {
	for i := range st.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(&st.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

// setupPodNetwork programs every node's pod network, peers, leases and files.
func setupPodNetwork(ctx context.Context, st *State) error {
	return eachNode(ctx, st, func(n *Node) error {
		if err := setupNodePodNetwork(st, n); err != nil {
			return err
		}
		for j := range st.Nodes {
			if p := &st.Nodes[j]; p.Index != n.Index {
				if err := programPeer(st, n, p); err != nil {
					return err
				}
			}
		}
		if err := writeNodeFiles(st, n); err != nil {
			return err
		}
		if n.Index == len(st.Nodes) {
			return writeLeases(ctx, st)
		}
		return nil
	})
}

// waitServers waits until every pod server accepts a connection on its own
// address (from inside its own pod), bounded by d.
func waitServers(ctx context.Context, st *State, d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			for _, addr := range p.Addrs() {
				for {
					_, err := Call(ctx, p.Namespace, hostPort(addr, ServerPort), 500*time.Millisecond, false)
					if err == nil {
						break
					}
					if p.Server.PID > 0 && !p.Server.Alive() { // real nodes: the pod is kubelet's, no PID here
						return fmt.Errorf("pod %s: server (pid %d) exited: %s", p.Name, p.Server.PID, tail(p.Server.Log, 5))
					}
					if time.Now().After(deadline) || ctx.Err() != nil {
						return fmt.Errorf("pod %s: server not answering on %s after %s: %v (log %s)", p.Name, addr, d, err, p.Server.Log)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}
	return nil
}

// requireRoot fails clearly when not run as root.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("twill lab needs root (it creates network namespaces); run it with sudo on a spare machine")
	}
	return nil
}

// PrintSummary writes the table of nodes and pods and a few hints.
func PrintSummary(w io.Writer, st *State) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAMESPACE\tUNDERLAY IP\tPOD SUBNET\tPODS")
	for _, n := range st.Nodes {
		pods := ""
		for i, p := range n.Pods {
			if i > 0 {
				pods += ", "
			}
			pods += p.Name + " " + joinSet(p.IP, p.IPv6)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Namespace, joinSet(n.IP, n.IPv6), joinSet(n.Subnet, n.IPv6Subnet), pods)
	}
	tw.Flush()
	fmt.Fprintf(w, "\netcd: %s (in %s)   backend: %s\n", st.EtcdEndpoint, st.Underlay, st.BackendName())
	if st.HasIPv6() {
		fmt.Fprintf(w, "IP family: %s (IPv6 pod network %s, outside at %s)\n", st.Family(), ClusterCIDRv6, UnderlayGatewayV6)
	}
	switch {
	case st.RealMode():
		fmt.Fprintf(w, "kube-apiserver: %s (in %s); admin kubeconfig %s; twill: DaemonSet %s/%s (%s), kube-proxy --proxy-mode %s, %s\n",
			st.Kube.URL, st.Underlay, st.Kube.AdminKubeconfig, TwillNamespace, TwillDaemonSet, st.Real.TwillImage, st.Real.ProxyMode, st.Real.runtimeName())
	case st.KubeMode():
		fmt.Fprintf(w, "kube-apiserver: %s (in %s); admin kubeconfig %s; agents use %s in their roots\n", st.Kube.URL, st.Underlay, st.Kube.AdminKubeconfig, "etc/twill/kubeconfig")
	}
	for _, line := range st.servicesText() {
		fmt.Fprintln(w, line)
	}
	fl := ""
	if st.Name != DefaultName {
		fl = " --name " + st.Name
	}
	last := st.Nodes[len(st.Nodes)-1]
	podTo, streamTo := v6Hints(st, last)
	hints := [][2]string{
		{fmt.Sprintf("twill lab call%s node1-a %s", fl, podTo), "pod to pod across nodes"},
		{fmt.Sprintf("twill lab call%s node1-a %s", fl, localVIPHint(st)), "Service whose endpoint is on the same bridge"},
		{fmt.Sprintf("twill lab break%s F1 node1", fl), "then call again; `twill lab scenarios` lists them all"},
		{fmt.Sprintf("twill lab exec%s node1 -- iptables-nft-save", fl), "any command inside a node or pod"},
	}
	if st.RealMode() {
		hints = append(hints[:2], [2]string{fmt.Sprintf("twill lab exec%s underlay -- kubectl get pods -A -o wide", fl), "the cluster's pods: twill's DaemonSet, the lab's pods"},
			hints[3])
	}
	if st.AgentMode() {
		hints = append(hints,
			[2]string{fmt.Sprintf("twill lab stream%s node1-a %s --for 10s & twill lab agent%s %s kill; twill lab agent%s %s start", fl, streamTo, fl, last.Name, fl, last.Name), "a TCP stream survives an agent kill -9 and restart"},
			[2]string{fmt.Sprintf("twill lab exec%s node1 -- curl -s %s/metrics", fl, AgentHealthAddr), "node1's agent: lease, peers, repairs"})
	}
	if st.KubeMode() {
		hints = append(hints,
			[2]string{fmt.Sprintf("twill lab exec%s node1 -- kubectl get nodes -o wide", fl), "the Node objects (KUBECONFIG is the lab's admin)"},
			[2]string{fmt.Sprintf("twill lab node%s delete %s", fl, last.Name), "delete a Node object: the other nodes drop its route"})
	}
	hints = append(hints, [][2]string{
		{fmt.Sprintf("twill doctor --netns %s --root %s", st.Nodes[0].Namespace, st.Nodes[0].Root), "check node1"},
		{fmt.Sprintf("twill lab down%s", fl), "remove the lab"},
	}...)
	fmt.Fprintf(w, "\nTry:\n")
	for _, h := range hints {
		fmt.Fprintf(w, "  # %s\n  %s\n", h[1], h[0])
	}
}

// agentsStep starts every node's agent, waits until all are ready, then
// checks the leases they took (read with readLeases from their store).
func agentsStep(ctx context.Context, c Config, st *State, what string, readLeases func(context.Context, *State) error) step {
	return step{fmt.Sprintf("agents: %s in each node (resync %s), waiting until every /readyz answers", what, c.AgentResync), func() error {
		if err := eachNode(ctx, st, startAgent); err != nil {
			return err
		}
		if err := st.save(); err != nil {
			return err
		}
		if err := WaitAgentsReady(ctx, st, agentReadyTimeout, c.Out); err != nil {
			return err
		}
		return readLeases(ctx, st)
	}}
}

// podsStep creates every pod through the real CNI plugin.
func podsStep(ctx context.Context, c Config, st *State) step {
	return step{fmt.Sprintf("pods: %d per node through twill-cni (CNI ADD), each running `twill lab serve` on :%d", c.Pods, ServerPort), func() error {
		return eachNode(ctx, st, func(n *Node) error {
			for k := range n.Pods {
				setup := setupPodCNI
				if n.Flannel {
					setup = setupPodFlannel
				}
				if err := setup(ctx, st, n, &n.Pods[k]); err != nil {
					return err
				}
			}
			return nil
		})
	}}
}

// servicesStep loads the kube-proxy rules of the lab's Services on every
// node, for each family its pods run.
func servicesStep(ctx context.Context, st *State) step {
	title := "services: kube-proxy iptables rules on every node (masquerade is the agent's)"
	switch {
	case !st.HasIPv4():
		title = "services: kube-proxy ip6tables rules (IPv6 ClusterIPs in " + ServiceCIDRv6.String() + ") on every node (masquerade is the agent's)"
	case st.HasIPv6():
		title = "services: dual-stack, kube-proxy iptables and ip6tables rules (IPv6 ClusterIPs in " + ServiceCIDRv6.String() + ") on every node (masquerade is the agent's)"
	}
	return step{title, func() error {
		return eachNode(ctx, st, func(n *Node) error { return applyFirewall(ctx, st, n) })
	}}
}
