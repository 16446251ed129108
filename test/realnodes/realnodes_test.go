// Package realnodes is the end-to-end test of twill on real Kubernetes
// nodes: `twill lab up --kubernetes` builds a control plane and nodes
// running kubelet, containerd and kube-proxy, installs twill from its image
// with kubectl apply, and the test checks what users depend on: the
// DaemonSet is ready on every node, every pod reaches every pod (same node
// and across nodes) without NAT, nodes reach pods, pods reach nodes (a
// hostNetwork pod on every node), ClusterIP Services work from pods and
// nodes, the NodePort Service from pods and nodes, pods reach
// kubernetes.default (10.96.0.1:443), pods resolve Service names through
// CoreDNS (kube-dns) and reach them by name, traffic leaving the cluster is
// masqueraded, twill trace explains a Service call, twill doctor finds
// nothing wrong; the seed failures F1, F3 and F5a broken with `lab break`
// are seen, named by doctor, explained by trace and fixed (both kube-proxy
// modes); a rolling update of the DaemonSet to a new image tag and a
// deleted twill pod leave a TCP stream between nodes without a reset; a
// Node deleted from the API makes its peers drop its route and FDB entry;
// `kubectl delete -f` plus `twill uninstall` on every node leaves nothing
// of twill. Then `lab down` leaves nothing behind (also without its state
// file, as after a crash) and no host-wide setting changed. It runs with
// kube-proxy's iptables and nftables modes over vxlan, and iptables over
// host-gw, on Debian's containerd 1.6, and iptables over vxlan once more on
// containerd 2.x (--containerd 2). The iptables-vxlan case on 1.6 also
// shows what a user sees in kubectl describe pod for an image missing from
// the store and a runtime rejecting the CNI result version. It needs root,
// `make tools-kube` and `make image` (make test does both).
package realnodes

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/twillnet/twill/image"
	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nsrun"
)

// twill is the binary under test, built by TestMain.
var twill string

// repoBin is the repository's bin/ (scripts/setup.sh and make image write it).
var repoBin, _ = filepath.Abs("../../bin")

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "realnodes: these tests build a cluster in namespaces and need root; run `make test` as root")
		return 1
	}
	dir, err := os.MkdirTemp("", "twill-realnodes")
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnodes:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	twill = filepath.Join(dir, "twill")
	if out, err := exec.Command("go", "build", "-o", twill, "../../cmd/twill").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "realnodes: go build: %v\n%s", err, out)
		return 1
	}
	for env, name := range map[string]string{"TWILL_ETCD_BIN": "etcd", "TWILL_KUBE_APISERVER_BIN": "kube-apiserver",
		"TWILL_KUBECTL_BIN": "kubectl", "TWILL_KUBELET_BIN": "kubelet", "TWILL_KUBE_CONTROLLER_MANAGER_BIN": "kube-controller-manager",
		"TWILL_KUBE_SCHEDULER_BIN": "kube-scheduler", "TWILL_KUBE_PROXY_BIN": "kube-proxy"} {
		p := filepath.Join(repoBin, name)
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "realnodes: bin/%s missing: run `make tools-kube` (or `make test`, which does)\n", name)
			return 1
		}
		os.Setenv(env, p)
	}
	// containerd 2.x for the case on it (make tools-kube builds it).
	if _, err := lab.FindContainerd2(filepath.Join(repoBin, "containerd2")); err != nil {
		fmt.Fprintln(os.Stderr, "realnodes:", err)
		return 1
	}
	os.Setenv("TWILL_CONTAINERD2_DIR", filepath.Join(repoBin, "containerd2"))
	img := filepath.Join(repoBin, "image")
	for _, f := range []string{"testserver.docker.tar", "coredns.docker.tar"} {
		if _, err := os.Stat(filepath.Join(img, f)); err != nil {
			fmt.Fprintf(os.Stderr, "realnodes: bin/image has no %s: run `make tools-kube` and `make image` (or `make test`, which does both)\n", f)
			return 1
		}
	}
	os.Setenv("TWILL_IMAGE_DIR", img)
	return m.Run()
}

// result is a finished twill command.
type result struct {
	out  string
	code int
}

// tw runs twill with args, bounded by timeout.
func tw(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, twill, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			return result{out: string(out) + fmt.Sprintf("\n(killed after %s)", timeout), code: -1}
		}
	}
	return result{out: string(out), code: code}
}

// hostSettings are host-wide values a node could change (kubelet's
// sysctls, kube-proxy's conntrack limits): they must not move.
var hostSettings = []string{
	"/proc/sys/vm/overcommit_memory", "/proc/sys/vm/panic_on_oom", "/proc/sys/kernel/panic",
	"/proc/sys/kernel/panic_on_oops", "/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes",
	"/proc/sys/net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize",
	"/proc/sys/net/ipv4/ip_forward",
}

func readSettings() map[string]string {
	m := map[string]string{}
	for _, p := range hostSettings {
		b, err := os.ReadFile(p)
		if err != nil {
			m[p] = "(unreadable: " + err.Error() + ")"
			continue
		}
		m[p] = strings.TrimSpace(string(b))
	}
	return m
}

// labState is the part of the lab's state.json the test reads.
type labState struct {
	Nodes []struct {
		Name, IP, Subnet, Root string
		Pods                   []struct{ Name, IP string }
	}
}

