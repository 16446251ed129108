package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenarios on a lab of real nodes (lab up --kubernetes). The node's
// network is owned by a twill DaemonSet pod and by the real kube-proxy, not
// by processes the lab started with its own rules, so a scenario there
// breaks the same thing but pauses and repairs differently:
//
//   - F1 and F3 break what twill's agent owns (bridge-nf-call-iptables, the
//     FORWARD accepts): break pauses the node's twill pod (SIGSTOP of every
//     process in its cgroups), fix restores the setting and resumes it. The
//     pod's liveness probe fails while it is paused: after about a minute
//     kubelet restarts the agent, which then repairs the failure itself.
//   - F5a breaks what kube-proxy owns (the kubernetes Service VIP's rule, in
//     its iptables or nftables mode): break pauses the node's kube-proxy
//     (the lab's process; it would write the rule back on its next sync),
//     fix restarts it, and its first sync writes every rule again.

// realPause says which daemon a scenario pauses on a real node.
type realPause int

const (
	pauseTwillPod realPause = iota + 1
	pauseKubeProxy
)

// realScenario is how a scenario runs on a lab of real nodes.
type realScenario struct {
	pause realPause
	apply func(ctx context.Context, st *State, n *Node) error
	undo  func(ctx context.Context, st *State, n *Node) error
}

// realScenarios are the scenarios offered on real nodes, by ID.
var realScenarios = map[string]realScenario{
	"F1": {pause: pauseTwillPod,
		apply: func(_ context.Context, _ *State, n *Node) error { return setSysctl(n.Namespace, SysctlBridgeNF, "0") },
		undo:  func(_ context.Context, _ *State, n *Node) error { return setSysctl(n.Namespace, SysctlBridgeNF, "1") }},
	"F3": {pause: pauseTwillPod,
		apply: func(ctx context.Context, st *State, n *Node) error { return breakForwardDrop(ctx, st, n, nil) },
		undo:  removeDockerForward},
	"F5a": {pause: pauseKubeProxy, apply: breakRealNoDNAT, undo: restartKubeProxy},
}

// realScenarioIDs lists the IDs of realScenarios, in FAILURES.md order.
func realScenarioIDs() []string {
	var ids []string
	for _, s := range scenarios {
		if _, ok := realScenarios[s.ID]; ok {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// breakReal applies s to real node n: pause the daemon that would repair
// it, then break.
func breakReal(ctx context.Context, st *State, s Scenario, n *Node, out io.Writer) error {
	rs := realScenarios[s.ID]
	switch rs.pause {
	case pauseTwillPod:
		pids, err := twillPodPIDs(ctx, st, n)
		if err != nil {
			return err
		}
		if err := signalPIDs(pids, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("node %s: pause twill's pod: %w", n.Name, err)
		}
		fmt.Fprintf(out, "Paused %s's twill pod (SIGSTOP, %d processes) so the failure stays; `twill lab fix` resumes it.\n"+
			"(Its liveness probe fails meanwhile: in about a minute kubelet restarts the agent, and the agent repairs this itself.)\n", n.Name, len(pids))
	case pauseKubeProxy:
		if err := signalPIDs([]int{n.Real.KubeProxy.PID}, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("node %s: pause kube-proxy: %w", n.Name, err)
		}
		fmt.Fprintf(out, "Paused %s's kube-proxy (pid %d) so it does not write the rule back; `twill lab fix` restarts it.\n", n.Name, n.Real.KubeProxy.PID)
	}
	return rs.apply(ctx, st, n)
}

// fixReal restores what s broke on real node n and resumes the paused
// daemon (the twill pod only once no other scenario on n needs it paused).
func fixReal(ctx context.Context, st *State, s Scenario, n *Node, out io.Writer) error {
	rs := realScenarios[s.ID]
	if err := rs.undo(ctx, st, n); err != nil {
		return err
	}
	if rs.pause != pauseTwillPod {
		return nil
	}
	for _, a := range st.Scenarios {
		if o, ok := realScenarios[a.Scenario]; ok && a.Node == n.Name && o.pause == pauseTwillPod {
			fmt.Fprintf(out, "%s's twill pod stays paused: %s still applied there.\n", n.Name, a.Scenario)
			return nil
		}
	}
	pids, err := twillPodPIDs(ctx, st, n)
	if err != nil {
		return err
	}
	if err := signalPIDs(pids, syscall.SIGCONT); err != nil {
		return fmt.Errorf("node %s: resume twill's pod: %w", n.Name, err)
	}
	fmt.Fprintf(out, "Resumed %s's twill pod; it repairs drift again.\n", n.Name)
	return nil
}

// fixRealScenario is Fix on a lab of real nodes: fixReal, then the
// scenario leaves state.json.
func fixRealScenario(ctx context.Context, st *State, s Scenario, n *Node, out io.Writer) error {
	was := st.dropApplied(s.ID, n.Name)
	if err := fixReal(ctx, st, s, n, out); err != nil {
		return fmt.Errorf("fix %s on %s: %w", s.ID, n.Name, err)
	}
	if err := st.save(); err != nil {
		return err
	}
	if was {
		fmt.Fprintf(out, "Fixed %s on %s.\n", s.ID, n.Name)
	} else {
		fmt.Fprintf(out, "%s was not recorded as broken on %s; restored its healthy state anyway.\n", s.ID, n.Name)
	}
	return nil
}

// signalPIDs sends sig to every pid; a process already gone is no error.
func signalPIDs(pids []int, sig syscall.Signal) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("signal %s to pid %d: %w", sig, pid, err)
		}
	}
	return nil
}

