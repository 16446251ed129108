package difftrace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/trace"
	"github.com/twillnet/twill/trace/tracelab"
)

// TestMain lets the test binary act as the lab's pod server.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "lab" && os.Args[2] == "serve" {
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		port := fs.Int("port", lab.ServerPort, "")
		name := fs.String("name", "", "")
		_ = fs.Parse(os.Args[3:])
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := lab.Serve(ctx, *name, *port); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// probeTimeout bounds each real probe; probes that must fail cost this.
const probeTimeout = 400 * time.Millisecond

const probesPerRound = 6

// TestDifferential builds labs (vxlan and host-gw, 2-3 nodes), draws random
// rule sets, overlay breaks and sysctls, and compares real TCP probes with
// the simulation: the kernel's outcome must be in the set of outcomes the
// simulator declares (random branches and every order of equal-priority
// base chains it cannot know); when it declares one outcome, that one.
// The IPv6 probes run the same way on dual-stack agent-mode labs (see
// upLab6, NewRound).
// TWILL_DIFFTRACE_CASES sets the number of probes per seed (default 504),
// TWILL_DIFFTRACE_CASES6 the IPv6 ones (default a third of that);
// TWILL_DIFFTRACE_SEED fixes the (first) random seed; TWILL_DIFFTRACE_SEEDS=N
// runs N seeds one after the other (`make difftrace-seeds`).
func TestDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it builds labs in network namespaces (run `sudo go test ./test/difftrace/`)")
	}
	cases := envInt(t, "TWILL_DIFFTRACE_CASES", 504)
	seeds := envInt(t, "TWILL_DIFFTRACE_SEEDS", 1)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TWILL_DIFFTRACE_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TWILL_DIFFTRACE_SEED=%q: want a number", v)
		}
		seed = n
	}
	var sumAgree, sumTotal int
	for i := 0; i < seeds; i++ {
		if i > 0 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			seed = binary.LittleEndian.Uint64(b[:]) >> 1
		}
		s := seed
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			agree, total := differential(t, s, cases)
			sumAgree += agree
			sumTotal += total
		})
	}
	if seeds > 1 {
		fmt.Printf("difftrace: %d seeds, agreement %d/%d = %.2f%%\n", seeds, sumAgree, sumTotal, 100*float64(sumAgree)/float64(max(1, sumTotal)))
	}
}

// envInt reads a positive number from the environment.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// differential runs one seed: cases IPv4 probes over static labs drawn
// from seed, then the IPv6 probes (TWILL_DIFFTRACE_CASES6, default a third
// of cases) over dual-stack agent-mode labs (see upLab6).
func differential(t *testing.T, seed uint64, cases int) (agree, total int) {
	cases6 := envInt(t, "TWILL_DIFFTRACE_CASES6", max(probesPerRound, cases/3))
	t.Logf("seed %d (set TWILL_DIFFTRACE_SEED=%d to repeat), %d IPv4 and %d IPv6 cases", seed, seed, cases, cases6)
	var acc tally
	acc.run(t, seed, IPv4, cases, 6, func(backend string, nodes int) (*lab.State, func(Round) error) {
		st := upLab(t, backend, nodes, 2)
		return st, func(rd Round) error { return apply(t, st, rd) }
	})
	acc.run(t, seed, IPv6, cases6, 2, func(backend string, nodes int) (*lab.State, func(Round) error) {
		st, routes := upLab6(t, backend, nodes, 2)
		return st, func(rd Round) error { return apply6(t, st, routes, rd) }
	})
	t.Logf("agreement: %d/%d = %.2f%% (%d probes with outcomes that depend on an unknown hook order; IPv6: %d/%d)",
		acc.agree, acc.total, 100*float64(acc.agree)/float64(acc.total), acc.ambiguous, acc.agree6, acc.total6)
	fmt.Printf("difftrace: agreement %d/%d = %.2f%% (seed %d; %d probes depend on an unknown hook order; IPv6 %d/%d)\n",
		acc.agree, acc.total, 100*float64(acc.agree)/float64(acc.total), seed, acc.ambiguous, acc.agree6, acc.total6)
	for i, d := range acc.disagreements {
		if i >= 10 {
			t.Errorf("... and %d more disagreements", len(acc.disagreements)-10)
			break
		}
		t.Error(d)
	}
	return acc.agree, acc.total
}

