package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/agent"
	"github.com/twillnet/twill/lease"
)

func newUninstallCmd() *cobra.Command {
	var (
		store     storeFlags
		kf        kubeFlags
		o         agent.UninstallOptions
		node      string
		keepLease bool
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove everything twill created on this node and release its lease",
		Long: `uninstall removes what twill put on this node: the vxlan device twill.1 and
twill's routes, neighbours and FDB entries; its firewall rules in whichever
backend holds them (and the FORWARD accepts it placed where a DROP was); the pod
bridge cni0; the subnet file, CNI configuration, plugin binary and IP allocations;
and releases the node's lease in etcd so the other nodes drop their routes to it
at once. Stop the agent first (kubectl delete the DaemonSet, or systemctl stop).

Pods still running on the node lose their network.`,
		Example: `  twill uninstall --etcd-endpoints http://10.0.0.1:2379
  twill uninstall --keep-lease            # leave the lease to expire on its own`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if err := kf.validStore(); err != nil {
				return &exitError{2, err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			subnet := agent.LeaseSubnet(o.Root)
			done, err := agent.Uninstall(ctx, o)
			for _, d := range done {
				fmt.Fprintln(w, d)
			}
			if err != nil {
				return &exitError{1, fmt.Errorf("uninstall: %w", err)}
			}
			if kf.store == storeKubernetes && !keepLease {
				if err := kf.releaseKube(ctx, w, o.Netns, node); err != nil {
					return &exitError{1, err}
				}
				return nil
			}
			if keepLease || len(store.endpoints) == 0 {
				fmt.Fprintln(w, "lease not released (no --etcd-endpoints, or --keep-lease): it expires after its TTL")
				return nil
			}
			st, err := store.open(ctx, o.Netns, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return &exitError{1, err}
			}
			defer st.Close()
			l, ok, err := st.ReleaseNode(ctx, node)
			if err != nil {
				return &exitError{1, err}
			}
			if ok {
				fmt.Fprintf(w, "released lease %s of node %s\n", l.Subnet, node)
				return nil
			}
			if subnet.IsValid() {
				resp, err := st.Client().Get(ctx, lease.SubnetKey(store.prefix, subnet))
				if err != nil {
					return &exitError{1, fmt.Errorf("no lease names node %s; reading the lease of this node's subnet %s: %w", node, subnet, err)}
				}
				for _, kv := range resp.Kvs {
					l, err := lease.Decode(string(kv.Key), kv.Value)
					if err != nil {
						continue
					}
					return &exitError{1, fmt.Errorf("no lease names node %s, but this node's subnet %s is leased by node %q: pass --node %s (the name the agent ran with) to release it", node, subnet, l.Attrs.Node, l.Attrs.Node)}
				}
			}
			if !cmd.Flags().Changed("node") && os.Getenv("NODE_NAME") == "" {
				return &exitError{1, fmt.Errorf("no lease names node %s (the hostname) and no subnet file says which is this node's: pass --node with the node's name as the agent knew it, or --keep-lease", node)}
			}
			fmt.Fprintf(w, "node %s holds no lease\n", node)
			return nil
		},
	}
	fs := cmd.Flags()
	store.register(fs)
	kf.register(fs)
	host, _ := os.Hostname()
	fs.StringVar(&node, "node", envOr("NODE_NAME", host), "this node's name (env NODE_NAME; default the hostname)")
	fs.StringVar(&o.Root, "root", os.Getenv("TWILL_ROOT"), "prefix of the node's files (env TWILL_ROOT)")
	fs.StringVar(&o.Netns, "netns", "", "uninstall from the named network namespace (lab and tests)")
	fs.StringVar(&o.Iface, "iface", "", "underlay interface (default: the default route's)")
	fs.BoolVar(&o.FlannelSubnetEnv, "flannel-subnet-env", false, "also remove /run/flannel/subnet.env")
	fs.BoolVar(&o.KeepBridge, "keep-bridge", false, "leave the pod bridge cni0 in place")
	fs.BoolVar(&keepLease, "keep-lease", false, "do not release the lease")
	return cmd
}