// twillPodPIDs lists the processes of twill's DaemonSet pod on node n,
// through the pod's cgroups below the node's (pids hierarchy).
func twillPodPIDs(ctx context.Context, st *State, n *Node) ([]int, error) {
	c, err := kubeAdmin(st)
	if err != nil {
		return nil, err
	}
	pods, err := c.CoreV1().Pods(TwillNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=twill", FieldSelector: "spec.nodeName=" + n.Name})
	if err != nil {
		return nil, fmt.Errorf("kube: twill's pod on %s: %w", n.Name, err)
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("node %s runs no twill pod (is the DaemonSet %s/%s installed?)", n.Name, TwillNamespace, TwillDaemonSet)
	}
	var pids []int
	for _, p := range pods.Items {
		dir, err := podCgroup(st, n.Name, string(p.UID))
		if err != nil {
			return nil, fmt.Errorf("twill pod %s: %w", p.Name, err)
		}
		pids = append(pids, pidsInCgroups(cgroupTree([]string{dir}))...)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("node %s: twill's pod has no process", n.Name)
	}
	return pids, nil
}

// removeDockerForward undoes breakForwardDrop: FORWARD's policy back to
// ACCEPT, Docker's jumps and chains gone (what removing Docker leaves).
func removeDockerForward(ctx context.Context, _ *State, n *Node) error {
	if _, err := runIn(ctx, n.Namespace, "", "iptables-nft", "-t", "filter", "-P", "FORWARD", "ACCEPT"); err != nil {
		return err
	}
	for _, c := range []string{"DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"} {
		for {
			if _, err := runIn(ctx, n.Namespace, "", "iptables-nft", "-t", "filter", "-D", "FORWARD", "-j", c); err != nil {
				break // no (more) jump
			}
		}
	}
	for _, c := range []string{"DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"} {
		_, _ = runIn(ctx, n.Namespace, "", "iptables-nft", "-t", "filter", "-F", c)
		_, _ = runIn(ctx, n.Namespace, "", "iptables-nft", "-t", "filter", "-X", c)
	}
	return nil
}

// breakRealNoDNAT removes the translation of the kubernetes Service VIP
// from kube-proxy's rules: its KUBE-SERVICES rule in iptables mode, its
// element of the service-ips map in nftables mode.
func breakRealNoDNAT(ctx context.Context, st *State, n *Node) error {
	if st.Real.ProxyMode == ProxyIptables {
		return breakNoDNAT(ctx, st, n, nil)
	}
	vip := KubernetesVIP.Addr().String()
	elem := fmt.Sprintf("{ %s . tcp . 443 }", vip)
	if _, err := runIn(ctx, n.Namespace, "", "nft", "delete", "element", "ip", "kube-proxy", "service-ips", elem); err != nil {
		return fmt.Errorf("node %s: no %s in kube-proxy's ip kube-proxy service-ips map (were the kube-proxy rules loaded?): %w", n.Name, elem, err)
	}
	return nil
}

// restartKubeProxy replaces node n's kube-proxy with a fresh one: its
// first sync writes all of its rules again.
func restartKubeProxy(_ context.Context, st *State, n *Node) error {
	p := n.Real.KubeProxy
	if p.Alive() {
		if left := stopPIDs([]int{p.PID}, 5*time.Second); len(left) > 0 {
			return fmt.Errorf("node %s: kube-proxy (pid %d) does not exit", n.Name, p.PID)
		}
	}
	if err := startKubeProxy(st, n); err != nil {
		return err
	}
	return waitKubeProxySynced(st, n)
}

// waitKubeProxySynced waits (bounded) until node n's kube-proxy has
// written the kubernetes Service VIP's translation again.
func waitKubeProxySynced(st *State, n *Node) error {
	vip := KubernetesVIP.Addr().String()
	argv, want := []string{"iptables-nft-save", "-t", "nat"}, "-A KUBE-SERVICES -d "+vip+"/32 "
	if st.Real.ProxyMode == ProxyNftables {
		argv, want = []string{"nft", "list", "map", "ip", "kube-proxy", "service-ips"}, " "+vip+" . tcp . 443 "
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := runIn(context.Background(), n.Namespace, "", argv...)
		if err == nil && strings.Contains(out, want) {
			return nil
		}
		if !n.Real.KubeProxy.Alive() {
			return fmt.Errorf("node %s: kube-proxy (pid %d) exited:\n%s", n.Name, n.Real.KubeProxy.PID, tail(n.Real.KubeProxy.Log, 10))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: kube-proxy has not written %s's rule 30 s after its restart; see %s", n.Name, vip, n.Real.KubeProxy.Log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podCgroup is the cgroup directory (pids hierarchy) of the pod with uid
// on node.
func podCgroup(st *State, node, uid string) (string, error) {
	root := filepath.Join(cgroupFS, "pids", labCgroup(st.Name), node)
	var dir string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "pod"+uid {
			dir = p
			return filepath.SkipAll
		}
		return nil
	})
	if dir == "" {
		return "", fmt.Errorf("no cgroup pod%s below %s", uid, root)
	}
	return dir, nil
}