// tally counts one seed's probes.
type tally struct {
	agree, total, ambiguous int
	agree6, total6          int
	disagreements           []string
}

// run sends cases probes of family f over at most maxLabs labs (vxlan and
// host-gw in turn, 2 or 3 nodes), each built by up, which also returns how
// to reset a node set to a round.
func (acc *tally) run(t *testing.T, seed uint64, f Family, cases, maxLabs int, up func(backend string, nodes int) (*lab.State, func(Round) error)) {
	t.Helper()
	rounds := (cases + probesPerRound - 1) / probesPerRound
	labs := min(maxLabs, max(1, rounds/8))
	perLab := (rounds + labs - 1) / labs
	stream := uint64(0)
	if f.V6 {
		stream = 1 << 32 // IPv6 labs draw from their own streams
	}
	done := 0
	for li := 0; li < labs && done < rounds; li++ {
		r := mrand.New(mrand.NewPCG(seed, stream+uint64(li)))
		backend := []string{lab.BackendVXLAN, lab.BackendHostGW}[li%2]
		nodes := 2 + r.IntN(2)
		st, apply := up(backend, nodes)
		for ri := 0; ri < perLab && done < rounds; ri++ {
			done++
			rd := NewRound(r, st, f, probesPerRound)
			if err := apply(rd); err != nil {
				t.Fatalf("%s lab %d round %d: %v", f, li, ri, err)
			}
			w, _, err := tracelab.World(context.Background(), st.Name)
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			obs := probeAll(st, rd.Probes)
			for pi, p := range rd.Probes {
				acc.total++
				if f.V6 {
					acc.total6++
				}
				res, err := w.Trace(trace.Request{From: p.From, To: p.To.Addr(), Port: p.To.Port(), Proto: "tcp"})
				if err != nil {
					t.Fatalf("trace: %v", err)
				}
				exp := Expect(res)
				if Ambiguous(exp) {
					acc.ambiguous++
				}
				if Agree(exp, obs[pi]) {
					acc.agree++
					if f.V6 {
						acc.agree6++
					}
					continue
				}
				var b strings.Builder
				fmt.Fprintf(&b, "DISAGREE %s lab %d (%s, %d nodes) round %d: %s -> %s\n  kernel: %s\n  simulation:\n", f, li, backend, nodes, ri, p.From, p.To, obs[pi])
				for _, e := range exp {
					fmt.Fprintf(&b, "    %.3f %s", e.Prob, e.From)
					if len(e.Assumes) > 0 {
						fmt.Fprintf(&b, " (if %s)", strings.Join(e.Assumes, "; "))
					}
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "  mutations:\n")
				for _, m := range rd.Mutations {
					fmt.Fprintf(&b, "    %s\n", m)
				}
				for _, s := range rd.Services {
					fmt.Fprintf(&b, "    service %s -> %v\n", netip.AddrPortFrom(s.ClusterIP, uint16(s.Port)), s.Endpoints)
				}
				var tb strings.Builder
				res.WriteText(&tb)
				b.WriteString(tb.String())
				acc.disagreements = append(acc.disagreements, b.String())
			}
		}
	}
}

// upLab builds a static lab with a unique name and registers its removal.
func upLab(t *testing.T, backend string, nodes, pods int) *lab.State {
	t.Helper()
	return upConfig(t, lab.Config{Nodes: nodes, Pods: pods, Backend: backend})
}

