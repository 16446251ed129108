package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/kubecreds"
	"github.com/twillnet/twill/subnetfile"
)

// A real cluster's control plane, twill's install and the lab's workloads.

// TwillNamespace and TwillDaemonSet are where deploy/twill.yaml installs twill.
const (
	TwillNamespace = "kube-twill"
	TwillDaemonSet = "twill"
)

// startControlPlane starts kube-controller-manager and kube-scheduler in
// the underlay namespace, each with its token user's kubeconfig.
func startControlPlane(st *State) error {
	r, dir := st.Real, kubeDir(st.Name)
	f := newKubeFiles(st.Name)
	kcm := filepath.Join(dir, "controller-manager.kubeconfig")
	p, err := startDaemon(st.Underlay, []string{r.ControllerManagerBin,
		"--kubeconfig", kcm, "--authentication-kubeconfig", kcm, "--authorization-kubeconfig", kcm,
		"--bind-address", "127.0.0.1", "--secure-port", "10257",
		"--allocate-node-cidrs", "--cluster-cidr", ClusterCIDR.String(), "--node-cidr-mask-size", "24",
		"--service-cluster-ip-range", KubeServiceCIDR,
		"--use-service-account-credentials",
		"--service-account-private-key-file", f.SAKey,
		"--root-ca-file", f.CA,
		"--leader-elect=false",
		"--v", "1",
	}, filepath.Join(StateDir(st.Name), "logs", "kube-controller-manager.log"), nil)
	if err != nil {
		return err
	}
	r.ControllerManager = p
	sched := filepath.Join(dir, "scheduler.kubeconfig")
	p, err = startDaemon(st.Underlay, []string{r.SchedulerBin,
		"--kubeconfig", sched, "--authentication-kubeconfig", sched, "--authorization-kubeconfig", sched,
		"--bind-address", "127.0.0.1", "--secure-port", "10259",
		"--leader-elect=false",
		"--v", "1",
	}, filepath.Join(StateDir(st.Name), "logs", "kube-scheduler.log"), nil)
	if err != nil {
		return err
	}
	r.Scheduler = p
	return st.save()
}

// writeRealKubeconfigs writes the kubeconfig of every user of realUsers.
func writeRealKubeconfigs(st *State, f kubecreds.Files, users []kubecreds.User, paths []string) error {
	for i, u := range users {
		if err := os.MkdirAll(filepath.Dir(paths[i]), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(paths[i], kubeconfigYAML(st.Kube.URL, f.CA, u.Name, u.Token), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", paths[i], err)
		}
	}
	return nil
}

// waitUntil polls check every second until it returns true, an error, or
// timeout passes (then the error names what and the last state seen). Every
// 15 s it prints the state to out.
func waitUntil(ctx context.Context, what string, timeout time.Duration, out io.Writer, check func(ctx context.Context) (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	lastNote := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, state, err := check(cctx)
		cancel()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while waiting for %s (%s): %w", what, state, ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %s: %s", what, timeout, state)
		}
		if time.Since(lastNote) > 15*time.Second {
			fmt.Fprintf(out, "(%s: %s) ", what, state)
			lastNote = time.Now()
		}
		time.Sleep(time.Second)
	}
}

// checkRealDaemons fails when one of the cluster's daemons has exited,
// naming it and its log.
func checkRealDaemons(st *State) error {
	procs := []struct {
		what string
		p    Process
	}{{"kube-apiserver", st.Kube.APIServer}, {"kube-controller-manager", st.Real.ControllerManager}, {"kube-scheduler", st.Real.Scheduler}}
	for _, n := range st.Nodes {
		procs = append(procs, struct {
			what string
			p    Process
		}{n.Name + " containerd", n.Real.Containerd}, struct {
			what string
			p    Process
		}{n.Name + " kubelet", n.Real.Kubelet}, struct {
			what string
			p    Process
		}{n.Name + " kube-proxy", n.Real.KubeProxy})
	}
	for _, x := range procs {
		if x.p.PID > 0 && !x.p.Alive() {
			return fmt.Errorf("%s (pid %d) exited: last log lines:\n%s", x.what, x.p.PID, tail(x.p.Log, 12))
		}
	}
	return nil
}

