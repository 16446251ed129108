package agent

import (
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
// between; a 403 is not called a permission problem until it persists.
func TestStoreHealthLogsOncePerOutage(t *testing.T) {
	logs := &logBuffer{}
	a := testAgent(logs)
	rbac := fmt.Errorf("patch node: forbidden: twill needs patch on 'nodes' — see deploy/twill.yaml: %w", lease.ErrForbidden)
	for range 20 {
		a.storeFailed("lease keepalive", rbac)
	}
	a.storeOK()
	a.storeOK()
	out := logs.String()
	if n := strings.Count(out, "store unreachable"); n != 1 {
		t.Errorf("%d WARN lines for one outage, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "store reachable again"); n != 1 {
		t.Errorf("%d INFO lines for one recovery, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "deploy/twill.yaml") || strings.Contains(out, "permission problem") {
		t.Errorf("a short burst of 403s was reported as a permission problem:\n%s", out)
	}
	// Persisting 403s are.
	a.storeFailed("lease keepalive", rbac)
	a.forbiddenSince = time.Now().Add(-forbiddenPersists)
	a.storeFailed("lease keepalive", rbac)
	a.storeFailed("lease keepalive", rbac)
	if n := strings.Count(logs.String(), "permission problem"); n != 1 {
		t.Errorf("403s for %s: %d permission reports, want 1:\n%s", forbiddenPersists, n, logs.String())
	}
}