func TestRealNodes(t *testing.T) {
	for _, c := range []struct{ mode, backend, containerd, id string }{
		{"iptables", "vxlan", lab.Containerd16, "i"}, {"nftables", "vxlan", lab.Containerd16, "n"}, {"iptables", "host-gw", lab.Containerd16, "h"},
		{"iptables", "vxlan", lab.Containerd2, "c"},
	} {
		sub := c.mode + "-" + c.backend
		if c.containerd != lab.Containerd16 {
			sub += "-containerd" + c.containerd
		}
		t.Run(sub, func(t *testing.T) { testCluster(t, c.mode, c.backend, c.containerd, c.id) })
	}
}

// testCluster builds a lab of 2 real nodes with kube-proxy mode, twill's
// backend and containerd (lab.Containerd16 or lab.Containerd2) and checks
// it. On containerd 2 it runs every check of pods, nodes and Services plus
// a deleted twill pod (what the runtime takes part in); the seed failures
// and the rolling update, which the runtime does not change, run on 1.6.
func testCluster(t *testing.T, mode, backend, containerd, id string) {
	name := fmt.Sprintf("rn%d%s", os.Getpid()%10000, id)
	before := readSettings()
	tw(t, 2*time.Minute, "lab", "down", "--name", name) // a lab left by an interrupted run
	t.Cleanup(func() { down(t, name, before) })

	start := time.Now()
	r := tw(t, 12*time.Minute, "lab", "up", "--kubernetes", "--proxy-mode", mode, "--backend", backend, "--containerd", containerd, "--nodes", "2", "--pods", "2", "--name", name)
	if r.code != 0 {
		dump(t, name)
		t.Fatalf("lab up --kubernetes --proxy-mode %s --backend %s --containerd %s failed (exit %d) after %s:\n%s", mode, backend, containerd, r.code, time.Since(start).Round(time.Second), r.out)
	}
	t.Logf("lab up --kubernetes (%s, %s, containerd %s, 2 nodes x 2 pods): %s", mode, backend, containerd, time.Since(start).Round(time.Second))
	st := loadState(t, name)
	failed := false
	check := func(what string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Errorf("%s: %v", what, err)
			failed = true
		}
	}
	defer func() {
		if failed {
			dump(t, name)
		}
	}()

	check("twill DaemonSet ready on every node", func() error {
		r := tw(t, 30*time.Second, "lab", "exec", "--name", name, "underlay", "--", "kubectl", "-n", "kube-twill", "get", "ds", "twill",
			"-o", "jsonpath={.status.desiredNumberScheduled} {.status.numberReady}")
		if r.code != 0 || strings.TrimSpace(r.out) != "2 2" {
			return fmt.Errorf("desired/ready = %q (exit %d), want \"2 2\"", strings.TrimSpace(r.out), r.code)
		}
		return nil
	})
	check("lab status healthy, naming the runtime", func() error {
		r := tw(t, 30*time.Second, "lab", "status", "--name", name)
		if r.code != 0 {
			return fmt.Errorf("exit %d:\n%s", r.code, r.out)
		}
		if want := "runtime: containerd " + containerd + "."; !strings.Contains(r.out, want) {
			return fmt.Errorf("lab status does not say %q:\n%s", want, r.out)
		}
		return nil
	})
	check("every node runs the containerd asked for (kubectl get nodes: containerRuntimeVersion)", func() error {
		r := kubectl(t, name, "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.nodeInfo.containerRuntimeVersion}{"\n"}{end}`)
		lines := strings.Fields(r.out)
		if r.code != 0 || len(lines) != 2 {
			return fmt.Errorf("exit %d: %q", r.code, r.out)
		}
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "containerd://"); !ok || !strings.HasPrefix(strings.TrimPrefix(v, "v"), containerd+".") {
				return fmt.Errorf("a node reports runtime %q, want containerd://%s.*", l, containerd)
			}
		}
		return nil
	})
	// Every pod reaches every pod, itself included, across nodes (vxlan or
	// host-gw): the server sees the caller's own address (no NAT).
	for _, from := range st.Nodes {
		for _, fp := range from.Pods {
			for _, to := range st.Nodes {
				for _, tp := range to.Pods {
					check(fmt.Sprintf("pod %s -> pod %s (%s:8080)", fp.Name, tp.Name, tp.IP), func() error {
						return call(t, name, fp.Name, tp.IP+":8080", tp.Name+" "+fp.IP+":")
					})
				}
			}
		}
	}
	for _, from := range st.Nodes {
		for _, to := range st.Nodes {
			tp := to.Pods[0]
			check(fmt.Sprintf("node %s -> pod %s", from.Name, tp.Name), func() error {
				return call(t, name, from.Name, tp.IP+":8080", tp.Name+" ")
			})
		}
	}
	// Pods reach every node's own address, where its hostNetwork pod
	// listens: the own node sees the pod's address, another node the
	// caller's node address (twill masquerades pod traffic leaving the pod
	// network, as Flannel does).
	for _, from := range st.Nodes {
		for _, fp := range from.Pods {
			for _, to := range st.Nodes {
				seen := from.IP + ":"
				if to.Name == from.Name {
					seen = fp.IP + ":"
				}
				check(fmt.Sprintf("pod %s -> node %s (hostNetwork pod %s on %s:%d)", fp.Name, to.Name, lab.HostPodName(to.Name), to.IP, lab.HostServerPort), func() error {
					return call(t, name, fp.Name, fmt.Sprintf("%s:%d", to.IP, lab.HostServerPort), lab.HostPodName(to.Name)+" "+seen)
				})
			}
		}
	}
	check("pod node1-a -> ClusterIP 10.96.0.10:80 (lab/web)", func() error {
		return call(t, name, "node1-a", "10.96.0.10:80", "node")
	})
	for _, n := range st.Nodes {
		vip := fmt.Sprintf("10.96.1.%s:80", strings.TrimPrefix(n.Name, "node"))
		check(fmt.Sprintf("pod %s -> ClusterIP %s (lab/local-%s, endpoint on the same node)", n.Pods[0].Name, vip, n.Name), func() error {
			return call(t, name, n.Pods[0].Name, vip, n.Pods[1].Name+" "+n.Pods[0].IP+":")
		})
		check(fmt.Sprintf("pod node1-a -> ClusterIP %s (endpoint on %s)", vip, n.Name), func() error {
			return call(t, name, "node1-a", vip, n.Pods[1].Name+" ")
		})
	}
	// Service names through CoreDNS (kube-system/kube-dns): from inside a
	// pod (kubectl exec, so the resolv.conf kubelet wrote: clusterDNS, the
	// search path, ndots), the short name, the namespaced name and the full
	// name resolve to the Service's ClusterIP, and the call by name reaches
	// the Service's endpoint.
	check("CoreDNS: kube-system/kube-dns has ClusterIP 10.96.0.53 and a ready endpoint", func() error {
		r := kubectl(t, name, "-n", "kube-system", "get", "svc", "kube-dns", "-o", "jsonpath={.spec.clusterIP}")
		if r.code != 0 || strings.TrimSpace(r.out) != lab.ClusterDNSVIP.String() {
			return fmt.Errorf("kube-dns ClusterIP %q (exit %d), want %s", strings.TrimSpace(r.out), r.code, lab.ClusterDNSVIP)
		}
		r = kubectl(t, name, "-n", "kube-system", "get", "endpointslices", "-l", "kubernetes.io/service-name=kube-dns",
			"-o", "jsonpath={.items[*].endpoints[*].conditions.ready}")
		if r.code != 0 || !strings.Contains(r.out, "true") {
			return fmt.Errorf("kube-dns endpoints ready: %q (exit %d)", r.out, r.code)
		}
		return nil
	})
	n1, n2 := st.Nodes[0], st.Nodes[1]
	for _, c := range []struct {
		from, host, ip, endpoint string
	}{
		{n1.Pods[0].Name, "web", "10.96.0.10", "node"},
		{n2.Pods[0].Name, "web.lab", "10.96.0.10", "node"},
		{n1.Pods[0].Name, "web.lab.svc.cluster.local", "10.96.0.10", "node"},
		{n1.Pods[0].Name, "local-" + n2.Name, "10.96.1." + strings.TrimPrefix(n2.Name, "node"), n2.Pods[1].Name + " "},
	} {
		check(fmt.Sprintf("pod %s resolves %s through CoreDNS to %s and reaches it by name", c.from, c.host, c.ip), func() error {
			return callByName(t, name, c.from, c.host+":80", c.ip, c.endpoint)
		})
	}
	check(fmt.Sprintf("twill lab call %s local-%s:80 (by name, resolved through CoreDNS)", n2.Pods[0].Name, n1.Name), func() error {
		return call(t, name, n2.Pods[0].Name, "local-"+n1.Name+":80", n1.Pods[1].Name+" ")
	})
	check("node node2 -> ClusterIP 10.96.0.10:80 (lab/web)", func() error {
		return call(t, name, "node2", "10.96.0.10:80", "node")
	})
	for _, n := range st.Nodes {
		np := n.IP + ":30080"
		check(fmt.Sprintf("pod node1-a -> NodePort %s (lab/web-nodeport)", np), func() error {
			return call(t, name, "node1-a", np, "node")
		})
		check(fmt.Sprintf("node node1 -> NodePort %s (lab/web-nodeport)", np), func() error {
			return call(t, name, "node1", np, "node")
		})
	}
	check("pod node1-a -> kubernetes.default 10.96.0.1:443 (TLS with the lab's CA)", func() error {
		return apiserverFromPod(name, name+"-node1-a")
	})
	check("pod node2-a -> kubernetes.default 10.96.0.1:443 (TLS with the lab's CA)", func() error {
		return apiserverFromPod(name, name+"-node2-a")
	})
	check("pod -> outside (192.168.77.1) is masqueraded to its node's address", func() error {
		stop, err := lab.OutsideServer(name, 9999)
		if err != nil {
			return err
		}
		defer stop()
		for _, n := range st.Nodes {
			if err := call(t, name, n.Pods[0].Name, "192.168.77.1:9999", "outside "+n.IP+":"); err != nil {
				return err
			}
		}
		return nil
	})
	check("twill trace node1-a -> lab/local-node2 explains the real kube-proxy rules", func() error {
		want := "established with " + st.Nodes[1].Pods[1].Name
		r := tw(t, 2*time.Minute, "trace", "--lab", "--name", name, "--from", "node1-a", "--to", "10.96.1.2:80")
		if r.code != 0 || !strings.Contains(r.out, want) {
			return fmt.Errorf("exit %d, want the verdict %q:\n%s", r.code, want, r.out)
		}
		return nil
	})
	check("twill doctor on node1 finds nothing wrong", func() error {
		r := tw(t, time.Minute, "lab", "exec", "--name", name, "node1", "--", twill, "doctor")
		if r.code != 0 {
			return fmt.Errorf("exit %d:\n%s", r.code, r.out)
		}
		return nil
	})
	if backend == "vxlan" && containerd == lab.Containerd16 {
		// The seed failures with the real kube-proxy's rules: each breaks
		// node1, is seen by a user, named by doctor, explained by trace,
		// and gone after lab fix.
		localVIP := "10.96.1." + strings.TrimPrefix(n1.Name, "node") + ":80"
		for _, sc := range []seedFailure{
			{id: "F1", check: "TW002", from: n1.Pods[0].Name, to: localVIP, traceWant: "bridge-nf-call-iptables is 0",
				works: func() error { return call(t, name, n1.Pods[0].Name, localVIP, n1.Pods[1].Name+" ") }},
			{id: "F3", check: "TW010", from: n2.Pods[0].Name, to: n1.Pods[0].IP + ":8080", traceWant: "filter/FORWARD policy DROP",
				works: func() error { return call(t, name, n2.Pods[0].Name, n1.Pods[0].IP+":8080", n1.Pods[0].Name+" ") }},
			{id: "F5a", check: "TW030", from: n1.Pods[0].Name, to: "10.96.0.1:443", traceNot: "DNAT to",
				works: func() error { return apiserverFromPod(name, name+"-"+n1.Pods[0].Name) }},
		} {
			check(fmt.Sprintf("lab break %s node1 (kube-proxy %s): seen, named by doctor (%s), explained by trace, fixed", sc.id, mode, sc.check), func() error {
				return seedOnRealNode(t, name, sc)
			})
		}
		check("twill doctor on node1 finds nothing wrong after the fixes", func() error {
			r := tw(t, time.Minute, "lab", "exec", "--name", name, "node1", "--", twill, "doctor")
			if r.code != 0 {
				return fmt.Errorf("exit %d:\n%s", r.code, r.out)
			}
			return nil
		})
	}
	if mode == "iptables" && backend == "vxlan" && containerd == lab.Containerd16 {
		// Bad input a user meets on real nodes: what kubectl describe
		// shows (the agent's own, a node without a podCIDR, is tested
		// against a real API server in lease/kube).
		check("an image missing from the node's store (IfNotPresent, no registry): kubectl describe pod names the image and the pull failure", func() error {
			return missingImage(t, name)
		})
		check("a runtime that rejects the CNI result version (containerd 1.6, conflist 1.1.0): kubectl describe pod says so; the shipped 1.0.0 brings the pod up", func() error {
			return runtimeRejectsCNIVersion(t, name, st.Nodes[1].Root)
		})
		check("a rolling update of the twill DaemonSet to a new image tag: rolled out on every node, a TCP stream across nodes sees no reset", func() error {
			return rollingUpdateUnderStream(t, name, st.Nodes[1].Pods[0].IP, len(st.Nodes))
		})
		check("a twill pod deleted: the DaemonSet recreates it, a TCP stream across nodes sees no reset", func() error {
			return deleteTwillPodUnderStream(t, name, st.Nodes[1].Pods[0].IP)
		})
	}
	if containerd == lab.Containerd2 {
		check("a twill pod deleted on containerd 2: the DaemonSet recreates it, a TCP stream across nodes sees no reset", func() error {
			return deleteTwillPodUnderStream(t, name, st.Nodes[1].Pods[0].IP)
		})
	}
	if mode == "nftables" {
		check("a Node deleted from the API (kubectl delete node node2): node1's twill drops its route and FDB entry", func() error {
			return nodeDeletedPeersForget(t, name, st)
		})
		// Last: it takes the pod network away.
		check("kubectl delete -f twill.yaml, then twill uninstall on every node: nothing of twill is left", func() error {
			return deleteAndUninstall(t, name, st)
		})
	}
	if mode == "nftables" && !failed {
		// After a crash the state file may be gone: lab down must still
		// find and remove everything (the Cleanup checks it does).
		check("remove state.json, as a crash may", func() error {
			return os.Remove(filepath.Join("/run/twill-lab", name, "state.json"))
		})
	}
}

