package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/cniinstall"
)

func newInstallCNICmd() *cobra.Command {
	o := cniinstall.Options{
		BinDir: "/opt/cni/bin", ConfDir: "/etc/cni/net.d",
		Plugin: cniinstall.DefaultPlugin, Loopback: cniinstall.DefaultLoopback,
		PluginName: "twill", Conflist: "/etc/twill/cni-conf.json", ConfName: "10-twill.conflist",
	}
	cmd := &cobra.Command{
		Use:   "install-cni",
		Short: "Install twill's CNI plugin, the loopback plugin and the conflist on the node",
		Long: `install-cni is what twill's DaemonSet runs in its init container, with the
node's CNI directories mounted. It installs, each file atomically:

  1. twill's CNI plugin as <cni-bin-dir>/<plugin-name> (always: it is twill's own),
  2. the loopback plugin as <cni-bin-dir>/loopback, only when the node has none
     or an older one (containerd 1.6 and 1.7 run it for every pod sandbox); a
     newer one, or one whose version cannot be told, is kept,
  3. the conflist as <cni-conf-dir>/<conf-name>, last, once its plugins exist.

Versions come from each plugin's about line (run without CNI_COMMAND). A
conflist that is not JSON or names no plugin of type <plugin-name> changes
nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			acts, err := cniinstall.Install(cmd.Context(), o, cniinstall.PluginVersion)
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			for _, a := range acts {
				log.Info("install-cni", "path", a.Path, "did", a.Did, "why", a.Why)
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", a.Did, a.Path, a.Why)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BinDir, "cni-bin-dir", o.BinDir, "the node's CNI plugin directory, as mounted")
	f.StringVar(&o.ConfDir, "cni-conf-dir", o.ConfDir, "the node's CNI configuration directory, as mounted")
	f.StringVar(&o.Plugin, "plugin", o.Plugin, "twill's CNI plugin binary to install")
	f.StringVar(&o.Loopback, "loopback", o.Loopback, "the loopback CNI plugin binary to install")
	f.StringVar(&o.PluginName, "plugin-name", o.PluginName, "file name of twill's plugin in --cni-bin-dir (the conflist's \"type\")")
	f.StringVar(&o.Conflist, "conflist", o.Conflist, "the CNI configuration list to install")
	f.StringVar(&o.ConfName, "conf-name", o.ConfName, "file name of the conflist in --cni-conf-dir")
	return cmd
}
