package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/picture"
	"github.com/twillnet/twill/trace"
	"github.com/twillnet/twill/trace/tracelab"
)

// traceFlags are the flags of `twill trace`.
type traceFlags struct {
	from, to, proto string
	sport           int
	snapshots       []string
	maxSnapMiB      int64
	netns           []string
	useLab          bool
	labName         string
	output          string
	live            bool
	kubeconfig      string
}

func newTraceCmd() *cobra.Command {
	f := &traceFlags{}
	cmd := &cobra.Command{
		Use:   "trace --from POD|IP --to IP[:PORT]|[IPV6]:PORT",
		Short: "Simulate one packet through routing, bridges, netfilter, conntrack and the overlay, and name the rule that decides",
		Long: `trace follows one packet (and its reply) through the network state of one or
more nodes, the way the kernel would: pod routing, the node bridge (with or
without br_netfilter), policy routing, every netfilter hook and base chain of
iptables-legacy, iptables-nft and native nftables in priority order, NAT and
conntrack, and vxlan or host-gw to the next node. Every hop is printed with its
namespace, hook, table, chain, rule number and rule text; the verdict says which
pod got the packet with what source address, or where it (or its reply) was
lost, and which FAILURES.md entry and doctor check that matches.

Random load balancing (statistic random, numgen) is followed on every branch,
each with its probability. Rules that cannot be evaluated from a snapshot make
the result UNCERTAIN and are named.

State comes from --snapshot files (one per node, from 'twill snapshot'), from
--lab (a running 'twill lab': every node is captured live and pods are known by
name), or from the live namespaces given with --netns (default: this one).

Exit status: 0 when every path is established, 1 when some path fails, 2 on errors.`,
		Example: `  twill trace --lab --from node1-a --to 10.96.1.1:80
  twill trace --snapshot node1.json --snapshot node2.json --from 10.244.1.10 --to 10.244.2.10:8080 -o json
  twill trace --lab --from node1-a --to 10.96.1.1:80 -o html > f1.html
  twill trace --lab --from node1-a --to '[fd00:10:244:2::2]:8080'     # IPv6 (dual-stack or IPv6-only lab)
  twill trace --live --lab --from node1-a --to 10.96.0.10:80
  twill trace --kubeconfig ~/.kube/config --from default/client --to default/web:http`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runTrace(ctx, cmd, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.from, "from", "", "sender: a pod name (with --lab), a pod address, a node name or a node address")
	fs.StringVar(&f.to, "to", "", "destination IP[:PORT] (a pod, a Service ClusterIP, a node)")
	fs.StringVar(&f.proto, "proto", "tcp", "protocol: "+strings.Join(trace.Protocols, ", "))
	fs.IntVar(&f.sport, "sport", 40000, "the client's source port")
	fs.StringArrayVar(&f.snapshots, "snapshot", nil, "a node snapshot file from 'twill snapshot' (repeat for several nodes)")
	fs.Int64Var(&f.maxSnapMiB, "max-snapshot-size", nodestate.DefaultMaxSnapshotSize>>20, "refuse a --snapshot file larger than this many MiB")
	fs.StringArrayVar(&f.netns, "netns", nil, "capture this named network namespace live as a node (repeat for several)")
	fs.BoolVar(&f.useLab, "lab", false, "trace inside a running lab: capture all its nodes, resolve pod names")
	fs.StringVar(&f.labName, "name", lab.DefaultName, "lab name (with --lab)")
	fs.StringVarP(&f.output, "output", "o", "text", "output format: text, json, html (a self-contained page with the path drawn) or svg")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", kubeconfigHelp+"; lets --from name a pod (ns/pod) and --to a Service or pod (ns/svc[:port], ns/pod:port)")
	fs.BoolVar(&f.live, "live", false, "also send one real probe with nftrace on and show the kernel's own trace (needs --lab, root)")
	return cmd
}

func runTrace(ctx context.Context, cmd *cobra.Command, f *traceFlags) error {
	if f.from == "" || f.to == "" {
		return fmt.Errorf("--from and --to are required (e.g. --from node1-a --to 10.96.0.10:80)")
	}
	switch f.output {
	case "text", "json", "html", "svg":
	default:
		return fmt.Errorf("-o %q: want text, json, html or svg", f.output)
	}
	if f.live && (f.output == "html" || f.output == "svg") {
		return fmt.Errorf("--live prints the kernel's own trace as text or json; leave out -o %s", f.output)
	}
	if f.live && !f.useLab {
		return fmt.Errorf("--live needs --lab (it sends a real packet from a lab pod)")
	}
	view, err := loadAPIView(ctx, f.kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	refs, err := resolveTraceRefs(view, f.from, f.to, f.proto, cmd.Flags().Changed("proto"))
	if err != nil {
		return err
	}
	for _, n := range refs.notes {
		fmt.Fprintln(cmd.ErrOrStderr(), n)
	}
	req, err := parseTraceTarget(refs.to, refs.proto)
	if err != nil {
		return err
	}
	req.From = refs.from
	if f.sport < 1 || f.sport > 65535 {
		return fmt.Errorf("--sport %d: want 1..65535", f.sport)
	}
	req.Sport = uint16(f.sport)

	var w *trace.World
	var st *lab.State
	switch {
	case f.useLab:
		if len(f.snapshots) > 0 || len(f.netns) > 0 {
			return fmt.Errorf("--lab captures the lab's nodes itself; leave out --snapshot and --netns")
		}
		w, st, err = tracelab.World(ctx, f.labName)
	case len(f.snapshots) > 0:
		var snaps []*nodestate.Snapshot
		for _, p := range f.snapshots {
			if f.maxSnapMiB <= 0 {
				return fmt.Errorf("--max-snapshot-size %d: want a positive number of MiB", f.maxSnapMiB)
			}
			s, err := nodestate.LoadFileMax(p, f.maxSnapMiB<<20)
			if err != nil {
				return err
			}
			snaps = append(snaps, s)
		}
		if len(f.netns) > 0 {
			return fmt.Errorf("use either --snapshot files or live --netns namespaces, not both")
		}
		w, err = trace.NewWorld(snaps, nil)
	default:
		nss := f.netns
		if len(nss) == 0 {
			nss = []string{""}
		}
		var snaps []*nodestate.Snapshot
		for _, ns := range nss {
			s, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: ns, Node: ns})
			if err != nil {
				return err
			}
			snaps = append(snaps, s)
		}
		w, err = trace.NewWorld(snaps, nil)
	}
	if err != nil {
		return err
	}
	res, err := w.Trace(req)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var live *tracelab.LiveResult
	if f.live {
		live, err = tracelab.Live(ctx, st, req)
		if err != nil {
			return err
		}
	}
	switch f.output {
	case "html":
		if err := picture.WriteTraceHTML(out, res); err != nil {
			return err
		}
	case "svg":
		if err := picture.WriteTraceSVG(out, res); err != nil {
			return err
		}
	case "json":
		if live != nil {
			return tracelab.WriteJSONWithLive(out, res, live)
		}
		if err := res.WriteJSON(out); err != nil {
			return err
		}
	default:
		res.WriteText(out)
		if live != nil {
			live.WriteText(out)
		}
	}
	for _, p := range res.Paths {
		if p.Outcome.Kind != trace.Established {
			return &exitError{code: 1}
		}
	}
	return nil
}

