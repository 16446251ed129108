package lab

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the tour with a doctor that cannot run, so the tour must
// fall back to `lab fix`, and checks the story it tells and that the lab is
// gone afterwards.
func TestDemo(t *testing.T) {
	needRoot(t)
	c := testConfig(t, BackendVXLAN, 2, 2)
	var out bytes.Buffer
	c.Out = &out
	t.Cleanup(func() { _ = Down(context.Background(), c.Name, nil) })
	err := Demo(context.Background(), DemoOptions{Config: c, Doctor: "/nonexistent/twill"})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{
		"== Step 1/7: Build the lab",
		"node2-a 10.244.1.10:", // cross-node call answered, client not NATed
		"node1-b 10.244.1.10:", // same-bridge Service answered by node1-b
		"Broke F1 on node1",
		"timed out after 3s   (as expected)",
		"$ twill doctor --netns " + c.Name + "-node1",
		"restoring the healthy state with `twill lab fix F1 node1`",
		"Fixed by `lab fix`.",
		`Lab "` + c.Name + `" removed`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
		t.Errorf("namespaces left after demo: %v", nss)
	}
	if _, err := os.Stat(StateDir(c.Name)); !os.IsNotExist(err) {
		t.Errorf("state dir left after demo")
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
