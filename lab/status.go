package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what `lab status` shows: the state plus what is true right now.
type Report struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	// Mode is ModeStatic or ModeAgent.
	Mode string `json:"mode"`
	// IPFamily is the pod network's family: ipv4, ipv6 or dual.
	IPFamily string `json:"ipFamily"`
	// Healthy is true when etcd answers, every namespace exists, every
	// process is alive and every agent that is not paused is ready
	// (scenarios applied on purpose, and the paused agents that keep them,
	// do not count).
	Healthy      bool          `json:"healthy"`
	Etcd         ProcessStatus `json:"etcd"`
	EtcdHealthy  bool          `json:"etcdHealthy"`
	EtcdError    string        `json:"etcdError,omitempty"`
	EtcdEndpoint string        `json:"etcdEndpoint"`
	// KubeAPIServer is the lab's kube-apiserver (kube mode only).
	KubeAPIServer *KubeStatus `json:"kubeAPIServer,omitempty"`
	// ControlPlane are kube-controller-manager and kube-scheduler
	// (ModeKubernetes only).
	ControlPlane []DaemonStatus `json:"controlPlane,omitempty"`
	// Runtime is the real nodes' container runtime, e.g. "containerd
	// 1.6.20~ds1" or "containerd 2.4.2" (ModeKubernetes only).
	Runtime string `json:"runtime,omitempty"`
	// RuntimeConfig says where it comes from and which config version it
	// reads (ModeKubernetes only).
	RuntimeConfig string       `json:"runtimeConfig,omitempty"`
	Nodes         []NodeStatus `json:"nodes"`
	Scenarios     []Applied    `json:"scenarios"`
	// Services are the lab's Services with their ClusterIPs (one per
	// family the lab runs) and endpoints.
	Services   []ServiceStatus `json:"services"`
	Problems   []string        `json:"problems,omitempty"`
	State      *State          `json:"-"`
	Namespaces map[string]bool `json:"-"`
}

// NodeStatus is one node in a Report.
type NodeStatus struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Exists    bool        `json:"exists"`
	IP        string      `json:"ip"`
	Subnet    string      `json:"subnet"`
	Root      string      `json:"root"`
	Pods      []PodStatus `json:"pods"`
	// Agent is the node's agent (agent mode only).
	Agent *AgentStatus `json:"agent,omitempty"`
	// IPv6 and IPv6Subnet are the node's IPv6 underlay address and pod
	// subnet (labs with IPv6).
	IPv6       string `json:"ipv6,omitempty"`
	IPv6Subnet string `json:"ipv6Subnet,omitempty"`
	// Daemons are a real node's anchor, containerd, kubelet and kube-proxy
	// (ModeKubernetes only).
	Daemons []DaemonStatus `json:"daemons,omitempty"`
}

// DaemonStatus is one named daemon of a real node.
type DaemonStatus struct {
	Name string `json:"name"`
	ProcessStatus
}

// realNodeStatus checks a real node's daemons.
func realNodeStatus(n *Node) []DaemonStatus {
	r := n.Real
	return []DaemonStatus{{"anchor", procStatus(r.Anchor)}, {"containerd", procStatus(r.Containerd)},
		{"kubelet", procStatus(r.Kubelet)}, {"kube-proxy", procStatus(r.KubeProxy)}}
}

// AgentStatus is a node's agent in a Report.
type AgentStatus struct {
	ProcessStatus
	// Daemon is "twill agent", or "flanneld" on a Flannel node.
	Daemon string `json:"daemon"`
	// Paused is true when the agent is stopped with SIGSTOP (lab break, lab agent pause).
	Paused bool `json:"paused"`
	// Ready is true when /readyz answered 200.
	Ready bool `json:"ready"`
	// NotReady says why not (the agent's own reason, or why it could not be asked).
	NotReady string `json:"notReady,omitempty"`
}

// PodStatus is one pod in a Report.
type PodStatus struct {
	Name      string        `json:"name"`
	Namespace string        `json:"namespace"`
	Exists    bool          `json:"exists"`
	IP        string        `json:"ip"`
	Server    ProcessStatus `json:"server"`

	// IPv6 is the pod's IPv6 address (labs with IPv6).
	IPv6 string `json:"ipv6,omitempty"`
}

// KubeStatus is the lab's kube-apiserver in a Report.
type KubeStatus struct {
	ProcessStatus
	URL             string `json:"url"`
	AdminKubeconfig string `json:"adminKubeconfig"`
	// Ready is true when /readyz answered 200.
	Ready    bool   `json:"ready"`
	NotReady string `json:"notReady,omitempty"`
}

// ProcessStatus is a recorded process and whether it still runs.
type ProcessStatus struct {
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
	Log   string `json:"log"`
}

