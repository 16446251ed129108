package lab

import (
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"time"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/subnetfile"
)

// DefaultName is the lab name used when none is given.
const DefaultName = "twill"

// Backends a lab can program.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
)

// Limits keep a lab small enough for one machine and keep addresses and
// interface names inside their ranges.
const (
	MaxNodes = 20
	MaxPods  = 10
)

// ServerPort is the TCP (and UDP) port every pod's server listens on.
const ServerPort = 8080

// EchoPort is the TCP port where every pod's server greets like ServerPort
// and then echoes each line back, for long-lived streams (Stream).
const EchoPort = 8081

// DefaultAgentTTL is the lab agents' lease TTL: longer than the agent's own
// default (60s), so a node whose agent `lab break` paused keeps its lease
// (and its peers keep their routes to it) while you explore the failure.
const DefaultAgentTTL = 5 * time.Minute

// Modes of a lab's pod network (State.Mode).
const (
	// ModeStatic: the lab programs the pod network itself, as a fixed picture.
	ModeStatic = "static"
	// ModeAgent: a real `twill agent` per node and pods made by twill-cni.
	ModeAgent = "agent"
)

// Config says what lab to build.
type Config struct {
	// Name of the lab; every namespace starts with Name+"-". Default "twill".
	Name string
	// Nodes is the number of nodes (1..MaxNodes). Default 3.
	Nodes int
	// Pods is the number of pods per node (1..MaxPods). Default 2.
	Pods int
	// Backend is BackendVXLAN (default) or BackendHostGW.
	Backend string
	// DirectRouting sets the vxlan backend's DirectRouting option in the
	// lab's net-conf.json: the agents route peers on the underlay segment
	// directly (all of a lab's nodes share one) and use vxlan only for the
	// others. vxlan and agent mode only.
	DirectRouting bool
	// EtcdBin is the etcd binary; empty searches for it (see FindEtcd).
	EtcdBin string
	// Self is the twill binary started in each pod as `Self lab serve ...`;
	// empty means os.Executable().
	Self string
	// Out receives progress lines; nil discards them.
	Out io.Writer
	// Agent runs the real pod network: one `Self agent` process per node
	// against the lab's etcd, and pods created through the twill-cni plugin
	// (CNIBin). False (the library default) programs the pod network
	// statically, the way the lab always did. `twill lab up` defaults to true.
	Agent bool
	// CNIBin is the twill-cni plugin binary (agent mode only); empty
	// searches for it (see FindCNI).
	CNIBin string
	// AgentResync is the agents' --resync (agent mode only); default 2s.
	AgentResync time.Duration
	// AgentTTL is the agents' --etcd-ttl, their lease TTL (agent mode only);
	// default DefaultAgentTTL. A paused (lab break) or killed agent stops
	// renewing: after this long its node loses its lease and the peers
	// drop its routes.
	AgentTTL time.Duration
	// Store is the agents' lease store (agent mode only): StoreEtcd (""
	// means etcd, the default) or StoreKubernetes, which also runs a real
	// kube-apiserver in the underlay namespace (see KubeAPIServerURL),
	// registers a Node object per node with its podCIDR, and starts the
	// agents with `--store kubernetes`, each with a token bound to exactly
	// the ClusterRole twill ships.
	Store string
	// KubeAPIServerBin and KubectlBin are the binaries of kube mode; empty
	// searches for them (see FindKubeAPIServer, FindKubectl).
	KubeAPIServerBin string
	KubectlBin       string
	// FlannelNodes runs the real flanneld instead of `twill agent` on the
	// first FlannelNodes nodes (agent mode), with pods wired by Flannel's
	// CNI plugin, which delegates to bridge and host-local. With the etcd
	// store every node uses Flannel's etcd prefix (lease.FlannelPrefix);
	// with the Kubernetes store flanneld runs --kube-subnet-mgr on the
	// node's Node object (its podCIDR, Flannel's annotations). Either way
	// Flannel and twill nodes form one overlay. 0: none.
	FlannelNodes int
	// FlanneldBin is the flanneld binary; empty searches for it (see
	// FindFlanneld). The flannel, bridge, host-local and portmap plugins
	// are looked up in cni/ next to it first.
	FlanneldBin string
	// IPFamily is the pod network's IP family: IPFamilyIPv4 (default),
	// IPFamilyIPv6 or IPFamilyDual. With IPv6 the underlay links also get
	// IPv6 addresses (fd00:77::/64) and net-conf.json enables IPv6
	// (ClusterCIDRv6); agent mode with the etcd store only.
	IPFamily string
	// bridgeBin, hostLocalBin, portmapBin and flannelCNIBin are found by Up
	// next to FlanneldBin.
	bridgeBin, hostLocalBin, portmapBin, flannelCNIBin string
	// Kubernetes builds a cluster of real nodes (ModeKubernetes): control
	// plane, containerd, kubelet and kube-proxy on every node, twill
	// installed from its image with kubectl apply, pods as real Pods. It
	// implies Store = StoreKubernetes and needs agent mode (no --static).
	Kubernetes bool
	// ProxyMode is the real kube-proxy's mode: ProxyIptables (default) or
	// ProxyNftables (Kubernetes only).
	ProxyMode string
	// KeepOnFailure leaves a lab whose Up failed as it is, for inspection,
	// instead of removing it.
	KeepOnFailure bool
	// ImageDir holds `make image`'s output (Kubernetes only); empty
	// searches for it (see FindImageDir).
	ImageDir string
	// Containerd is the real nodes' container runtime (Kubernetes only):
	// Containerd16 (default, Debian's package) or Containerd2 (built by
	// `make tools-kube` into bin/containerd2/, see FindContainerd2).
	Containerd string
}