// waitNodeCIDRs waits until every kubelet has registered its Node and
// nodeipam has given it a podCIDR, then records each node's subnet and
// gateway.
func waitNodeCIDRs(ctx context.Context, st *State, out io.Writer) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	err = waitUntil(ctx, "Nodes with a podCIDR", realTimeout, out, func(ctx context.Context) (bool, string, error) {
		if err := checkRealDaemons(st); err != nil {
			return false, "", err
		}
		var missing []string
		for i := range st.Nodes {
			n := &st.Nodes[i]
			obj, err := c.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			switch {
			case err != nil:
				missing = append(missing, n.Name+" not registered")
			case obj.Spec.PodCIDR == "":
				missing = append(missing, n.Name+" has no podCIDR")
			default:
				sn, err := netip.ParsePrefix(obj.Spec.PodCIDR)
				if err != nil {
					return false, "", fmt.Errorf("node %s: podCIDR %q: %w", n.Name, obj.Spec.PodCIDR, err)
				}
				n.Subnet, n.Gateway = sn.String(), subnetfile.Gateway(sn).Addr().String()
			}
		}
		return len(missing) == 0, strings.Join(missing, ", "), nil
	})
	if err != nil {
		return err
	}
	return st.save()
}

// twillBackendLine is the backend of the shipped net-conf.json.
const twillBackendLine = `"Backend": {"Type": "vxlan"}`

// renderTwillManifest is the manifest `make image` rendered, with the lab's
// backend written into its net-conf.json (as a user edits it).
func renderTwillManifest(b []byte, backend string) ([]byte, error) {
	if backend == BackendVXLAN {
		return b, nil
	}
	s := string(b)
	if strings.Count(s, twillBackendLine) != 1 {
		return nil, fmt.Errorf("manifest: want exactly one %s in its net-conf.json to set backend %s", twillBackendLine, backend)
	}
	return []byte(strings.Replace(s, twillBackendLine, fmt.Sprintf(`"Backend": {"Type": %q}`, backend), 1)), nil
}

// applyTwill installs twill with kubectl apply, as a user does.
func applyTwill(ctx context.Context, c Config, st *State) error {
	b, err := os.ReadFile(filepath.Join(st.Real.ImageDir, twillManifest))
	if err != nil {
		return err
	}
	if b, err = renderTwillManifest(b, st.Backend); err != nil {
		return err
	}
	return kubectlApply(ctx, st, "twill.yaml", b, c.Out)
}

// kubectlApply writes manifest as file in the lab's state directory (where
// a user finds what was applied) and applies it with kubectl as the admin,
// printing kubectl's lines to out.
func kubectlApply(ctx context.Context, st *State, file string, manifest []byte, out io.Writer) error {
	p := filepath.Join(StateDir(st.Name), file)
	if err := os.WriteFile(p, manifest, 0o644); err != nil {
		return err
	}
	res, err := runIn(ctx, st.Underlay, "", st.Kube.KubectlBin, "--kubeconfig", st.Kube.AdminKubeconfig, "apply", "-f", p)
	if err != nil {
		return fmt.Errorf("kubectl apply -f %s: %w", p, err)
	}
	fmt.Fprintf(out, "\n%s\n", indentText(strings.TrimRight(res, "\n")))
	return nil
}

