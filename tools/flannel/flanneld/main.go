// Command flanneld is a small flanneld for twill's lab: Flannel's own etcd
// and Kubernetes subnet managers, its vxlan and host-gw backends and its
// iptables traffic manager, imported from github.com/flannel-io/flannel as a
// library and wired the way upstream's main wires them. Upstream's main also
// links the cloud backends, whose modules the lab does not need; everything
// the lab compares twill with (the lease in etcd or the Node annotations,
// flannel.1, routes, neighbours, FDB, FLANNEL-* rules, subnet.env) is
// Flannel's own code.
//
// Flags keep upstream's names: --etcd-endpoints, --etcd-prefix, --iface,
// --public-ip, --subnet-file, --ip-masq, --iptables-resync,
// --iptables-forward-rules, --subnet-lease-renew-margin, --healthz-ip,
// --healthz-port (/healthz, and /readyz once the subnet file is written);
// and for the Kubernetes subnet manager --kube-subnet-mgr, --kubeconfig-file,
// --kube-api-url, --kube-annotation-prefix, --net-config-path and
// --set-node-network-unavailable, with the node's name in $NODE_NAME (or
// $POD_NAME and $POD_NAMESPACE), as kube-flannel runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/etcd"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/joho/godotenv"
	log "k8s.io/klog/v2"
)

func main() {
	fs := flag.NewFlagSet("flanneld", flag.ExitOnError)
	endpoints := fs.String("etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd endpoints")
	prefix := fs.String("etcd-prefix", "/coreos.com/network", "etcd prefix")
	iface := fs.String("iface", "", "interface (name or IP) for inter-host traffic")
	publicIP := fs.String("public-ip", "", "IP other nodes reach this node at")
	subnetFile := fs.String("subnet-file", "/run/flannel/subnet.env", "where FLANNEL_* variables are written")
	ipMasq := fs.Bool("ip-masq", false, "masquerade traffic leaving the overlay")
	resync := fs.Int("iptables-resync", 5, "resync period of the iptables rules, seconds")
	fwdRules := fs.Bool("iptables-forward-rules", true, "accept the overlay in FORWARD")
	renewMargin := fs.Int("subnet-lease-renew-margin", 60, "lease renew margin, minutes (1..1439)")
	healthzIP := fs.String("healthz-ip", "0.0.0.0", "address of the healthz server")
	healthzPort := fs.Int("healthz-port", 0, "port of the healthz server (0: none)")
	var km kubeMgr
	fs.BoolVar(&km.enabled, "kube-subnet-mgr", false, "lease through the Kubernetes API (the node's spec.podCIDR, Node annotations) instead of etcd")
	fs.StringVar(&km.kubeconfig, "kubeconfig-file", "", "kubeconfig of the Kubernetes subnet manager (default: in-cluster)")
	fs.StringVar(&km.apiURL, "kube-api-url", "", "API server URL (default: the kubeconfig's)")
	fs.StringVar(&km.prefix, "kube-annotation-prefix", "flannel.alpha.coreos.com", "prefix of the Node annotations")
	fs.StringVar(&km.netConf, "net-config-path", "/etc/kube-flannel/net-conf.json", "net-conf.json of the Kubernetes subnet manager")
	fs.BoolVar(&km.setUnavailable, "set-node-network-unavailable", true, "set the Node's NetworkUnavailable condition to False once up")
	log.InitFlags(nil)
	_ = flag.Set("logtostderr", "true")
	fs.Var(flag.Lookup("v").Value, "v", "log verbosity")
	_ = fs.Parse(os.Args[1:])
	if *renewMargin <= 0 || *renewMargin >= 24*60 {
		fmt.Fprintln(os.Stderr, "flanneld: --subnet-lease-renew-margin must be within 1..1439")
		os.Exit(2)
	}
	if *healthzPort > 0 {
		serveHealthz(net.JoinHostPort(*healthzIP, strconv.Itoa(*healthzPort)))
	}
	if err := run(km, *endpoints, *prefix, *iface, *publicIP, *subnetFile, *ipMasq, *resync, *fwdRules, *renewMargin); err != nil {
		log.Errorf("flanneld: %v", err)
		os.Exit(1)
	}
}

