package trace

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The simulator is a pure core: it must not pull in the lab, etcd or a
// Kubernetes client (those live in trace/tracelab and cmd/twill). This
// fails as soon as anything in trace's import graph imports one of them.
func TestNoLabOrClientDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed too little to be trusted: %q", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{"k8s.io/client-go", "k8s.io/apimachinery", "go.etcd.io/", "github.com/twillnet/twill/lab", "github.com/twillnet/twill/trace/tracelab"} {
			if d == bad || strings.HasPrefix(d, strings.TrimSuffix(bad, "/")+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(d, bad)) {
				t.Errorf("trace depends on %s (forbidden: %s); keep lab and client code out of the simulator", d, bad)
			}
		}
	}
}
