package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twillnet/twill/agent"
	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

type agentOpts struct {
	store                storeFlags
	kube                 kubeFlags
	node                 string
	iface                string
	publicIP, publicIPv6 string
	root                 string
	netns                string
	netConf              string
	health               string
	resync               time.Duration
	flannelEnv           bool
	// takeOverFlannel is --take-over-flannel-device.
	takeOverFlannel bool
	logFormat       string
	firewall        string
}

func newAgentCmd() *cobra.Command {
	var o agentOpts
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node daemon: lease a pod subnet, program the overlay and firewall, repair drift",
		Long: `agent is the pod network on one node. It:

  1. reads the cluster network config (net-conf.json, Flannel's keys) from --net-conf
     or from etcd at <prefix>/config, and checks it against this node;
  2. sets the kernel prerequisites (ip_forward, bridge-nf-call-iptables/ip6tables);
  3. leases a pod subnet in etcd (the same one again after a restart);
  4. programs the overlay to every peer (vxlan device twill.1, or host-gw routes),
     twill's firewall (masquerade, FORWARD accept where the drop is, vxlan guard),
     and writes the subnet file the CNI plugin reads;
  5. then keeps all of it true: every --resync it compares the node with what it
     should be and repairs drift, logging and counting each repair.

Stopping or restarting the agent never disturbs running pods. /healthz, /readyz
(ready once lease, device, rules and subnet file are in place) and /metrics are
served on --health-addr.`,
		Example: `  twill agent --etcd-endpoints http://10.0.0.1:2379
  twill agent --etcd-endpoints https://etcd:2379 --etcd-cafile ca.pem --etcd-certfile c.pem --etcd-keyfile k.pem
  twill agent --net-conf /etc/twill/net-conf.json --iface eth1 --flannel-subnet-env
  twill agent --store kubernetes --net-conf /etc/twill/net-conf.json   # in a DaemonSet, like Flannel's --kube-subnet-mgr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, &o) },
	}
	fs := cmd.Flags()
	o.store.register(fs)
	o.kube.register(fs)
	host, _ := os.Hostname()
	fs.StringVar(&o.node, "node", envOr("NODE_NAME", host), "this node's name (env NODE_NAME; default the hostname)")
	fs.StringVar(&o.iface, "iface", "", "underlay interface (default: the default route's)")
	fs.StringVar(&o.publicIP, "public-ip", "", "this node's IPv4 address toward the others (default: the underlay interface's first IPv4 address)")
	fs.StringVar(&o.publicIPv6, "public-ipv6", "", "this node's IPv6 address toward the others, in IPv6 and dual-stack clusters (default: the underlay interface's first global IPv6 address)")
	fs.StringVar(&o.root, "root", os.Getenv("TWILL_ROOT"), "prefix of the files the agent writes, e.g. the subnet file (env TWILL_ROOT)")
	fs.StringVar(&o.netns, "netns", "", "program the named network namespace instead of the current one (lab and tests)")
	fs.StringVar(&o.netConf, "net-conf", "", "net-conf.json file (default: read <prefix>/config from etcd)")
	fs.StringVar(&o.health, "health-addr", agent.DefaultHealthAddr, `address of /healthz, /readyz and /metrics ("off" to disable)`)
	fs.DurationVar(&o.resync, "resync", 5*time.Second, "drift-repair interval")
	fs.BoolVar(&o.flannelEnv, "flannel-subnet-env", false, "also write /run/flannel/subnet.env in Flannel's format")
	fs.BoolVar(&o.takeOverFlannel, "take-over-flannel-device", false, "delete Flannel's vxlan device (flannel.<VNI>) when it holds twill's VNI and port, right before creating twill's: the shortest gap after 'twill migrate from-flannel --leave-device' (flanneld must be stopped)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.firewall, "firewall", "auto", "firewall backend: auto (like iptables-wrappers: native nftables on nft hosts), nft, iptables-nft or iptables-legacy")
	return cmd
}

func runAgent(cmd *cobra.Command, o *agentOpts) error {
	var handler slog.Handler = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
	} else if o.logFormat != "text" {
		return &exitError{2, fmt.Errorf("--log-format %q: want text or json", o.logFormat)}
	}
	log := slog.New(handler)

	opt := agent.Options{
		Node: o.node, Iface: o.iface, Root: o.root, Resync: o.resync,
		HealthAddr: o.health, FlannelSubnetEnv: o.flannelEnv, TakeOverFlannelDevice: o.takeOverFlannel, Log: log,
	}
	if o.publicIP != "" {
		ip, err := netip.ParseAddr(o.publicIP)
		if err != nil {
			return &exitError{2, fmt.Errorf("--public-ip %q: %w", o.publicIP, err)}
		}
		opt.PublicIP = ip
	}
	if o.publicIPv6 != "" {
		ip, err := netip.ParseAddr(o.publicIPv6)
		if err != nil {
			return &exitError{2, fmt.Errorf("--public-ipv6 %q: %w", o.publicIPv6, err)}
		}
		opt.PublicIPv6 = ip
	}
	if err := backend.CheckUnderlayChoice(backend.UnderlayChoice{PublicIP: opt.PublicIP, PublicIPv6: opt.PublicIPv6}); err != nil {
		return &exitError{2, err}
	}
	// Invalid input is refused before anything on the node changes.
	if err := o.kube.check(o.netConf); err != nil {
		return &exitError{2, err}
	}
	if o.netConf != "" {
		data, err := os.ReadFile(o.netConf)
		if err != nil {
			return &exitError{2, fmt.Errorf("--net-conf: %w", err)}
		}
		cfg, err := netconf.Parse(o.netConf, data)
		if err != nil {
			return &exitError{2, err}
		}
		if o.kube.store == storeKubernetes {
			cfg = cfg.NodeIPAMRange() // the subnets are nodeipam's, from the first one
		}
		opt.NetConf = &cfg
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fwName := o.firewall
	if fwName == "auto" {
		snap, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: o.netns, Root: o.root})
		if err != nil {
			return &exitError{2, err}
		}
		fwName = firewall.Detect(snap)
		log.Info("firewall backend chosen", "backend", fwName)
	}
	fw, err := firewall.New(fwName, o.netns)
	if err != nil {
		return &exitError{2, err}
	}
	store, err := o.kube.open(ctx, &o.store, o.netns, log)
	if err != nil {
		return &exitError{2, err}
	}
	defer store.Close()
	deps := agent.Deps{
		Store:    store,
		Kernel:   agent.NodeKernel{Netns: o.netns, Root: o.root},
		Firewall: &agent.NodeFirewall{Backend: fw},
	}
	if err := agent.Run(ctx, opt, deps); err != nil && ctx.Err() == nil {
		return &exitError{1, err}
	}
	return nil
}
