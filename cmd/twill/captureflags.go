package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
)

// storeTimeout bounds how long a capture waits for the lease store.
const storeTimeout = 5 * time.Second

// captureFlags are the flags that say which node state to capture. Every
// command that looks at a live node (snapshot, doctor) registers them, so they
// all see the same state.
type captureFlags struct {
	netns         string
	root          string
	node          string
	etcdEndpoints []string
	etcdPrefix    string
	// store says where the leases are: etcd, or the Kubernetes API (Node
	// objects, through $KUBECONFIG or the in-cluster config).
	store string
}

// register adds the capture flags to fs. Defaults come from the environment:
// TWILL_ROOT for --root, TWILL_ETCD_ENDPOINTS (comma separated) for
// --etcd-endpoints and TWILL_ETCD_PREFIX for --etcd-prefix.
func (f *captureFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.netns, "netns", "", "capture the named network namespace (see 'ip netns list') instead of the current one")
	fs.StringVar(&f.root, "root", os.Getenv("TWILL_ROOT"), "read the node's files (CNI config, subnet file) under this directory (env TWILL_ROOT; the lab keeps each node's files under its own root)")
	fs.StringVar(&f.node, "node", "", "node name to record in the snapshot")
	fs.StringSliceVar(&f.etcdEndpoints, "etcd-endpoints", splitList(os.Getenv("TWILL_ETCD_ENDPOINTS")), "etcd endpoints to read all nodes' leases from, comma separated (env TWILL_ETCD_ENDPOINTS); reached from inside --netns")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", envOr("TWILL_ETCD_PREFIX", lease.DefaultPrefix), "etcd key prefix of the leases (env TWILL_ETCD_PREFIX)")
	fs.StringVar(&f.store, "store", envOr("TWILL_STORE", storeEtcd), "where to read all nodes' leases: etcd (--etcd-endpoints) or kubernetes (Node objects via $KUBECONFIG or the in-cluster config) (env TWILL_STORE)")
}

// options returns the nodestate capture options the flags describe.
func (f *captureFlags) options() nodestate.CaptureOptions {
	return nodestate.CaptureOptions{Netns: f.netns, Root: f.root, Node: f.node}
}

// capture captures the node. Only a missing namespace fails; parts that
// cannot be read, the lease store included, are recorded in the snapshot's
// Errors.
func (f *captureFlags) capture(ctx context.Context) (*nodestate.Snapshot, error) {
	s, err := nodestate.Capture(ctx, f.options())
	if err != nil {
		return nil, err
	}
	if f.store == storeKubernetes {
		leases, err := f.readKubeLeases(ctx)
		if err != nil {
			s.Errors = append(s.Errors, nodestate.CaptureError{Source: "leases", Err: err.Error()})
		}
		s.Leases = leases
	} else if len(f.etcdEndpoints) > 0 {
		leases, err := f.readLeases(ctx)
		if err != nil {
			s.Errors = append(s.Errors, nodestate.CaptureError{Source: "leases", Err: err.Error()})
		}
		s.Leases = leases
	}
	return s, nil
}

// readLeases lists the leases in etcd, dialling from inside the captured
// namespace (where the node's agent reaches the store).
func (f *captureFlags) readLeases(ctx context.Context) ([]nodestate.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	where := strings.Join(f.etcdEndpoints, ",")
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   f.etcdEndpoints,
		DialTimeout: storeTimeout,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(nsrun.Dialer(f.netns))},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w (check --etcd-endpoints)", where, err)
	}
	defer c.Close()
	ls, err := etcd.List(ctx, c, f.etcdPrefix)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w (is etcd up and reachable from the node's namespace? leases not captured)", where, err)
	}
	return convertLeases(ls)
}

// readKubeLeases reads every Node's lease from the Kubernetes API, dialling
// from inside the captured namespace.
func (f *captureFlags) readKubeLeases(ctx context.Context) ([]nodestate.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	cfg, err := kube.LoadRESTConfig("")
	if err != nil {
		return nil, err
	}
	if f.netns != "" {
		dial := nsrun.Dialer(f.netns)
		cfg.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	ls, err := kube.List(ctx, c)
	if err != nil {
		return nil, err
	}
	return convertLeases(ls)
}

// convertLeases maps store leases to the snapshot model. A lease whose
// public IP does not parse is kept (with no IP) and reported.
func convertLeases(ls []lease.Lease) ([]nodestate.Lease, error) {
	out := make([]nodestate.Lease, 0, len(ls))
	var bad []string
	for _, l := range ls {
		nl := nodestate.Lease{Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet, Backend: l.Attrs.BackendType, Node: l.Attrs.Node,
			PublicIP: l.Attrs.PublicIP, PublicIPv6: l.Attrs.PublicIPv6}
		if l.Attrs.BackendData != nil {
			nl.VtepMAC = l.Attrs.BackendData.VtepMAC
		}
		if l.Attrs.BackendV6Data != nil {
			nl.VtepMACv6 = l.Attrs.BackendV6Data.VtepMAC
		}
		switch {
		case l.Subnet.IsValid() && !l.Attrs.PublicIP.IsValid():
			bad = append(bad, fmt.Sprintf("lease %s: PublicIP is not an IP address", l.Subnet))
		case l.IPv6Subnet.IsValid() && !l.Attrs.PublicIPv6.IsValid():
			bad = append(bad, fmt.Sprintf("lease %s: PublicIPv6 is not an IP address", l.IPv6Subnet))
		}
		out = append(out, nl)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return out, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