// upConfig builds lab c (a unique name, this test's etcd and pod server
// filled in) and registers its removal.
func upConfig(t *testing.T, c lab.Config) *lab.State {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	etcd, err := filepath.Abs("../../bin/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etcd); err != nil {
		t.Fatalf("%s missing: run `make tools` first (%v)", etcd, err)
	}
	if c.Self == "" {
		if c.Self, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	c.Name, c.EtcdBin = "twill-t-dt-"+hex.EncodeToString(b), etcd
	t.Cleanup(func() {
		if err := lab.Down(context.Background(), c.Name, nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	st, err := lab.Up(context.Background(), c)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return st
}

// binaries builds twill and twill-cni once per test binary (the IPv6 labs
// run the real agent and CNI plugin) into a directory removed by TestMain.
var binaries = sync.OnceValues(func() (dir string, err error) {
	if dir, err = os.MkdirTemp("", "twill-difftrace-bin"); err != nil {
		return "", err
	}
	binDir = dir
	for bin, pkg := range map[string]string{"twill": "../../cmd/twill", "twill-cni": "../../cmd/twill-cni"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg).CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return dir, nil
})

// binDir is where binaries built them ("" before), for TestMain to remove.
var binDir string

// upLab6 builds the lab of the IPv6 probes: dual stack (`lab up
// --ip-family dual`), which needs agent mode (the static lab programs
// IPv4 only), with the real agents and twill-cni. Once it is up, every
// agent is stopped (SIGTERM: the node keeps its networking), so the lab
// holds still like a static one: nothing repairs what a round breaks
// between the capture and the probes; the pods' same-node neighbours are
// pinned (pinPeerNeighbours). It returns the lab and every node's IPv6
// routes to its peers' pod subnets, which apply6 puts back.
func upLab6(t *testing.T, backend string, nodes, pods int) (*lab.State, map[string][]string) {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	// The leases outlive the stopped agents for the whole run (the
	// capture reads them).
	up := upConfig(t, lab.Config{Nodes: nodes, Pods: pods, Backend: backend, Agent: true, IPFamily: lab.IPFamilyDual,
		AgentTTL: 2 * time.Hour, Self: filepath.Join(dir, "twill"), CNIBin: filepath.Join(dir, "twill-cni")})
	ctx := context.Background()
	// Ready agents hold their own lease; wait until each has programmed
	// every peer (routes, and with vxlan the guard's peer addresses)
	// before stopping them.
	var routes map[string][]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var missing string
		routes, missing = peerRoutes6(ctx, t, up)
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab %s: the agents did not program every IPv6 peer within 30 s: %s", up.Name, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range up.Nodes {
		if err := lab.AgentControl(ctx, up.Name, n.Name, lab.AgentStop, nil); err != nil {
			t.Fatalf("stop %s's agent: %v", n.Name, err)
		}
	}
	st, err := lab.Load(up.Name) // the stopped agents
	if err != nil {
		t.Fatal(err)
	}
	pinPeerNeighbours(t, st)
	return st, routes
}

// peerRoutes6 returns every node's IPv6 routes to its peers' pod subnets
// (`ip -6 route show` lines), and what is still missing: a route to a
// peer, or (vxlan) a peer's IPv6 underlay address in the set of peers of
// the agent's vxlan guard.
func peerRoutes6(ctx context.Context, t *testing.T, st *lab.State) (map[string][]string, string) {
	t.Helper()
	routes := map[string][]string{}
	for _, n := range st.Nodes {
		out, err := nsrun.Output(ctx, n.Namespace, "ip", "-6", "route", "show")
		if err != nil {
			t.Fatalf("%s: ip -6 route show: %v", n.Name, err)
		}
		var guard []byte
		if st.Backend == lab.BackendVXLAN {
			if guard, err = nsrun.Output(ctx, n.Namespace, "nft", "list", "set", "inet", firewall.NftTable, firewall.NftPeerSet6); err != nil {
				return nil, fmt.Sprintf("%s: nft list set inet %s %s: %v", n.Name, firewall.NftTable, firewall.NftPeerSet6, err)
			}
		}
		for _, p := range st.Nodes {
			if p.Name == n.Name {
				continue
			}
			found := false
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, p.IPv6Subnet+" ") {
					routes[n.Name] = append(routes[n.Name], line)
					found = true
				}
			}
			switch {
			case !found:
				return nil, fmt.Sprintf("%s has no IPv6 route to %s's %s", n.Name, p.Name, p.IPv6Subnet)
			case st.Backend == lab.BackendVXLAN && !strings.Contains(string(guard), p.IPv6):
				return nil, fmt.Sprintf("%s's vxlan guard does not list %s's %s yet", n.Name, p.Name, p.IPv6)
			}
		}
	}
	return routes, ""
}

// pinPeerNeighbours gives every pod a permanent IPv6 neighbour entry for
// each other pod on its node. Neighbour discovery between two pods on one
// bridge is ICMPv6 that crosses ip6tables FORWARD when
// bridge-nf-call-ip6tables is 1, so a FORWARD policy DROP that does not
// accept it (a round's accept for pod addresses misses the solicited-node
// multicast destination) fails a same-node IPv6 call whenever the
// neighbour is not cached. twill trace does not simulate neighbour
// discovery (docs/trace.md, IPv6), and the pods' neighbour caches are not
// in the capture: pinned, they take no part in the outcome, and the test
// compares what trace does simulate.
func pinPeerNeighbours(t *testing.T, st *lab.State) {
	t.Helper()
	ctx := context.Background()
	for _, n := range st.Nodes {
		macs := map[string]string{}
		for _, p := range n.Pods {
			out, err := nsrun.Output(ctx, p.Namespace, "ip", "-br", "link", "show", "eth0")
			f := strings.Fields(string(out))
			if err != nil || len(f) < 3 {
				t.Fatalf("pod %s: ip -br link show eth0: %q, %v", p.Name, out, err)
			}
			macs[p.Name] = f[2]
		}
		for _, p := range n.Pods {
			for _, q := range n.Pods {
				if p.Name == q.Name {
					continue
				}
				if err := nsrun.Run(ctx, p.Namespace, "ip", "-6", "neigh", "replace", q.IPv6, "lladdr", macs[q.Name], "dev", "eth0", "nud", "permanent"); err != nil {
					t.Fatalf("pod %s: neighbour %s: %v", p.Name, q.Name, err)
				}
			}
		}
	}
}

// apply resets every node to the round's Services and applies its mutations.
func apply(t *testing.T, st *lab.State, rd Round) error {
	t.Helper()
	ctx := context.Background()
	for _, n := range st.Nodes {
		for _, sc := range []string{"F1", "F2", "F6-route", "F6-fdb", "F6-neigh"} {
			if strings.HasPrefix(sc, "F6-") && (len(st.Nodes) < 2 || (sc != "F6-route" && st.Backend != lab.BackendVXLAN)) {
				continue
			}
			if err := lab.Fix(ctx, st.Name, sc, n.Name, nil); err != nil {
				return err
			}
		}
		rules := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: lab.ClusterCIDR}, rd.Services) + "*mangle\nCOMMIT\n*raw\nCOMMIT\n"
		if err := runStdin(ctx, n.Namespace, rules, "iptables-nft-restore"); err != nil {
			return err
		}
		if err := nsrun.Run(ctx, n.Namespace, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"); err != nil {
			return err
		}
		if err := runStdin(ctx, n.Namespace, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", "iptables-legacy-restore", "-w", "5"); err != nil {
			return err
		}
		_ = nsrun.Run(ctx, n.Namespace, "nft", "delete", "table", "inet", "twdiff")
		_ = nsrun.Run(ctx, n.Namespace, "conntrack", "-F")
	}
	return mutate(ctx, st, rd)
}

