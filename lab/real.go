package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twillnet/twill/image"
	"github.com/twillnet/twill/kubecreds"
)

// Kubernetes mode (Config.Kubernetes, `twill lab up --kubernetes`,
// ModeKubernetes): the lab is a real cluster. The underlay namespace runs
// etcd, kube-apiserver (token users, Node,RBAC authorization),
// kube-controller-manager (--allocate-node-cidrs: nodeipam gives the nodes
// their podCIDRs; the EndpointSlices are the real controller's) and
// kube-scheduler. Every node is a network namespace plus a mount namespace
// held by an anchor process (see nodeMountScript), in which Debian's
// containerd, a real kubelet and a real kube-proxy run; the images of
// `make image` are imported into each node's containerd with ctr. twill is
// installed with `kubectl apply` of the manifest `make image` rendered, as a
// user would, and the lab's pods (node1-a, ...) are real Pods pinned to
// their nodes, its Services real Services. Each pod's network namespace is
// attached under /run/netns as <lab>-<pod>, so `lab call`, `lab exec`,
// doctor and trace reach it as in the other modes.
//
// Nothing global changes on the host: kubelet's kernel sysctls are answered
// by files bound over /proc/sys inside the node's mount namespace,
// kube-proxy leaves the conntrack limits alone (--conntrack-max-per-core 0),
// and every cgroup lives below /sys/fs/cgroup/<controller>/twill-lab-<lab>/.

// ModeKubernetes is the mode of a lab of real nodes (State.Mode).
const ModeKubernetes = "kubernetes"

// Proxy modes of the real kube-proxy (Config.ProxyMode).
const (
	ProxyIptables = "iptables"
	ProxyNftables = "nftables"
)

// Container runtimes of the real nodes (Config.Containerd).
const (
	// Containerd16 is Debian 12's containerd package (1.6), configured with
	// config version 2 (containerdConfig16).
	Containerd16 = "1.6"
	// Containerd2 is containerd 2.x built from its Go module by `make
	// tools-kube` into bin/containerd2/, configured with config version 3
	// (containerdConfig2).
	Containerd2 = "2"
)

// realTimeout bounds each wait of a real cluster's bring-up (nodes
// registered, DaemonSet ready, pods ready): generous for a cold 2-core machine.
const realTimeout = 4 * time.Minute

// RealState is what a lab of real nodes adds to State.
type RealState struct {
	// ProxyMode is kube-proxy's --proxy-mode.
	ProxyMode string `json:"proxyMode"`
	// ImageDir holds the images and the manifest `make image` wrote.
	ImageDir string `json:"imageDir"`
	// TwillImage and TestServerImage are the references of twill's image
	// and of the pods' test server.
	TwillImage      string `json:"twillImage"`
	TestServerImage string `json:"testServerImage"`
	// CoreDNSImage is the cluster DNS's image (kube-system/coredns).
	CoreDNSImage string `json:"coreDNSImage"`
	// Binaries of the control plane and the nodes.
	KubeletBin           string `json:"kubeletBin"`
	ControllerManagerBin string `json:"controllerManagerBin"`
	SchedulerBin         string `json:"schedulerBin"`
	KubeProxyBin         string `json:"kubeProxyBin"`
	ContainerdBin        string `json:"containerdBin"`
	CtrBin               string `json:"ctrBin"`
	// Containerd is the nodes' runtime (Containerd16 or Containerd2) and
	// ContainerdVersion what its `containerd --version` says.
	Containerd        string `json:"containerd"`
	ContainerdVersion string `json:"containerdVersion,omitempty"`
	// ShimDir is put first on containerd's PATH, so it runs the shim built
	// with it (containerd 2.x: bin/containerd2); empty: $PATH as it is.
	ShimDir string `json:"shimDir,omitempty"`
	// ControllerManager and Scheduler run in the underlay namespace.
	ControllerManager Process `json:"controllerManager"`
	Scheduler         Process `json:"scheduler"`
}

