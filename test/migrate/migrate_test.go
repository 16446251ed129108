package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/migrate"
)

// twill and twillCNI are the binaries under test, built by TestMain.
var twill, twillCNI string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "test/migrate: these tests build network namespaces and need root; run `make test` as root (CI does)")
		return 1
	}
	dir, err := os.MkdirTemp("", "twill-migrate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	twill, twillCNI = filepath.Join(dir, "twill"), filepath.Join(dir, "twill-cni")
	for bin, pkg := range map[string]string{twill: "../../cmd/twill", twillCNI: "../../cmd/twill-cni"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "test/migrate: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	// etcd, flanneld (Flannel's CNI plugin, bridge, host-local and portmap
	// in cni/ beside it), kube-apiserver and kubectl come from
	// scripts/setup.sh.
	for env, name := range map[string]string{"TWILL_ETCD_BIN": "etcd", "TWILL_FLANNELD_BIN": "flanneld",
		"TWILL_KUBE_APISERVER_BIN": "kube-apiserver", "TWILL_KUBECTL_BIN": "kubectl"} {
		if os.Getenv(env) != "" {
			continue
		}
		p, _ := filepath.Abs("../../bin/" + name)
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "test/migrate: bin/%s missing: run `make tools` (or `make test`, which does)\n", name)
			return 1
		}
		os.Setenv(env, p)
	}
	return m.Run()
}

// tw runs the twill binary (bounded to 2 minutes) and returns its combined
// output and exit code.
func tw(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, twill, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return buf.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("twill %s: %v", strings.Join(args, " "), err)
	}
	return buf.String(), 0
}

// in runs argv inside a node or pod of lab name and requires success.
func in(t *testing.T, name, target string, argv ...string) string {
	t.Helper()
	out, code := tw(t, append([]string{"lab", "exec", target, "--name", name, "--"}, argv...)...)
	if code != 0 {
		t.Fatalf("in %s: %s: exit %d\n%s", target, strings.Join(argv, " "), code, out)
	}
	return out
}

