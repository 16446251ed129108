// Command twill is the node tool of the twill pod network: it checks
// (doctor), explains (trace), captures (snapshot) and demonstrates (lab) the
// network of a Kubernetes node.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "twill:", msg)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

// Error returns the message, "" for a silent exit (the output already said it all).
func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 2
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "twill",
		Short: "A Kubernetes pod network that checks, repairs and explains the node network",
		Long: `twill is a pod network for Linux nodes. Beside the network itself it knows how
node networking breaks in the field (see FAILURES.md) and tells you:

  twill doctor     check a node for every known failure, and fix the safe ones
  twill snapshot   capture a node's network state into one JSON file
  twill lab        build a whole cluster in network namespaces, break it, watch doctor find it

Start with 'twill lab demo' on a spare Debian machine where you are root.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newUninstallCmd(), newSnapshotCmd(), newDoctorCmd(), newLabCmd(), newTraceCmd(), newVersionCmd(), newInstallCNICmd(), newMigrateCmd())
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print twill's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "twill", version)
		},
	}
}