// apply6 is apply for an IPv6 round on a lab of upLab6: F1 and F2 fixed,
// the round's Services loaded into ip6tables (the lab's IPv4 rules and the
// agents' nft table stay as they are), the IPv6 legacy filter table empty,
// IPv6 forwarding on, the IPv6 routes to the peers back, conntrack
// flushed; then the round's mutations.
func apply6(t *testing.T, st *lab.State, routes map[string][]string, rd Round) error {
	t.Helper()
	ctx := context.Background()
	for _, n := range st.Nodes {
		for _, sc := range []string{"F1", "F2"} {
			if err := lab.Fix(ctx, st.Name, sc, n.Name, nil); err != nil {
				return err
			}
		}
		rules := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: lab.ClusterCIDRv6}, rd.Services) + "*mangle\nCOMMIT\n*raw\nCOMMIT\n"
		if err := runStdin(ctx, n.Namespace, rules, "ip6tables-nft-restore"); err != nil {
			return err
		}
		if err := runStdin(ctx, n.Namespace, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", "ip6tables-legacy-restore", "-w", "5"); err != nil {
			return err
		}
		if err := nsrun.Run(ctx, n.Namespace, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
			return err
		}
		for _, r := range routes[n.Name] {
			if err := nsrun.Run(ctx, n.Namespace, append([]string{"ip", "-6", "route", "replace"}, strings.Fields(r)...)...); err != nil {
				return err
			}
		}
		_ = nsrun.Run(ctx, n.Namespace, "nft", "delete", "table", "inet", "twdiff")
		_ = nsrun.Run(ctx, n.Namespace, "conntrack", "-F", "-f", "ipv6")
	}
	return mutate(ctx, st, rd)
}

