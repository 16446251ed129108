package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/picture"
)

func newSnapshotCmd() *cobra.Command {
	var (
		cf     captureFlags
		output string
		report string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot [-o FILE] [--netns NAME] [--root DIR] [--node NAME]",
		Short: "Capture a node's network state into one JSON file",
		Long: `Capture the network state of a node into one JSON file that 'twill doctor'
and 'twill trace' read: links (bridge ports, veth peers, vxlan attributes),
addresses, routes of every table, policy rules, neighbours, the bridge FDB,
the sysctls pod networking depends on, both iptables backends and nftables
(raw), IPVS, CNI config and plugins, the subnet files, and, with
--etcd-endpoints, every node's lease.

Attach the file to a support ticket, or check it offline. Parts that cannot
be read (a missing nft binary, an unreachable etcd) are recorded in the file
under "errors" and the capture goes on; only a missing namespace fails.

Run it as root: netlink dumps, iptables-save and nft need it.`,
		Example: `  # the node you are on, to a file
  twill snapshot -o node.json

  # a lab node: its namespace, its files, all leases from the lab's etcd
  twill snapshot --netns twill-node1 --root /run/twill-lab/twill/nodes/node1/root \
      --node node1 --etcd-endpoints http://192.168.77.1:2379 -o node1.json

  # to stdout, quietly, and look at the routes
  twill snapshot -q | jq '.routes[] | select(.dev == "twill.1")'

  # then check it
  twill doctor --snapshot node.json

  # for a ticket: the snapshot and doctor's report of the same capture, in one page
  twill snapshot -o node.json --report node.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := cf.capture(cmd.Context())
			if err != nil {
				return err
			}
			if err := writeSnapshot(output, cmd.OutOrStdout(), s); err != nil {
				return err
			}
			if report != "" {
				if err := writeReport(report, s); err != nil {
					return err
				}
			}
			if !quiet {
				fmt.Fprintln(cmd.ErrOrStderr(), summarize(s, output))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "-", `write the snapshot to FILE (atomically); "-" is standard output`)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not print the summary line on standard error")
	cmd.Flags().StringVar(&report, "report", "", "also write doctor's report of this capture as a self-contained HTML page to FILE, with the snapshot embedded")
	cf.register(cmd.Flags())
	return cmd
}

// writeSnapshot writes s to path, or to stdout when path is "-". A file is
// written to a temporary file beside it and renamed, so a reader never sees
// half a snapshot and a failed capture leaves an older file intact.
func writeSnapshot(path string, stdout io.Writer, s *nodestate.Snapshot) error {
	if path == "-" || path == "" {
		return nodestate.Save(stdout, s)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := nodestate.Save(tmp, s); err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	done = true
	return nil
}

// writeReport writes doctor's HTML report of s, with s embedded, to path
// (atomically, like the snapshot).
func writeReport(path string, s *nodestate.Snapshot) error {
	var b bytes.Buffer
	page := picture.DoctorPage{Report: doctor.Run(s, doctor.Config{}), Snapshot: s, EmbedSnapshot: true}
	if err := picture.WriteDoctorHTML(&b, page); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// summarize is the one-line report printed after a capture.
func summarize(s *nodestate.Snapshot, output string) string {
	var b strings.Builder
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	parts := []string{
		plural(len(s.Links), "link", "links"),
		plural(len(s.Addrs), "address", "addresses"),
		plural(len(s.Routes), "route", "routes"),
		plural(len(s.Rules), "rule", "rules"),
		plural(len(s.Neighbors), "neighbour", "neighbours"),
		plural(len(s.FDB), "fdb entry", "fdb entries"),
		plural(len(s.Sysctls), "sysctl", "sysctls"),
	}
	var nf []string
	if s.Iptables.Legacy.Available {
		nf = append(nf, nodestate.BackendIptablesLegacy)
	}
	if s.Iptables.NFT.Available {
		nf = append(nf, nodestate.BackendIptablesNFT)
	}
	if s.Nftables.Available {
		nf = append(nf, "nftables")
	}
	if len(nf) > 0 {
		parts = append(parts, strings.Join(nf, "+"))
	}
	if s.IPVS != nil {
		parts = append(parts, plural(len(s.IPVS.Services), "IPVS service", "IPVS services"))
	}
	if s.Leases != nil {
		parts = append(parts, plural(len(s.Leases), "lease", "leases"))
	}
	b.WriteString("captured ")
	b.WriteString(strings.Join(parts, ", "))
	if s.Netns != "" {
		fmt.Fprintf(&b, " from netns %s", s.Netns)
	} else {
		b.WriteString(" from the current netns")
	}
	if output != "-" && output != "" {
		fmt.Fprintf(&b, " into %s", output)
	}
	switch len(s.Errors) {
	case 0:
	case 1:
		fmt.Fprintf(&b, "; 1 part could not be captured: %s: %s", s.Errors[0].Source, s.Errors[0].Err)
	default:
		var srcs []string
		for _, e := range s.Errors {
			srcs = append(srcs, e.Source)
		}
		fmt.Fprintf(&b, "; %d parts could not be captured (%s), see \"errors\" in the snapshot; first: %s: %s",
			len(s.Errors), strings.Join(srcs, ", "), s.Errors[0].Source, s.Errors[0].Err)
	}
	return b.String()
}
