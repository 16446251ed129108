package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/picture"
	"github.com/twillnet/twill/remedy"
)

type doctorOpts struct {
	capture     captureFlags
	snapshot    string
	maxSnapMiB  int64
	output      string
	ignore      []string
	fix         bool
	list        bool
	clusterCIDR string
	serviceCIDR string
	kubeSvcIP   string
	kubeconfig  string
}

func newDoctorCmd() *cobra.Command {
	var o doctorOpts
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a node's network for every known failure (and fix the safe ones)",
		Long: `doctor checks one node's network state for the failures in FAILURES.md: bridge
traffic skipping conntrack, forwarding off, a FORWARD DROP policy, iptables backend
skew and lost matches, untranslated Service IPs, stale overlay entries, bad MTU,
missing subnet file or CNI plugins, and more.

Each finding has a stable ID (suppress it with --ignore), a severity, the evidence
found, what it breaks, and the exact fix. --fix applies the fixes that are safe to
apply automatically (sysctls; an ACCEPT for the pod network placed in the backend
and chain where the DROP is), then checks again.

Exit status: 0 no errors, 1 errors found, 2 doctor could not run.`,
		Example: `  twill doctor                            # this node, live
  twill doctor --netns twill-node1 --root /run/twill-lab/twill/nodes/node1/root
  twill doctor --snapshot node1.json -o json
  twill doctor -o html > node.html           # a report to attach to a ticket
  twill doctor --fix                      # apply the safe fixes, then re-check
  twill doctor --ignore TW060,TW003       # suppress findings by ID
  twill doctor --list                     # every check with its ID
  twill doctor --kubeconfig ~/.kube/config # also compare Services and endpoints with the API`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDoctor(cmd, &o) },
	}
	fs := cmd.Flags()
	o.capture.register(fs)
	fs.StringVar(&o.snapshot, "snapshot", "", "check a snapshot file (from `twill snapshot`) instead of the live node")
	fs.Int64Var(&o.maxSnapMiB, "max-snapshot-size", nodestate.DefaultMaxSnapshotSize>>20, "refuse a --snapshot file larger than this many MiB")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text, json or html (a self-contained report with the node's summary, for a ticket)")
	fs.StringSliceVar(&o.ignore, "ignore", nil, "check IDs to suppress, e.g. TW060,TW003")
	fs.BoolVar(&o.fix, "fix", false, "apply the safe fixes (sysctls, FORWARD accepts), then check again")
	fs.BoolVar(&o.list, "list", false, "list every check with its ID and exit")
	fs.StringVar(&o.clusterCIDR, "cluster-cidr", "", "pod network (default: read from the node's subnet file)")
	fs.StringVar(&o.serviceCIDR, "service-cidr", doctor.DefaultServiceCIDR.String(), "the cluster's Service range")
	fs.StringVar(&o.kubeSvcIP, "kubernetes-service-ip", "", "ClusterIP of default/kubernetes (default: first address of --service-cidr)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", kubeconfigHelp+"; turns on TW033 and TW034")
	return cmd
}

// doctorResult is the JSON document `doctor -o json` prints.
type doctorResult struct {
	doctor.Report
	// Applied lists the fixes --fix applied (the report is the re-check after them).
	Applied []doctor.Action `json:"applied,omitempty"`
	// Before is the report before --fix, when fixes were applied.
	Before *doctor.Report `json:"before,omitempty"`
}