// waitTwillReady waits until twill's DaemonSet is ready on every node and
// every Node is Ready, then records each node's VTEP MAC from its lease.
func waitTwillReady(ctx context.Context, st *State, out io.Writer) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	err = waitUntil(ctx, "twill DaemonSet and Ready nodes", realTimeout, out, func(ctx context.Context) (bool, string, error) {
		if err := checkRealDaemons(st); err != nil {
			return false, "", err
		}
		ds, err := c.AppsV1().DaemonSets(TwillNamespace).Get(ctx, TwillDaemonSet, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		state := daemonSetState(ds)
		if ds.Status.DesiredNumberScheduled != int32(len(st.Nodes)) || ds.Status.NumberReady != int32(len(st.Nodes)) {
			pods, err := c.CoreV1().Pods(TwillNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=twill"})
			if err == nil {
				for _, p := range pods.Items {
					if !podReady(&p) {
						state += fmt.Sprintf("; %s on %s: %s", p.Name, p.Spec.NodeName, podState(&p))
					}
				}
			}
			return false, state, nil
		}
		var notReady []string
		for _, n := range st.Nodes {
			obj, err := c.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || !nodeReady(obj) {
				notReady = append(notReady, n.Name)
			}
		}
		if len(notReady) > 0 {
			return false, state + "; nodes not Ready: " + strings.Join(notReady, ", "), nil
		}
		return true, state, nil
	})
	if err != nil {
		return err
	}
	return readKubeLeases(ctx, st)
}

// daemonSetState says how far a DaemonSet is.
func daemonSetState(ds *appsv1.DaemonSet) string {
	s := ds.Status
	return fmt.Sprintf("DaemonSet %s/%s: desired %d, scheduled %d, ready %d, up to date %d", ds.Namespace, ds.Name,
		s.DesiredNumberScheduled, s.CurrentNumberScheduled, s.NumberReady, s.UpdatedNumberScheduled)
}

// nodeReady tells whether a Node's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// createRealWorkloads creates the lab's namespace, its pods (real Pods of
// the test-server image, each pinned to its node with a nodeSelector) and
// its Services with their fixed ClusterIPs, plus lab/web-nodeport
// (WebNodePort); the EndpointSlices are the controller-manager's.
func createRealWorkloads(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: KubeNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube: create namespace %s: %w", KubeNamespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: KubeNamespace}}
	if _, err := c.CoreV1().ServiceAccounts(KubeNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube: create ServiceAccount %s/default: %w", KubeNamespace, err)
	}
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			if _, err := c.CoreV1().Pods(KubeNamespace).Create(ctx, realPod(st, &n, &p), metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("kube: create Pod %s/%s: %w", KubeNamespace, p.Name, err)
			}
		}
	}
	for i := range st.Nodes {
		if _, err := c.CoreV1().Pods(KubeNamespace).Create(ctx, hostPod(st, &st.Nodes[i]), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kube: create Pod %s/%s: %w", KubeNamespace, HostPodName(st.Nodes[i].Name), err)
		}
	}
	for _, s := range st.Services() {
		if s.Namespace != KubeNamespace {
			continue // default/kubernetes is the API server's own
		}
		if err := createService(ctx, c, st, s); err != nil {
			return err
		}
	}
	np := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-nodeport", Namespace: KubeNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{labelApp: "web"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: WebNodePort, TargetPort: intstr.FromInt32(ServerPort)}}},
	}
	if _, err := c.CoreV1().Services(KubeNamespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube: create Service %s/web-nodeport: %w", KubeNamespace, err)
	}
	return nil
}

// WebNodePort is the node port of the Service lab/web-nodeport (real nodes
// only): every pod's server on port 30080 of every node.
const WebNodePort = 30080

// realPod is lab pod p of node n as a Pod: the test server, pinned to n,
// ready once its port answers the kubelet (node -> pod).
func realPod(st *State, n *Node, p *Pod) *corev1.Pod {
	no := false
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: KubeNamespace, Labels: map[string]string{labelApp: "web", labelPod: p.Name}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: n.Name},
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "serve", Image: st.Real.TestServerImage, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: ServerPort, Protocol: corev1.ProtocolTCP},
					{Name: "echo", ContainerPort: EchoPort, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(ServerPort)}},
					PeriodSeconds: 2},
			}},
		},
	}
}

// HostServerPort is the port of each node's hostNetwork pod (HostPodName):
// the test server in the node's own network namespace, so pods reach a
// node's address the way they reach node-local daemons (pod -> node).
const HostServerPort = 8090

// HostPodName is the name of node's hostNetwork pod ("node1-host").
func HostPodName(node string) string { return node + "-host" }

// hostPod is node n's hostNetwork pod: the test server on HostServerPort
// of the node's address (no echo port), pinned to n.
func hostPod(st *State, n *Node) *corev1.Pod {
	p := realPod(st, n, &Pod{Name: HostPodName(n.Name)})
	p.Labels = map[string]string{labelApp: "host", labelPod: p.Name}
	p.Spec.HostNetwork = true
	c := &p.Spec.Containers[0]
	c.Args = []string{"--port", strconv.Itoa(HostServerPort), "--echo-port", "0"}
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: HostServerPort, Protocol: corev1.ProtocolTCP}}
	c.ReadinessProbe.TCPSocket.Port = intstr.FromInt32(HostServerPort)
	return p
}

