package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DemoOptions configures Demo.
type DemoOptions struct {
	// Config is the lab to build (defaults: 3 nodes, 2 pods, vxlan).
	Config Config
	// Keep leaves the lab running after a successful tour.
	Keep bool
	// Doctor is the twill binary whose `doctor` is run; empty means os.Executable().
	Doctor string
	// Static builds the lab in static mode (no agents) and skips the last
	// step, where the agent repairs drift. The default is agent mode.
	Static bool
}

// Demo is the one-command tour: build a lab, show pods and a Service
// working, break F1 on node1 (its agent paused), show the Service call
// failing, let `twill doctor` find and fix it, show it working again; then
// (agent mode) break the same sysctl with the agent running and show the
// agent repair and count it. It removes the lab at the end (unless Keep;
// always on failure or Ctrl-C).
func Demo(ctx context.Context, o DemoOptions) (err error) {
	o.Config.Agent = !o.Static
	c := o.Config.withDefaults()
	w := c.Out
	doctorBin := o.Doctor
	if doctorBin == "" {
		if doctorBin, err = os.Executable(); err != nil {
			return fmt.Errorf("find the twill binary: %w", err)
		}
	}
	d := &demo{w: w, total: 7, start: time.Now()}
	build := "Namespaces for the underlay switch, each node and each pod; a real etcd holding the nodes'\nsubnet leases; a vxlan overlay between the nodes; kube-proxy style Service rules."
	if c.Agent {
		d.total = 8
		build = "Namespaces for the underlay switch, each node and each pod; a real etcd holding net-conf.json;\n" +
			"in every node a real `twill agent` (it leases the node's subnet, builds the vxlan overlay and the\n" +
			"firewall, and repairs drift every " + c.AgentResync.String() + "); pods made by the real twill-cni plugin;\nkube-proxy style Service rules."
	}
	fmt.Fprintf(w, "twill lab demo: a %d-node cluster in network namespaces, broken the way FAILURES.md F1 describes,\n", c.Nodes)
	fmt.Fprintf(w, "then found and fixed by `twill doctor`. Nothing outside the lab's namespaces is touched.\n")

	d.step("Build the lab", build)
	st, err := Up(ctx, c)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil && o.Keep {
			fmt.Fprintf(w, "\nThe lab is still running (--keep). Explore it with `twill lab status%s`; remove it with `twill lab down%s`.\n", nameFlag(st.Name), nameFlag(st.Name))
			return
		}
		fmt.Fprintln(w)
		if derr := Down(context.Background(), st.Name, w); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	PrintSummary(w, st)

	n1, last := &st.Nodes[0], &st.Nodes[len(st.Nodes)-1]
	a, b := n1.Pods[0], n1.Pods[len(n1.Pods)-1]
	far := last.Pods[0]
	local := LocalVIP(n1.Index).String()

	d.step("Pods talk to each other", "Every pod runs a tiny server that answers with its own name and the client address it saw.")
	if err := d.call(ctx, a, fmt.Sprintf("%s:%d", far.IP, ServerPort), true,
		fmt.Sprintf("%s reached %s on %s: the packet crossed the vxlan overlay (twill.1) and the underlay.", a.Name, far.Name, last.Name)); err != nil {
		return err
	}
	if err := d.call(ctx, a, local, true,
		fmt.Sprintf("The Service %s has one endpoint, %s, on the same node and bridge as %s.\n"+
			"kube-proxy's DNAT picked it; the reply crossed only the bridge, and conntrack undid the NAT.", local, b.Name, a.Name)); err != nil {
		return err
	}

	why := "Someone sets net.bridge.bridge-nf-call-iptables=0 on node1 (a sysctl reset, a tuning guide...)."
	if st.AgentMode() {
		why += "\nnode1's agent would put it back within seconds (step 8 shows that), so the lab pauses it first."
	}
	d.step("Break node1 the way FAILURES.md F1 describes", why)
	if _, err := Break(ctx, st.Name, "F1", n1.Name, indent(w)); err != nil {
		return err
	}

	d.step("The same Service call now fails", "The SYN is routed (10.96.x is not on the bridge), so it is DNATed to "+b.Name+". The reply is bridged,\n"+
		"and with bridge-nf-call-iptables=0 bridged frames skip conntrack: the NAT is never undone, "+a.Name+"\n"+
		"gets a SYN-ACK from "+b.IP+" instead of "+LocalVIP(n1.Index).Addr().String()+", resets it, and the call hangs.")
	if err := d.call(ctx, a, local, false, "This is the 'some Services time out, randomly' report from the field."); err != nil {
		return err
	}
	if err := d.call(ctx, a, fmt.Sprintf("%s:%d", b.IP, ServerPort), true, "Calling the pod directly still works, which is what makes this failure so confusing."); err != nil {
		return err
	}

	doctorArgs := []string{"doctor", "--netns", n1.Namespace, "--root", n1.Root, "--node", n1.Name, "--etcd-endpoints", st.EtcdEndpoint}
	d.step("Ask twill doctor", "doctor reads node1's state (sysctls, links, routes, iptables, subnet file, and every node's lease\nfrom etcd) and reports every known failure, with evidence and the fix.")
	d.run(ctx, doctorBin, doctorArgs...)

	d.step("Let doctor fix it", "--fix applies the safe fixes (here the sysctl), then checks again.")
	d.run(ctx, doctorBin, append(doctorArgs, "--fix")...)

	d.step("The Service call works again", "")
	if err := d.call(ctx, a, local, true, "Fixed by doctor."); err != nil {
		fmt.Fprintf(w, "   doctor did not restore it; restoring the healthy state with `twill lab fix F1 %s` instead.\n", n1.Name)
		if err := Fix(ctx, st.Name, "F1", n1.Name, indent(w)); err != nil {
			return err
		}
		if err := d.call(ctx, a, local, true, "Fixed by `lab fix`."); err != nil {
			return err
		}
	}
	// Keep state.json truthful: F1 is no longer applied (this also resumes the agent).
	if err := Fix(ctx, st.Name, "F1", n1.Name, nil); err != nil {
		return err
	}
	if st.AgentMode() {
		if err := d.agentRepairs(ctx, st, a, local); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nThat was FAILURES.md F1 (the tour took %s). `twill lab scenarios` lists the others; try them with `twill lab up`, `twill lab break`.\n", since(d.start))
	return nil
}

// agentRepairs is the last step of the agent-mode tour: with node1's agent
// running, the F1 sysctl is broken by hand; the agent puts it back within
// its resync interval and counts the repair in /metrics.
func (d *demo) agentRepairs(ctx context.Context, st *State, a Pod, local string) error {
	n1 := &st.Nodes[0]
	resync := agentResync(n1)
	d.step("The agent guards the node", fmt.Sprintf("node1's agent runs again (`lab fix` resumed it). Break the same sysctl by hand, without pausing it,\n"+
		"and watch: every %s the agent compares the node with what it should be and repairs the difference.", resync))
	before, err := repairsCounted(ctx, n1, "sysctl")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "   $ twill lab exec node1 -- sysctl -w net.bridge.bridge-nf-call-iptables=0\n")
	if err := setSysctl(n1.Namespace, SysctlBridgeNF, "0"); err != nil {
		return err
	}
	start := time.Now()
	limit := 3*resync + 5*time.Second
	for {
		v, err := GetSysctl(n1.Namespace, SysctlBridgeNF)
		if err != nil {
			return err
		}
		if v == "1" {
			break
		}
		if time.Since(start) > limit {
			return fmt.Errorf("demo: node1's agent did not restore bridge-nf-call-iptables within %s; see %s", limit, n1.Agent.Log)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(d.w, "   net.bridge.bridge-nf-call-iptables is 1 again after %s: the agent repaired it.\n", since(start))
	var after float64
	for i := 0; i < 20; i++ { // the counter is bumped right after the repair; allow a moment
		if after, err = repairsCounted(ctx, n1, "sysctl"); err != nil || after > before {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "   $ twill lab exec node1 -- curl -s %s/metrics | grep 'twill_repairs_total{kind=\"sysctl\"}'\n", AgentHealthAddr)
	fmt.Fprintf(d.w, "   twill_repairs_total{kind=\"sysctl\"} %g   (was %g: the repair was counted)\n", after, before)
	if line := lastLine(n1.Agent.Log, "repaired drift"); line != "" {
		fmt.Fprintf(d.w, "   node1's agent log (%s):\n     %s\n", n1.Agent.Log, line)
	}
	if after <= before {
		return fmt.Errorf("demo: node1's agent repaired the sysctl but twill_repairs_total{kind=\"sysctl\"} stayed at %g", after)
	}
	return d.call(ctx, a, local, true, "The Service call works: nobody had to run doctor this time.")
}

// lastLine returns the last line of file path containing substr ("" if none).
func lastLine(path, substr string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

// agentResync is the --resync the node's agent was started with (2s if unknown).
func agentResync(n *Node) time.Duration {
	for i, arg := range n.Agent.Argv {
		if arg == "--resync" && i+1 < len(n.Agent.Argv) {
			if d, err := time.ParseDuration(n.Agent.Argv[i+1]); err == nil {
				return d
			}
		}
	}
	return 2 * time.Second
}

// repairsCounted reads twill_repairs_total{kind=...} from node n's agent.
func repairsCounted(ctx context.Context, n *Node, kind string) (float64, error) {
	m, err := AgentMetrics(ctx, n)
	if err != nil {
		return 0, err
	}
	v, _ := MetricValue(m, `twill_repairs_total{kind="`+kind+`"}`)
	return v, nil
}

// demo prints the tour's numbered steps.
type demo struct {
	w     io.Writer
	n     int
	total int
	start time.Time
}

func (d *demo) step(title, why string) {
	d.n++
	fmt.Fprintf(d.w, "\n== Step %d/%d: %s   [%s]\n", d.n, d.total, title, since(d.start))
	if why != "" {
		fmt.Fprintln(d.w, indentText(why))
	}
}

// call runs one lab call and explains it. wantOK says what the tour expects;
// an unexpected result is an error.
func (d *demo) call(ctx context.Context, from Pod, to string, wantOK bool, explain string) error {
	fmt.Fprintf(d.w, "   $ twill lab call %s %s\n", from.Name, to)
	start := time.Now()
	line, err := Call(ctx, from.Namespace, to, 3*time.Second, false)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	switch {
	case err == nil && wantOK:
		fmt.Fprintf(d.w, "   %s   (%s)\n", line, since(start))
	case err != nil && !wantOK:
		var ce *CallError
		if errors.As(err, &ce) {
			fmt.Fprintf(d.w, "   %s   (as expected)\n", ce.Reason)
		} else {
			fmt.Fprintf(d.w, "   %v   (as expected)\n", err)
		}
	case err != nil:
		fmt.Fprintf(d.w, "   FAILED: %v\n", err)
		return fmt.Errorf("demo: call %s -> %s should have worked: %w", from.Name, to, err)
	default:
		fmt.Fprintf(d.w, "   %s   (UNEXPECTED: this call should have failed)\n", line)
		return fmt.Errorf("demo: call %s -> %s should have failed but answered %q", from.Name, to, line)
	}
	fmt.Fprintln(d.w, indentText(explain))
	return nil
}

// run runs a twill command, streaming its output indented, and reports its
// exit status (doctor exits 1 when it finds errors, which is expected here).
func (d *demo) run(ctx context.Context, bin string, args ...string) {
	fmt.Fprintf(d.w, "   $ twill %s\n", strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	iw := indent(d.w)
	cmd.Stdout, cmd.Stderr = iw, iw
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		fmt.Fprintln(d.w, "   (exit status 0: no errors)")
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		fmt.Fprintln(d.w, "   (exit status 1: errors found)")
	default:
		fmt.Fprintf(d.w, "   (could not run: %v)\n", err)
	}
}

func nameFlag(name string) string {
	if name == DefaultName {
		return ""
	}
	return " --name " + name
}

func indentText(s string) string {
	if s == "" {
		return ""
	}
	return "   " + strings.ReplaceAll(s, "\n", "\n   ")
}

// indent returns a writer that prefixes every line with three spaces.
func indent(w io.Writer) io.Writer { return &indentWriter{w: w, bol: true} }

type indentWriter struct {
	w   io.Writer
	bol bool
}

func (i *indentWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if i.bol {
			if _, err := io.WriteString(i.w, "   "); err != nil {
				return 0, err
			}
			i.bol = false
		}
		if _, err := i.w.Write([]byte{c}); err != nil {
			return 0, err
		}
		if c == '\n' {
			i.bol = true
		}
	}
	return len(p), nil
}