// badPod is a Pod of namespace lab pinned to node2, as kubectl apply reads it.
func badPod(podName, image, pullPolicy string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"lab"},
"spec":{"nodeSelector":{"kubernetes.io/hostname":"node2"},"terminationGracePeriodSeconds":0,
"containers":[{"name":"c","image":%q,"imagePullPolicy":%q}]}}`, podName, image, pullPolicy)
}

// applyPod creates a Pod from its JSON with kubectl apply -f (a file:
// lab exec passes no stdin).
func applyPod(t *testing.T, labName, manifest string) error {
	f := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		return err
	}
	if r := kubectl(t, labName, "apply", "-f", f); r.code != 0 {
		return fmt.Errorf("kubectl apply: exit %d: %s", r.code, r.out)
	}
	return nil
}

// describeUntil runs kubectl describe pod lab/podName until its output
// holds every string of want (bounded), and returns the last output.
func describeUntil(t *testing.T, labName, podName string, within time.Duration, want ...string) (string, error) {
	deadline := time.Now().Add(within)
	for {
		r := kubectl(t, labName, "-n", "lab", "describe", "pod", podName)
		missing := ""
		for _, w := range want {
			if !strings.Contains(r.out, w) {
				missing = w
				break
			}
		}
		if r.code == 0 && missing == "" {
			return r.out, nil
		}
		if time.Now().After(deadline) {
			return r.out, fmt.Errorf("kubectl describe pod %s after %s lacks %q (exit %d):\n%s", podName, within, missing, r.code, r.out)
		}
		time.Sleep(3 * time.Second)
	}
}

// missingImage runs a pod whose image (a tag of twill's that was never
// built) is in no node's store, with imagePullPolicy IfNotPresent as the
// DaemonSet has, and no registry reachable from the lab: kubectl describe
// pod must name the image, the failed pull and the back-off, so the user
// knows to import the image or make a registry reachable.
func missingImage(t *testing.T, labName string) error {
	ref, err := os.ReadFile(filepath.Join(repoBin, "image", "twill.ref"))
	if err != nil {
		return err
	}
	img := strings.TrimSpace(string(ref)) + "-missing"
	defer kubectl(t, labName, "-n", "lab", "delete", "pod", "missing-image", "--wait=false")
	if err := applyPod(t, labName, badPod("missing-image", img, "IfNotPresent")); err != nil {
		return err
	}
	out, err := describeUntil(t, labName, "missing-image", 2*time.Minute, `Failed to pull image "`+img+`"`, "ImagePullBackOff")
	if err != nil {
		return err
	}
	t.Logf("kubectl describe pod missing-image (what the user sees):\n%s", out)
	return nil
}

// runtimeRejectsCNIVersion writes node2's conflist with cniVersion 1.1.0,
// which Debian's containerd 1.6 cannot read a result of, and runs a pod
// there: kubectl describe pod must show the runtime's refusal with the
// version. Then the conflist as shipped (1.0.0) is put back and the same
// pod must come up (kubelet retries the sandbox): the fix the docs give.
func runtimeRejectsCNIVersion(t *testing.T, labName, node2Root string) error {
	conflist := filepath.Join(node2Root, "etc", "cni", "net.d", "10-twill.conflist")
	shipped, err := os.ReadFile(conflist)
	if err != nil {
		return err
	}
	if !strings.Contains(string(shipped), `"cniVersion": "1.0.0"`) {
		return fmt.Errorf("%s does not declare cniVersion 1.0.0:\n%s", conflist, shipped)
	}
	newer := strings.Replace(string(shipped), `"cniVersion": "1.0.0"`, `"cniVersion": "1.1.0"`, 1)
	if err := os.WriteFile(conflist, []byte(newer), 0o644); err != nil {
		return err
	}
	restored := false
	restore := func() error {
		restored = true
		return os.WriteFile(conflist, shipped, 0o644)
	}
	defer func() {
		if !restored {
			_ = restore()
		}
		kubectl(t, labName, "-n", "lab", "delete", "pod", "cni-version", "--wait=false")
	}()
	time.Sleep(2 * time.Second) // containerd reloads the conflist on a file event
	ts, err := os.ReadFile(filepath.Join(repoBin, "image", "twill.ref"))
	if err != nil {
		return err
	}
	tag := strings.TrimSpace(string(ts))
	testServer := image.TestServerRepository + tag[strings.LastIndex(tag, ":"):]
	if err := applyPod(t, labName, badPod("cni-version", testServer, "Never")); err != nil {
		return err
	}
	out, err := describeUntil(t, labName, "cni-version", 2*time.Minute, "FailedCreatePodSandBox", `unsupported CNI result version "1.1.0"`)
	if err != nil {
		return err
	}
	t.Logf("kubectl describe pod cni-version (what the user sees):\n%s", out)
	if err := restore(); err != nil {
		return err
	}
	if r := kubectl(t, labName, "-n", "lab", "wait", "--for=jsonpath={.status.phase}=Running", "pod/cni-version", "--timeout=3m"); r.code != 0 {
		return fmt.Errorf("with the shipped conflist back the pod did not start: exit %d: %s", r.code, r.out)
	}
	return nil
}

// deleteTwillPodUnderStream keeps a TCP stream busy from node1-a to ip's
// echo port while it deletes node1's twill pod and waits (bounded) for the
// DaemonSet to be whole again; the stream must see no reset.
func deleteTwillPodUnderStream(t *testing.T, lab, ip string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream := exec.CommandContext(ctx, twill, "lab", "stream", "--name", lab, "node1-a", ip+":8081", "--for", "25s")
	var out strings.Builder
	stream.Stdout, stream.Stderr = &out, &out
	if err := stream.Start(); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	kubectl := func(args ...string) result {
		return tw(t, 2*time.Minute, append([]string{"lab", "exec", "--name", lab, "underlay", "--", "kubectl", "-n", "kube-twill"}, args...)...)
	}
	pod := kubectl("get", "pods", "-l", "app=twill", "--field-selector", "spec.nodeName=node1", "-o", "jsonpath={.items[0].metadata.name}")
	if pod.code != 0 || strings.TrimSpace(pod.out) == "" {
		return fmt.Errorf("node1's twill pod: %q (exit %d)", pod.out, pod.code)
	}
	if r := kubectl("delete", "pod", strings.TrimSpace(pod.out), "--wait=true", "--timeout=60s"); r.code != 0 {
		return fmt.Errorf("kubectl delete pod: exit %d: %s", r.code, r.out)
	}
	if r := kubectl("rollout", "status", "ds/twill", "--timeout=90s"); r.code != 0 {
		return fmt.Errorf("the DaemonSet did not recover: exit %d: %s", r.code, r.out)
	}
	err := stream.Wait()
	if err != nil || !strings.Contains(out.String(), "no reset") {
		return fmt.Errorf("stream across the restart: %v: %s", err, out.String())
	}
	return nil
}

// seedFailure is one scenario of FAILURES.md broken on a real node.
type seedFailure struct {
	id, check string
	// from and to are the call the failure breaks, traced.
	from, to string
	// traceWant must be in the trace of that call, traceNot must not.
	traceWant, traceNot string
	// works makes the call and fails when it does not answer.
	works func() error
}

// seedOnRealNode breaks sc on node1 with `lab break`, then: the call
// fails, `twill doctor` names sc.check (exit 1), `twill trace` of the call
// shows why, `lab fix` restores it and the call works again. The call comes
// first: while the twill pod is paused, kubelet restarts it after its
// liveness probe fails (about a minute), and the new agent repairs F1 and F3.
func seedOnRealNode(t *testing.T, labName string, sc seedFailure) error {
	t.Helper()
	if r := tw(t, time.Minute, "lab", "break", "--name", labName, sc.id, "node1"); r.code != 0 {
		return fmt.Errorf("lab break: exit %d:\n%s", r.code, r.out)
	}
	fixed := false
	defer func() {
		if !fixed {
			tw(t, 2*time.Minute, "lab", "fix", "--name", labName, sc.id, "node1")
		}
	}()
	if err := sc.works(); err == nil {
		return fmt.Errorf("%s -> %s still works with %s applied", sc.from, sc.to, sc.id)
	}
	r := tw(t, time.Minute, "lab", "exec", "--name", labName, "node1", "--", twill, "doctor")
	if r.code != 1 || !strings.Contains(r.out, sc.check) {
		return fmt.Errorf("twill doctor: exit %d, want 1 and %s:\n%s", r.code, sc.check, r.out)
	}
	r = tw(t, 2*time.Minute, "trace", "--lab", "--name", labName, "--from", sc.from, "--to", sc.to)
	if (sc.traceWant != "" && !strings.Contains(r.out, sc.traceWant)) || (sc.traceNot != "" && strings.Contains(r.out, sc.traceNot)) {
		return fmt.Errorf("twill trace --from %s --to %s: want %q and not %q in:\n%s", sc.from, sc.to, sc.traceWant, sc.traceNot, r.out)
	}
	fixed = true
	if r := tw(t, 2*time.Minute, "lab", "fix", "--name", labName, sc.id, "node1"); r.code != 0 {
		return fmt.Errorf("lab fix: exit %d:\n%s", r.code, r.out)
	}
	if err := sc.works(); err != nil {
		return fmt.Errorf("after lab fix %s: %w", sc.id, err)
	}
	return nil
}

// callByName runs the test server's client in pod (kubectl exec: the pod's
// own resolv.conf) against hostport: the name must resolve to exactly ip
// and the server's line must start with endpoint.
func callByName(t *testing.T, lab, pod, hostport, ip, endpoint string) error {
	t.Helper()
	r := kubectl(t, lab, "-n", "lab", "exec", pod, "--", image.TestServerPath, "--call", hostport, "--timeout", "10s")
	host, _, _ := net.SplitHostPort(hostport)
	want := host + " -> " + ip + ": " + endpoint
	if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.out), want) {
		return fmt.Errorf("kubectl exec %s -- %s --call %s: exit %d, want %q...:\n%s", pod, image.TestServerPath, hostport, r.code, want, r.out)
	}
	return nil
}

// kubectl runs kubectl with the lab's admin kubeconfig.
func kubectl(t *testing.T, lab string, args ...string) result {
	t.Helper()
	return tw(t, 4*time.Minute, append([]string{"lab", "exec", "--name", lab, "underlay", "--", "kubectl"}, args...)...)
}

// rollingUpdateUnderStream builds a second tag of twill's image (the same
// image, retagged as a release would), imports it into every node with
// `twill lab import-image`, and rolls the DaemonSet to it with kubectl set
// image while a TCP stream runs from node1-a to ip's echo port: the
// rollout must reach all nodes and the stream must see no reset.
func rollingUpdateUnderStream(t *testing.T, labName string, ip string, nodes int) error {
	t.Helper()
	ref, err := os.ReadFile(filepath.Join(repoBin, "image", "twill.ref"))
	if err != nil {
		return err
	}
	tag, err := name.NewTag(strings.TrimSpace(string(ref)))
	if err != nil {
		return err
	}
	next := tag.Repository.Tag(tag.TagStr() + "-next")
	img, err := tarball.ImageFromPath(filepath.Join(repoBin, "image", "twill.docker.tar"), &tag)
	if err != nil {
		return fmt.Errorf("read twill.docker.tar: %w", err)
	}
	archive := filepath.Join(t.TempDir(), "twill-next.docker.tar")
	if err := image.WriteDockerArchive(archive, next, img); err != nil {
		return err
	}
	if r := tw(t, 3*time.Minute, "lab", "import-image", "--name", labName, archive); r.code != 0 || strings.Count(r.out, next.Name()) != nodes {
		return fmt.Errorf("lab import-image: exit %d, want %s imported on %d nodes:\n%s", r.code, next.Name(), nodes, r.out)
	}
	// The stream runs until the rollout is done (however long that takes on
	// a loaded machine), then is stopped: it must have seen no reset.
	ctx, stopStream := context.WithCancel(context.Background())
	defer stopStream()
	streamDone := make(chan lab.StreamResult, 1)
	go func() {
		streamDone <- lab.Stream(ctx, labName+"-node1-a", ip+":8081", 10*time.Minute, 50*time.Millisecond)
	}()
	time.Sleep(2 * time.Second)
	if r := kubectl(t, labName, "-n", "kube-twill", "set", "image", "ds/twill", "twill="+next.Name(), "install-cni="+next.Name()); r.code != 0 {
		return fmt.Errorf("kubectl set image: exit %d: %s", r.code, r.out)
	}
	if r := kubectl(t, labName, "-n", "kube-twill", "rollout", "status", "ds/twill", "--timeout=5m"); r.code != 0 {
		return fmt.Errorf("the rollout did not finish: exit %d: %s", r.code, r.out)
	}
	time.Sleep(2 * time.Second)
	stopStream()
	sr := <-streamDone
	if sr.Reset || sr.RoundTrips == 0 || (sr.Err != "" && sr.Err != "interrupted") {
		return fmt.Errorf("stream node1-a -> %s:8081 across the rollout: %s", ip, sr)
	}
	r := kubectl(t, labName, "-n", "kube-twill", "get", "pods", "-l", "app=twill", "-o",
		`jsonpath={range .items[*]}{.spec.nodeName} {.spec.containers[0].image} {.status.containerStatuses[0].ready}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != nodes {
		return fmt.Errorf("twill pods after the rollout: exit %d, want %d:\n%s", r.code, nodes, r.out)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) != 3 || f[1] != next.Name() || f[2] != "true" {
			return fmt.Errorf("twill pod after the rollout: %q, want <node> %s true", l, next.Name())
		}
	}
	t.Logf("rolling update to %s: stream %d round trips in %s (slowest %s), no reset", next.Name(), sr.RoundTrips, sr.Took.Round(time.Second), sr.Longest.Round(time.Millisecond))
	return nil
}

