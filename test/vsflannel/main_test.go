package vsflannel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// twill and twillCNI are the binaries the twill lab runs: $TWILL_BIN and
// twill-cni beside it (make bench: bin/), else built from this checkout.
var twill, twillCNI string

func TestMain(m *testing.M) {
	cleanup, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/vsflannel:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// setup finds or builds twill and twill-cni and points the lab at the
// repository's bin/etcd and bin/flanneld (bridge, host-local and portmap
// are in bin/cni beside it), which scripts/setup.sh builds.
func setup() (cleanup func(), err error) {
	cleanup = func() {}
	if p := os.Getenv("TWILL_BIN"); p != "" {
		twill, twillCNI = p, filepath.Join(filepath.Dir(p), "twill-cni")
	} else {
		dir, err := os.MkdirTemp("", "twill-vsflannel-bin")
		if err != nil {
			return cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		twill, twillCNI = filepath.Join(dir, "twill"), filepath.Join(dir, "twill-cni")
		for _, pkg := range []string{"twill", "twill-cni"} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "../../cmd/"+pkg).CombinedOutput(); err != nil {
				return cleanup, fmt.Errorf("go build ./cmd/%s: %v\n%s", pkg, err, out)
			}
		}
	}
	need := []string{twill, twillCNI}
	for _, t := range []struct{ env, bin string }{{"TWILL_ETCD_BIN", "etcd"}, {"TWILL_FLANNELD_BIN", "flanneld"}} {
		if os.Getenv(t.env) == "" {
			p, _ := filepath.Abs("../../bin/" + t.bin)
			os.Setenv(t.env, p)
		}
		need = append(need, os.Getenv(t.env))
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return cleanup, fmt.Errorf("%w: run `make tools build` (make bench does both)", err)
		}
	}
	return cleanup, nil
}
