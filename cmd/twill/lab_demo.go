package main

import (
	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
)

func newLabDemoCmd(name *string) *cobra.Command {
	var o lab.DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The one-command tour: build a lab, break it (F1), let doctor find and fix it",
		Long: `demo builds a 3-node vxlan lab, shows pods and a Service working, breaks node1 the
way FAILURES.md F1 describes (bridge-nf-call-iptables=0), shows the same Service
call timing out while a direct pod call still works, runs 'twill doctor' on node1,
lets 'twill doctor --fix' repair it, shows the call working again and removes the
lab. With --keep the lab stays up for you to explore; on failure or Ctrl-C it is
always removed. Takes about ten seconds; needs root and bin/etcd ('make tools').`,
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
	return cmd
}
