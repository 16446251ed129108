package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// DefaultRecheck is how often KeepAlive compares the node's annotations and
// condition with what they should be, when Options.Recheck is zero. Changes
// to the Node are seen at once through an informer; the recheck is a
// backstop and costs no API request when nothing changed.
const DefaultRecheck = time.Minute

// Options configures New.
type Options struct {
	// RESTConfig is the API client configuration. When nil it is loaded
	// with LoadRESTConfig(Kubeconfig).
	RESTConfig *rest.Config
	// Kubeconfig is a kubeconfig file; "" means in-cluster config (the
	// pod's ServiceAccount), then $KUBECONFIG.
	Kubeconfig string
	// Dial, when set, opens the client's TCP connections, e.g. from inside
	// a network namespace (nsrun.Dialer) when the API server is only
	// reachable there.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Recheck is KeepAlive's backstop interval (default DefaultRecheck).
	Recheck time.Duration
	// Logger receives watch, keepalive and permission messages (default slog.Default()).
	Logger *slog.Logger
	// Pod is the agent's own pod (PodFromEnv), when it runs in one: the
	// store's Warning Events (a node without a podCIDR) are recorded on it
	// as well as on the Node.
	Pod *PodRef
}

// Store is the Kubernetes implementation of lease.Store (see the package
// doc). It publishes at most one node's lease: the one Acquire returned
// last.
type Store struct {
	c       kubernetes.Interface
	log     *slog.Logger
	recheck time.Duration
	pod     *PodRef
	ev      events

	mu        sync.Mutex
	own       *owned // nil before Acquire and after Release
	available bool   // SetNetworkAvailable succeeded: KeepAlive keeps the condition
}

// owned is this node's lease and what is needed to re-assert it.
type owned struct {
	lease lease.Lease
	cfg   netconf.Config
	req   lease.Request
}

var _ lease.Store = (*Store)(nil)

// LoadRESTConfig finds the API server and credentials: the kubeconfig file
// when given; else the in-cluster config (the pod's ServiceAccount token,
// KUBERNETES_SERVICE_HOST); else the kubeconfig named by $KUBECONFIG.
func LoadRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err == nil {
		return c, nil
	}
	inCluster := err
	if env := os.Getenv("KUBECONFIG"); env != "" {
		rules := clientcmd.NewDefaultClientConfigLoadingRules() // honours a KUBECONFIG list
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("KUBECONFIG=%s: %w", env, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("no Kubernetes API to talk to: not in a pod (%v) and neither --kubeconfig nor $KUBECONFIG is set: pass --kubeconfig FILE", inCluster)
}

// New creates a client. It does not contact the API server: an unreachable
// server shows up as errors of the calls, which the agent retries.
func New(o Options) (*Store, error) {
	cfg := o.RESTConfig
	if cfg == nil {
		var err error
		if cfg, err = LoadRESTConfig(o.Kubeconfig); err != nil {
			return nil, err
		}
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "twill-agent"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second // one request; watches are not bounded by it
	}
	if o.Dial != nil {
		dial := o.Dial
		cfg.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return NewForClient(c, o), nil
}

// NewForClient makes a Store on an existing client (tests, the lab);
// o.RESTConfig, Kubeconfig and Dial are not used.
func NewForClient(c kubernetes.Interface, o Options) *Store {
	if o.Recheck <= 0 {
		o.Recheck = DefaultRecheck
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Store{c: c, log: o.Logger, recheck: o.Recheck, pod: o.Pod}
}

// Client is the underlying API client.
func (s *Store) Client() kubernetes.Interface { return s.c }

// Lease returns this node's current lease, if it holds one.
func (s *Store) Lease() (lease.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own == nil {
		return lease.Lease{}, false
	}
	return s.own.lease, true
}

// Close releases nothing: the annotations stay, so a restarting agent finds
// its node as it left it. Informers stop with the contexts given to Watch
// and KeepAlive. It stops the Event recorder, if a warning started it.
func (s *Store) Close() error {
	s.stopEvents()
	return nil
}

// errNoConfigKube is Config's answer: the net-conf comes from a file.
var errNoConfigKube = fmt.Errorf("%w: with --store kubernetes the network config is not read from the API: pass --net-conf FILE (the net-conf.json of the twill ConfigMap, mounted into the pod, e.g. /etc/twill/net-conf.json)", lease.ErrNoConfig)

// Config returns an error wrapping lease.ErrNoConfig: in Kubernetes mode the
// net-conf.json comes from the agent's --net-conf file (the ConfigMap).
func (s *Store) Config(context.Context) (netconf.Config, error) {
	return netconf.Config{}, errNoConfigKube
}

// config is the network config of the last Acquire (zero before: any
// IPv4 podCIDR counts).
func (s *Store) config() netconf.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own == nil {
		return netconf.Config{}
	}
	return s.own.cfg
}

// errNoLease is returned by calls that need a prior Acquire.
var errNoLease = errors.New("kubernetes store: no lease: call Acquire first")

// Ping asks the API server whether it is ready (/readyz, readable by any
// authenticated user): an API server that answers but cannot reach its
// etcd is an outage of the store too, although /version would still
// answer. The error names the failing checks.
func (s *Store) Ping(ctx context.Context) error {
	body, err := s.c.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Raw()
	if err == nil {
		return nil
	}
	var failed []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "[-]") {
			failed = append(failed, strings.TrimPrefix(line, "[-]"))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("kubernetes API not ready: %s", strings.Join(failed, "; "))
	}
	return fmt.Errorf("kubernetes API: %w", err)
}
