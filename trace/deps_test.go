package trace

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The simulator and the checks built on it are a pure core: trace and
// doctor must not pull in the lab, etcd or a Kubernetes client (those live
// in trace/tracelab, kubeview/apiload, lease/* and cmd/twill), and the
// firewall, which asks trace where its accepts go, must not pull in doctor.
// This fails as soon as anything in their import graphs imports one of them.
func TestPureCoreDependencies(t *testing.T) {
	clients := []string{"k8s.io/client-go", "k8s.io/apimachinery", "go.etcd.io", "github.com/twillnet/twill/lab", "github.com/twillnet/twill/trace/tracelab"}
	for pkg, forbidden := range map[string][]string{
		".":           clients,
		"../doctor":   clients,
		"../firewall": {"github.com/twillnet/twill/doctor"},
	} {
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s printed too little to be trusted: %q", pkg, deps)
		}
		for _, d := range deps {
			for _, bad := range forbidden {
				if d == bad || strings.HasPrefix(d, bad+"/") {
					t.Errorf("%s depends on %s (forbidden: %s); keep it out of the pure core", pkg, d, bad)
				}
			}
		}
	}
}
