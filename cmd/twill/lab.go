package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/picture"
)

func newLabCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build a whole twill cluster in network namespaces, break it, watch doctor fix it",
		Long: `lab builds a virtual cluster on this machine out of network namespaces, so you can
see a pod network work, break it the way real clusters break (FAILURES.md), and
watch 'twill doctor' find and fix it. It needs root and touches nothing outside
the namespaces it creates (nothing in the host's own network namespace).

A lab named "twill" (change with --name) looks like this:

  twill-underlay    the switch between nodes: bridge br0 192.168.77.1/24, and etcd
                    on http://192.168.77.1:2379 holding net-conf.json and the leases
  twill-node1..N    nodes: eth0 192.168.77.(10+i), pod subnet 10.244.i.0/24, a real
                    'twill agent' (lease, vxlan twill.1 or host-gw routes, firewall,
                    drift repair, /readyz and /metrics on 127.0.0.1:9473), the
                    twill-cni plugin in its root, kube-proxy iptables rules
  twill-node1-a..   pods made by twill-cni (CNI ADD): eth0 10.244.i.2, .3, ..., each
                    running a tiny server on :8080 that answers every connection
                    with "<pod> <client ip:port>", and an echo service on :8081

With 'lab up --store kubernetes' a real kube-apiserver runs in the underlay
(https://192.168.77.1:6443, on the lab's etcd): each node is a Node object whose
spec.podCIDR is its subnet, and the agents lease through it with a token bound
to exactly the ClusterRole twill ships. 'lab exec' then sets KUBECONFIG (admin),
so 'twill lab exec node1 -- kubectl get nodes' works.

With 'lab up --static' the lab programs the pod network itself instead (no agent,
no CNI plugin; pods at 10.244.i.(10+k)), a fixed picture for teaching and tracing.

Services (kube-proxy iptables rules on every node):
  10.96.0.10:80     lab/web: every pod
  10.96.1.<i>:80    lab/local-node<i>: pod b of node i (same-bridge Service, F1)
  10.96.0.1:443     default/kubernetes (rules only; F5a deletes its DNAT)

State lives in /run/twill-lab/<name>/ (state.json, etcd data, logs, and each
node's file root, where its subnet file is run/twill/subnet.env). 'twill lab
status' shows the real pod addresses. See docs/lab.md.

Start with 'twill lab demo', or build one and explore it yourself.`,
		Example: `  twill lab demo                        # the guided tour (builds and removes a lab)
  twill lab up --nodes 3 --pods 2       # build a lab and keep it
  twill lab status                      # nodes, pods and their addresses, agents
  twill lab call node1-a 10.244.2.2:8080
  twill lab call node1-a 10.96.1.1:80   # Service with an endpoint on the same bridge
  twill lab break F1 node1              # pauses node1's agent, bridge-nf-call-iptables=0
  twill lab call node1-a 10.96.1.1:80   # now it times out
  twill doctor --netns twill-node1 --root /run/twill-lab/twill/nodes/node1/root
  twill lab fix F1 node1
  twill lab exec node1 -- iptables-nft-save -t nat
  twill lab agent node2 kill; twill lab agent node2 start
  twill lab stream node1-a 10.244.2.2:8081 --for 10s
  twill lab down`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", lab.DefaultName, "lab name; every namespace it creates starts with <name>-")
	cmd.AddCommand(
		newLabUpCmd(&name), newLabDownCmd(&name), newLabStatusCmd(&name),
		newLabExecCmd(&name), newLabCallCmd(&name),
		newLabBreakCmd(&name), newLabFixCmd(&name), newLabScenariosCmd(),
		newLabDemoCmd(&name), newLabServeCmd(),
		newLabAgentCmd(&name), newLabEtcdCmd(&name), newLabStreamCmd(&name),
		newLabNodeCmd(&name), newLabPodCmd(&name), newLabImportImageCmd(&name),
	)
	return cmd
}

