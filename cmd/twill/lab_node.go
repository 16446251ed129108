package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
)

func newLabNodeCmd(name *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Act on the lab's Node objects (lab up --store kubernetes)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "delete NODE",
		Short: "Delete a node's Node object from the lab's kube-apiserver, as 'kubectl delete node' would",
		Long: `delete removes NODE's Node object from the lab's API server (kube mode only). The
other nodes' agents see it go through their Node informers and remove their routes
(and, with vxlan, neighbour and FDB entries) to its pod subnet. The node's namespace,
its agent and its pods stay; the deleted node's own agent logs that its Node is gone.`,
		Example: `  twill lab up --store kubernetes
  twill lab node delete node3
  twill lab exec node1 -- ip route     # no route to 10.244.3.0/24 any more`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			if err := lab.KubeNodeDelete(ctx, *name, args[0], cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("lab node delete: %w", err)
			}
			return nil
		},
	})
	return cmd
}
