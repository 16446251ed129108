package lab

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/twillnet/twill/nsrun"
)

// The cluster DNS of a lab of real nodes: CoreDNS (image of make image,
// built from its Go module by scripts/setup.sh --kube) installed in
// kube-system the way users install it, behind the Service kube-dns, with
// every kubelet's clusterDNS pointing at that Service. Pods resolve
// "web", "web.lab" and "web.lab.svc.cluster.local" through it.

const (
	// ClusterDomain is the lab cluster's DNS domain (kubelet clusterDomain,
	// CoreDNS's kubernetes zone).
	ClusterDomain = "cluster.local"
	// CoreDNSNamespace, CoreDNSDeployment and CoreDNSService are where the
	// lab installs CoreDNS.
	CoreDNSNamespace  = "kube-system"
	CoreDNSDeployment = "coredns"
	CoreDNSService    = "kube-dns"
	// corednsSelector selects CoreDNS's pods (the label kube-dns keeps).
	corednsSelector = "k8s-app=kube-dns"
)

// ClusterDNSVIP is the ClusterIP of kube-system/kube-dns, every kubelet's
// clusterDNS. Not kubeadm's 10.96.0.10: in every lab mode that address has
// long been lab/web's (WebVIP), which docs, scenarios and trace fixtures
// name; .53 says what it is.
var ClusterDNSVIP = netip.MustParseAddr("10.96.0.53")

//go:embed coredns.yaml
var corednsManifest string

// corednsTemplate is coredns.yaml as a template.
var corednsTemplate = template.Must(template.New("coredns.yaml").Option("missingkey=error").Parse(corednsManifest))

// corednsValues fill coredns.yaml.
type corednsValues struct {
	// Image is CoreDNS's image reference (imported on every node).
	Image string
	// ClusterIP is kube-dns's address (ClusterDNSVIP).
	ClusterIP string
	// Domain is the cluster domain (ClusterDomain).
	Domain string
	// Forward sends names outside the cluster to the nameservers of the
	// pod's /etc/resolv.conf (the node's upstreams); off when the node has
	// none a pod can reach.
	Forward bool
}

// renderCoreDNS is the manifest the lab applies.
func renderCoreDNS(v corednsValues) ([]byte, error) {
	var b bytes.Buffer
	if err := corednsTemplate.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("coredns.yaml: %w", err)
	}
	return b.Bytes(), nil
}

// upstreamResolvConf is the resolv.conf kubelet gives pods with dnsPolicy
// Default (CoreDNS's upstreams, kubelet resolvConf) made from the host's:
// its nameservers but those on loopback, which in a pod's network
// namespace would be the pod itself (CoreDNS's loop plugin stops it then),
// and its search line. ok is false when no nameserver is left.
func upstreamResolvConf(host []byte) (conf []byte, ok bool) {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			a, err := netip.ParseAddr(f[1])
			if err != nil || a.IsLoopback() || a.IsUnspecified() {
				continue
			}
			fmt.Fprintf(&b, "nameserver %s\n", a)
			ok = true
		case "search":
			fmt.Fprintf(&b, "%s\n", strings.Join(f, " "))
		}
	}
	return b.Bytes(), ok
}

// nodeResolvConf is node n's kubelet resolvConf (upstreamResolvConf).
func nodeResolvConf(n *Node) string { return filepath.Join(n.Real.Dir, "resolv.conf") }

// hostResolvConf is the host's /etc/resolv.conf (empty when there is none).
func hostResolvConf() ([]byte, error) {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return b, nil
}

