package lab

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"
)

// Agent actions for AgentControl (`twill lab agent NODE ACTION`).
const (
	AgentStop    = "stop"    // SIGTERM: the agent exits and leaves the node as it is
	AgentStart   = "start"   // start it again with the same arguments, wait until ready
	AgentRestart = "restart" // stop, then start
	AgentKill    = "kill"    // SIGKILL, no cleanup at all (kill -9)
	AgentPause   = "pause"   // SIGSTOP: it stays, but repairs nothing
	AgentResume  = "resume"  // SIGCONT
	// AgentSwitch makes the node's other daemon its daemon (flanneld
	// instead of `twill agent`, or back), without starting it: labs with
	// Flannel nodes only, with the daemon stopped. Migrate the node in
	// between (`twill migrate from-flannel` or `to-flannel`).
	AgentSwitch = "switch"
)

// AgentActions lists the actions AgentControl accepts.
var AgentActions = []string{AgentStop, AgentStart, AgentRestart, AgentKill, AgentPause, AgentResume, AgentSwitch}

// agentStartTimeout bounds how long a started agent may take to be ready.
const agentStartTimeout = 30 * time.Second

// AgentControl stops, starts, restarts, kills, pauses or resumes node's
// agent in lab name (agent mode only), records the new pid and reports to
// out. start and restart wait until the agent's /readyz answers.
func AgentControl(ctx context.Context, name, node, action string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if err := requireRoot(); err != nil {
		return err
	}
	st, err := Load(name)
	if err != nil {
		return err
	}
	if st.RealMode() {
		return fmt.Errorf("lab %s: `lab agent` is %w: the agents are twill's DaemonSet pods (`twill lab exec underlay -- kubectl -n %s get pods -o wide`)", st.Name, errNotReal, TwillNamespace)
	}
	if !st.AgentMode() {
		return fmt.Errorf("lab %s runs in static mode: it has no agents (build one with `twill lab up` without --static)", st.Name)
	}
	n, err := st.node(node)
	if err != nil {
		return err
	}
	switch action {
	case AgentSwitch:
		if err := switchDaemon(st, n); err != nil {
			return err
		}
		if err := st.save(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s's daemon is now %s (not started): `twill lab agent %s start` starts it.\n", n.Name, daemonName(n), n.Name)
		return nil
	case AgentStop:
		return stopAgent(n, out)
	case AgentKill:
		if err := signalAgent(n, syscall.SIGKILL); err != nil {
			return err
		}
		if left := waitGone([]int{n.Agent.PID}, 2*time.Second); len(left) > 0 {
			return fmt.Errorf("node %s: agent pid %d survived SIGKILL", n.Name, n.Agent.PID)
		}
		fmt.Fprintf(out, "Killed %s's agent (pid %d, SIGKILL: no cleanup). The node keeps forwarding; `twill lab agent %s start` starts it again.\n", n.Name, n.Agent.PID, n.Name)
		return nil
	case AgentPause:
		if err := signalAgent(n, syscall.SIGSTOP); err != nil {
			return err
		}
		fmt.Fprintf(out, "Paused %s's agent (pid %d): it repairs nothing until `twill lab agent %s resume`.\n", n.Name, n.Agent.PID, n.Name)
		return nil
	case AgentResume:
		if err := signalAgent(n, syscall.SIGCONT); err != nil {
			return err
		}
		fmt.Fprintf(out, "Resumed %s's agent (pid %d).\n", n.Name, n.Agent.PID)
		return nil
	case AgentStart, AgentRestart:
		if action == AgentRestart {
			if err := stopAgent(n, out); err != nil {
				return err
			}
		} else if n.Agent.Alive() {
			fmt.Fprintf(out, "%s's agent is already running (pid %d).\n", n.Name, n.Agent.PID)
			return nil
		}
		start := time.Now()
		if err := startAgent(n); err != nil {
			return err
		}
		if err := st.save(); err != nil {
			return err
		}
		fmt.Fprintf(out, "Started %s's agent (pid %d, log %s) ... ", n.Name, n.Agent.PID, n.Agent.Log)
		one := &State{Name: st.Name, Nodes: []Node{*n}}
		if err := WaitAgentsReady(ctx, one, agentStartTimeout, out); err != nil {
			fmt.Fprintln(out, "NOT READY")
			return err
		}
		fmt.Fprintf(out, "ready (%s).\n", since(start))
		return nil
	}
	return fmt.Errorf("lab agent %s %q: want one of %v", node, action, AgentActions)
}

// stopAgent sends SIGTERM (and SIGCONT, for a paused agent) and waits for
// the agent to exit. The agent leaves the node's networking in place.
func stopAgent(n *Node, out io.Writer) error {
	if !n.Agent.Alive() {
		fmt.Fprintf(out, "%s's agent is not running.\n", n.Name)
		return nil
	}
	if left := stopPIDs([]int{n.Agent.PID}, 5*time.Second); len(left) > 0 {
		return fmt.Errorf("node %s: agent pid %d did not exit", n.Name, n.Agent.PID)
	}
	fmt.Fprintf(out, "Stopped %s's agent (pid %d); the node keeps its networking.\n", n.Name, n.Agent.PID)
	return nil
}

// Etcd actions for EtcdControl (`twill lab etcd ACTION`).
const (
	EtcdStop  = "stop"
	EtcdStart = "start"
)

// EtcdControl stops lab name's etcd (SIGTERM, its data kept) or starts it
// again on the same data directory and waits until it is healthy.
func EtcdControl(ctx context.Context, name, action string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if err := requireRoot(); err != nil {
		return err
	}
	st, err := Load(name)
	if err != nil {
		return err
	}
	switch action {
	case EtcdStop:
		if !st.Etcd.Alive() {
			fmt.Fprintln(out, "etcd is not running.")
			return nil
		}
		if left := stopPIDs([]int{st.Etcd.PID}, 10*time.Second); len(left) > 0 {
			return fmt.Errorf("etcd pid %d did not exit", st.Etcd.PID)
		}
		fmt.Fprintf(out, "Stopped etcd (pid %d); its data stays in %s. Pods keep talking; `twill lab etcd start` brings it back.\n", st.Etcd.PID, st.EtcdDataDir)
		return nil
	case EtcdStart:
		if st.Etcd.Alive() {
			fmt.Fprintf(out, "etcd is already running (pid %d).\n", st.Etcd.PID)
			return nil
		}
		start := time.Now()
		if err := startEtcd(ctx, st); err != nil {
			return err
		}
		if err := st.save(); err != nil {
			return err
		}
		fmt.Fprintf(out, "Started etcd (pid %d) on %s, healthy after %s.\n", st.Etcd.PID, st.EtcdDataDir, since(start))
		return nil
	}
	return fmt.Errorf("lab etcd %q: want stop or start", action)
}

// daemonName says which network daemon node n runs.
func daemonName(n *Node) string {
	if n.Flannel {
		return "flanneld"
	}
	return "twill agent"
}

// switchDaemon swaps node n's daemon with its alternative (flanneld and
// `twill agent`); the current one must be stopped. The new daemon's CNI
// plugins are installed (as its DaemonSet's install step would); the CNI
// configuration is the migration's to write (`twill migrate`).
func switchDaemon(st *State, n *Node) error {
	if n.Alt == nil {
		return fmt.Errorf("node %s has no other daemon to switch to: only labs built with --flannel-nodes have both", n.Name)
	}
	if n.Agent.Alive() {
		return fmt.Errorf("node %s: its %s (pid %d) still runs: `twill lab agent %s stop` first", n.Name, daemonName(n), n.Agent.PID, n.Name)
	}
	plugins := map[string]string{"twill": st.CNIBin}
	if !n.Flannel {
		plugins = flannelPlugins(st)
	}
	for name, src := range plugins {
		if err := copyFile(src, filepath.Join(n.Root, "opt/cni/bin", name), 0o755); err != nil {
			return fmt.Errorf("node %s: install the %s CNI plugin: %w", n.Name, name, err)
		}
	}
	cur := n.Agent
	cur.PID = 0
	n.Agent, n.Alt, n.Flannel = *n.Alt, &cur, !n.Flannel
	return nil
}