// deleteAndUninstall removes twill as docs/kubernetes.md says: kubectl
// delete -f the manifest that was applied, then `twill uninstall --store
// kubernetes --flannel-subnet-env` on every node. Afterwards no node has
// twill's devices, rules, ipsets or files, and no Node carries its
// annotations.
func deleteAndUninstall(t *testing.T, labName string, st labState) error {
	t.Helper()
	manifest := filepath.Join("/run/twill-lab", labName, "twill.yaml")
	if r := kubectl(t, labName, "delete", "-f", manifest, "--wait=true", "--timeout=3m"); r.code != 0 {
		return fmt.Errorf("kubectl delete -f %s: exit %d: %s", manifest, r.code, r.out)
	}
	for _, n := range st.Nodes {
		r := tw(t, 2*time.Minute, "lab", "exec", "--name", labName, n.Name, "--", twill, "uninstall", "--store", "kubernetes", "--flannel-subnet-env", "--node", n.Name)
		if r.code != 0 {
			return fmt.Errorf("%s: twill uninstall: exit %d:\n%s", n.Name, r.code, r.out)
		}
		t.Logf("%s: twill uninstall:\n%s", n.Name, r.out)
		var left []string
		in := func(argv ...string) string {
			r := tw(t, time.Minute, append([]string{"lab", "exec", "--name", labName, n.Name, "--"}, argv...)...)
			if r.code != 0 {
				left = append(left, fmt.Sprintf("%s failed (exit %d): %s", strings.Join(argv, " "), r.code, r.out))
			}
			return r.out
		}
		for _, l := range strings.Split(in("ip", "-o", "link", "show"), "\n") {
			if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], "twill.1") || strings.HasPrefix(f[1], "cni0") || strings.HasPrefix(f[1], "veth")) {
				left = append(left, "link "+f[1])
			}
		}
		for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
			if o := in(save); strings.Contains(strings.ToLower(o), "twill") {
				left = append(left, save+" still holds twill rules")
			}
		}
		if o := in("nft", "list", "tables"); strings.Contains(o, "twill") {
			left = append(left, "nft tables: "+o)
		}
		if o := in("ipset", "list", "-n"); strings.Contains(o, "twill") {
			left = append(left, "ipsets: "+o)
		}
		for _, f := range []string{"etc/cni/net.d/10-twill.conflist", "opt/cni/bin/twill", "run/twill/subnet.env", "run/flannel/subnet.env", "var/lib/cni/networks/twill"} {
			if _, err := os.Lstat(filepath.Join(n.Root, f)); err == nil {
				left = append(left, "/"+f)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%s after uninstall: %s", n.Name, strings.Join(left, "; "))
		}
	}
	r := kubectl(t, labName, "get", "nodes", "-o", "jsonpath={.items[*].metadata.annotations}")
	if r.code != 0 || strings.Contains(r.out, "twill") {
		return fmt.Errorf("Node annotations after uninstall (exit %d): %s", r.code, r.out)
	}
	return nil
}

