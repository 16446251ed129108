package nsrun

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// requireRoot fails (never skips) when the test cannot run: CI runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root to create network namespaces; run it as root (CI does)")
	}
}

func TestOutputRunsInsideTheNamespace(t *testing.T) {
	requireRoot(t)
	name := "twill-test-nsrun"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })

	out, err := Output(context.Background(), name, "cat", "/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	// A fresh namespace has only lo.
	if strings.Count(string(out), ":") != 1 || !strings.Contains(string(out), "lo:") {
		t.Fatalf("expected only lo in the new namespace, got:\n%s", out)
	}
	if _, err := Output(context.Background(), "twill-test-does-not-exist", "true"); err == nil || !strings.Contains(err.Error(), "does it exist") {
		t.Fatalf("missing namespace: got %v", err)
	}
}