// parseTraceTarget parses --to IP[:PORT] with --proto: IPv4 "10.96.0.1:80",
// IPv6 "fd00::1" or with a port in brackets "[fd00::1]:80".
func parseTraceTarget(to, proto string) (trace.Request, error) {
	req := trace.Request{Proto: strings.ToLower(proto)}
	host, port := to, ""
	switch {
	case strings.HasPrefix(to, "["):
		h, rest, ok := strings.Cut(to[1:], "]")
		if !ok || (rest != "" && !strings.HasPrefix(rest, ":")) {
			return req, fmt.Errorf("--to %q: want [IPV6]:PORT, e.g. [fd00:96::1]:80", to)
		}
		host, port = h, strings.TrimPrefix(rest, ":")
		if rest == ":" {
			return req, fmt.Errorf("--to %q: port must be 1..65535", to)
		}
	case strings.Count(to, ":") > 1:
		// An IPv6 address without a port (a port needs brackets).
	default:
		if i := strings.LastIndex(to, ":"); i >= 0 {
			host, port = to[:i], to[i+1:]
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return req, fmt.Errorf("--to %q: want IP, IP:PORT or [IPV6]:PORT (%v)", to, err)
	}
	if a.Zone() != "" {
		return req, fmt.Errorf("--to %q: zones (%%%s) are not simulated; give a global address", to, a.Zone())
	}
	req.To = a
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return req, fmt.Errorf("--to %q: port must be 1..65535", to)
		}
		req.Port = uint16(n)
	}
	return req, req.Validate()
}