// writeNodeResolvConf writes nodeResolvConf from the host's resolv.conf.
func writeNodeResolvConf(n *Node) error {
	host, err := hostResolvConf()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	conf, _ := upstreamResolvConf(host)
	if err := os.WriteFile(nodeResolvConf(n), conf, 0o644); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// applyCoreDNS installs CoreDNS with kubectl apply of the rendered
// coredns.yaml (kept in the lab's state directory).
func applyCoreDNS(ctx context.Context, st *State, out io.Writer) error {
	host, err := hostResolvConf()
	if err != nil {
		return err
	}
	_, forward := upstreamResolvConf(host)
	b, err := renderCoreDNS(corednsValues{Image: st.Real.CoreDNSImage, ClusterIP: ClusterDNSVIP.String(), Domain: ClusterDomain, Forward: forward})
	if err != nil {
		return err
	}
	return kubectlApply(ctx, st, "coredns.yaml", b, out)
}

// waitCoreDNS waits (bounded) until CoreDNS's Deployment has a ready pod
// and kube-dns answers for a lab Service from node1, as pods ask it. When
// it does not, the error names the pod, its state and its last log lines.
func waitCoreDNS(ctx context.Context, st *State, out io.Writer) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	var pod string
	err = waitUntil(ctx, "CoreDNS ready", realTimeout, out, func(ctx context.Context) (bool, string, error) {
		if err := checkRealDaemons(st); err != nil {
			return false, "", err
		}
		pods, err := c.CoreV1().Pods(CoreDNSNamespace).List(ctx, metav1.ListOptions{LabelSelector: corednsSelector})
		if err != nil {
			return false, err.Error(), nil
		}
		if len(pods.Items) == 0 {
			return false, fmt.Sprintf("no pod of %s/%s yet", CoreDNSNamespace, CoreDNSDeployment), nil
		}
		var states []string
		for i := range pods.Items {
			p := &pods.Items[i]
			pod = p.Name
			if podReady(p) {
				return true, "", nil
			}
			states = append(states, fmt.Sprintf("%s/%s on %s: %s", p.Namespace, p.Name, p.Spec.NodeName, podState(p)))
		}
		return false, strings.Join(states, "; "), nil
	})
	if err != nil {
		return fmt.Errorf("%w%s", err, corednsLog(ctx, st, pod))
	}
	name := "web." + KubeNamespace + ".svc." + ClusterDomain
	var got []string
	err = waitUntil(ctx, "kube-dns answering", 60*time.Second, out, func(ctx context.Context) (bool, string, error) {
		addrs, err := LookupClusterDNS(ctx, st.Nodes[0].Namespace, name)
		if err != nil {
			return false, err.Error(), nil
		}
		got = addrs
		return len(addrs) > 0, "", nil
	})
	if err != nil {
		return fmt.Errorf("CoreDNS is ready but %s (%s:53) does not resolve %s from %s: %w%s", CoreDNSService, ClusterDNSVIP, name, st.Nodes[0].Name, err, corednsLog(ctx, st, pod))
	}
	if len(got) != 1 || got[0] != WebVIP.Addr().String() {
		return fmt.Errorf("kube-dns resolves %s to %v, want lab/web's ClusterIP %s", name, got, WebVIP.Addr())
	}
	return nil
}

// corednsLog is what a user should read when CoreDNS fails: the last lines
// of pod's log (through the API) and the command that shows them.
func corednsLog(ctx context.Context, st *State, pod string) string {
	if pod == "" {
		return fmt.Sprintf("\n(see `twill lab exec --name %s underlay -- kubectl -n %s describe deployment %s`)", st.Name, CoreDNSNamespace, CoreDNSDeployment)
	}
	s := fmt.Sprintf("\n(see `twill lab exec --name %s underlay -- kubectl -n %s logs %s` and `... describe pod %s`)", st.Name, CoreDNSNamespace, pod, pod)
	c, err := kubeAdmin(st)
	if err != nil {
		return s
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	lines := int64(12)
	b, err := c.CoreV1().Pods(CoreDNSNamespace).GetLogs(pod, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(ctx)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return s
	}
	return fmt.Sprintf("\nlast log lines of %s/%s:\n%s%s", CoreDNSNamespace, pod, indentText(strings.TrimRight(string(b), "\n")), s)
}

// LookupClusterDNS resolves name (fully qualified; no search path is
// applied) through kube-dns (ClusterDNSVIP:53) from inside network
// namespace ns, as a pod or node there would, and returns its addresses.
func LookupClusterDNS(ctx context.Context, ns, name string) ([]string, error) {
	server := netip.AddrPortFrom(ClusterDNSVIP, 53).String()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var conn net.Conn
		err := nsrun.Do(ns, func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, server)
			return err
		})
		return conn, err
	}}
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s through %s from %s: %w", name, server, ns, err)
	}
	return addrs, nil
}

// podSearchPath is the search list kubelet writes into the resolv.conf of
// a pod of namespace ns (dnsPolicy ClusterFirst).
func podSearchPath(ns string) []string {
	return []string{ns + ".svc." + ClusterDomain, "svc." + ClusterDomain, ClusterDomain}
}

// ResolveCallTarget resolves the host of hostport when it is a name
// ("web:80", "local-node2.lab:80", "web.lab.svc.cluster.local:80") through
// kube-dns from inside network namespace ns, trying the search path of a
// pod of the lab's namespace first, as a pod's resolver does (ndots 5), and
// returns the first address with the port. Addresses pass unchanged, and so
// does everything in a lab without real nodes (which runs no cluster DNS).
func (st *State) ResolveCallTarget(ctx context.Context, ns, hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || !st.RealMode() {
		return hostport, nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return hostport, nil
	}
	var names []string
	if !strings.HasSuffix(host, ".") {
		for _, s := range podSearchPath(KubeNamespace) {
			names = append(names, host+"."+s)
		}
	}
	names = append(names, host)
	var errs []string
	for _, n := range names {
		addrs, err := LookupClusterDNS(ctx, ns, n)
		if err == nil && len(addrs) > 0 {
			return net.JoinHostPort(addrs[0], port), nil
		}
		errs = append(errs, fmt.Sprint(err))
	}
	return "", fmt.Errorf("%s: no address through %s (%s:53), tried %s: %s", host, CoreDNSService, ClusterDNSVIP, strings.Join(names, ", "), errs[len(errs)-1])
}