// call runs `twill lab call` from a node or pod and wants the reply to
// start with want (or contain it, for replies naming any pod).
func call(t *testing.T, lab, from, addr, want string) error {
	t.Helper()
	var last result
	for range 3 { // a fresh conntrack/ARP entry may cost the first SYN
		last = tw(t, 30*time.Second, "lab", "call", "--name", lab, from, addr, "--timeout", "3s")
		if last.code == 0 && strings.Contains(last.out, want) {
			return nil
		}
	}
	return fmt.Errorf("reply %q (exit %d), want it to contain %q", strings.TrimSpace(last.out), last.code, want)
}

// apiserverFromPod makes a TLS connection from inside the pod's namespace
// to 10.96.0.1:443, verified with the lab's CA, and asks /livez.
func apiserverFromPod(lab, podNS string) error {
	ca, err := os.ReadFile(filepath.Join("/run/twill-lab", lab, "kube", "ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	var conn net.Conn
	if err := nsrun.Do(podNS, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "10.96.0.1:443", 5*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "10.96.0.1"})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	fmt.Fprintf(tc, "GET /livez HTTP/1.1\r\nHost: 10.96.0.1\r\nConnection: close\r\n\r\n")
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 ") {
		return fmt.Errorf("not an HTTP answer: %q", line)
	}
	return nil
}