// nameRE is what a lab name may look like: it becomes part of namespace names
// and of the state directory.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// ValidateName checks a lab name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1-31 characters a-z, 0-9 and '-', starting with a letter or digit", name)
	}
	return nil
}

// withDefaults returns c with empty fields defaulted.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Pods == 0 {
		c.Pods = 2
	}
	if c.Backend == "" {
		c.Backend = BackendVXLAN
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.AgentResync == 0 {
		c.AgentResync = 2 * time.Second
	}
	if c.AgentTTL == 0 {
		c.AgentTTL = DefaultAgentTTL
	}
	if c.Store == "" {
		c.Store = StoreEtcd
	}
	if c.IPFamily == "" {
		c.IPFamily = IPFamilyIPv4
	}
	if c.Kubernetes {
		c.Store = StoreKubernetes
		if c.ProxyMode == "" {
			c.ProxyMode = ProxyIptables
		}
		if c.Containerd == "" {
			c.Containerd = Containerd16
		}
	}
	return c
}

// Validate checks a defaulted config.
func (c Config) Validate() error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return fmt.Errorf("--nodes %d: want 1..%d", c.Nodes, MaxNodes)
	}
	if c.Pods < 1 || c.Pods > MaxPods {
		return fmt.Errorf("--pods %d: want 1..%d", c.Pods, MaxPods)
	}
	if c.Backend != BackendVXLAN && c.Backend != BackendHostGW {
		return fmt.Errorf("--backend %q: want %q or %q", c.Backend, BackendVXLAN, BackendHostGW)
	}
	if c.DirectRouting && c.Backend != BackendVXLAN {
		return fmt.Errorf("--direct-routing is an option of the vxlan backend, not %s (drop --backend %s)", c.Backend, c.Backend)
	}
	if c.DirectRouting && !c.Agent {
		return fmt.Errorf("--direct-routing needs agent mode: the agents program the direct routes (drop --static)")
	}
	if c.Store != StoreEtcd && c.Store != StoreKubernetes {
		return fmt.Errorf("--store %q: want %q or %q", c.Store, StoreEtcd, StoreKubernetes)
	}
	if c.FlannelNodes < 0 || c.FlannelNodes > c.Nodes {
		return fmt.Errorf("--flannel-nodes %d: want 0..%d (the number of nodes)", c.FlannelNodes, c.Nodes)
	}
	if c.FlannelNodes > 0 && !c.Agent {
		return fmt.Errorf("--flannel-nodes needs agent mode: a static lab runs no daemons (drop --static)")
	}
	if c.FlannelNodes > 0 && c.Kubernetes {
		return fmt.Errorf("--flannel-nodes is not offered with --kubernetes (real nodes run twill's DaemonSet); use --store %s for Flannel nodes on the Kubernetes API", StoreKubernetes)
	}
	if c.Kubernetes && !c.Agent {
		return fmt.Errorf("--kubernetes runs twill's DaemonSet on real nodes: drop --static")
	}
	if c.Kubernetes && c.DirectRouting {
		return fmt.Errorf("--direct-routing is not offered with --kubernetes (the lab does not edit the shipped net-conf.json beyond its backend)")
	}
	if c.ProxyMode != "" && !c.Kubernetes {
		return fmt.Errorf("--proxy-mode %s needs --kubernetes (a real kube-proxy); the other labs program Service rules themselves", c.ProxyMode)
	}
	if c.Kubernetes && c.ProxyMode != ProxyIptables && c.ProxyMode != ProxyNftables {
		return fmt.Errorf("--proxy-mode %q: want %q or %q", c.ProxyMode, ProxyIptables, ProxyNftables)
	}
	if c.Containerd != "" && !c.Kubernetes {
		return fmt.Errorf("--containerd %s needs --kubernetes (real nodes with a container runtime); the other labs run no runtime", c.Containerd)
	}
	if c.Kubernetes && c.Containerd != Containerd16 && c.Containerd != Containerd2 {
		return fmt.Errorf("--containerd %q: want %q (Debian's containerd) or %q (containerd 2.x from bin/containerd2, built by `make tools-kube`)", c.Containerd, Containerd16, Containerd2)
	}
	if c.Store == StoreKubernetes && !c.Agent {
		return fmt.Errorf("--store %s needs agent mode: a static lab has no agents to lease through the API (drop --static)", StoreKubernetes)
	}
	return c.validateIPFamily()
}

