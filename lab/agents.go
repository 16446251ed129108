package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nsrun"
)

// Agent mode: each node runs the real `twill agent` (started from the twill
// binary, Config.Self) and pods are made by the real twill-cni plugin.

// AgentHealthAddr is where every node's agent serves /readyz and /metrics,
// on the node namespace's own loopback.
const AgentHealthAddr = "127.0.0.1:" + AgentHealthPort

// AgentHealthPort is the port of AgentHealthAddr; the lab's flanneld
// serves its /healthz and /readyz there too (--healthz-port).
const AgentHealthPort = "9473"

// agentReadyTimeout bounds how long Up waits for every agent to be ready.
const agentReadyTimeout = 60 * time.Second

// FindCNI resolves the twill-cni plugin binary: explicit (flag), then
// $TWILL_CNI_BIN, then "twill-cni" next to the running twill binary, then
// ./bin/twill-cni, then $PATH.
func FindCNI(explicit string) (string, error) {
	return findBinary("twill-cni", explicit, "--cni-bin", "TWILL_CNI_BIN",
		"twill-cni not found: run `make build` (builds bin/twill-cni) or pass --cni-bin")
}

// findBinary is the search FindEtcd and FindCNI share.
func findBinary(name, explicit, flag, env, notFound string) (string, error) {
	check := func(p, from string) (string, error) {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s binary %s (from %s): %w", name, p, from, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s binary %s (from %s) is not an executable file", name, p, from)
		}
		return filepath.Abs(p)
	}
	if explicit != "" {
		return check(explicit, flag)
	}
	if v := os.Getenv(env); v != "" {
		return check(v, env)
	}
	if exe, err := os.Executable(); err == nil {
		if p, err := check(filepath.Join(filepath.Dir(exe), name), "twill's directory"); err == nil {
			return p, nil
		}
	}
	if p, err := check(filepath.Join("bin", name), "./bin"); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New(notFound)
}

// agentArgv is node n's agent command line. The agent runs inside the node
// namespace, so it programs that namespace and reaches etcd over eth0.
//
// In kube mode it leases through the lab's kube-apiserver with the node's
// kubeconfig (a token bound to the shipped ClusterRole) and reads
// net-conf.json from the node's root, as a DaemonSet pod reads its ConfigMap.
func agentArgv(c Config, prefix string, n Node) []string {
	if c.Store == StoreKubernetes {
		argv := []string{c.Self, "agent",
			"--node", n.Name,
			"--root", n.Root,
			"--store", StoreKubernetes,
			"--kubeconfig", nodeKubeconfig(n.Root),
			"--net-conf", nodeNetConf(n.Root),
			"--iface", nodeUplink,
			"--resync", c.AgentResync.String(),
			"--health-addr", AgentHealthAddr,
		}
		if c.FlannelNodes > 0 {
			argv = append(argv, "--take-over-flannel-device")
		}
		return argv
	}
	argv := []string{c.Self, "agent",
		"--node", n.Name,
		"--root", n.Root,
		"--etcd-endpoints", EtcdEndpoint,
		"--etcd-prefix", prefix,
		"--iface", nodeUplink,
		"--resync", c.AgentResync.String(),
		"--health-addr", AgentHealthAddr,
		"--etcd-ttl", c.AgentTTL.String(),
	}
	if c.FlannelNodes > 0 {
		// A node moved from Flannel with `twill migrate from-flannel
		// --leave-device`: the agent replaces flannel.1 itself.
		argv = append(argv, "--take-over-flannel-device")
	}
	return argv
}

// writeNetConfFile writes the lab's net-conf.json for node n to p, under
// its root: where its agent (nodeNetConf) or its flanneld (flannelNetConf)
// reads it in kube mode.
func writeNetConfFile(st *State, n *Node, p string) error {
	cfg, err := netConf(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, cfg.JSON(), 0o644); err != nil {
		return fmt.Errorf("node %s: write %s: %w", n.Name, p, err)
	}
	return nil
}