// Status inspects lab name.
func Status(ctx context.Context, name string) (*Report, error) {
	st, err := Load(name)
	if err != nil {
		return nil, err
	}
	mode := st.Mode
	if mode == "" {
		mode = ModeStatic
	}
	r := &Report{Name: st.Name, Backend: st.Backend, Mode: mode, IPFamily: st.Family(), EtcdEndpoint: st.EtcdEndpoint, State: st,
		Scenarios: st.Scenarios, Etcd: procStatus(st.Etcd)}
	if r.Scenarios == nil {
		r.Scenarios = []Applied{}
	}
	if !nsExists(st.Underlay) {
		r.Problems = append(r.Problems, "underlay namespace "+st.Underlay+" is missing")
	}
	if !r.Etcd.Alive {
		r.Problems = append(r.Problems, fmt.Sprintf("etcd (pid %d) is not running; see %s", st.Etcd.PID, st.Etcd.Log))
	} else if err := etcdHealthy(ctx, st, 2*time.Second); err != nil {
		r.EtcdError = err.Error()
		r.Problems = append(r.Problems, "etcd does not answer: "+err.Error())
	} else {
		r.EtcdHealthy = true
	}
	if st.RealMode() {
		r.Runtime, r.RuntimeConfig = st.Real.runtimeName(), runtimeOrigin(st.Real.Containerd)
		for _, d := range []DaemonStatus{{"kube-controller-manager", procStatus(st.Real.ControllerManager)}, {"kube-scheduler", procStatus(st.Real.Scheduler)}} {
			r.ControlPlane = append(r.ControlPlane, d)
			if !d.Alive {
				r.Problems = append(r.Problems, fmt.Sprintf("%s (pid %d) is not running; see %s", d.Name, d.PID, d.Log))
			}
		}
	}
	if st.KubeMode() {
		k := &KubeStatus{ProcessStatus: procStatus(st.Kube.APIServer), URL: st.Kube.URL, AdminKubeconfig: st.Kube.AdminKubeconfig}
		switch {
		case !k.Alive:
			k.NotReady = "not running"
			r.Problems = append(r.Problems, fmt.Sprintf("kube-apiserver (pid %d) is not running; see %s", k.PID, k.Log))
		default:
			if err := kubeHealthy(ctx, st, 3*time.Second); err != nil {
				k.NotReady = err.Error()
				r.Problems = append(r.Problems, "kube-apiserver does not answer: "+err.Error())
			} else {
				k.Ready = true
			}
		}
		r.KubeAPIServer = k
	}
	for _, n := range st.Nodes {
		ns := NodeStatus{Name: n.Name, Namespace: n.Namespace, Exists: nsExists(n.Namespace), IP: n.IP, Subnet: n.Subnet, Root: n.Root, IPv6: n.IPv6, IPv6Subnet: n.IPv6Subnet}
		if !ns.Exists {
			r.Problems = append(r.Problems, "node namespace "+n.Namespace+" is missing")
		}
		if st.AgentMode() {
			ns.Agent = agentStatus(ctx, &n)
			switch a := ns.Agent; {
			case !a.Alive:
				r.Problems = append(r.Problems, fmt.Sprintf("node %s: agent (pid %d) is not running; see %s, start it with `twill lab agent %s start`", n.Name, a.PID, a.Log, n.Name))
			case !a.Paused && !a.Ready:
				r.Problems = append(r.Problems, fmt.Sprintf("node %s: agent not ready: %s", n.Name, a.NotReady))
			}
		}
		if n.Real != nil {
			ns.Daemons = realNodeStatus(&n)
			for _, d := range ns.Daemons {
				if !d.Alive {
					r.Problems = append(r.Problems, fmt.Sprintf("node %s: %s (pid %d) is not running; see %s", n.Name, d.Name, d.PID, d.Log))
				}
			}
		}
		for _, p := range n.Pods {
			ps := PodStatus{Name: p.Name, Namespace: p.Namespace, Exists: nsExists(p.Namespace), IP: p.IP, IPv6: p.IPv6, Server: procStatus(p.Server)}
			if !ps.Exists {
				r.Problems = append(r.Problems, "pod namespace "+p.Namespace+" is missing")
			}
			if st.RealMode() {
				// The server is the pod's container: kubelet watches it.
				ps.Server = ProcessStatus{Alive: ps.Exists}
			} else if !ps.Server.Alive {
				r.Problems = append(r.Problems, fmt.Sprintf("pod %s: server (pid %d) is not running; see %s", p.Name, p.Server.PID, p.Server.Log))
			}
			ns.Pods = append(ns.Pods, ps)
		}
		r.Nodes = append(r.Nodes, ns)
	}
	r.Services = serviceStatus(st)
	r.Healthy = len(r.Problems) == 0
	return r, nil
}

