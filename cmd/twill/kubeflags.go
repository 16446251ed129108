package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/nsrun"
)

// Lease store names for --store.
const (
	storeEtcd       = "etcd"
	storeKubernetes = "kubernetes"
)

// kubeFlags choose the lease store (--store) and, for the Kubernetes one,
// how to reach the API server (--kubeconfig).
type kubeFlags struct {
	store      string
	kubeconfig string
}

func (f *kubeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.store, "store", envOr("TWILL_STORE", storeEtcd),
		"lease store: etcd (subnets leased in etcd, see --etcd-*) or kubernetes (the node's spec.podCIDR, peers from the Node objects, like Flannel's --kube-subnet-mgr) (env TWILL_STORE)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "",
		"with --store kubernetes: kubeconfig file (default: the pod's in-cluster ServiceAccount config, then $KUBECONFIG)")
}

// validStore checks the --store value.
func (f *kubeFlags) validStore() error {
	if f.store != storeEtcd && f.store != storeKubernetes {
		return fmt.Errorf("--store %q: want etcd or kubernetes", f.store)
	}
	return nil
}

// check refuses agent flag combinations that cannot work, before anything
// on the node changes.
func (f *kubeFlags) check(netConf string) error {
	if err := f.validStore(); err != nil {
		return err
	}
	if f.store == storeKubernetes && netConf == "" {
		return errors.New("--store kubernetes needs --net-conf FILE: the network config is not read from the API; mount net-conf.json from the twill ConfigMap into the pod (deploy/) and pass its path, e.g. --net-conf /etc/twill/net-conf.json")
	}
	return nil
}

// agentStore is a lease store the commands can close.
type agentStore interface {
	lease.Store
	Close() error
}

// open connects to the chosen store, dialling from inside netns when set.
func (f *kubeFlags) open(ctx context.Context, etcdFlags *storeFlags, netns string, log *slog.Logger) (agentStore, error) {
	if f.store == storeKubernetes {
		return f.openKube(netns, log)
	}
	return etcdFlags.open(ctx, netns, log)
}

func (f *kubeFlags) openKube(netns string, log *slog.Logger) (*kube.Store, error) {
	// client-go logs through klog (e.g. a watch that broke): into our log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	// In the DaemonSet's pod (POD_NAME, POD_NAMESPACE, POD_UID set): its
	// Warning Events go on that pod too, for kubectl describe pod.
	o := kube.Options{Kubeconfig: f.kubeconfig, Logger: log, Pod: kube.PodFromEnv()}
	if netns != "" {
		o.Dial = nsrun.Dialer(netns)
	}
	return kube.New(o)
}

// releaseKube removes twill's annotations from the named Node (twill
// uninstall with --store kubernetes) and says what it did on w.
func (f *kubeFlags) releaseKube(ctx context.Context, w io.Writer, netns, node string) error {
	st, err := f.openKube(netns, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	released, err := st.ReleaseNode(ctx, node)
	if err != nil {
		return err
	}
	if released {
		fmt.Fprintf(w, "removed twill's annotations from node %s: its peers drop their routes to it\n", node)
	} else {
		fmt.Fprintf(w, "node %s carries no twill annotations\n", node)
	}
	return nil
}
