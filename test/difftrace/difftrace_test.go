package difftrace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
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
	os.Exit(m.Run())
}

// probeTimeout bounds each real probe; probes that must fail cost this.
const probeTimeout = 400 * time.Millisecond

const probesPerRound = 6

// TestDifferential builds labs (vxlan and host-gw, 2-3 nodes), draws random
// rule sets, overlay breaks and sysctls, and compares real TCP probes with
// the simulation: the kernel's outcome must be in the set of outcomes the
// simulator declares (random branches and every order of equal-priority
// base chains it cannot know); when it declares one outcome, that one.
// TWILL_DIFFTRACE_CASES sets the number of probes per seed (default 504);
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

// differential runs one seed: cases probes over labs drawn from seed.
func differential(t *testing.T, seed uint64, cases int) (agree, total int) {
	t.Logf("seed %d (set TWILL_DIFFTRACE_SEED=%d to repeat), %d cases", seed, seed, cases)
	rounds := (cases + probesPerRound - 1) / probesPerRound
	labs := min(6, max(1, rounds/8))
	perLab := (rounds + labs - 1) / labs

	var ambiguous int
	var disagreements []string
	done := 0
	for li := 0; li < labs && done < rounds; li++ {
		r := mrand.New(mrand.NewPCG(seed, uint64(li)))
		backend := []string{lab.BackendVXLAN, lab.BackendHostGW}[li%2]
		nodes := 2 + r.IntN(2)
		st := upLab(t, backend, nodes, 2)
		for ri := 0; ri < perLab && done < rounds; ri++ {
			done++
			rd := NewRound(r, st, probesPerRound)
			if err := apply(t, st, rd); err != nil {
				t.Fatalf("lab %d round %d: %v", li, ri, err)
			}
			w, _, err := tracelab.World(context.Background(), st.Name)
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			obs := probeAll(st, rd.Probes)
			for pi, p := range rd.Probes {
				total++
				res, err := w.Trace(trace.Request{From: p.From, To: p.To.Addr(), Port: p.To.Port(), Proto: "tcp"})
				if err != nil {
					t.Fatalf("trace: %v", err)
				}
				exp := Expect(res)
				if Ambiguous(exp) {
					ambiguous++
				}
				if Agree(exp, obs[pi]) {
					agree++
					continue
				}
				var b strings.Builder
				fmt.Fprintf(&b, "DISAGREE lab %d (%s, %d nodes) round %d: %s -> %s\n  kernel: %s\n  simulation:\n", li, backend, nodes, ri, p.From, p.To, obs[pi])
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
					fmt.Fprintf(&b, "    service %s:%d -> %v\n", s.ClusterIP, s.Port, s.Endpoints)
				}
				var tb strings.Builder
				res.WriteText(&tb)
				b.WriteString(tb.String())
				disagreements = append(disagreements, b.String())
			}
		}
	}
	t.Logf("agreement: %d/%d = %.2f%% (%d probes with outcomes that depend on an unknown hook order)", agree, total, 100*float64(agree)/float64(total), ambiguous)
	fmt.Printf("difftrace: agreement %d/%d = %.2f%% (seed %d; %d probes depend on an unknown hook order)\n", agree, total, 100*float64(agree)/float64(total), seed, ambiguous)
	for i, d := range disagreements {
		if i >= 10 {
			t.Errorf("... and %d more disagreements", len(disagreements)-10)
			break
		}
		t.Error(d)
	}
	return agree, total
}

// upLab builds a lab with a unique name and registers its removal.
func upLab(t *testing.T, backend string, nodes, pods int) *lab.State {
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
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := lab.Config{Name: "twill-t-dt-" + hex.EncodeToString(b), Nodes: nodes, Pods: pods, Backend: backend, EtcdBin: etcd, Self: self}
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