// waitRealPods waits until every lab pod is Ready on its node, records its
// address and attaches its network namespace as <lab>-<pod>.
func waitRealPods(ctx context.Context, st *State, out io.Writer) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	err = waitUntil(ctx, "lab pods Ready", realTimeout, out, func(ctx context.Context) (bool, string, error) {
		if err := checkRealDaemons(st); err != nil {
			return false, "", err
		}
		var waiting []string
		for i := range st.Nodes {
			n := &st.Nodes[i]
			for k := range n.Pods {
				p := &n.Pods[k]
				obj, err := c.CoreV1().Pods(KubeNamespace).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil {
					waiting = append(waiting, p.Name+": "+err.Error())
					continue
				}
				if !podReady(obj) {
					waiting = append(waiting, p.Name+": "+podState(obj))
					continue
				}
				if obj.Spec.NodeName != n.Name {
					return false, "", fmt.Errorf("pod %s runs on %s, not %s", p.Name, obj.Spec.NodeName, n.Name)
				}
				p.IP = obj.Status.PodIP
			}
			host := HostPodName(n.Name)
			obj, err := c.CoreV1().Pods(KubeNamespace).Get(ctx, host, metav1.GetOptions{})
			switch {
			case err != nil:
				waiting = append(waiting, host+": "+err.Error())
			case !podReady(obj):
				waiting = append(waiting, host+": "+podState(obj))
			}
		}
		return len(waiting) == 0, strings.Join(waiting, "; "), nil
	})
	if err != nil {
		return err
	}
	if err := AttachPods(ctx, st); err != nil {
		return err
	}
	return st.save()
}

// podReady tells whether a Pod's Ready condition is True.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState is a short account of a pod that is not ready.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	if p.Spec.NodeName == "" {
		s += " (not scheduled)"
	}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf(" (%s: %s %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil && !cs.Ready:
			s += fmt.Sprintf(" (%s: running, not ready, %d restarts)", cs.Name, cs.RestartCount)
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			s += fmt.Sprintf(" (%s last exit %d %s)", cs.Name, t.ExitCode, t.Reason)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf(" [%s: %s]", c.Type, c.Message)
		}
	}
	return s
}

// AttachPods binds each lab pod's network namespace to
// /run/netns/<lab>-<pod> (as `ip netns attach` does), replacing a stale
// one, so every lab command reaches the pod by name. The namespace is found
// through a process of the pod, in the pod's cgroup below its node's.
func AttachPods(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			obj, err := c.CoreV1().Pods(KubeNamespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("kube: Pod %s: %w", p.Name, err)
			}
			pid, err := podPID(st, n.Name, string(obj.UID))
			if err != nil {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
			if err := attachNS(p.Namespace, fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// podPID finds a process of the pod with uid on node, through the pod's
// cgroup (pod<uid> below the node's kubepods, in the pids hierarchy).
func podPID(st *State, node, uid string) (int, error) {
	dir, err := podCgroup(st, node, uid)
	if err != nil {
		return 0, err
	}
	for _, pid := range pidsInCgroups(cgroupTree([]string{dir})) {
		return pid, nil
	}
	return 0, fmt.Errorf("no process in %s", dir)
}

// attachNS binds the network namespace file src to /run/netns/name.
func attachNS(name, src string) error {
	if err := deleteNS(name); err != nil {
		return err
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return fmt.Errorf("netns %s: bind %s: %w", name, src, err)
	}
	return nil
}

// waitEndpoints waits until the EndpointSlices of the lab's Services list
// every endpoint the lab expects, ready.
func waitEndpoints(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	return waitUntil(ctx, "Service endpoints", 60*time.Second, io.Discard, func(ctx context.Context) (bool, string, error) {
		for _, s := range st.Services() {
			if s.Namespace != KubeNamespace {
				continue
			}
			got, err := readyEndpoints(ctx, c, s.Namespace, s.Name)
			if err != nil {
				return false, err.Error(), nil
			}
			if len(got) != len(s.Endpoints) {
				return false, fmt.Sprintf("%s/%s: %d of %d endpoints ready", s.Namespace, s.Name, len(got), len(s.Endpoints)), nil
			}
		}
		return true, "", nil
	})
}

// readyEndpoints lists the ready endpoint addresses of a Service.
func readyEndpoints(ctx context.Context, c kubernetes.Interface, ns, svc string) ([]string, error) {
	l, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range l.Items {
		for _, e := range es.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	return out, nil
}

// errNotReal is returned by operations a lab of real nodes does not offer.
var errNotReal = errors.New("not available on a lab of real nodes (lab up --kubernetes)")
