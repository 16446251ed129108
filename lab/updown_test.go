package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUpDownNothingLeft builds a small lab in each mode, checks what Up
// recorded exists (agents included), then checks Down removes every
// namespace, process and file (a paused agent too), and that the root
// namespace's links, routes and sysctls never changed.
func TestUpDownNothingLeft(t *testing.T) {
	needRoot(t)
	t.Run("static", func(t *testing.T) { testUpDown(t, testConfig(t, BackendVXLAN, 2, 1)) })
	t.Run("agent", func(t *testing.T) { testUpDown(t, agentConfig(t, BackendVXLAN, 2, 1)) })
	t.Run("agent-dual", func(t *testing.T) {
		c := agentConfig(t, BackendVXLAN, 2, 1)
		c.IPFamily = IPFamilyDual // IPv6 underlay, IPv6 forwarding in the nodes: none of it in the root namespace
		testUpDown(t, c)
	})
}

func testUpDown(t *testing.T, c Config) {
	before := rootNetState(t) + rootSysctls(t)
	st, err := Up(context.Background(), c)
	if err != nil {
		_ = Down(context.Background(), c.Name, nil)
		t.Fatalf("lab up: %v", err)
	}
	nss, _ := labNamespaces(c.Name)
	if want := 1 + 2 + 2; len(nss) != want {
		t.Errorf("namespaces after up: %v, want %d", nss, want)
	}
	procs := st.processes()
	want := 1 + 2 // etcd, two pod servers
	if c.Agent {
		want += 2 // an agent per node
	}
	if len(procs) != want {
		t.Errorf("recorded processes after up: %d, want %d (agent mode %v)", len(procs), want, c.Agent)
	}
	for _, p := range procs {
		if !p.Alive() {
			t.Errorf("process %v (pid %d) not alive after up", p.Argv, p.PID)
		}
	}
	if c.Agent { // down must also end a paused agent
		if err := AgentControl(context.Background(), c.Name, "node2", AgentPause, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Up(context.Background(), c); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second up: err = %v, want 'already exists'", err)
	}
	if err := Down(context.Background(), c.Name, nil); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
		t.Errorf("namespaces left after down: %v", nss)
	}
	for _, p := range procs {
		if exists(p.PID) {
			t.Errorf("process %d (%s) still running after down", p.PID, p.Argv[0])
		}
	}
	if _, err := os.Stat(StateDir(c.Name)); !os.IsNotExist(err) {
		t.Errorf("state dir %s still there after down (%v)", StateDir(c.Name), err)
	}
	if err := Down(context.Background(), c.Name, nil); err != nil {
		t.Errorf("second down should be a no-op: %v", err)
	}
	if after := rootNetState(t) + rootSysctls(t); after != before {
		t.Errorf("root namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestFailedUpLeavesNothing: an etcd binary that exits at once makes Up fail
// after it has created namespaces; nothing must remain.
func TestFailedUpLeavesNothing(t *testing.T) {
	needRoot(t)
	c := testConfig(t, BackendVXLAN, 1, 1)
	c.EtcdBin = "/bin/false"
	t.Cleanup(func() { _ = Down(context.Background(), c.Name, nil) })
	start := time.Now()
	_, err := Up(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("up with a failing etcd: err = %v, want an etcd error", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("failed up took %s; a dead etcd should be noticed quickly", time.Since(start))
	}
	if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
		t.Errorf("namespaces left after failed up: %v", nss)
	}
	if _, err := os.Stat(StateDir(c.Name)); !os.IsNotExist(err) {
		t.Errorf("state dir left after failed up (%v)", err)
	}
	c.EtcdBin = "/nonexistent/etcd"
	if _, err := Up(context.Background(), c); err == nil || !strings.Contains(err.Error(), "/nonexistent/etcd") {
		t.Errorf("up with a missing etcd: err = %v, want it to name the path", err)
	}
}

// TestDownWithoutState: namespaces named like the lab's are removed even when
// state.json is corrupt, and a similarly named namespace of another lab is not.
func TestDownWithoutState(t *testing.T) {
	needRoot(t)
	c := testConfig(t, BackendVXLAN, 1, 1)
	other := c.Name + "x-node1"  // another lab's node: "<name>x-" is not our prefix
	stranger := c.Name + "-misc" // our prefix, but not a name the lab makes
	for _, ns := range []string{c.Name + "-underlay", c.Name + "-node1", c.Name + "-node1-a", other, stranger} {
		if err := createNS(ns); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = deleteNS(other); _ = deleteNS(stranger) })
	if err := os.MkdirAll(StateDir(c.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath(c.Name), []byte("{corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Down(context.Background(), c.Name, nil); err != nil {
		t.Fatalf("down: %v", err)
	}
	if nss, _ := labNamespaces(c.Name); len(nss) != 0 {
		t.Errorf("left: %v", nss)
	}
	if !nsExists(other) || !nsExists(stranger) {
		t.Errorf("down removed namespaces that are not the lab's: %s exists=%v, %s exists=%v", other, nsExists(other), stranger, nsExists(stranger))
	}
}

// rootSysctls reads (never writes) the root namespace's sysctls the lab sets in its nodes.
func rootSysctls(t *testing.T) string {
	t.Helper()
	var out string
	for _, k := range []string{SysctlIPForward, SysctlBridgeNF, "net/ipv6/conf/all/forwarding"} {
		v, err := GetSysctl("", k)
		if err != nil {
			v = "(" + err.Error() + ")"
		}
		out += "sysctl " + k + "=" + v + "\n"
	}
	return out
}