// Fixed addresses of every lab (they live inside the lab's namespaces only).
var (
	// UnderlayGateway is br0's address in the underlay namespace; etcd listens on it.
	UnderlayGateway = netip.MustParseAddr("192.168.77.1")
	// ClusterCIDR is the pod network.
	ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

// EtcdEndpoint is the etcd client URL, reachable from the lab's namespaces.
const EtcdEndpoint = "http://192.168.77.1:2379"

// Names and addresses derived from indexes (node i from 1, pod k from 0).

// UnderlayNS is the underlay namespace of lab name.
func UnderlayNS(name string) string { return name + "-underlay" }

// NodeName is the short name of node i ("node1").
func NodeName(i int) string { return fmt.Sprintf("node%d", i) }

// PodName is the short name of pod k on node i ("node1-a").
func PodName(i, k int) string { return fmt.Sprintf("node%d-%c", i, 'a'+k) }

// NodeIP is node i's underlay address.
func NodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)}) }

// NodeSubnet is node i's pod subnet.
func NodeSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
}

// NodeGateway is cni0's address on node i (the pods' default gateway):
// subnetfile.Gateway of its subnet, as the agent and twill-cni decide it.
func NodeGateway(i int) netip.Addr { return subnetfile.Gateway(NodeSubnet(i)).Addr() }

// PodIP is the address of pod k on node i in static mode. In agent mode the
// twill-cni plugin picks the address (usually .2, .3, ...): read Pod.IP.
func PodIP(i, k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(i), byte(10 + k)}) }

// VtepMAC is node i's stable vxlan MAC in static mode, so break/fix is
// deterministic. In agent mode the agent derives it (backend.VtepMAC of the
// node's underlay IP): read Node.VtepMAC.
func VtepMAC(i int) string { return fmt.Sprintf("02:77:00:00:00:%02x", i) }

// StaleMAC is the wrong MAC the F6-neigh scenario installs for node i.
func StaleMAC(i int) string { return fmt.Sprintf("02:77:de:ad:00:%02x", i) }

// Interface names (≤15 characters, derived from indexes, never from the lab name).
const (
	underlayBridge = "br0"
	nodeUplink     = "eth0"
	podBridge      = "cni0"
	vxlanDev       = "twill.1"
	podIface       = "eth0"
	vxlanVNI       = 1
	vxlanPort      = 8472
)

// underlayPort is node i's veth end on the underlay bridge.
func underlayPort(i int) string { return fmt.Sprintf("veth-n%d", i) }

// hostVeth is the node end of pod k's veth on node i.
func hostVeth(i, k int) string { return fmt.Sprintf("veth%d%c", i, 'a'+k) }

// underlayMTU is the MTU of the lab's underlay links (the kernel's default
// for veths).
const underlayMTU = 1500

// PodMTU is the pod MTU of a backend on the lab's underlay, as the agent
// decides it (backend.PodMTU: vxlan costs 50 bytes).
func PodMTU(backendType string) int {
	return backend.PodMTU(netconf.Config{Backend: netconf.Backend{Type: backendType}}, underlayMTU)
}
