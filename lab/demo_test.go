package lab

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the tour in both modes with a doctor that cannot run, so
// the tour must fall back to `lab fix`, and checks the story it tells
// (agent mode: the agent repairs the sysctl by itself and counts it) and
// that the lab is gone afterwards.
func TestDemo(t *testing.T) {
	needRoot(t)
	for _, mode := range []string{ModeAgent, ModeStatic} {
		t.Run(mode, func(t *testing.T) {
			c, static := agentConfig(t, BackendVXLAN, 2, 2), false
			want := []string{
				"== Step 1/8: Build the lab",
				"node2-a 10.244.1.2:", // cross-node call answered, client not NATed (CNI's first address)
				"node1-b 10.244.1.2:", // same-bridge Service answered by node1-b
				"Paused node1's agent so the failure stays",
				"== Step 8/8: The agent guards the node",
				"net.bridge.bridge-nf-call-iptables is 1 again after",
				`twill_repairs_total{kind="sysctl"} 1   (was 0`,
				"The Service call works: nobody had to run doctor this time.",
			}
			if mode == ModeStatic {
				c, static = testConfig(t, BackendVXLAN, 2, 2), true
				want = []string{"== Step 1/7: Build the lab", "node2-a 10.244.1.10:", "node1-b 10.244.1.10:"}
			}
			want = append(want,
				"Broke F1 on node1",
				"timed out after 3s   (as expected)",
				"$ twill doctor --netns "+c.Name+"-node1",
				"restoring the healthy state with `twill lab fix F1 node1`",
				"Fixed by `lab fix`.",
				`Lab "`+c.Name+`" removed`)
			var out bytes.Buffer
			c.Out = &out
			t.Cleanup(func() { _ = Down(context.Background(), c.Name, nil) })
			err := Demo(context.Background(), DemoOptions{Config: c, Doctor: "/nonexistent/twill", Static: static})
			t.Log(out.String())
			if err != nil {
				t.Fatalf("demo: %v", err)
			}
			for _, w := range want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("demo output lacks %q", w)
				}
			}
			if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
				t.Errorf("namespaces left after demo: %v", nss)
			}
			if _, err := os.Stat(StateDir(c.Name)); !os.IsNotExist(err) {
				t.Errorf("state dir left after demo")
			}
		})
	}
}

// TestUpInterrupted cancels Up while it waits for etcd (what Ctrl-C does)
// and checks nothing is left.
func TestUpInterrupted(t *testing.T) {
	needRoot(t)
	c := testConfig(t, BackendVXLAN, 2, 1)
	t.Cleanup(func() { _ = Down(context.Background(), c.Name, nil) })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := Up(ctx, c); err == nil {
		t.Fatal("up with a cancelled context succeeded")
	}
	if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
		t.Errorf("namespaces left after an interrupted up: %v", nss)
	}
	if _, err := os.Stat(StateDir(c.Name)); !os.IsNotExist(err) {
		t.Errorf("state dir left after an interrupted up")
	}
}
