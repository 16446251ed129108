package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/twillnet/twill/kubecreds"
	"github.com/twillnet/twill/nsrun"
)

// Kubernetes mode (Config.Store = StoreKubernetes): a real kube-apiserver
// runs in the underlay namespace on the lab's etcd, the lab registers a Node
// object per node (with its podCIDR), and the agents lease through it
// (`twill agent --store kubernetes`), each with a token bound to exactly the
// ClusterRole twill ships.

// Lease stores a lab's agents can use (Config.Store).
const (
	// StoreEtcd: leases in the lab's etcd (the default).
	StoreEtcd = "etcd"
	// StoreKubernetes: the lab's kube-apiserver; a node's subnet is its
	// Node's spec.podCIDR.
	StoreKubernetes = "kubernetes"
)

// KubeAPIServerURL is where the lab's kube-apiserver listens (in the
// underlay namespace; nodes reach it over their eth0).
const KubeAPIServerURL = "https://192.168.77.1:6443"

// KubeServiceCIDR is the apiserver's --service-cluster-ip-range: the lab's
// Services live in it, and default/kubernetes gets its first address,
// 10.96.0.1 (KubernetesVIP).
const KubeServiceCIDR = "10.96.0.0/12"

// KubeEtcdPrefix is the apiserver's key prefix in the lab's etcd.
const KubeEtcdPrefix = "/registry"

// kubeReadyTimeout bounds the wait for the apiserver's /readyz (it installs
// its bootstrap roles first: 10-30 s on a busy 2-core machine).
const kubeReadyTimeout = 120 * time.Second

// KubeState is the lab's API server (kube mode).
type KubeState struct {
	// APIServerBin and KubectlBin are the binaries used.
	APIServerBin string `json:"apiServerBin"`
	KubectlBin   string `json:"kubectlBin"`
	// URL is the API server's address inside the lab.
	URL string `json:"url"`
	// Dir holds the CA, certificates, keys and the token file.
	Dir string `json:"dir"`
	// CAFile is the CA of the serving certificate.
	CAFile string `json:"caFile"`
	// AdminKubeconfig is the admin's kubeconfig (`lab exec` sets KUBECONFIG to it).
	AdminKubeconfig string `json:"adminKubeconfig"`
	// APIServer is the kube-apiserver process.
	APIServer Process `json:"apiServer"`
}

// KubeMode tells whether the lab's agents lease through the lab's kube-apiserver.
func (st *State) KubeMode() bool { return st.Store == StoreKubernetes && st.Kube != nil }

// FindKubeAPIServer resolves the kube-apiserver binary: explicit (flag),
// then $TWILL_KUBE_APISERVER_BIN, then next to twill, then
// ./bin/kube-apiserver, then $PATH.
func FindKubeAPIServer(explicit string) (string, error) {
	return findBinary("kube-apiserver", explicit, "--kube-apiserver-bin", "TWILL_KUBE_APISERVER_BIN",
		"kube-apiserver not found: run `make tools` (builds bin/kube-apiserver and bin/kubectl from k8s.io/kubernetes through the Go module proxy) or pass --kube-apiserver-bin")
}

// FindKubectl resolves kubectl like FindKubeAPIServer ($TWILL_KUBECTL_BIN,
// --kubectl-bin).
func FindKubectl(explicit string) (string, error) {
	return findBinary("kubectl", explicit, "--kubectl-bin", "TWILL_KUBECTL_BIN",
		"kubectl not found: run `make tools` (builds bin/kubectl) or pass --kubectl-bin")
}

// nodeKubeconfig and nodeNetConf are where a node's agent finds its
// kubeconfig and net-conf.json (kube mode), under its root.
func nodeKubeconfig(root string) string { return filepath.Join(root, "etc/twill/kubeconfig") }
func nodeNetConf(root string) string    { return filepath.Join(root, "etc/twill/net-conf.json") }

// kubeServiceCIDRs is the apiserver's --service-cluster-ip-range of lab
// st: KubeServiceCIDR, and in a lab with IPv6 ServiceCIDRv6 second, so
// Services can be dual-stack or IPv6 (the primary family stays IPv4, the
// family of the apiserver's advertise address).
func kubeServiceCIDRs(st *State) string {
	if st.HasIPv6() {
		return KubeServiceCIDR + "," + ServiceCIDRv6.String()
	}
	return KubeServiceCIDR
}

// kubeAPIServerArgv is the lab's kube-apiserver command line for lab st.
// With real nodes it authorizes kubelets with the Node authorizer and
// NodeRestriction and reaches them on their InternalIP.
func kubeAPIServerArgv(bin string, f kubecreds.Files, st *State) []string {
	realNodes := st.RealMode()
	authz := "RBAC"
	var extra []string
	if realNodes {
		authz = "Node,RBAC"
		extra = []string{"--enable-admission-plugins", "NodeRestriction", "--kubelet-preferred-address-types", "InternalIP"}
	}
	return append([]string{bin,
		"--etcd-servers", EtcdEndpoint,
		"--etcd-prefix", KubeEtcdPrefix,
		"--bind-address", UnderlayGateway.String(),
		"--advertise-address", UnderlayGateway.String(),
		"--secure-port", "6443",
		"--tls-cert-file", f.Cert,
		"--tls-private-key-file", f.Key,
		"--cert-dir", filepath.Join(f.Dir, "certs"),
		"--token-auth-file", f.Tokens,
		"--authorization-mode", authz,
		"--anonymous-auth=false",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", f.SAKey,
		"--service-account-signing-key-file", f.SAKey,
		"--service-cluster-ip-range", kubeServiceCIDRs(st),
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}, extra...)
}

