package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
)

func newLabAgentCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "agent NODE " + strings.Join(lab.AgentActions, "|"),
		Short: "Stop, start, restart, kill -9, pause or resume a node's agent (agent mode)",
		Long: `agent controls the 'twill agent' process of one node:

  stop      SIGTERM: the agent exits and leaves the node's networking as it is
  start     start it again with the same arguments and wait until /readyz answers
  restart   stop, then start
  kill      SIGKILL, as 'kill -9': no cleanup at all
  pause     SIGSTOP: it stays but repairs nothing ('lab break' does this)
  resume    SIGCONT
  switch    make the node's other daemon its daemon (flanneld <-> twill agent;
            labs built with --flannel-nodes), not started: stop it first

Pods keep talking through all of it: the kernel forwards, the agent only
programs. The agent's log is /run/twill-lab/<name>/logs/<node>-agent.log.`,
		Example: `  twill lab agent node2 kill && twill lab agent node2 start
  twill lab agent node1 restart
  twill lab exec node1 -- curl -s 127.0.0.1:9473/metrics | grep twill_repairs`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			return lab.AgentControl(ctx, *name, args[0], args[1], cmd.OutOrStdout())
		},
	}
}

func newLabEtcdCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "etcd stop|start",
		Short: "Stop the lab's etcd (keeping its data) or start it again",
		Long: `etcd stops the lab's etcd (SIGTERM; its data directory stays) or starts it again
on the same data and waits until it is healthy. While it is down, pods keep
talking and agents keep repairing drift from what they know; they catch up
without a restart once it is back.`,
		Example: `  twill lab etcd stop; twill lab call node1-a 10.244.2.2:8080; twill lab etcd start`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			return lab.EtcdControl(ctx, *name, args[0], cmd.OutOrStdout())
		},
	}
}

func newLabStreamCmd(name *string) *cobra.Command {
	var d, interval time.Duration
	cmd := &cobra.Command{
		Use:   "stream POD HOST:PORT",
		Short: "Keep one TCP connection doing round trips and report whether it survived",
		Long: fmt.Sprintf(`stream opens one TCP connection from inside POD to HOST:PORT, a pod's echo
service (port %d, agent-mode labs), and sends a line every --interval for --for,
checking each comes back. It reports the round trips, the slowest one, and
whether the connection was reset: run it while you kill an agent or stop etcd to
see that established connections are not disturbed. Exit status 1 when the
stream failed or was reset.`, lab.EchoPort),
		Example: `  twill lab stream node1-a 10.244.2.2:8081 --for 10s &
  twill lab agent node2 kill; twill lab agent node2 start; wait`,
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
			if t.Pod == nil {
				return fmt.Errorf("%q is not a pod", args[0])
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			r := lab.Stream(ctx, t.Namespace, args[1], d, interval)
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s: %s\n", args[0], args[1], r)
			if !r.OK() {
				return &exitError{code: 1, err: errors.New("stream " + args[0] + " -> " + args[1] + " failed")}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&d, "for", 10*time.Second, "how long to keep the connection busy")
	cmd.Flags().DurationVar(&interval, "interval", 50*time.Millisecond, "pause between round trips")
	return cmd
}