func load(t *testing.T, name string) *lab.State {
	t.Helper()
	st, err := lab.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMigrateVXLAN: a 3-node lab all on flanneld (vxlan, etcd store), long
// TCP streams between pods of every pair of nodes; the nodes move to twill
// one at a time (a mixed cluster in between), then one goes back to Flannel.
func TestMigrateVXLAN(t *testing.T) { migrateRoundTrip(t, lab.BackendVXLAN, lab.StoreEtcd, "v") }

// TestMigrateHostGW is the same with the host-gw backend.
func TestMigrateHostGW(t *testing.T) { migrateRoundTrip(t, lab.BackendHostGW, lab.StoreEtcd, "g") }

// TestMigrateVXLANKube is TestMigrateVXLAN on the Kubernetes store:
// flanneld --kube-subnet-mgr and `twill agent --store kubernetes` on the
// lab's Node objects (podCIDR, annotations).
func TestMigrateVXLANKube(t *testing.T) {
	migrateRoundTrip(t, lab.BackendVXLAN, lab.StoreKubernetes, "vk")
}

// TestMigrateHostGWKube is TestMigrateHostGW on the Kubernetes store.
func TestMigrateHostGWKube(t *testing.T) {
	migrateRoundTrip(t, lab.BackendHostGW, lab.StoreKubernetes, "gk")
}

func migrateRoundTrip(t *testing.T, backend, store, suffix string) {
	name := fmt.Sprintf("twmig%d%s", os.Getpid()%10000, suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	_ = lab.Down(context.Background(), name, nil)
	t.Cleanup(func() {
		if err := lab.Down(context.Background(), name, nil); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	st, err := lab.Up(ctx, lab.Config{Name: name, Nodes: 3, Pods: 2, Backend: backend, Agent: true, Store: store,
		Self: twill, CNIBin: twillCNI, FlannelNodes: 3})
	if err != nil {
		t.Fatalf("lab up with 3 Flannel nodes: %v", err)
	}
	subnets := map[string]string{}
	podIPs := map[string]string{}
	for _, n := range st.Nodes {
		subnets[n.IP] = n.Subnet
		for _, p := range n.Pods {
			podIPs[p.Name] = p.IP
		}
	}
	checkLeases(t, name, subnets, nil)
	everyPairTalks(t, name)
	doctorClean(t, name, st.Nodes[0].Name) // on a Flannel node, as kube-flannel lays it out

	// Long streams between pods of every ordered pair of nodes, until the end.
	sctx, stopStreams := context.WithCancel(ctx)
	streamsStart := time.Now()
	var wg sync.WaitGroup
	results := make([]lab.StreamResult, 0, 6)
	var mu sync.Mutex
	for _, a := range st.Nodes {
		for _, b := range st.Nodes {
			if a.Index == b.Index {
				continue
			}
			from, to := a.Pods[0].Namespace, fmt.Sprintf("%s:%d", b.Pods[0].IP, lab.EchoPort)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A round trip may wait for flanneld at to-flannel (see
				// docs/migrate.md); a reset or a longer stall fails.
				r := lab.StreamWithin(sctx, from, to, 10*time.Minute, 100*time.Millisecond, 20*time.Second)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}()
		}
	}
	streamsDone := false
	finishStreams := func() {
		if streamsDone {
			return
		}
		streamsDone = true
		stopStreams()
		wg.Wait()
	}
	defer finishStreams()
	time.Sleep(time.Second) // every stream is connected and running

	refusedWhileFlanneldRuns(t, name, st.Nodes[0], backend)

	twillNodes := map[string]bool{}
	for i, n := range st.Nodes {
		// node1: migrate deletes flannel.1; the others leave it to the
		// agent (--leave-device, --take-over-flannel-device), the shorter gap.
		var extra []string
		if i > 0 {
			extra = []string{"--leave-device"}
		}
		t.Logf("%s: from-flannel at %s of the streams", n.Name, time.Since(streamsStart).Round(100*time.Millisecond))
		rep := switchNode(ctx, t, name, n.Name, migrate.FromFlannel, extra...)
		t.Logf("%s: twill ready at %s of the streams", n.Name, time.Since(streamsStart).Round(100*time.Millisecond))
		twillNodes[n.Name] = true
		// The plan kept the pods' allocations and the subnet.
		for _, p := range n.Pods {
			if !contains(rep.Allocations, p.IP) {
				t.Errorf("%s: the plan's allocations %v miss pod %s %s", n.Name, rep.Allocations, p.Name, p.IP)
			}
		}
		if !strings.HasPrefix(rep.Subnet, strings.TrimSuffix(n.Subnet, "0/24")) {
			t.Errorf("%s: plan subnet %s, want %s", n.Name, rep.Subnet, n.Subnet)
		}
		noFlannelLeft(t, name, n.Name, backend)
		checkLeases(t, name, subnets, twillNodes)
		doctorClean(t, name, n.Name)
		// A new pod never gets an address a running pod has.
		p, err := lab.AddPod(ctx, name, n.Name)
		if err != nil {
			t.Fatalf("new pod on migrated %s: %v", n.Name, err)
		}
		for other, ip := range podIPs {
			if ip == p.IP {
				t.Fatalf("new pod %s on %s got %s, the address of running pod %s", p.Name, n.Name, p.IP, other)
			}
		}
		if !netip.MustParsePrefix(n.Subnet).Contains(netip.MustParseAddr(p.IP)) {
			t.Fatalf("new pod %s got %s, outside %s's subnet %s", p.Name, p.IP, n.Name, n.Subnet)
		}
		podIPs[p.Name] = p.IP
		// The mixed cluster (and at the end the twill one) connects every pair.
		everyPairTalks(t, name)
		if i == 1 {
			// Two twill nodes and one Flannel node: the whole suite, and
			// doctor clean on every node, the Flannel one too.
			connectivitySuite(t, name)
			for _, m := range st.Nodes {
				if twillNodes[m.Name] {
					doctorClean(t, name, m.Name)
				} else {
					doctorNoErrors(t, name, m.Name)
				}
			}
		}
	}

	// The way back for one node.
	back := st.Nodes[2].Name
	t.Logf("%s: to-flannel at %s of the streams", back, time.Since(streamsStart).Round(100*time.Millisecond))
	switchNode(ctx, t, name, back, migrate.ToFlannel)
	t.Logf("%s: flanneld ready at %s of the streams", back, time.Since(streamsStart).Round(100*time.Millisecond))
	delete(twillNodes, back)
	links := in(t, name, back, "ip", "-o", "link")
	if strings.Contains(links, "twill.") || (backend == lab.BackendVXLAN && !strings.Contains(links, "flannel.1")) {
		t.Errorf("%s after to-flannel: links\n%s", back, links)
	}
	if rules := in(t, name, back, "iptables-nft-save"); strings.Contains(rules, "TWILL") {
		t.Errorf("%s after to-flannel keeps twill's rules:\n%s", back, rules)
	}
	checkLeases(t, name, subnets, twillNodes)
	everyPairTalks(t, name)

	// Every pod still has its address, on its own eth0, and no address twice.
	seen := map[string]string{}
	for _, n := range load(t, name).Nodes {
		for _, p := range n.Pods {
			if want, ok := podIPs[p.Name]; !ok || want != p.IP {
				t.Errorf("pod %s: address %s, want %s", p.Name, p.IP, want)
			}
			if o, dup := seen[p.IP]; dup {
				t.Errorf("pods %s and %s both have %s", o, p.Name, p.IP)
			}
			seen[p.IP] = p.Name
			if out := in(t, name, p.Name, "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, " "+p.IP+"/") {
				t.Errorf("pod %s lost its address %s:\n%s", p.Name, p.IP, out)
			}
		}
	}

	finishStreams()
	if len(results) != 6 {
		t.Fatalf("%d stream results, want 6", len(results))
	}
	for _, r := range results {
		t.Logf("stream %s -> %s: %d round trips in %s over one connection (slowest %s), reset: %v", r.From, r.To, r.RoundTrips, r.Took.Round(10*time.Millisecond), r.Longest.Round(time.Millisecond), r.Reset)
		if r.Reset || r.RoundTrips == 0 || (r.Err != "" && r.Err != "interrupted") {
			t.Errorf("stream %s -> %s did not survive the migrations: %s", r.From, r.To, r)
		}
	}
}

// refusedWhileFlanneldRuns: migrate on a node whose flanneld still runs
// says so, exits 1 and changes nothing.
func refusedWhileFlanneldRuns(t *testing.T, name string, n lab.Node, backend string) {
	t.Helper()
	// flanneld reports ready once its subnet file is written; its masquerade
	// rules may come a moment later (at its first iptables resync when the
	// bootstrap raced). Compare against the node as Flannel left it.
	nat := ""
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		nat = in(t, name, n.Name, "iptables-nft-save", "-t", "nat")
		if countLines(nat, "-A FLANNEL-POSTRTG") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: flanneld wrote no masquerade rules within 30 s:\n%s", n.Name, nat)
		}
	}
	before := in(t, name, n.Name, "ip", "-o", "link") + nat
	env, _ := os.ReadFile(filepath.Join(n.Root, "run/flannel/subnet.env"))
	out, code := tw(t, append([]string{"migrate", migrate.FromFlannel, "--netns", n.Namespace, "--root", n.Root, "-o", "json"}, storeArgs(t, name, n)...)...)
	var rep migrateReport
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || !strings.Contains(rep.Error, "flanneld (pid") || len(rep.Done) != 0 {
		t.Fatalf("migrate with flanneld running: exit %d, want 1 and an error naming flanneld:\n%s", code, out)
	}
	after := in(t, name, n.Name, "ip", "-o", "link") + in(t, name, n.Name, "iptables-nft-save", "-t", "nat")
	env2, _ := os.ReadFile(filepath.Join(n.Root, "run/flannel/subnet.env"))
	if linkNames(before) != linkNames(after) || countLines(before, "FLANNEL") != countLines(after, "FLANNEL") || string(env) != string(env2) || len(env) == 0 {
		t.Fatalf("a refused migrate changed the node:\nbefore %s\nafter %s", before, after)
	}
	if out, code := tw(t, "migrate", migrate.FromFlannel, "--netns", n.Namespace, "-o", "yaml"); code != 2 || !strings.Contains(out, "--output") {
		t.Errorf("migrate -o yaml: exit %d, want 2 naming --output:\n%s", code, out)
	}
}

// linkNames are the names of `ip -o link` lines, in order.
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasSuffix(f[0], ":") {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

func countLines(out, sub string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// migrateReport is the part of `twill migrate -o json` the test reads.
type migrateReport struct {
	Subnet      string   `json:"subnet"`
	Allocations []string `json:"allocations"`
	Done        []string `json:"done"`
	Error       string   `json:"error"`
}

// switchNode moves node from one daemon to the other: stop it, switch the
// lab's record, migrate, start the other (which waits until it is ready).
func switchNode(ctx context.Context, t *testing.T, name, node, dir string, extra ...string) migrateReport {
	t.Helper()
	for _, action := range []string{lab.AgentStop, lab.AgentSwitch} {
		if err := lab.AgentControl(ctx, name, node, action, nil); err != nil {
			t.Fatalf("%s: lab agent %s: %v", node, action, err)
		}
	}
	n := findNode(t, name, node)
	// A dry run changes nothing and plans what the real run does.
	args := append(append([]string{"migrate", dir, "--netns", n.Namespace, "--root", n.Root, "-o", "json"}, storeArgs(t, name, n)...), extra...)
	dry, code := tw(t, append(args, "--dry-run")...)
	var plan migrateReport
	if code != 0 || json.Unmarshal([]byte(dry), &plan) != nil || len(plan.Done) != 0 {
		t.Fatalf("%s: migrate %s --dry-run: exit %d\n%s", node, dir, code, dry)
	}
	out, code := tw(t, args...)
	var rep migrateReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Error != "" || len(rep.Done) == 0 {
		t.Fatalf("%s: migrate %s: exit %d\n%s", node, dir, code, out)
	}
	if len(rep.Done) != countSteps(dry) {
		t.Errorf("%s: migrate %s did %d steps, the dry run planned %d", node, dir, len(rep.Done), countSteps(dry))
	}
	if err := lab.AgentControl(ctx, name, node, lab.AgentStart, nil); err != nil {
		t.Fatalf("%s: start the new daemon after migrate %s: %v", node, dir, err)
	}
	return rep
}

// storeArgs are migrate's flags for the lab's store: with the Kubernetes
// store the node's kubeconfig and Node name.
func storeArgs(t *testing.T, name string, n lab.Node) []string {
	t.Helper()
	if !load(t, name).KubeMode() {
		return nil
	}
	return []string{"--store", lab.StoreKubernetes, "--kubeconfig", filepath.Join(n.Root, "etc/twill/kubeconfig"), "--node", n.Name}
}

// countSteps counts the steps of a JSON plan.
func countSteps(js string) int {
	var p struct {
		Steps []json.RawMessage `json:"steps"`
	}
	_ = json.Unmarshal([]byte(js), &p)
	return len(p.Steps)
}

func findNode(t *testing.T, name, node string) lab.Node {
	t.Helper()
	for _, n := range load(t, name).Nodes {
		if n.Name == node {
			return n
		}
	}
	t.Fatalf("lab %s has no node %s", name, node)
	return lab.Node{}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// checkLeases requires exactly one lease per node, each with the node's
// subnet from the start (by its PublicIP), named by its node on twill nodes
// and by none on Flannel nodes: no stale lease, no subnet moved.
func checkLeases(t *testing.T, name string, subnets map[string]string, twillNodes map[string]bool) {
	t.Helper()
	// The new daemon writes its lease before it reports ready: one read.
	ls, err := lab.Leases(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != len(subnets) {
		t.Fatalf("%d leases, want %d (one per node): %v", len(ls), len(subnets), ls)
	}
	byIP := map[string]string{}
	for _, n := range load(t, name).Nodes {
		byIP[n.IP] = n.Name
	}
	kubeMode := load(t, name).KubeMode()
	for _, l := range ls {
		ip := l.Attrs.PublicIP.String()
		if subnets[ip] != l.Subnet.String() {
			t.Errorf("lease %s of %s: want subnet %s (unchanged)", l.Subnet, ip, subnets[ip])
		}
		want := ""
		if twillNodes[byIP[ip]] || kubeMode { // a Node's lease is named by its Node
			want = byIP[ip]
		}
		if l.Attrs.Node != want {
			t.Errorf("lease %s of %s names node %q, want %q", l.Subnet, ip, l.Attrs.Node, want)
		}
	}
	if !kubeMode {
		return
	}
	// On the API: a twill node publishes both annotation sets, a Flannel
	// node Flannel's alone (nothing of twill's left after to-flannel).
	nodes, err := lab.KubeNodes(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		twillSet := kube.TwillKeys(n.Annotations)
		if twillNodes[n.Name] && len(twillSet) == 0 {
			t.Errorf("twill node %s: its Node carries no twill.io annotations: %v", n.Name, n.Annotations)
		}
		if !twillNodes[n.Name] && len(twillSet) > 0 {
			t.Errorf("Flannel node %s: its Node still carries twill's %v: %v", n.Name, twillSet, n.Annotations)
		}
		if n.Annotations[kube.FlannelAnnotationKubeSubnetManager] != "true" || n.Annotations[kube.FlannelAnnotationPublicIP] == "" {
			t.Errorf("node %s: its Node lacks Flannel's annotations (flanneld on the other nodes ignores it): %v", n.Name, n.Annotations)
		}
	}
}

// noFlannelLeft requires that nothing of Flannel is left on node.
func noFlannelLeft(t *testing.T, name, node, backend string) {
	t.Helper()
	n := findNode(t, name, node)
	if links := in(t, name, node, "ip", "-o", "link"); strings.Contains(links, "flannel.") {
		t.Errorf("%s: a flannel device is left:\n%s", node, links)
	} else if backend == lab.BackendVXLAN && !strings.Contains(links, "twill.1") {
		t.Errorf("%s: no twill.1 after the migration:\n%s", node, links)
	}
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		if rules := in(t, name, node, save); strings.Contains(rules, "FLANNEL") {
			t.Errorf("%s: %s shows Flannel's rules:\n%s", node, save, rules)
		}
	}
	for _, f := range []string{"run/flannel/subnet.env", "etc/cni/net.d/" + migrate.FlannelConflist} {
		if _, err := os.Stat(filepath.Join(n.Root, f)); err == nil {
			t.Errorf("%s: /%s is left", node, f)
		}
	}
}

// doctorClean requires `twill doctor` to find nothing on node, with every
// check run (the leases read from the lab's etcd under its prefix).
func doctorClean(t *testing.T, name, node string) {
	t.Helper()
	out, code := tw(t, "lab", "exec", node, "--name", name, "--", twill, "doctor")
	if code != 0 || !strings.Contains(out, "no problems found") || strings.Contains(out, "Not checked") {
		t.Errorf("doctor on %s: exit %d\n%s", node, code, out)
	}
}

// doctorNoErrors requires `twill doctor` on a Flannel node of a mixed
// cluster to report no error, with every check run. Warnings are logged:
// flanneld keeps the FDB entry of a peer's old VTEP MAC when the peer moves
// to twill (a new MAC), which doctor rightly calls not desired (TW042).
func doctorNoErrors(t *testing.T, name, node string) {
	t.Helper()
	out, code := tw(t, "lab", "exec", node, "--name", name, "--", twill, "doctor")
	if code != 0 || strings.Contains(out, "[ERROR") || strings.Contains(out, "Not checked") {
		t.Errorf("doctor on Flannel node %s: exit %d\n%s", node, code, out)
		return
	}
	if !strings.Contains(out, "no problems found") {
		t.Logf("doctor on Flannel node %s: no errors; warnings:\n%s", node, out)
	}
}

// connectivitySuite requires every pod to reach every other pod (same node
// and across nodes), every node to reach every pod, and every pod's
// traffic to the outside to leave with its node's address (masquerade).
func connectivitySuite(t *testing.T, name string) {
	t.Helper()
	st := load(t, name)
	ctx := context.Background()
	for _, a := range st.Nodes {
		for _, p := range a.Pods {
			for _, b := range st.Nodes {
				for _, q := range b.Pods {
					if p.Name == q.Name {
						continue
					}
					if out, err := lab.Call(ctx, p.Namespace, fmt.Sprintf("%s:%d", q.IP, lab.ServerPort), 3*time.Second, false); err != nil || !strings.HasPrefix(out, q.Name+" "+p.IP+":") {
						t.Errorf("pod %s -> pod %s (%s): %q, %v (want the pod's own address, no NAT)", p.Name, q.Name, q.IP, out, err)
					}
				}
			}
		}
		for _, b := range st.Nodes {
			for _, q := range b.Pods {
				if _, err := lab.Call(ctx, a.Namespace, fmt.Sprintf("%s:%d", q.IP, lab.ServerPort), 3*time.Second, false); err != nil {
					t.Errorf("node %s -> pod %s (%s): %v", a.Name, q.Name, q.IP, err)
				}
			}
		}
	}
	stop, err := lab.OutsideServer(name, 9999)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	outside := lab.UnderlayGateway.String() + ":9999"
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			out, err := lab.Call(ctx, p.Namespace, outside, 3*time.Second, false)
			if err != nil || !strings.HasPrefix(out, "outside "+n.IP+":") {
				t.Errorf("pod %s -> outside %s: %q, %v (want it masqueraded to %s's %s)", p.Name, outside, out, err, n.Name, n.IP)
			}
		}
	}
}

// everyPairTalks requires every pod to reach every pod of the other nodes.
func everyPairTalks(t *testing.T, name string) {
	t.Helper()
	st := load(t, name)
	for _, a := range st.Nodes {
		for _, b := range st.Nodes {
			if a.Index == b.Index {
				continue
			}
			for _, p := range a.Pods {
				q := b.Pods[len(b.Pods)-1]
				if _, err := lab.Call(context.Background(), p.Namespace, fmt.Sprintf("%s:%d", q.IP, lab.ServerPort), 3*time.Second, false); err != nil {
					t.Errorf("%s -> %s (%s): %v", p.Name, q.Name, q.IP, err)
				}
			}
		}
	}
}