// startKubeAPIServer writes the credentials (admin and one token user per
// node), the admin kubeconfig and every node's kubeconfig, starts
// kube-apiserver in the underlay namespace and waits for /readyz.
func startKubeAPIServer(ctx context.Context, st *State, out io.Writer) error {
	f := newKubeFiles(st.Name)
	users := []kubecreds.User{{Name: KubeAdmin, Token: kubecreds.RandomToken(), Group: "system:masters"}}
	var realPaths []string
	if st.RealMode() {
		var ru []kubecreds.User
		ru, realPaths = realUsers(st)
		users = append(users, ru...)
	} else {
		for _, n := range st.Nodes {
			users = append(users, kubecreds.User{Name: KubeNodeUser(n.Name), Token: kubecreds.RandomToken()})
		}
	}
	if err := writeKubeFiles(f, users); err != nil {
		return fmt.Errorf("kube-apiserver: generate certificates and tokens in %s: %w", f.Dir, err)
	}
	k := st.Kube
	k.Dir, k.CAFile, k.URL = f.Dir, f.CA, KubeAPIServerURL
	k.AdminKubeconfig = filepath.Join(f.Dir, "admin.kubeconfig")
	if err := os.WriteFile(k.AdminKubeconfig, kubeconfigYAML(k.URL, f.CA, KubeAdmin, users[0].Token), 0o600); err != nil {
		return err
	}
	if st.RealMode() {
		if err := writeRealKubeconfigs(st, f, users[1:], realPaths); err != nil {
			return err
		}
	}
	for i, n := range st.Nodes {
		if st.RealMode() {
			break
		}
		p := nodeKubeconfig(n.Root)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		u := users[i+1]
		if err := os.WriteFile(p, kubeconfigYAML(k.URL, f.CA, u.Name, u.Token), 0o600); err != nil {
			return fmt.Errorf("node %s: write %s: %w", n.Name, p, err)
		}
	}
	p, err := startDaemon(st.Underlay, kubeAPIServerArgv(k.APIServerBin, f, st), filepath.Join(StateDir(st.Name), "logs", "kube-apiserver.log"), nil)
	if err != nil {
		return err
	}
	k.APIServer = p
	if err := st.save(); err != nil {
		return err
	}
	return waitKubeReady(ctx, st, kubeReadyTimeout, out)
}

// waitKubeReady polls the apiserver's /readyz as admin until it answers 200,
// bounded by timeout, saying every few seconds what it waits for.
func waitKubeReady(ctx context.Context, st *State, timeout time.Duration, out io.Writer) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	lastNote := time.Now()
	for {
		err := kubeReady(ctx, c)
		if err == nil {
			return nil
		}
		if !st.Kube.APIServer.Alive() {
			return fmt.Errorf("kube-apiserver (pid %d) exited: last log lines:\n%s", st.Kube.APIServer.PID, tail(st.Kube.APIServer.Log, 12))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while waiting for kube-apiserver: %w", ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver at %s not ready after %s (last: %v); see %s", st.Kube.URL, timeout, err, st.Kube.APIServer.Log)
		}
		if time.Since(lastNote) > 5*time.Second {
			fmt.Fprintf(out, "(kube-apiserver not ready yet: %s) ", shortErr(err))
			lastNote = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// kubeReady asks /readyz once.
func kubeReady(ctx context.Context, c kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("kube-apiserver /readyz: %w", err)
	}
	return nil
}

// shortErr is the first line of an error, at most 120 characters.
func shortErr(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// KubeRESTConfig returns the admin's client config for the lab's API
// server. Its connections are dialled from inside the underlay namespace
// (the API server is not reachable from the host's namespace).
func KubeRESTConfig(st *State) (*rest.Config, error) {
	if !st.KubeMode() {
		return nil, fmt.Errorf("lab %s has no kube-apiserver (build it with `twill lab up --store kubernetes`)", st.Name)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kube.AdminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("lab %s: admin kubeconfig: %w", st.Name, err)
	}
	dial := nsrun.Dialer(st.Underlay)
	cfg.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	cfg.QPS, cfg.Burst = 50, 100
	// Generous: a loaded machine can keep the lab's API server busy for seconds.
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// kubeAdmin returns an admin clientset for the lab's API server.
func kubeAdmin(st *State) (kubernetes.Interface, error) {
	cfg, err := KubeRESTConfig(st)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab %s: kube client: %w", st.Name, err)
	}
	return c, nil
}

// kubeHealthy tells whether the lab's API server answers /readyz within timeout.
func kubeHealthy(ctx context.Context, st *State, timeout time.Duration) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return kubeReady(ctx, c)
}
