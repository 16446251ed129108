package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/lease"
)

func testAgent(logs *logBuffer) *agent {
	return &agent{log: slog.New(slog.NewTextHandler(logs, nil)), m: newMetrics(), h: &health{interval: time.Second}}
}

// An outage is one WARN and its end one INFO, however many errors come
// between.
func TestStoreHealthLogsOncePerOutage(t *testing.T) {
	logs := &logBuffer{}
	a := testAgent(logs)
	down := errors.New("dial tcp 192.168.77.1:2379: connect: connection refused")
	for range 20 {
		a.storeFailed("lease keepalive", down)
	}
	a.storeOK("lease keepalive")
	a.storeOK("ping")
	// A relapse right after the recovery (an etcd electing its leader) is
	// the same outage for the log.
	a.storeFailed("ping", down)
	a.storeOK("ping")
	out := logs.String()
	if n := strings.Count(out, "store unreachable"); n != 1 {
		t.Errorf("%d WARN lines for one outage, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "store reachable again"); n != 1 {
		t.Errorf("%d INFO lines for one recovery, want 1:\n%s", n, out)
	}
	if a.h.storeDown {
		t.Error("after the relapse ended the store should be up")
	}
	// A new outage after the store settled is logged again.
	a.storeBackAt = time.Now().Add(-storeSettle)
	a.storeFailed("ping", down)
	if n := strings.Count(logs.String(), "store unreachable"); n != 2 {
		t.Errorf("an outage after the store settled: %d WARN lines in all, want 2:\n%s", n, logs.String())
	}
}

// A 403 is not an outage (the store answered) and not a permission
// problem until the same operation is still refused forbiddenPersists
// later, even while other requests (pings) succeed in between; a success
// of that operation forgets it. Each refusal logs once, not per retry.
func TestStoreRefusalIsReportedWhenItPersists(t *testing.T) {
	logs := &logBuffer{}
	a := testAgent(logs)
	rbac := fmt.Errorf("patch node: forbidden: twill needs patch on 'nodes/status' — see deploy/twill.yaml: %w", lease.ErrForbidden)
	const op = "set node condition NetworkUnavailable=False"
	for range 20 {
		a.storeFailed(op, rbac)
		a.storeOK("ping")
	}
	out := logs.String()
	if strings.Contains(out, "store unreachable") || strings.Contains(out, "reachable again") {
		t.Errorf("a refusal was logged as an outage:\n%s", out)
	}
	if n := strings.Count(out, "refused a request"); n != 1 {
		t.Errorf("%d refusal WARNs for one refused operation, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "permission problem") {
		t.Errorf("a short burst of 403s was reported as a permission problem:\n%s", out)
	}
	a.forbidden[op].since = time.Now().Add(-forbiddenPersists)
	for range 3 {
		a.storeFailed(op, rbac)
		a.storeOK("ping")
	}
	if n := strings.Count(logs.String(), "permission problem"); n != 1 || !strings.Contains(logs.String(), "nodes/status") {
		t.Errorf("403s for %s: %d permission reports naming the grant, want 1:\n%s", forbiddenPersists, n, logs.String())
	}
	a.storeOK(op)
	if _, still := a.forbidden[op]; still {
		t.Error("a success of the operation did not clear its refusal")
	}
}

// A node without a subnet yet (lease.ErrNoSubnetYet: no podCIDR) is a wait,
// not an outage: retry keeps /readyz false with the store's message, logs
// one WARN naming the wait (not "store unreachable"), and succeeds once
// the subnet comes.
func TestRetryWaitsForASubnetWithoutCallingItAnOutage(t *testing.T) {
	logs := &logBuffer{}
	a := testAgent(logs)
	none := fmt.Errorf("node n1 has no spec.podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs: %w", lease.ErrNoSubnetYet)
	calls := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := retry(ctx, a, "acquire lease", func() (string, error) {
		calls++
		if calls < 3 {
			return "", none
		}
		return "10.244.1.0/24", nil
	})
	if err != nil || got != "10.244.1.0/24" {
		t.Fatalf("retry: %q, %v", got, err)
	}
	out := logs.String()
	if n := strings.Count(out, "waiting for this node's subnet"); n != 1 || !strings.Contains(out, "--allocate-node-cidrs") {
		t.Errorf("%d WARNs for one wait (want 1, with the store's message):\n%s", n, out)
	}
	if strings.Contains(out, "store unreachable") || a.h.storeDown {
		t.Errorf("a wait for the subnet was taken for a store outage:\n%s", out)
	}
	if a.h.notReady != "acquire lease: "+none.Error() {
		t.Errorf("/readyz reason %q, want the wait's message", a.h.notReady)
	}
}
