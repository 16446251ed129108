package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/cni"
	"github.com/twillnet/twill/lease"
)

// StateRoot is where every lab keeps its state directory.
const StateRoot = "/run/twill-lab"

// StateDir is the state directory of lab name.
func StateDir(name string) string { return filepath.Join(StateRoot, name) }

// statePath is the state file of lab name.
func statePath(name string) string { return filepath.Join(StateDir(name), "state.json") }

// NodeRoot is the file root of a node ("/" of the node as twill sees it):
// its subnet file is <root>/run/twill/subnet.env. Commands run with `lab exec`
// get it as TWILL_ROOT.
func NodeRoot(name, node string) string {
	return filepath.Join(StateDir(name), "nodes", node, "root")
}

// State is everything later commands need to know about a running lab. It
// is written to /run/twill-lab/<name>/state.json.
type State struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	// DirectRouting is the vxlan backend's DirectRouting option.
	DirectRouting bool `json:"directRouting,omitempty"`
	// Mode is ModeStatic or ModeAgent ("" in labs made before modes: static).
	Mode    string    `json:"mode,omitempty"`
	Created time.Time `json:"created"`
	// Binary is the twill binary the pod servers run.
	Binary string `json:"binary"`
	// EtcdBin is the etcd binary.
	EtcdBin string `json:"etcdBin"`
	// CNIBin is the twill-cni binary installed on every node (agent mode).
	CNIBin string `json:"cniBin,omitempty"`
	// Underlay is the underlay namespace (bridge br0, etcd).
	Underlay string `json:"underlay"`
	// EtcdEndpoint is etcd's client URL inside the lab.
	EtcdEndpoint string `json:"etcdEndpoint"`
	// EtcdDataDir is etcd's data directory.
	EtcdDataDir string  `json:"etcdDataDir"`
	Etcd        Process `json:"etcd"`
	Nodes       []Node  `json:"nodes"`
	// Store is the agents' lease store: StoreEtcd ("" in older labs) or
	// StoreKubernetes.
	Store string `json:"store,omitempty"`
	// Kube is the lab's kube-apiserver (kube mode only).
	Kube *KubeState `json:"kube,omitempty"`
	// EtcdPrefix is the etcd prefix of the network ("" in older labs:
	// lease.DefaultPrefix); lease.FlannelPrefix in labs with Flannel nodes.
	EtcdPrefix string `json:"etcdPrefix,omitempty"`
	// FlanneldBin, BridgeBin and HostLocalBin are the binaries of the
	// Flannel nodes (labs with Flannel nodes only).
	FlanneldBin  string `json:"flanneldBin,omitempty"`
	BridgeBin    string `json:"bridgeBin,omitempty"`
	HostLocalBin string `json:"hostLocalBin,omitempty"`
	PortmapBin   string `json:"portmapBin,omitempty"`
	// FlannelCNIBin is Flannel's CNI plugin (installed as opt/cni/bin/flannel).
	FlannelCNIBin string `json:"flannelCNIBin,omitempty"`
	// IPFamily is the pod network's IP family: IPFamilyIPv6 or
	// IPFamilyDual; "" is IPv4 (see HasIPv4, HasIPv6).
	IPFamily string `json:"ipFamily,omitempty"`
	// Real is the rest of a cluster of real nodes (ModeKubernetes only).
	Real *RealState `json:"real,omitempty"`
	// Scenarios are the failures currently applied with `lab break`.
	Scenarios []Applied `json:"scenarios,omitempty"`
}

