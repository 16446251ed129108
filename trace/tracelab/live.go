package tracelab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/trace"
)

// liveTable is the nft table --live adds (and removes) in every lab node.
const liveTable = "twill_live_trace"

// maxLiveLines bounds the kernel trace lines kept per node.
const maxLiveLines = 150

// LiveResult is what the kernel did with one real probe: the probe's result
// and `nft monitor trace` per node.
type LiveResult struct {
	// Probe is the server's answer, or the error the client got.
	Probe string `json:"probe"`
	OK    bool   `json:"ok"`
	// Trace maps a node name to the kernel's trace lines for the probe.
	Trace map[string][]string `json:"trace"`
}

// Live sends one real probe from a lab pod (or node) with nftrace enabled on
// every node for packets of the probe's client port, and collects `nft
// monitor trace` from every node. Everything it adds is removed again.
func Live(ctx context.Context, st *lab.State, req trace.Request) (*LiveResult, error) {
	from, err := st.Find(req.From)
	if err != nil {
		return nil, err
	}
	if req.Proto == "icmp" {
		return nil, fmt.Errorf("--live sends tcp or udp probes only")
	}
	sport := req.Sport
	if sport == 0 {
		sport = 40000
	}
	res := &LiveResult{Trace: map[string][]string{}}
	rules := fmt.Sprintf(`table ip %[1]s {
	chain pre { type filter hook prerouting priority -350; policy accept; meta l4proto %[2]s th sport %[3]d meta nftrace set 1; meta l4proto %[2]s th dport %[3]d meta nftrace set 1; }
	chain out { type filter hook output priority -350; policy accept; meta l4proto %[2]s th sport %[3]d meta nftrace set 1; meta l4proto %[2]s th dport %[3]d meta nftrace set 1; }
}
`, liveTable, req.Proto, sport)
	type mon struct {
		node string
		cmd  *exec.Cmd
		buf  *syncBuf
	}
	var mons []mon
	defer func() {
		for _, m := range mons {
			if m.cmd.Process != nil {
				_ = m.cmd.Process.Kill()
				_ = m.cmd.Wait()
			}
		}
		for _, n := range st.Nodes {
			_ = nsrun.Run(context.Background(), n.Namespace, "nft", "delete", "table", "ip", liveTable)
		}
	}()
	for _, n := range st.Nodes {
		_ = nsrun.Run(ctx, n.Namespace, "nft", "delete", "table", "ip", liveTable)
		if err := nsrunStdin(ctx, n.Namespace, rules, "nft", "-f", "-"); err != nil {
			return nil, fmt.Errorf("node %s: enable nftrace: %w", n.Name, err)
		}
		m := mon{node: n.Name, buf: &syncBuf{}}
		err := nsrun.Do(n.Namespace, func() error {
			m.cmd = exec.Command("nft", "monitor", "trace")
			m.cmd.Stdout = m.buf
			return m.cmd.Start()
		})
		if err != nil {
			return nil, fmt.Errorf("node %s: nft monitor trace: %w", n.Name, err)
		}
		mons = append(mons, m)
	}
	time.Sleep(300 * time.Millisecond) // let the monitors subscribe
	line, perr := probe(ctx, from.Namespace, req, sport)
	if perr != nil {
		res.Probe = perr.Error()
	} else {
		res.Probe, res.OK = line, true
	}
	time.Sleep(300 * time.Millisecond)
	for _, m := range mons {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		sc := bufio.NewScanner(bytes.NewReader(m.buf.Bytes()))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.Contains(l, liveTable) {
				if len(res.Trace[m.node]) == maxLiveLines {
					res.Trace[m.node] = append(res.Trace[m.node], "... (more trace lines, e.g. retransmissions, left out)")
				}
				if len(res.Trace[m.node]) < maxLiveLines {
					res.Trace[m.node] = append(res.Trace[m.node], l)
				}
			}
		}
	}
	return res, nil
}

// probe connects from namespace ns with a fixed source port and reads the
// server's line (lab pods answer "<name> <client as seen>").
func probe(ctx context.Context, ns string, req trace.Request, sport uint16) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var line string
	err := nsrun.Do(ns, func() error {
		d := net.Dialer{}
		addr := net.JoinHostPort(req.To.String(), fmt.Sprint(req.Port))
		if req.Proto == "udp" {
			d.LocalAddr = &net.UDPAddr{Port: int(sport)}
		} else {
			d.LocalAddr = &net.TCPAddr{Port: int(sport)}
		}
		c, err := d.DialContext(ctx, req.Proto, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		dl, _ := ctx.Deadline()
		_ = c.SetDeadline(dl)
		if req.Proto == "udp" {
			if _, err := c.Write([]byte("hello\n")); err != nil {
				return err
			}
		}
		l, err := bufio.NewReader(c).ReadString('\n')
		line = strings.TrimSpace(l)
		if err != nil && line == "" {
			return err
		}
		return nil
	})
	return line, err
}

func nsrunStdin(ctx context.Context, ns, stdin string, argv ...string) error {
	return nsrun.Do(ns, func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// syncBuf is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// WriteText prints the kernel's trace after the simulation.
func (l *LiveResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nKernel (one real probe, nft monitor trace):\n  probe: %s\n", l.Probe)
	nodes := make([]string, 0, len(l.Trace))
	for n := range l.Trace {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, node := range nodes {
		lines := l.Trace[node]
		fmt.Fprintf(w, "  [%s]\n", node)
		for _, x := range lines {
			fmt.Fprintf(w, "    %s\n", x)
		}
	}
}

// WriteJSONWithLive writes the simulation and the kernel's trace as one JSON object.
func WriteJSONWithLive(w io.Writer, r *trace.Result, l *LiveResult) error {
	out := struct {
		*trace.Result
		Summary  []trace.Summary `json:"summary"`
		Failures []trace.Failure `json:"failures,omitempty"`
		Live     *LiveResult     `json:"live"`
	}{r, r.Summaries(), r.Failures(), l}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