// netConf is the lab's cluster network config, as stored in etcd.
func netConf(st *State) (netconf.Config, error) {
	if st.HasIPv6() {
		return netconf.Parse("lab net-conf.json", netConfJSON(st))
	}
	return netconf.Parse("lab net-conf.json", []byte(fmt.Sprintf(`{"Network": %q, "Backend": {"Type": %q, "DirectRouting": %t}}`, ClusterCIDR, st.Backend, st.DirectRouting)))
}

// BackendName is the lab's backend as people say it: "vxlan",
// "vxlan (DirectRouting)" or "host-gw".
func (st *State) BackendName() string {
	if st.DirectRouting {
		return st.Backend + " (DirectRouting)"
	}
	return st.Backend
}

// putNetConf stores the lab's net-conf.json at <prefix>/config in etcd,
// where every agent reads it.
func putNetConf(ctx context.Context, st *State) error {
	cfg, err := netConf(st)
	if err != nil {
		return err
	}
	c, err := etcdClient(st)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	key := leaseetcd.ConfigKey(st.prefix())
	if _, err := c.Put(ctx, key, string(cfg.JSON())); err != nil {
		return fmt.Errorf("etcd: write %s: %w", key, err)
	}
	return nil
}

// CNIConflist is the CNI network config the lab installs on every node.
const CNIConflist = `{"cniVersion":"1.1.0","name":"twill","plugins":[{"type":"twill"}]}` + "\n"

// cniPlugin is where the plugin is installed under a node's root.
func cniPlugin(root string) string { return filepath.Join(root, "opt/cni/bin/twill") }

// installCNI puts the plugin binary at <root>/opt/cni/bin/twill and the
// conflist at <root>/etc/cni/net.d/10-twill.conflist, as a node's installer
// would, so `twill doctor` on the node sees a complete CNI setup.
func installCNI(st *State, n *Node) error {
	dst := cniPlugin(n.Root)
	if err := copyFile(st.CNIBin, dst, 0o755); err != nil {
		return fmt.Errorf("node %s: install the CNI plugin: %w", n.Name, err)
	}
	conf := filepath.Join(n.Root, "etc/cni/net.d/10-twill.conflist")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := os.WriteFile(conf, []byte(CNIConflist), 0o644); err != nil {
		return fmt.Errorf("node %s: write %s: %w", n.Name, conf, err)
	}
	return nil
}

// copyFile copies src to dst (creating dst's directory), atomically.
func copyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// startAgent starts node n's agent (its recorded argv) as a daemon in the
// node namespace, appending to its log, and records the pid.
func startAgent(n *Node) error {
	if len(n.Agent.Argv) == 0 {
		return fmt.Errorf("node %s has no agent (the lab runs in static mode)", n.Name)
	}
	p, err := startDaemon(n.Namespace, n.Agent.Argv, n.Agent.Log, n.Agent.Env)
	if err != nil {
		return fmt.Errorf("node %s: agent: %w", n.Name, err)
	}
	p.Env = n.Agent.Env
	n.Agent = p
	return nil
}

// agentHTTP is an HTTP client whose connections are opened inside node n's
// namespace, where the agent's health server listens.
func agentHTTP(n *Node) *http.Client {
	dial := nsrun.Dialer(n.Namespace)
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) },
			DisableKeepAlives: true,
		},
	}
}

// agentGet fetches path from node n's agent and returns the status code and body.
func agentGet(ctx context.Context, n *Node, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+AgentHealthAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := agentHTTP(n).Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("node %s: agent %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// AgentReady asks node n's agent for /readyz: nil when it answers 200,
// else an error saying why (not ready yet, and the agent's reason; or not
// reachable).
func AgentReady(ctx context.Context, n *Node) error {
	code, body, err := agentGet(ctx, n, "/readyz")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("node %s: agent /readyz %d: %s", n.Name, code, body)
	}
	return nil
}

// AgentMetrics returns node n's agent's /metrics text (Prometheus format).
func AgentMetrics(ctx context.Context, n *Node) (string, error) {
	code, body, err := agentGet(ctx, n, "/metrics")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("node %s: agent /metrics %d: %s", n.Name, code, body)
	}
	return body, nil
}