// agentStatus checks node n's agent: alive, paused, and (when running) /readyz.
func agentStatus(ctx context.Context, n *Node) *AgentStatus {
	a := &AgentStatus{ProcessStatus: procStatus(n.Agent), Paused: n.Agent.Paused(), Daemon: daemonName(n)}
	switch {
	case !a.Alive:
		a.NotReady = "not running"
	case a.Paused:
		a.NotReady = "paused"
	default:
		if err := AgentReady(ctx, n); err != nil {
			a.NotReady = err.Error()
		} else {
			a.Ready = true
		}
	}
	return a
}

func procStatus(p Process) ProcessStatus {
	return ProcessStatus{PID: p.PID, Alive: p.Alive(), Log: p.Log}
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	mark := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "DOWN"
	}
	backend := r.Backend
	if r.State != nil {
		backend = r.State.BackendName()
	}
	family := ""
	if r.IPFamily != "" && r.IPFamily != IPFamilyIPv4 {
		family = ", IP family " + r.IPFamily
	}
	fmt.Fprintf(w, "Lab %q, backend %s, %s mode%s\n", r.Name, backend, r.Mode, family)
	etcd := "healthy"
	if !r.EtcdHealthy {
		etcd = "NOT HEALTHY"
	}
	fmt.Fprintf(w, "etcd: %s pid %d %s\n", r.EtcdEndpoint, r.Etcd.PID, etcd)
	if k := r.KubeAPIServer; k != nil {
		state := "ready"
		if !k.Ready {
			state = "NOT READY"
		}
		fmt.Fprintf(w, "kube-apiserver: %s pid %d %s (admin kubeconfig %s)\n", k.URL, k.PID, state, k.AdminKubeconfig)
	}
	for _, d := range r.ControlPlane {
		fmt.Fprintf(w, "%s: pid %d %s\n", d.Name, d.PID, mark(d.Alive))
	}
	if r.Runtime != "" {
		fmt.Fprintf(w, "runtime: %s on every node (%s)\n", r.Runtime, r.RuntimeConfig)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNAMESPACE\tIP\tSUBNET\tPROCESS")
	for _, n := range r.Nodes {
		proc := "-"
		if a := n.Agent; a != nil {
			state := "ready"
			switch {
			case !a.Alive:
				state = "DOWN"
			case a.Paused:
				state = "paused"
			case !a.Ready:
				state = "NOT READY"
			}
			what := "agent"
			if a.Daemon == "flanneld" {
				what = "flanneld"
			}
			proc = fmt.Sprintf("%s pid %d %s", what, a.PID, state)
		}
		if len(n.Daemons) > 0 {
			var parts []string
			for _, d := range n.Daemons[1:] {
				parts = append(parts, fmt.Sprintf("%s %d %s", d.Name, d.PID, mark(d.Alive)))
			}
			proc = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Namespace, joinSet(n.IP, n.IPv6), joinSet(n.Subnet, n.IPv6Subnet), proc)
		for _, p := range n.Pods {
			if r.State != nil && r.State.RealMode() {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t\tPod %s/%s %s\n", p.Name, p.Namespace, p.IP, KubeNamespace, p.Name, mark(p.Exists))
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t\tserver pid %d %s\n", p.Name, p.Namespace, joinSet(p.IP, p.IPv6), p.Server.PID, mark(p.Server.Alive))
		}
	}
	tw.Flush()
	if len(r.Services) > 0 {
		fmt.Fprintln(w, "\nServices (kube-proxy rules on every node):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, s := range r.Services {
			fmt.Fprintf(tw, "  %s\t%s\t:%d/%s\t-> %s\n", s.Name, strings.Join(s.ClusterIPs, ", "), s.Port, s.Protocol, endpointsText(s.Endpoints))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(r.Scenarios) == 0 {
		fmt.Fprintln(w, "Broken scenarios: none")
	} else {
		fmt.Fprintln(w, "Broken scenarios (undo with `twill lab fix SCENARIO NODE`):")
		for _, a := range r.Scenarios {
			s, _ := LookupScenario(a.Scenario)
			peer := ""
			if a.Peer != "" {
				peer = " (peer " + a.Peer + ")"
			}
			fmt.Fprintf(w, "  %-11s on %s%s: %s\n", a.Scenario, a.Node, peer, s.Summary)
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	}
}

// endpointsText lists a Service's endpoints, or says it has none.
func endpointsText(eps []string) string {
	if len(eps) == 0 {
		return "no endpoints"
	}
	return strings.Join(eps, ", ")
}
