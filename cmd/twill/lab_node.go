package main

import (
	"fmt"
	"strings"

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

func newLabPodCmd(name *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pod",
		Short: "Add pods to a running lab (agent mode)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add NODE",
		Short: "Create one more pod on NODE through the node's CNI plugin, as a runtime would",
		Long: `add creates a pod on NODE (its namespace, CNI ADD, its server on :8080 and the
echo port) through the node's current plugin: twill-cni with the node's installed
conflist (<root>/etc/cni/net.d/10-twill.conflist), or bridge and host-local on a
Flannel node (lab up --flannel-nodes). It prints the pod's name and address. After
'twill migrate from-flannel', the new pod's address is never one a running pod has.`,
		Example: `  twill lab pod add node1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			p, err := lab.AddPod(ctx, *name, args[0])
			if err != nil {
				return fmt.Errorf("lab pod add: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", p.Name, strings.Join(p.Addrs(), " "))
			return nil
		},
	})
	return cmd
}