// MetricValue finds one sample in Prometheus text, e.g.
// MetricValue(text, `twill_repairs_total{kind="sysctl"}`); absent is 0, false.
func MetricValue(text, sample string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			var f float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%g", &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// WaitAgentsReady waits until every node's agent answers /readyz with 200,
// bounded by timeout, printing to out which nodes are still waiting every
// few seconds. A dead agent fails at once with its last log lines.
func WaitAgentsReady(ctx context.Context, st *State, timeout time.Duration, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	deadline := time.Now().Add(timeout)
	lastNote := time.Now()
	for {
		var waiting []string
		var lastErr error
		for i := range st.Nodes {
			n := &st.Nodes[i]
			if !n.Agent.Alive() {
				return fmt.Errorf("node %s: agent (pid %d) is not running; last log lines:\n%s", n.Name, n.Agent.PID, tail(n.Agent.Log, 8))
			}
			if err := AgentReady(ctx, n); err != nil {
				waiting, lastErr = append(waiting, n.Name), err
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while waiting for agents: %w", ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agents on %s not ready after %s (last: %v); see the logs in %s", strings.Join(waiting, ", "), timeout, lastErr, filepath.Join(StateDir(st.Name), "logs"))
		}
		if time.Since(lastNote) > 3*time.Second {
			fmt.Fprintf(out, "(waiting for %s) ", strings.Join(waiting, ", "))
			lastNote = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readLeases checks that every node holds the subnet the lab planned and
// records the VTEP MAC its agent published (the real one, not a guess).
func readLeases(ctx context.Context, st *State) error {
	c, err := etcdClient(st)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ls, err := leaseetcd.List(ctx, c, st.prefix())
	if err != nil {
		return err
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		found := false
		for _, l := range ls {
			// flanneld's leases name no node: Flannel knows a node by
			// its PublicIP.
			if l.Attrs.Node != n.Name && !(n.Flannel && l.Attrs.Node == "" && l.Attrs.PublicIP.String() == n.IP) {
				continue
			}
			found = true
			if err := checkLeased(n, l); err != nil {
				return err
			}
			n.adoptLeaseMACs(l)
		}
		if !found {
			return fmt.Errorf("node %s: no lease in etcd under %s although its agent is ready", n.Name, st.prefix())
		}
	}
	return nil
}

// procState reads the process state letter of a live process ('T' = stopped).
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2]
		}
	}
	return 0
}

// Paused tells whether the process is stopped (SIGSTOP).
func (p Process) Paused() bool { return p.Alive() && procState(p.PID) == 'T' }

// signalAgent sends sig to node n's agent if it is alive and still its
// own. For SIGSTOP and SIGCONT it waits (up to a second) until the process
// is stopped or running again, so what follows sees the new state.
func signalAgent(n *Node, sig syscall.Signal) error {
	if !n.Agent.Alive() {
		return fmt.Errorf("node %s: agent (pid %d) is not running; start it with `twill lab agent %s start`", n.Name, n.Agent.PID, n.Name)
	}
	if err := syscall.Kill(n.Agent.PID, sig); err != nil {
		return fmt.Errorf("node %s: signal %s to agent pid %d: %w", n.Name, sig, n.Agent.PID, err)
	}
	if sig != syscall.SIGSTOP && sig != syscall.SIGCONT {
		return nil
	}
	want := sig == syscall.SIGSTOP
	for deadline := time.Now().Add(time.Second); n.Agent.Paused() != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: agent pid %d: still paused=%v a second after %s", n.Name, n.Agent.PID, !want, sig)
		}
	}
	return nil
}