// RealNode is one real node's processes (Node.Real).
type RealNode struct {
	// Anchor holds the node's mount namespace (it sleeps once the mounts
	// are made); the other daemons enter it with nsenter.
	Anchor     Process `json:"anchor"`
	Containerd Process `json:"containerd"`
	Kubelet    Process `json:"kubelet"`
	KubeProxy  Process `json:"kubeProxy"`
	// Dir is the node's own directory (configs, containerd's root, overlays).
	Dir string `json:"dir"`
}

// RealMode tells whether the lab is a cluster of real nodes.
func (st *State) RealMode() bool { return st.Mode == ModeKubernetes && st.Real != nil }

// Files of `make image` a real cluster needs, in Config.ImageDir.
const (
	twillArchive      = "twill.docker.tar"
	pauseArchive      = "pause.docker.tar"
	testServerArchive = "testserver.docker.tar"
	corednsArchive    = "coredns.docker.tar"
	twillManifest     = "twill.yaml"
	twillRefFile      = "twill.ref"
)

// FindImageDir resolves the directory of `make image`'s output: explicit
// (flag), then $TWILL_IMAGE_DIR, then image/ next to the twill binary, then
// ./bin/image. It must hold every file a real cluster imports or applies.
func FindImageDir(explicit string) (string, error) {
	var cands []string
	switch {
	case explicit != "":
		cands = []string{explicit}
	case os.Getenv("TWILL_IMAGE_DIR") != "":
		cands = []string{os.Getenv("TWILL_IMAGE_DIR")}
	default:
		if exe, err := os.Executable(); err == nil {
			cands = append(cands, filepath.Join(filepath.Dir(exe), "image"))
		}
		cands = append(cands, filepath.Join("bin", "image"))
	}
	var missing []string
	for _, d := range cands {
		missing = missing[:0]
		for _, f := range []string{twillArchive, pauseArchive, testServerArchive, corednsArchive, twillManifest, twillRefFile} {
			if _, err := os.Stat(filepath.Join(d, f)); err != nil {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("no complete image directory (looked in %s; missing %s): run `make tools-kube` (builds bin/coredns) and `make image` (writes bin/image), or pass --image-dir",
		strings.Join(cands, ", "), strings.Join(missing, ", "))
}

// findRealBinaries resolves every binary of a real cluster into r, the
// container runtime's by r.Containerd.
func findRealBinaries(r *RealState) error {
	kube := func(name string) (string, error) {
		env := "TWILL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_BIN"
		return findBinary(name, "", "", env, fmt.Sprintf("%s not found: run `make tools-kube` (scripts/setup.sh --kube builds it into bin/ from k8s.io/kubernetes) or set $%s", name, env))
	}
	var err error
	for _, b := range []struct {
		dst  *string
		name string
	}{
		{&r.KubeletBin, "kubelet"}, {&r.ControllerManagerBin, "kube-controller-manager"},
		{&r.SchedulerBin, "kube-scheduler"}, {&r.KubeProxyBin, "kube-proxy"},
	} {
		if *b.dst, err = kube(b.name); err != nil {
			return err
		}
	}
	for _, name := range []string{"runc", "nsenter", "unshare", "mount"} {
		if _, err := debBinary(name); err != nil {
			return err
		}
	}
	return findContainerd(r)
}

// debBinary finds a program of a Debian package real nodes run.
func debBinary(name string) (string, error) {
	env := "TWILL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_BIN"
	return findBinary(name, "", "", env, fmt.Sprintf("%s not found: install Debian's containerd and runc (`make tools-kube` does) or set $%s", name, env))
}

// findContainerd resolves the binaries of r.Containerd's runtime into r
// and records its version.
func findContainerd(r *RealState) error {
	var err error
	switch r.Containerd {
	case Containerd2:
		dir, err := FindContainerd2("")
		if err != nil {
			return err
		}
		r.ContainerdBin, r.CtrBin, r.ShimDir = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr"), dir
	default:
		for _, b := range []struct {
			dst  *string
			name string
		}{{&r.ContainerdBin, "containerd"}, {&r.CtrBin, "ctr"}, {new(string), "containerd-shim-runc-v2"}} {
			if *b.dst, err = debBinary(b.name); err != nil {
				return err
			}
		}
	}
	out, err := exec.Command(r.ContainerdBin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", r.ContainerdBin, err)
	}
	r.ContainerdVersion = strings.TrimSpace(string(out))
	return nil
}

// containerd2Bins are the programs of containerd 2.x a real node runs,
// side by side in one directory (bin/containerd2).
var containerd2Bins = []string{"containerd", "containerd-shim-runc-v2", "ctr"}

// FindContainerd2 resolves the directory of containerd 2.x's binaries
// (containerd2Bins): explicit, then $TWILL_CONTAINERD2_DIR, then
// containerd2/ next to the twill binary, then ./bin/containerd2 (where
// `make tools-kube` builds them).
func FindContainerd2(explicit string) (string, error) {
	var cands []string
	switch {
	case explicit != "":
		cands = []string{explicit}
	case os.Getenv("TWILL_CONTAINERD2_DIR") != "":
		cands = []string{os.Getenv("TWILL_CONTAINERD2_DIR")}
	default:
		if exe, err := os.Executable(); err == nil {
			cands = append(cands, filepath.Join(filepath.Dir(exe), "containerd2"))
		}
		cands = append(cands, filepath.Join("bin", "containerd2"))
	}
	var missing []string
	for _, d := range cands {
		missing = missing[:0]
		for _, b := range containerd2Bins {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				missing = append(missing, b)
			}
		}
		if len(missing) == 0 {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("--containerd %s: containerd 2.x not found (looked in %s; missing %s): run `make tools-kube` (scripts/setup.sh --kube builds bin/containerd2/ from github.com/containerd/containerd/v2, about 2 minutes) or set $TWILL_CONTAINERD2_DIR",
		Containerd2, strings.Join(cands, ", "), strings.Join(missing, ", "))
}

// runtimeOrigin says where a real node's containerd comes from.
func runtimeOrigin(containerd string) string {
	if containerd == Containerd2 {
		return "built from github.com/containerd/containerd/v2 into bin/containerd2, config version 3"
	}
	return "Debian's package, config version 2"
}

// readImageRefs reads the image references of dir into r: twill's from
// twill.ref, the test server's and CoreDNS's with the same tag.
func readImageRefs(dir string, r *RealState) error {
	b, err := os.ReadFile(filepath.Join(dir, twillRefFile))
	if err != nil {
		return fmt.Errorf("image: %w (run `make image`)", err)
	}
	tag, err := image.ParseRef(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, twillRefFile), err)
	}
	r.TwillImage = tag.Name()
	r.TestServerImage = image.TestServerRepository + ":" + tag.TagStr()
	r.CoreDNSImage = image.CoreDNSRepository + ":" + tag.TagStr()
	return nil
}

// Token users of a real cluster's components (apiserver --token-auth-file);
// the bootstrap RBAC policy already grants them what they need.
const (
	userControllerManager = "system:kube-controller-manager"
	userScheduler         = "system:kube-scheduler"
	userKubeProxy         = "system:kube-proxy"
)

// kubeletUser is node's kubelet user (Node authorizer, NodeRestriction).
func kubeletUser(node string) string { return "system:node:" + node }

// realUsers are the token users of a real cluster beyond the admin, each
// with the kubeconfig file it gets.
func realUsers(st *State) ([]kubecreds.User, []string) {
	dir := kubeDir(st.Name)
	users := []kubecreds.User{
		{Name: userControllerManager, Token: kubecreds.RandomToken()},
		{Name: userScheduler, Token: kubecreds.RandomToken()},
		{Name: userKubeProxy, Token: kubecreds.RandomToken()},
	}
	paths := []string{filepath.Join(dir, "controller-manager.kubeconfig"), filepath.Join(dir, "scheduler.kubeconfig"), filepath.Join(dir, "kube-proxy.kubeconfig")}
	for _, n := range st.Nodes {
		users = append(users, kubecreds.User{Name: kubeletUser(n.Name), Token: kubecreds.RandomToken(), Group: "system:nodes"})
		paths = append(paths, filepath.Join(n.Real.Dir, "kubelet.kubeconfig"))
	}
	return users, paths
}

// realSteps build a lab of real nodes.
func realSteps(ctx context.Context, c Config, st *State) []step {
	r := st.Real
	return append(underlaySteps(ctx, st), []step{
		{fmt.Sprintf("kube-apiserver: %s in %s (Node,RBAC, NodeRestriction, token users), waiting for /readyz (10-30 s)", KubeAPIServerURL, st.Underlay), func() error {
			return startKubeAPIServer(ctx, st, c.Out)
		}},
		{"kube-controller-manager (--allocate-node-cidrs " + ClusterCIDR.String() + ", /24 per node) and kube-scheduler in " + st.Underlay, func() error {
			return startControlPlane(st)
		}},
		{fmt.Sprintf("nodes: a mount namespace each (overlays on /etc /opt /var, own /run, fresh /sys, kubelet's sysctls answered locally), cgroups below twill-lab-%s/", st.Name), func() error {
			return eachNode(ctx, st, func(n *Node) error { return startNodeNamespace(ctx, st, n) })
		}},
		{fmt.Sprintf("containerd %s on every node (%s, restrict_oom_score_adj); images imported with ctr: twill, pause, test server, CoreDNS", r.Containerd, runtimeOrigin(r.Containerd)), func() error {
			return eachNode(ctx, st, func(n *Node) error { return startContainerd(ctx, st, n) })
		}},
		{fmt.Sprintf("kubelet (clusterDNS %s, clusterDomain %s) and kube-proxy (--proxy-mode %s) on every node; waiting for the Nodes and their podCIDRs from nodeipam", ClusterDNSVIP, ClusterDomain, r.ProxyMode), func() error {
			if err := eachNode(ctx, st, func(n *Node) error { return startKubelet(st, n) }); err != nil {
				return err
			}
			if err := eachNode(ctx, st, func(n *Node) error { return startKubeProxy(st, n) }); err != nil {
				return err
			}
			return waitNodeCIDRs(ctx, st, c.Out)
		}},
		{fmt.Sprintf("twill: kubectl apply -f %s (image %s); waiting for the DaemonSet and Ready nodes", filepath.Join(r.ImageDir, twillManifest), r.TwillImage), func() error {
			if err := applyTwill(ctx, c, st); err != nil {
				return err
			}
			return waitTwillReady(ctx, st, c.Out)
		}},
		{fmt.Sprintf("CoreDNS: kubectl apply -f coredns.yaml (image %s; kube-system: RBAC, Corefile, Deployment, Service %s at %s:53)", r.CoreDNSImage, CoreDNSService, ClusterDNSVIP), func() error {
			return applyCoreDNS(ctx, st, c.Out)
		}},
		{fmt.Sprintf("pods: %d per node (image %s, pinned with nodeSelector), Services; waiting until Ready, attaching their namespaces", c.Pods, r.TestServerImage), func() error {
			if err := createRealWorkloads(ctx, st); err != nil {
				return err
			}
			return waitRealPods(ctx, st, c.Out)
		}},
		{"checking: every pod server is up, every Service has its endpoints, CoreDNS is ready and resolves web.lab.svc." + ClusterDomain, func() error {
			if err := waitServers(ctx, st, 20*time.Second); err != nil {
				return err
			}
			if err := waitEndpoints(ctx, st); err != nil {
				return err
			}
			return waitCoreDNS(ctx, st, c.Out)
		}},
	}...)
}
