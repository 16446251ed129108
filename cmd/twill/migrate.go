package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/migrate"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move this node from Flannel to twill, or back, without touching its running pods",
		Long: `migrate moves one node between Flannel and twill while its pods keep running:
they keep their addresses and their TCP connections, and no new pod gets an
address a running pod has. Run it on the node with the old daemon stopped and
the new one not yet started (by hand, or as the init step of the new daemon's
DaemonSet pod); see docs/migrate.md for the rollout order and the way back.

  from-flannel   Flannel -> twill
  to-flannel     twill -> Flannel

--dry-run prints the plan (each step and why) and changes nothing. A node in a
state the migration cannot start from (the old daemon still running, its
subnet file unreadable) is refused with the reason, and nothing is changed.
A node without a trace of the old network has nothing to migrate: exit 0.`,
	}
	cmd.AddCommand(newMigrateDirCmd(migrate.FromFlannel), newMigrateDirCmd(migrate.ToFlannel))
	return cmd
}

func newMigrateDirCmd(dir string) *cobra.Command {
	var (
		o      migrate.Options
		popt   migrate.PlanOptions
		dry    bool
		output string
		kf     kubeFlags
	)
	short, long, example := "", "", ""
	switch dir {
	case migrate.FromFlannel:
		short = "Take this node over from Flannel: same subnet, same pod addresses, no reset connection"
		long = `from-flannel takes the node over from Flannel (flanneld stopped, twill agent not
yet started). In order:

  1. writes twill's subnet file with Flannel's subnet: the agent asks for that
     subnet and adopts the Flannel lease of this node's PublicIP in etcd (same
     subnet, same key: no stale lease is left for the peers);
  2. writes twill's CNI configuration under Flannel's network name (cbr0, other
     plugins such as portmap kept) and removes Flannel's: twill-cni allocates
     beside host-local's existing allocations, never one of them;
  3. removes Flannel's iptables chains (FLANNEL-POSTRTG, FLANNEL-FWD) and the
     rules jumping to them, in whichever backend holds them;
  4. removes /run/flannel/subnet.env;
  5. last, deletes flannel.1, which holds the VNI and port twill.1 needs.

With --store kubernetes (Flannel's --kube-subnet-mgr) it first checks that
the Node's podCIDR is the subnet of Flannel's subnet file (the agent leases
the podCIDR); Flannel's annotations stay until the agent publishes its lease
in both sets.

Start twill agent right after (with Flannel's etcd and --etcd-prefix): from
step 5 until its twill.1 is up, cross-node packets are dropped and
retransmitted; TCP connections keep going. Then check with 'twill doctor'.

With --leave-device, step 5 is the agent's: started with
--take-over-flannel-device, it deletes flannel.1 right before it creates
twill.1, once it holds the lease and knows the peers (the shortest gap).`
		example = `  twill migrate from-flannel --dry-run
  twill migrate from-flannel -o json && twill agent --etcd-prefix /coreos.com/network ...
  twill migrate from-flannel --leave-device && twill agent --take-over-flannel-device ...`
	case migrate.ToFlannel:
		short = "Hand this node back to Flannel: same subnet, same pod addresses"
		long = `to-flannel hands the node back to Flannel (twill agent stopped, flanneld not yet
started). In order:

  1. writes /run/flannel/subnet.env with this node's subnet: flanneld asks for
     it and adopts the lease of this node's PublicIP (the lease stays in etcd);
  2. writes Flannel's CNI configuration under the same network name (cbr0) and
     removes twill's: host-local allocates beside the running pods' addresses;
  3. removes twill.1 (flanneld refuses to start while it holds VNI 1 port
     8472), twill's routes, firewall rules, subnet file and CNI plugin. The pod
     bridge cni0 and the pods stay.

With --store kubernetes it also removes twill's own annotations (twill.io/*)
from the Node, keeping Flannel's set (same address and VTEP MAC) for flanneld
to take over: on a Node with both sets twill's wins, and it would go stale.

Start flanneld right after.`
		example = `  twill migrate to-flannel --dry-run
  twill migrate to-flannel && systemctl start flanneld
  twill migrate to-flannel --store kubernetes --node "$NODE_NAME"`
	}
	cmd := &cobra.Command{
		Use:     dir,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return &exitError{2, fmt.Errorf("--output %q: want text or json", output)}
			}
			if err := kf.validStore(); err != nil {
				return &exitError{2, err}
			}
			if kf.store == storeKubernetes {
				st, err := kf.openKube(o.Netns, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					return &exitError{1, fmt.Errorf("migrate %s: %w", dir, err)}
				}
				o.Kube = st
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			return runMigrate(ctx, cmd.OutOrStdout(), dir, o, popt, dry, output)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Root, "root", os.Getenv("TWILL_ROOT"), "prefix of the node's files (env TWILL_ROOT)")
	fs.StringVar(&o.Netns, "netns", "", "migrate the node in this named network namespace (lab and tests)")
	fs.StringVar(&o.Iface, "iface", "", "underlay interface (default: the default route's)")
	fs.BoolVar(&dry, "dry-run", false, "print the plan and change nothing")
	kf.register(fs)
	host, _ := os.Hostname()
	fs.StringVar(&o.Node, "node", envOr("NODE_NAME", host), "this node's Node object name, with --store kubernetes (env NODE_NAME; default the hostname)")
	if dir == migrate.FromFlannel {
		fs.BoolVar(&popt.LeaveDevice, "leave-device", false, "leave flannel.<VNI> to the agent started with --take-over-flannel-device, which replaces it right before creating its own (the shortest gap)")
	}
	fs.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// migrateReport is migrate's JSON output.
type migrateReport struct {
	migrate.Plan
	DryRun bool `json:"dryRun"`
	// Done lists the steps carried out (none on a dry run or a refusal).
	Done []string `json:"done"`
	// Nothing is set when the node had nothing to migrate, with the reason.
	Nothing string `json:"nothing,omitempty"`
	// Error is why the migration stopped, if it did.
	Error string `json:"error,omitempty"`
}

func runMigrate(ctx context.Context, w io.Writer, dir string, o migrate.Options, popt migrate.PlanOptions, dry bool, output string) error {
	rep := migrateReport{DryRun: dry, Done: []string{}}
	rep.Direction = dir
	finish := func(err error) error {
		if err != nil {
			rep.Error = err.Error()
		}
		if output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil {
				return jerr
			}
			if err != nil {
				return &exitError{1, nil}
			}
			return nil
		}
		if err != nil {
			return &exitError{1, fmt.Errorf("migrate %s: %w", dir, err)}
		}
		return nil
	}
	obs, err := migrate.Observe(ctx, o)
	if err != nil {
		return finish(err)
	}
	p, err := migrate.PlanFor(dir, obs, popt)
	if errors.Is(err, migrate.ErrNothingToMigrate) {
		rep.Nothing = err.Error()
		if output == "text" {
			fmt.Fprintf(w, "migrate %s: %v\n", dir, err)
		}
		return finish(nil)
	}
	if err != nil {
		return finish(err)
	}
	rep.Plan = p
	if rep.Allocations == nil {
		rep.Allocations = []string{}
	}
	if output == "text" {
		printPlan(w, p, dry)
	}
	if dry {
		return finish(nil)
	}
	done, err := migrate.Apply(ctx, o, p)
	rep.Done = append(rep.Done, done...)
	if output == "text" {
		for _, d := range done {
			fmt.Fprintf(w, "done: %s\n", d)
		}
		if err == nil {
			fmt.Fprintln(w, "\nNext:")
			for _, n := range p.Next {
				fmt.Fprintf(w, "  - %s\n", n)
			}
		}
	}
	return finish(err)
}

func printPlan(w io.Writer, p migrate.Plan, dry bool) {
	what := "Migrating"
	if dry {
		what = "Plan (dry run, nothing changed)"
	}
	fmt.Fprintf(w, "%s %s: subnet %s of %s, backend %s, CNI network %q with %d pod addresses kept\n", what, p.Direction, p.Subnet, p.Network, p.Backend, p.CNINetwork, len(p.Allocations))
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %d. %s %s\n     %s\n", i+1, s.Action, s.Target, s.Why)
	}
	if dry {
		fmt.Fprintln(w, "Then:")
		for _, n := range p.Next {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}