// loadState reads the lab's state file.
func loadState(t *testing.T, lab string) labState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/run/twill-lab", lab, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st labState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 {
		t.Fatalf("state.json has %d nodes, want 2", len(st.Nodes))
	}
	for _, n := range st.Nodes {
		if len(n.Pods) != 2 || n.Subnet == "" {
			t.Fatalf("state.json: node %s: subnet %q, %d pods, want a subnet and 2 pods", n.Name, n.Subnet, len(n.Pods))
		}
		for _, p := range n.Pods {
			if p.IP == "" {
				t.Fatalf("state.json: pod %s has no address", p.Name)
			}
		}
	}
	return st
}

// dump logs what a person needs to see why the cluster failed: pods,
// events, twill's agent logs, and the tail of every lab log.
func dump(t *testing.T, lab string) {
	t.Helper()
	for _, args := range [][]string{
		{"kubectl", "get", "nodes", "-o", "wide"},
		{"kubectl", "get", "pods", "-A", "-o", "wide"},
		{"kubectl", "get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"kubectl", "-n", "kube-twill", "logs", "-l", "app=twill", "--all-containers", "--prefix", "--tail", "60"},
		{"kubectl", "-n", "kube-system", "logs", "-l", "k8s-app=kube-dns", "--prefix", "--tail", "30"},
	} {
		r := tw(t, 30*time.Second, append([]string{"lab", "exec", "--name", lab, "underlay", "--"}, args...)...)
		t.Logf("$ %s\n%s", strings.Join(args, " "), r.out)
	}
	logs, _ := filepath.Glob(filepath.Join("/run/twill-lab", lab, "logs", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		t.Logf("== %s (last lines)\n%s", l, strings.Join(lines, "\n"))
	}
}

// down removes the lab and checks that nothing is left: no namespace, no
// cgroup, no state, no host-wide setting changed.
func down(t *testing.T, lab string, before map[string]string) {
	t.Helper()
	if r := tw(t, 3*time.Minute, "lab", "down", "--name", lab); r.code != 0 {
		t.Errorf("lab down: exit %d:\n%s", r.code, r.out)
	}
	nss, _ := filepath.Glob("/run/netns/" + lab + "-*")
	if len(nss) > 0 {
		t.Errorf("lab down left namespaces %v", nss)
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/twill-lab-" + lab)
	if len(cgs) > 0 {
		t.Errorf("lab down left cgroups %v", cgs)
	}
	if _, err := os.Stat(filepath.Join("/run/twill-lab", lab)); err == nil {
		t.Errorf("lab down left /run/twill-lab/%s", lab)
	}
	if out, _ := exec.Command("pgrep", "-f", "/run/twill-lab/"+lab+"/").Output(); len(out) > 0 {
		t.Errorf("lab down left processes %s", strings.Fields(string(out)))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "/run/twill-lab/"+lab+"/") || strings.Contains(l, "/run/netns/"+lab+"-") {
				t.Errorf("lab down left a mount: %s", l)
			}
		}
	}
	after := readSettings()
	for _, p := range hostSettings {
		if before[p] != after[p] {
			t.Errorf("host setting %s changed: %q -> %q", p, before[p], after[p])
		}
	}
}