// mutate applies a round's mutations.
func mutate(ctx context.Context, st *lab.State, rd Round) error {
	for _, m := range rd.Mutations {
		tg, err := st.Find(m.Node)
		if err != nil {
			return err
		}
		switch m.Kind {
		case "ipt", "legacy":
			err = nsrun.Run(ctx, tg.Namespace, m.Argv...)
		case "nft":
			err = runStdin(ctx, tg.Namespace, m.Text, "nft", "-f", "-")
		case "scenario":
			_, err = lab.Break(ctx, st.Name, m.Text, m.Node, nil)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

// probeAll sends every probe concurrently.
func probeAll(st *lab.State, probes []Probe) []Observed {
	out := make([]Observed, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tg, err := st.Find(p.From)
			if err != nil {
				out[i] = Observed{Kind: "other", Detail: err.Error()}
				return
			}
			line, err := lab.Call(context.Background(), tg.Namespace, p.To.String(), probeTimeout, false)
			out[i] = Observe(line, err)
		}()
	}
	wg.Wait()
	return out
}

func runStdin(ctx context.Context, ns, stdin string, argv ...string) error {
	return nsrun.Do(ns, func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// TestLive sends real probes with nftrace on (`twill trace --live`) and
// checks that the kernel's own trace shows what the simulation says: the
// DNAT of a same-node Service call, and with F1 the call failing.
func TestLive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it builds a lab in network namespaces (run `sudo go test ./test/difftrace/`)")
	}
	st := upLab(t, lab.BackendVXLAN, 2, 2)
	ctx := context.Background()
	req := trace.Request{From: "node1-a", To: lab.LocalVIP(1).Addr(), Port: lab.LocalVIP(1).Port(), Proto: "tcp", Sport: 41000}
	live, err := tracelab.Live(ctx, st, req)
	if err != nil {
		t.Fatal(err)
	}
	if !live.OK || !strings.HasPrefix(live.Probe, "node1-b ") {
		t.Fatalf("healthy probe: %+v", live)
	}
	joined := strings.Join(live.Trace["node1"], "\n")
	if !strings.Contains(joined, "dnat to 10.244.1.11:8080") {
		t.Errorf("kernel trace lacks the DNAT:\n%s", joined)
	}
	if _, err := lab.Break(ctx, st.Name, "F1", "node1", nil); err != nil {
		t.Fatal(err)
	}
	req.Sport = 41001
	live, err = tracelab.Live(ctx, st, req)
	if err != nil {
		t.Fatal(err)
	}
	if live.OK {
		t.Fatalf("with F1 the probe should fail, got %q", live.Probe)
	}
	w, _, err := tracelab.World(ctx, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Trace(req)
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures(); len(f) != 1 || f[0].Check != "TW002" {
		t.Errorf("simulation with F1: failures %+v", f)
	}
	// Nothing of --live stays behind.
	for _, n := range st.Nodes {
		out, err := nsrun.Output(ctx, n.Namespace, "nft", "list", "tables")
		if err != nil || strings.Contains(string(out), "twill_live_trace") {
			t.Errorf("node %s: live trace table left behind: %s %v", n.Name, out, err)
		}
	}
}