// interruptible returns a context cancelled on Ctrl-C or SIGTERM.
func interruptible(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func newLabUpCmd(name *string) *cobra.Command {
	var c lab.Config
	var static bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build a lab: underlay, etcd, nodes with real agents, pods through twill-cni, Services",
		Long: `up builds a lab and leaves it running. It refuses if a lab of that name exists
(remove it with 'twill lab down'). If any step fails, or you press Ctrl-C, it
removes everything it made.

By default (agent mode) it stores net-conf.json in etcd, starts one real
'twill agent' per node (inside the node's namespace, against the lab's etcd),
waits until every agent's /readyz answers, then creates the pods through the
real twill-cni plugin. Pod addresses are whatever the plugin hands out
(10.244.i.2, .3, ...): 'twill lab status' lists them. --static programs the
pod network without agent or plugin (pods at 10.244.i.(10+k)).

etcd is found via --etcd-bin, $TWILL_ETCD_BIN, an "etcd" next to the twill
binary, ./bin/etcd, then $PATH ('make tools' builds bin/etcd). twill-cni the
same way: --cni-bin, $TWILL_CNI_BIN, next to twill, ./bin/twill-cni, $PATH
('make build' builds bin/twill-cni).

--store kubernetes runs a real kube-apiserver in the underlay namespace
(https://192.168.77.1:6443, etcd prefix /registry, RBAC, a static token file)
and waits for its /readyz (10-30 s), installs the shipped ClusterRole "twill"
and binds it to one token user per node (twill-node<i>), registers Node objects
node1..N with spec.podCIDR 10.244.i.0/24, writes each node's kubeconfig and
net-conf.json under its root (etc/twill/), and starts the agents with
'--store kubernetes --kubeconfig ... --net-conf ...'. It then registers the lab's
Pods (status: their real addresses), Services and EndpointSlices. The admin
kubeconfig is /run/twill-lab/<name>/kube/admin.kubeconfig. kube-apiserver and
kubectl are found like etcd: --kube-apiserver-bin / $TWILL_KUBE_APISERVER_BIN,
--kubectl-bin / $TWILL_KUBECTL_BIN, next to twill, ./bin, $PATH ('make tools'
builds both).

--flannel-nodes N runs the real flanneld (bin/flanneld: Flannel's own etcd and
Kubernetes subnet managers and vxlan/host-gw backends) instead of 'twill agent'
on node1..N, with kube-flannel's --ip-masq: with the etcd store all nodes on
Flannel's etcd prefix /coreos.com/network, with --store kubernetes flanneld
--kube-subnet-mgr on the node's Node object (its podCIDR, Flannel's
annotations). Those nodes are laid out as kube-flannel installs a node:
Flannel's CNI plugin (bin/cni/flannel) and kube-flannel's conflist; pods there
are made by the flannel plugin, which delegates to bridge and host-local
(bridge cni0, network cbr0, allocations in <root>/var/lib/cni/networks/cbr0).
'twill lab agent NODE stop|switch|start' swaps a node between flanneld and
twill (see 'twill migrate').

--kubernetes builds a real cluster instead: kube-apiserver (Node,RBAC),
kube-controller-manager (--allocate-node-cidrs) and kube-scheduler in the
underlay namespace; on every node, in its own network and mount namespace,
containerd, a real kubelet and a real kube-proxy (--proxy-mode
iptables or nftables). --containerd picks the runtime: 1.6 (default, Debian's
containerd package, config version 2) or 2 (containerd 2.x built from
github.com/containerd/containerd/v2 by 'make tools-kube' into bin/containerd2/,
config version 3; $TWILL_CONTAINERD2_DIR points elsewhere). The images of
'make image' (bin/image, or --image-dir)
are imported into every node's containerd, twill is installed with
'kubectl apply' of bin/image/twill.yaml, and the lab's pods are real Pods of
the test-server image, pinned to their nodes, its Services real Services.
The binaries come from 'make tools-kube' (bin/kubelet, bin/kube-proxy, ...).
Takes 1-3 minutes; see docs/lab.md "Real nodes".`,
		Example: `  twill lab up
  twill lab up --store kubernetes       # agents lease through a real kube-apiserver
  twill lab up --kubernetes             # real nodes: kubelet, containerd, kube-proxy; twill's DaemonSet
  twill lab up --kubernetes --containerd 2   # the same on containerd 2.x
  twill lab up --nodes 2 --pods 3 --backend host-gw --name gw
  twill lab up --static                 # no agents: the lab programs the network
  twill lab up --flannel-nodes 3        # every node on flanneld, to try 'twill migrate'
  twill lab up --store kubernetes --flannel-nodes 1   # flanneld --kube-subnet-mgr beside twill
  twill lab up --ip-family dual         # every pod gets an IPv4 and an IPv6 address`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			c.Name = *name
			c.Out = cmd.OutOrStdout()
			c.Agent = !static
			st, err := lab.Up(ctx, c)
			if err != nil {
				return err
			}
			lab.PrintSummary(cmd.OutOrStdout(), st)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&c.Nodes, "nodes", 3, fmt.Sprintf("number of nodes (1-%d)", lab.MaxNodes))
	fs.IntVar(&c.Pods, "pods", 2, fmt.Sprintf("pods per node (1-%d)", lab.MaxPods))
	fs.StringVar(&c.Backend, "backend", lab.BackendVXLAN, "pod network backend: vxlan or host-gw")
	fs.BoolVar(&c.DirectRouting, "direct-routing", false, "vxlan with DirectRouting: the agents route peers on the same segment directly, vxlan only to the others")
	fs.StringVar(&c.EtcdBin, "etcd-bin", "", "etcd binary (default: search, see above)")
	fs.BoolVar(&static, "static", false, "program the pod network statically: no agents, no CNI plugin")
	fs.StringVar(&c.CNIBin, "cni-bin", "", "twill-cni plugin binary (default: search, see above)")
	fs.DurationVar(&c.AgentResync, "agent-resync", 2*time.Second, "the agents' drift-repair interval (--resync)")
	fs.DurationVar(&c.AgentTTL, "agent-ttl", lab.DefaultAgentTTL, "the agents' lease TTL (--etcd-ttl): a node whose agent is paused or gone keeps its lease this long")
	fs.StringVar(&c.Store, "store", lab.StoreEtcd, "the agents' lease store: etcd, or kubernetes (a real kube-apiserver in the lab; Node spec.podCIDR is the subnet)")
	fs.StringVar(&c.KubeAPIServerBin, "kube-apiserver-bin", "", "kube-apiserver binary for --store kubernetes (default: search, see above)")
	fs.IntVar(&c.FlannelNodes, "flannel-nodes", 0, "run flanneld instead of twill agent on the first N nodes (either store)")
	fs.StringVar(&c.FlanneldBin, "flanneld-bin", "", "flanneld binary for --flannel-nodes (default: $TWILL_FLANNELD_BIN, next to twill, ./bin, $PATH)")
	fs.StringVar(&c.IPFamily, "ip-family", lab.IPFamilyIPv4, "the pod network's IP family: ipv4, ipv6 (IPv6 only) or dual (agent mode, either store; see docs/ipv6.md)")
	fs.BoolVar(&c.Kubernetes, "kubernetes", false, "a real cluster: control plane, kubelet + containerd + kube-proxy per node, twill installed from its image with kubectl apply")
	fs.BoolVar(&c.KeepOnFailure, "keep-on-failure", false, "when a step fails, leave the lab as it is for inspection (remove it with 'twill lab down')")
	fs.StringVar(&c.ProxyMode, "proxy-mode", "", "kube-proxy's mode with --kubernetes: iptables (default) or nftables")
	fs.StringVar(&c.Containerd, "containerd", "", "the real nodes' container runtime with --kubernetes: 1.6 (default: Debian's containerd package) or 2 (containerd 2.x, config version 3, from bin/containerd2: 'make tools-kube' builds it)")
	fs.StringVar(&c.ImageDir, "image-dir", "", "with --kubernetes: the output of 'make image' (default: $TWILL_IMAGE_DIR, image/ next to twill, ./bin/image)")
	fs.StringVar(&c.KubectlBin, "kubectl-bin", "", "kubectl binary for --store kubernetes, put first on PATH by 'lab exec' (default: search, see above)")
	return cmd
}

func newLabDownCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove a lab: its processes, namespaces and state (safe to repeat)",
		Long: `down stops the lab's processes (etcd, agents, pod servers, anything else running
in its namespaces; agents just exit, nothing is uninstalled), deletes every namespace named <name>-underlay, <name>-nodeN or
<name>-nodeN-x, and removes /run/twill-lab/<name>. On real nodes (lab up
--kubernetes) it stops the kubelets and kube-proxies first, then the containers
(every process in the lab's cgroups), then containerd and the node namespaces'
anchors (their mounts go with them), and removes the cgroup directories
/sys/fs/cgroup/*/twill-lab-<name>. It works even when the state file is missing
or corrupt, and does nothing when the lab does not exist.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.Down(context.Background(), *name, cmd.OutOrStdout())
		},
	}
}

func newLabStatusCmd(name *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a lab's nodes, pods, addresses, etcd health, processes and broken scenarios",
		Long: `status shows what the lab is made of and what is true right now: whether etcd
answers, whether every namespace and pod server is alive, each node's agent (pid,
running/paused, /readyz), every pod's address, and which scenarios are applied
('twill lab break'). Exit status 1 when something is not healthy (a paused agent
is not a problem).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := lab.Status(cmd.Context(), *name)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			case "text":
				r.Print(cmd.OutOrStdout())
			case "html":
				if err := picture.WriteLabHTML(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			default:
				return fmt.Errorf("-o %q: want text, json or html", output)
			}
			if !r.Healthy {
				return &exitError{code: 1, err: fmt.Errorf("lab %s is not healthy", r.Name)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or html (a picture of the topology)")
	return cmd
}

func newLabExecCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NODE_OR_POD -- CMD [ARGS...]",
		Short: "Run a command inside a node or pod namespace",
		Long: `exec runs CMD inside the network namespace of a node ("node1"), a pod ("node1-a")
or the underlay ("underlay"), with your terminal attached and its exit status
passed through. It sets TWILL_ROOT to the node's file root (a pod gets its node's)
and TWILL_ETCD_ENDPOINTS to the lab's etcd, so twill commands find the node's
subnet file and the leases.`,
		Example: `  twill lab exec node1 -- ip -d link show twill.1
  twill lab exec node1 -- bridge fdb show dev twill.1
  twill lab exec node1 -- iptables-nft-save -t nat
  twill lab exec node2-a -- ip route
  twill lab exec node1 -- bash`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("usage: twill lab exec NODE_OR_POD -- CMD [ARGS...] (put -- before the command)")
			}
			code, err := lab.Exec(*name, args[0], args[1:])
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code} // the command spoke for itself; pass its status through
			}
			return nil
		},
	}
}

