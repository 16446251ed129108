package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	labpkg "github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/nsrun"
)

// The hostile suite (issue 10): pods, store data and outages an attacker or
// an unlucky operator brings. Each runs on the lab TestMain built, with
// either store (TWILL_E2E_STORE).

// agentGet fetches a path of a node agent's health server, from inside the
// node's namespace.
func agentGet(t *testing.T, node, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return nsrun.Dialer(nodeNS(labName, node))(ctx, addr)
		},
	}}
	resp, err := c.Get("http://127.0.0.1:9473" + path)
	if err != nil {
		t.Fatalf("%s %s: %v", node, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// counter reads the packet counter of a chain of table inet twill on node1.
func podGuardDrops(t *testing.T) int {
	t.Helper()
	out := inNode(t, "node1", "nft", "list", "chain", "inet", "twill", "podguard")
	m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no pod guard counter on node1:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A pod sends forged vxlan datagrams to another node's underlay address:
// its own node drops them before the masquerade (pod guard counter), none
// reaches the target node's wire (tcpdump on its eth0 sees the marked
// datagrams of a control sender, the node itself, but not the pod's), and
// pod traffic is unaffected.
func TestHostilePodCannotInjectVxlan(t *testing.T) {
	st := status(t, labName)
	podNS := st.Nodes[0].Pods[0].Namespace
	target := st.Nodes[1].IP + ":8472"
	before := podGuardDrops(t)
	const marker = "TWILL-FORGED-VXLAN-FRAME"
	pkt := append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, []byte(marker)...)
	pkt = append(pkt, make([]byte, 40)...)
	send := func(ns string, tag byte) error {
		return nsrun.Do(ns, func() error {
			c, err := net.Dial("udp4", target)
			if err != nil {
				return err
			}
			defer c.Close()
			p := append(slices.Clone(pkt), tag)
			for range 5 {
				if _, err := c.Write(p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	wire := captureUDP(t, st.Nodes[1].Namespace, "eth0", 8472, func() {
		if err := send(podNS, 'P'); err != nil {
			t.Fatal(err)
		}
		// The control: the node itself (an underlay host) sends the same
		// datagrams; they do reach node2's wire (its vxlan guard drops them
		// after the capture point).
		if err := send(st.Nodes[0].Namespace, 'N'); err != nil {
			t.Fatal(err)
		}
	})
	// tcpdump -A prints each payload byte, non-printable ones as '.'.
	seen := func(tag string) bool { return strings.Contains(wire, marker+strings.Repeat(".", 40)+tag) }
	if !seen("N") {
		t.Fatalf("tcpdump on node2 saw none of the control datagrams from node1 itself: the capture does not work\n%s", wire)
	}
	if seen("P") {
		t.Fatalf("a pod's forged vxlan datagram reached node2's wire:\n%s", wire)
	}
	within(t, 3*time.Second, "node1 drops its pod's vxlan datagrams", func() error {
		if got := podGuardDrops(t) - before; got != 5 {
			return fmt.Errorf("pod guard counted %d of 5", got)
		}
		return nil
	})
	if ok, out := call(t, "node1-a", resolve(t, "node2-a:8080")); !ok {
		t.Fatalf("pod traffic after the injection: %s", out)
	}
}

// captureUDP runs tcpdump on dev in namespace ns for UDP to port while
// during runs, and returns what it printed (payloads as ASCII, -A). The
// capture is bounded: at most 100 packets and 10 s.
func captureUDP(t *testing.T, ns, dev string, port int, during func()) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-A", "-c", "100", "-i", dev, "udp", "dst", "port", strconv.Itoa(port))
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v (is the tcpdump package installed? scripts/setup.sh installs it)", err)
	}
	// tcpdump says "listening on" once the capture runs.
	buf := make([]byte, 4096)
	var head strings.Builder
	for !strings.Contains(head.String(), "listening on") {
		n, err := stderr.Read(buf)
		head.Write(buf[:n])
		if err != nil {
			t.Fatalf("tcpdump did not start: %v\n%s", err, head.String())
		}
	}
	go io.Copy(io.Discard, stderr)
	during()
	time.Sleep(500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	return out.String()
}

// etcdClient connects to the lab's etcd from its underlay namespace.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsrun.Do(labName+"-underlay", func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{labpkg.EtcdEndpoint}, DialTimeout: 3 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kubectl runs the lab's kubectl as admin inside node1.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv("TWILL_KUBECTL_BIN")
	return inNode(t, "node1", append([]string{bin}, args...)...)
}

// badLeases writes hostile leases (etcd keys or Node objects) and returns
// the rejections by reason every node must count, and an undo.
func badLeases(t *testing.T) (map[string]int, func()) {
	t.Helper()
	if store == "kubernetes" {
		var docs []string
		node := func(name, cidr, ip, mac string) {
			docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %s
  annotations:
    twill.io/public-ip: %q
    twill.io/backend-type: vxlan
    twill.io/backend-data: '{"VtepMAC":"%s"}'
spec:
  podCIDR: %s
`, name, ip, mac, cidr))
		}
		st := status(t, labName)
		node("evil-mac", "10.244.50.0/24", "192.168.77.50", "ff:ff:ff:ff:ff:ff")
		node("evil-mcast", "10.244.51.0/24", "224.0.0.1", "02:00:00:00:00:51")
		node("evil-dup", st.Nodes[1].Subnet, "192.168.77.52", "02:00:00:00:00:52") // node2's podCIDR, newer
		f := filepath.Join(t.TempDir(), "evil.yaml")
		if err := os.WriteFile(f, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "create", "-f", f)
		return map[string]int{"vtep-mac": 1, "public-ip": 1, "conflict": 1}, func() {
			kubectl(t, "delete", "node", "evil-mac", "evil-mcast", "evil-dup")
		}
	}
	c := etcdClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	val := func(ip, mac string) string {
		return fmt.Sprintf(`{"PublicIP":%q,"BackendType":"vxlan","BackendData":{"VtepMAC":%q},"Node":"evil"}`, ip, mac)
	}
	keys := map[string]string{
		"10.244.2.5-24":  val("192.168.77.50", "02:00:00:00:00:50"), // host bits
		"10.244.50.0-24": val("192.168.77.51", "ff:ff:ff:ff:ff:ff"), // broadcast MAC
		"10.244.51.0-24": val("224.0.0.1", "02:00:00:00:00:52"),     // multicast underlay
		"10.244.52.0-24": `{"PublicIP":"192.168.77.53","Node":"` + strings.Repeat("x", 1<<20) + `"}`,
	}
	for k, v := range keys {
		if _, err := c.Put(ctx, lease.SubnetsPrefix(lease.DefaultPrefix)+k, v); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]int{"subnet": 1, "vtep-mac": 1, "public-ip": 1, "malformed": 1}, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for k := range keys {
			c.Delete(ctx, lease.SubnetsPrefix(lease.DefaultPrefix)+k)
		}
	}
}

// Bad leases are rejected with their reason on every node, pod traffic
// among the good nodes goes on without a failed call, and no /healthz
// flips.
func TestHostileLeasesAreRejected(t *testing.T) {
	want, undo := badLeases(t)
	defer undo()
	st := status(t, labName)
	for _, n := range st.Nodes {
		within(t, 15*time.Second, n.Name+" rejects every bad lease", func() error {
			for reason, c := range want {
				if got := metric(t, labName, n.Name, `twill_peers_rejected{reason="`+reason+`"}`); got != c {
					return fmt.Errorf("twill_peers_rejected{reason=%q} = %d, want %d", reason, got, c)
				}
			}
			return nil
		})
	}
	for i := range 10 {
		for _, pair := range [][2]string{{"node1-a", "node2-a:8080"}, {"node2-b", "node3-a:8080"}, {"node3-b", "node1-b:8080"}} {
			if ok, out := call(t, pair[0], resolve(t, pair[1])); !ok {
				t.Fatalf("round %d: %s -> %s with bad leases in the store: %s", i, pair[0], pair[1], out)
			}
		}
		for _, n := range st.Nodes {
			if code, body := agentGet(t, n.Name, "/healthz"); code != 200 {
				t.Fatalf("%s /healthz %d %s with bad leases in the store", n.Name, code, body)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, n := range st.Nodes {
		if e := inNode(t, n.Name, "bridge", "fdb", "show", "dev", "twill.1"); strings.Contains(e, "224.0.0.1") || strings.Contains(e, "ff:ff:ff:ff:ff:ff dst") {
			t.Errorf("%s programmed a rejected lease:\n%s", n.Name, e)
		}
	}
}

// node2's own lease deleted from the store comes back within seconds.
func TestHostileOwnLeaseDeletedComesBack(t *testing.T) {
	st := status(t, labName)
	n2 := st.Nodes[1]
	before := metric(t, labName, n2.Name, "twill_lease_lost_total")
	if store == "kubernetes" {
		kubectl(t, "annotate", "node", n2.Name, "twill.io/public-ip-")
		within(t, 15*time.Second, "node2's annotation back", func() error {
			if out := kubectl(t, "get", "node", n2.Name, "-o", "jsonpath={.metadata.annotations}"); !strings.Contains(out, "twill.io/public-ip") {
				return fmt.Errorf("annotations %s", out)
			}
			return nil
		})
	} else {
		c := etcdClient(t)
		key := lease.SubnetsPrefix(lease.DefaultPrefix) + strings.Replace(n2.Subnet, "/", "-", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if resp, err := c.Delete(ctx, key); err != nil || resp.Deleted != 1 {
			t.Fatalf("delete %s: %v (deleted %v)", key, err, resp)
		}
		within(t, 15*time.Second, "node2's lease back", func() error {
			resp, err := c.Get(ctx, key)
			if err != nil || len(resp.Kvs) == 0 {
				return fmt.Errorf("%s not there (%v)", key, err)
			}
			return nil
		})
	}
	// Counted when the agent takes the keep-alive's report, which can come
	// a moment after the patch is visible (in Kubernetes mode the node stays
	// a peer through Flannel's annotation set meanwhile).
	within(t, 10*time.Second, "twill_lease_lost_total counts it", func() error {
		if got := metric(t, labName, n2.Name, "twill_lease_lost_total"); got <= before {
			return fmt.Errorf("twill_lease_lost_total %d -> %d", before, got)
		}
		return nil
	})
	within(t, 15*time.Second, "node1 reaches node2's pods again", func() error {
		if ok, out := call(t, "node1-a", resolve(t, "node2-a:8080")); !ok {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
}

// etcd down: the agents say so once (metrics, /readyz store field) while
// staying ready, and say when it is back.
func TestHostileStoreOutageIsVisible(t *testing.T) {
	lab(t, "etcd", "stop")
	started := false
	defer func() {
		if !started {
			lab(t, "etcd", "start")
		}
	}()
	within(t, 20*time.Second, "node1 reports the outage", func() error {
		code, body := agentGet(t, "node1", "/readyz")
		if code != 200 || !strings.Contains(body, `"store":"degraded"`) {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		if up := metric(t, labName, "node1", "twill_store_up"); up != 0 {
			return fmt.Errorf("twill_store_up %d", up)
		}
		return nil
	})
	if metric(t, labName, "node1", "twill_store_errors_total") < 1 {
		t.Error("twill_store_errors_total did not count the outage")
	}
	if code, body := agentGet(t, "node1", "/healthz"); code != 200 {
		t.Errorf("/healthz during the outage: %d %s", code, body)
	}
	lab(t, "etcd", "start")
	started = true
	within(t, 60*time.Second, "node1 sees the store back", func() error {
		if _, body := agentGet(t, "node1", "/readyz"); !strings.Contains(body, `"store":"ok"`) {
			return fmt.Errorf("/readyz %s", body)
		}
		if up := metric(t, labName, "node1", "twill_store_up"); up != 1 {
			return fmt.Errorf("twill_store_up %d", up)
		}
		return nil
	})
}

// Health endpoints answer 405 to anything but GET and HEAD.
func TestHostileHealthEndpointsAreReadOnly(t *testing.T) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return nsrun.Dialer(nodeNS(labName, "node1"))(ctx, addr)
		},
	}}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(m, "http://127.0.0.1:9473"+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", m, path, resp.StatusCode)
			}
		}
	}
}
