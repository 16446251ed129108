package doctor

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDoctorImportsNoStoreClients: doctor is pure checks over a snapshot; the
// Kubernetes and etcd clients belong to the adapters that fill the snapshot
// (cmd/twill, kubeview/apiload, lease/*), so tools embedding doctor stay small.
func TestDoctorImportsNoStoreClients(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/client-go") || strings.HasPrefix(dep, "go.etcd.io/") {
			t.Errorf("doctor depends on %s", dep)
		}
	}
}