func newLabCallCmd(name *string) *cobra.Command {
	var timeout time.Duration
	var udp bool
	var family string
	cmd := &cobra.Command{
		Use:   "call POD HOST:PORT|POD|SERVICE",
		Short: "Connect from inside a pod and print what the server answered",
		Long: `call opens one connection from inside POD to HOST:PORT (TCP, or one UDP datagram
with --udp) and prints the server's line: "<pod that answered> <client address
as the server saw it>", so you see both which endpoint a Service chose and
whether the client was NATed. On failure it says why: timed out, connection
refused, reset by peer. Exit status 0 on success, 1 on failure.

An IPv6 destination is written [ADDR]:PORT. A pod name as destination means
that pod's server (port 8080) at its address of --family (ipv4 or ipv6;
default its first address, IPv4 when it has one); a lab Service (web,
lab/local-node1, default/kubernetes) its ClusterIP of --family (default its
primary one) on its port.

On real nodes (lab up --kubernetes) HOST may be a Service name: it is
resolved through CoreDNS (kube-system/kube-dns) with the search path of a
pod of namespace lab ("web", "web.lab", "web.lab.svc.cluster.local").`,
		Example: `  twill lab call node1-a 10.244.2.2:8080    # pod to pod, across nodes (see lab status)
  twill lab call node1-a 10.96.0.10:80      # Service lab/web (random endpoint)
  twill lab call node1-a 10.96.1.1:80       # Service whose endpoint shares node1's bridge
  twill lab call node1-a '[fd00:10:244:2::2]:8080'   # over IPv6 (--ip-family dual or ipv6)
  twill lab call node1-a node2-b --family ipv6
  twill lab call node1-a web --family ipv6  # Service lab/web over IPv6 ([fd00:96::10]:80)
  twill lab call node1-a web:80             # by name, through CoreDNS (real nodes)`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.Load(*name)
			if err != nil {
				return err
			}
			t, err := st.Find(args[0])
			if err != nil {
				return err
			}
			dst, err := st.CallTarget(args[1], family)
			if err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			if dst, err = st.ResolveCallTarget(ctx, t.Namespace, dst); err != nil {
				return &exitError{code: 1, err: err}
			}
			line, err := lab.Call(ctx, t.Namespace, dst, timeout, udp)
			var ce *lab.CallError
			if errors.As(err, &ce) {
				ce.From = args[0]
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.Flags().BoolVar(&udp, "udp", false, "send one UDP datagram instead of a TCP connection")
	cmd.Flags().StringVar(&family, "family", "", "with a pod or Service name as destination: its ipv4 or ipv6 address (default: a pod's first, a Service's primary)")
	return cmd
}

func newLabBreakCmd(name *string) *cobra.Command {
	var table strings.Builder
	lab.ScenarioTable(&table)
	return &cobra.Command{
		Use:   "break SCENARIO NODE",
		Short: "Break a node the way FAILURES.md describes (see 'twill lab scenarios')",
		Long: `break applies one failure scenario from FAILURES.md to one node and records it,
so 'twill lab status' shows it and 'twill lab fix' undoes it. Each scenario
names the doctor check that should find it. In agent mode the node's agent would
repair the failure within seconds (that is its job), so break first pauses it
(SIGSTOP); fix resumes it once no scenario is left on the node. Scenarios (IDs
and aliases both work):

` + table.String(),
		Example: `  twill lab break F1 node1          # bridge-nf-call-iptables=0
  twill lab break forward-drop node2
  twill lab break F6-fdb node1      # node1 forgets where node2's VTEP is`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := lab.Break(cmd.Context(), *name, args[0], args[1], cmd.OutOrStdout())
			return err
		},
	}
}

func newLabImportImageCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "import-image ARCHIVE...",
		Short: "Import image tarballs into every node's containerd (labs of real nodes)",
		Long: `import-image imports docker-archive or OCI image tarballs (make image writes
bin/image/twill.docker.tar) into the containerd of every node of a lab of real
nodes (lab up --kubernetes), in the k8s.io namespace kubelet uses, as 'kind load
image-archive' does. Pods and DaemonSets then run the image's tag with
imagePullPolicy IfNotPresent: this is how a new twill build reaches the nodes
for a rolling update (see docs/kubernetes.md). The archives must lie outside
/run (each node has its own /run).`,
		Example: `  twill lab import-image bin/image/twill.docker.tar
  twill lab exec underlay -- kubectl -n kube-twill set image ds/twill twill=ghcr.io/twillnet/twill:v0.4.1 install-cni=ghcr.io/twillnet/twill:v0.4.1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.ImportImages(cmd.Context(), *name, args, cmd.OutOrStdout())
		},
	}
}

func newLabFixCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "fix SCENARIO NODE",
		Short: "Undo a scenario: restore exactly the healthy state, resume the agent (safe to repeat)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.Fix(cmd.Context(), *name, args[0], args[1], cmd.OutOrStdout())
		},
	}
}

func newLabScenariosCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "List the failure scenarios, their FAILURES.md section and doctor check",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			lab.ScenarioTable(cmd.OutOrStdout())
		},
	}
}

func newLabServeCmd() *cobra.Command {
	var port, echoPort int
	var podName string
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "The pod server the lab runs in every pod (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			return lab.ServeEcho(ctx, podName, port, echoPort)
		},
	}
	cmd.Flags().IntVar(&port, "port", lab.ServerPort, "TCP and UDP port")
	cmd.Flags().IntVar(&echoPort, "echo-port", 0, "also serve a line echo on this TCP port (0: none)")
	cmd.Flags().StringVar(&podName, "name", "", "the pod name to answer with")
	return cmd
}
