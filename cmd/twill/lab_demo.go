package main

import (
	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
)

func newLabDemoCmd(name *string) *cobra.Command {
	var o lab.DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The one-command tour: build a lab, break it (F1), let doctor find and fix it, watch the agent repair",
		Long: `demo builds a 3-node vxlan lab with a real 'twill agent' on every node and pods made
by twill-cni, shows pods and a Service working, pauses node1's agent and breaks
node1 the way FAILURES.md F1 describes (bridge-nf-call-iptables=0), shows the same
Service call timing out while a direct pod call still works, runs 'twill doctor'
on node1, lets 'twill doctor --fix' repair it, shows the call working again; then
resumes the agent, breaks the sysctl again by hand and shows the agent repairing
it by itself and counting it in its /metrics. It removes the lab at the end; with
--keep the lab stays up for you to explore; on failure or Ctrl-C it is always
removed. Takes about fifteen seconds; needs root, bin/etcd ('make tools') and
bin/twill-cni ('make build'). --static runs the older tour without agents.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			o.Config.Name = *name
			o.Config.Out = cmd.OutOrStdout()
			return lab.Demo(ctx, o)
		},
	}
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "leave the lab running after the tour")
	cmd.Flags().StringVar(&o.Config.EtcdBin, "etcd-bin", "", "etcd binary (default: $TWILL_ETCD_BIN, next to twill, ./bin/etcd, $PATH)")
	cmd.Flags().StringVar(&o.Config.CNIBin, "cni-bin", "", "twill-cni binary (default: $TWILL_CNI_BIN, next to twill, ./bin/twill-cni, $PATH)")
	cmd.Flags().BoolVar(&o.Static, "static", false, "build the lab without agents (the lab programs the network) and skip the agent step")
	return cmd
}