func (o *doctorOpts) config() (doctor.Config, error) {
	cfg := doctor.Config{Ignore: normalizeIDs(o.ignore)}
	var err error
	if o.clusterCIDR != "" {
		if cfg.ClusterCIDR, err = netip.ParsePrefix(o.clusterCIDR); err != nil {
			return cfg, fmt.Errorf("--cluster-cidr %q: %w", o.clusterCIDR, err)
		}
	}
	if cfg.ServiceCIDR, err = netip.ParsePrefix(o.serviceCIDR); err != nil {
		return cfg, fmt.Errorf("--service-cidr %q: %w", o.serviceCIDR, err)
	}
	if o.kubeSvcIP != "" {
		if cfg.KubernetesServiceIP, err = netip.ParseAddr(o.kubeSvcIP); err != nil {
			return cfg, fmt.Errorf("--kubernetes-service-ip %q: %w", o.kubeSvcIP, err)
		}
	}
	known := map[string]bool{}
	for _, c := range doctor.Checks() {
		known[c.ID] = true
	}
	for _, id := range cfg.Ignore {
		if !known[id] {
			return cfg, fmt.Errorf("--ignore %s: no such check (see twill doctor --list)", id)
		}
	}
	if o.output != "text" && o.output != "json" && o.output != "html" {
		return cfg, fmt.Errorf("-o %q: want text, json or html", o.output)
	}
	if o.fix && o.snapshot != "" {
		return cfg, errors.New("--fix changes a live node; it cannot be combined with --snapshot")
	}
	return cfg, nil
}

func normalizeIDs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id = strings.ToUpper(strings.TrimSpace(id)); id != "" {
			out = append(out, id)
		}
	}
	return out
}

func runDoctor(cmd *cobra.Command, o *doctorOpts) error {
	w := cmd.OutOrStdout()
	if o.list {
		for _, c := range doctor.Checks() {
			fmt.Fprintf(w, "%s  %s\n", c.ID, c.Name)
		}
		return nil
	}
	cfg, err := o.config()
	if err != nil {
		return &exitError{2, err}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	load := func() (*nodestate.Snapshot, error) {
		if o.snapshot != "" {
			if o.maxSnapMiB <= 0 {
				return nil, fmt.Errorf("--max-snapshot-size %d: want a positive number of MiB", o.maxSnapMiB)
			}
			return nodestate.LoadFileMax(o.snapshot, o.maxSnapMiB<<20)
		}
		return o.capture.capture(ctx)
	}
	snap, err := load()
	if err != nil {
		return &exitError{2, err}
	}
	if cfg.Cluster, err = loadAPIView(ctx, o.kubeconfig); err != nil {
		return &exitError{2, fmt.Errorf("--kubeconfig: %w", err)}
	}
	res := doctorResult{Report: doctor.Run(snap, cfg)}
	if o.fix {
		var actions []doctor.Action
		for _, f := range res.Findings {
			actions = append(actions, f.Actions...)
		}
		if len(actions) > 0 {
			if o.output == "text" {
				noun := "safe fixes"
				if len(actions) == 1 {
					noun = "safe fix"
				}
				fmt.Fprintf(w, "Applying %d %s:\n", len(actions), noun)
				for _, a := range actions {
					fmt.Fprintf(w, "  %s\n", a)
				}
				fmt.Fprintln(w)
			}
			if err := remedy.Apply(ctx, o.capture.netns, actions); err != nil {
				return &exitError{2, fmt.Errorf("fix: %w", err)}
			}
			before := res.Report
			if snap, err = load(); err != nil {
				return &exitError{2, fmt.Errorf("re-check after fix: %w", err)}
			}
			res = doctorResult{Report: doctor.Run(snap, cfg), Applied: actions, Before: &before}
			if o.output == "text" {
				fmt.Fprintln(w, "After the fixes:")
			}
		} else if o.output == "text" {
			fmt.Fprintln(w, "Nothing to fix automatically.")
		}
	}
	switch o.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return &exitError{2, err}
		}
	case "html":
		if err := picture.WriteDoctorHTML(w, picture.DoctorPage{Report: res.Report, Snapshot: snap, Applied: res.Applied}); err != nil {
			return &exitError{2, err}
		}
	default:
		res.Report.WriteText(w, false)
	}
	if res.Errors() > 0 {
		return &exitError{code: 1} // the report said it
	}
	return nil
}