// Node is one lab node.
type Node struct {
	Index     int    `json:"index"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Subnet    string `json:"subnet"`
	Gateway   string `json:"gateway"`
	VtepMAC   string `json:"vtepMAC,omitempty"`
	Root      string `json:"root"`
	Pods      []Pod  `json:"pods"`
	// Agent is the node's `twill agent` process (agent mode), or its
	// flanneld when Flannel is set.
	Agent Process `json:"agent,omitempty"`
	// Flannel tells that the node's network daemon is flanneld, and its
	// pods are wired by bridge and host-local (network cbr0).
	Flannel bool `json:"flannel,omitempty"`
	// Alt is the other network daemon the node can switch to (labs with
	// Flannel nodes): `twill agent` on a Flannel node, flanneld on a twill
	// node. SwitchDaemon swaps it with Agent.
	Alt *Process `json:"alt,omitempty"`
	// IPv6 and IPv6Subnet are the node's IPv6 underlay address and pod
	// subnet (labs with IPv6); Subnet and Gateway are empty in an
	// IPv6-only lab.
	IPv6       string `json:"ipv6,omitempty"`
	IPv6Subnet string `json:"ipv6Subnet,omitempty"`
	// VtepMACv6 is the MAC of the node's IPv6 VTEP (twill-v6.<VNI>), as
	// its agent publishes it (vxlan labs with IPv6).
	VtepMACv6 string `json:"vtepMACv6,omitempty"`
	// Real is the node's mount namespace and daemons (ModeKubernetes).
	Real *RealNode `json:"real,omitempty"`
}

// Pod is one lab pod.
type Pod struct {
	Index     int     `json:"index"`
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"`
	Node      string  `json:"node"`
	IP        string  `json:"ip"`
	HostVeth  string  `json:"hostVeth"`
	Server    Process `json:"server"`

	// IPv6 is the pod's IPv6 address (labs with IPv6); IP is empty in an
	// IPv6-only lab (see Addrs).
	IPv6 string `json:"ipv6,omitempty"`
}

// Process is a daemon the lab started.
type Process struct {
	PID       int      `json:"pid"`
	Namespace string   `json:"namespace"`
	Argv      []string `json:"argv"`
	// Env is added to the process's environment (flanneld's NODE_NAME).
	Env []string `json:"env,omitempty"`
	Log string   `json:"log"`
}

// Applied is one scenario applied to one node.
type Applied struct {
	Scenario string `json:"scenario"`
	Node     string `json:"node"`
	// Peer is the node whose overlay state was broken (F6-*), if any.
	Peer string    `json:"peer,omitempty"`
	At   time.Time `json:"at"`
}

// plan computes the state of a lab from its config, before anything exists.
func plan(c Config) *State {
	st := &State{
		Name:          c.Name,
		Backend:       c.Backend,
		DirectRouting: c.DirectRouting,
		Created:       time.Now().UTC().Truncate(time.Second),
		Binary:        c.Self,
		EtcdBin:       c.EtcdBin,
		CNIBin:        c.CNIBin,
		Mode:          ModeStatic,
		Underlay:      UnderlayNS(c.Name),
		EtcdEndpoint:  EtcdEndpoint,
		EtcdDataDir:   filepath.Join(StateDir(c.Name), "etcd"),
	}
	if c.FlannelNodes > 0 {
		st.EtcdPrefix = lease.FlannelPrefix
		st.FlanneldBin = c.FlanneldBin
		st.BridgeBin, st.HostLocalBin, st.PortmapBin, st.FlannelCNIBin = c.bridgeBin, c.hostLocalBin, c.portmapBin, c.flannelCNIBin
	}
	if c.Agent {
		st.Store = c.Store
	}
	if c.Agent && c.Store == StoreKubernetes {
		st.Kube = &KubeState{APIServerBin: c.KubeAPIServerBin, KubectlBin: c.KubectlBin, URL: KubeAPIServerURL, Dir: kubeDir(c.Name)}
	}
	for i := 1; i <= c.Nodes; i++ {
		n := Node{
			Index:     i,
			Name:      NodeName(i),
			Namespace: c.Name + "-" + NodeName(i),
			IP:        NodeIP(i).String(),
			Subnet:    NodeSubnet(i).String(),
			Gateway:   NodeGateway(i).String(),
			Root:      NodeRoot(c.Name, NodeName(i)),
		}
		if c.Kubernetes {
			n.Subnet, n.Gateway = "", "" // nodeipam decides
			n.Real = &RealNode{Dir: filepath.Join(StateDir(c.Name), "nodes", n.Name)}
		}
		if c.Agent && !c.Kubernetes {
			n.Agent = Process{Namespace: n.Namespace, Argv: agentArgv(c, st.prefix(), n), Log: filepath.Join(StateDir(c.Name), "logs", n.Name+"-agent.log")}
		}
		if c.FlannelNodes > 0 {
			fl := Process{Namespace: n.Namespace, Argv: flanneldArgv(st, n), Env: flanneldEnv(st, n), Log: filepath.Join(StateDir(c.Name), "logs", n.Name+"-flanneld.log")}
			tw := n.Agent
			n.Agent, n.Alt, n.Flannel = tw, &fl, false
			if i <= c.FlannelNodes {
				n.Agent, n.Alt, n.Flannel = fl, &tw, true
			}
		}
		switch {
		case c.Kubernetes: // read from the lease once the agent runs
		case c.Backend == BackendVXLAN && c.Agent && i <= c.FlannelNodes:
			// flanneld picks a random MAC: readLeases records it.
		case c.Backend == BackendVXLAN && c.Agent:
			n.VtepMAC = backend.VtepMAC(NodeIP(i))
		case c.Backend == BackendVXLAN:
			n.VtepMAC = VtepMAC(i)
		}
		for k := 0; k < c.Pods; k++ {
			p := Pod{
				Index:     k,
				Name:      PodName(i, k),
				Namespace: c.Name + "-" + PodName(i, k),
				Node:      n.Name,
				IP:        PodIP(i, k).String(),
				HostVeth:  hostVeth(i, k),
			}
			if c.Agent { // the plugin picks the address; the veth name is its own
				p.IP, p.HostVeth = "", cni.HostVethName(p.Name, podIface)
			}
			n.Pods = append(n.Pods, p)
		}
		st.Nodes = append(st.Nodes, n)
	}
	if c.Agent {
		st.Mode = ModeAgent
	}
	if c.Kubernetes {
		st.Mode = ModeKubernetes
		st.CNIBin = ""
		st.Real = &RealState{ProxyMode: c.ProxyMode, ImageDir: c.ImageDir, Containerd: c.Containerd}
	}
	planIPFamily(c, st)
	return st
}