// kubeMgr are the flags of the Kubernetes subnet manager.
type kubeMgr struct {
	enabled                             bool
	kubeconfig, apiURL, prefix, netConf string
	setUnavailable                      bool
}

func run(km kubeMgr, endpoints, prefix, iface, publicIP, subnetFile string, ipMasq bool, resync int, fwdRules bool, renewMargin int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			log.Info("signal: shutting down")
			cancel()
		case <-ctx.Done():
		}
	}()

	prevSubnet := readCIDR(subnetFile, "FLANNEL_SUBNET")
	var sm subnet.Manager
	var err error
	if km.enabled {
		sm, err = kube.NewSubnetManager(ctx, km.apiURL, km.kubeconfig, km.prefix, km.netConf, km.setUnavailable)
	} else {
		sm, err = etcd.NewLocalManager(ctx, &etcd.EtcdConfig{Endpoints: strings.Split(endpoints, ","), Prefix: prefix},
			prevSubnet, ip.IP6Net{}, renewMargin)
	}
	if err != nil {
		return fmt.Errorf("subnet manager: %w", err)
	}
	var config *subnet.Config
	for {
		config, err = sm.GetNetworkConfig(ctx)
		if err == nil && config != nil {
			break
		}
		log.Warningf("waiting for the network config under %s/config: %v", prefix, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	stack, err := ipmatch.GetIPFamily(config.EnableIPv4, config.EnableIPv6)
	if err != nil {
		return err
	}
	ext, err := ipmatch.LookupExtIface(iface, "", "", stack, ipmatch.PublicIPOpts{PublicIP: publicIP})
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, err)
	}
	var wg sync.WaitGroup
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(config.BackendType)
	if err != nil {
		return fmt.Errorf("backend %q: %w", config.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("register network: %w", err)
	}
	tm := &iptables.IPTablesManager{}
	if err := tm.Init(ctx); err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	if ipMasq {
		if err := tm.SetupAndEnsureMasqRules(ctx, config.Network, prevSubnet, readCIDR(subnetFile, "FLANNEL_NETWORK"),
			config.IPv6Network, ip.IP6Net{}, ip.IP6Net{}, bn.Lease(), resync, false); err != nil {
			return fmt.Errorf("masquerade rules: %w", err)
		}
	}
	if fwdRules {
		tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, resync)
	}
	if err := sm.HandleSubnetFile(subnetFile, config, ipMasq, bn.Lease().Subnet, bn.Lease().IPv6Subnet, bn.MTU()); err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	log.Infof("flannel is ready: subnet %s, wrote %s", bn.Lease().Subnet, subnetFile)
	ready.Store(true)
	wg.Add(1)
	go func() { defer wg.Done(); bn.Run(ctx) }()
	if err := sm.CompleteLease(ctx, bn.Lease(), &wg); err != nil && !errors.Is(err, context.Canceled) {
		log.Errorf("lease: %v", err)
		cancel()
	}
	wg.Wait()
	log.Info("exiting")
	return nil
}

// ready is set once the lease, backend, rules and subnet file are in place.
var ready atomic.Bool

// serveHealthz serves /healthz (always 200) and /readyz (200 once ready),
// as upstream's flanneld does.
func serveHealthz(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "flanneld is running") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "flanneld is not ready yet")
			return
		}
		fmt.Fprintln(w, "flanneld is ready")
	})
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Errorf("healthz server on %s: %v", addr, err)
		}
	}()
}

// readCIDR reads key's IPv4 network from a subnet.env, the zero network when
// the file or key is absent (upstream renews the previous lease with it).
func readCIDR(path, key string) ip.IP4Net {
	vals, err := godotenv.Read(path)
	if err != nil {
		return ip.IP4Net{}
	}
	_, n, err := net.ParseCIDR(vals[key])
	if err != nil {
		return ip.IP4Net{}
	}
	return ip.FromIPNet(n)
}