// AgentMode tells whether the lab runs real agents and twill-cni.
func (st *State) AgentMode() bool { return st.Mode == ModeAgent }

// ErrNoLab is returned by Load when the lab has no state file.
var ErrNoLab = errors.New("no such lab")

// Load reads the state of lab name.
func Load(name string) (*State, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %q: %w (no %s; start it with `twill lab up --name %s`)", name, ErrNoLab, statePath(name), name)
	}
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", name, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("lab %q: %s is corrupt (%v); remove the lab with `twill lab down --name %s`", name, statePath(name), err, name)
	}
	return &st, nil
}

// save writes the state file atomically.
func (st *State) save() error {
	if err := os.MkdirAll(StateDir(st.Name), 0o755); err != nil {
		return fmt.Errorf("lab %s: state dir: %w", st.Name, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("lab %s: encode state: %w", st.Name, err)
	}
	p := statePath(st.Name)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab %s: write state: %w", st.Name, err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("lab %s: write state: %w", st.Name, err)
	}
	return nil
}

// Target is a node or pod of the lab, as named on the command line.
type Target struct {
	// Namespace is the network namespace to run in.
	Namespace string
	// Node is the node the target is (or runs on).
	Node *Node
	// Pod is set when the target is a pod.
	Pod *Pod
}

// Find resolves "node1", "node1-a", the full namespace name, or "underlay".
func (st *State) Find(name string) (Target, error) {
	if name == "underlay" || name == st.Underlay {
		return Target{Namespace: st.Underlay}, nil
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if name == n.Name || name == n.Namespace {
			return Target{Namespace: n.Namespace, Node: n}, nil
		}
		for k := range n.Pods {
			p := &n.Pods[k]
			if name == p.Name || name == p.Namespace {
				return Target{Namespace: p.Namespace, Node: n, Pod: p}, nil
			}
		}
	}
	return Target{}, fmt.Errorf("lab %s has no node or pod %q (see `twill lab status --name %s`)", st.Name, name, st.Name)
}

// node returns the node named name.
func (st *State) node(name string) (*Node, error) {
	t, err := st.Find(name)
	if err != nil {
		return nil, err
	}
	if t.Node == nil || t.Pod != nil {
		return nil, fmt.Errorf("lab %s: %q is not a node (want one of node1..node%d)", st.Name, name, len(st.Nodes))
	}
	return t.Node, nil
}
