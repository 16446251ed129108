package vsflannel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The binaries the labs run, found or built once, when a benchmark first
// needs them (the tests need none).
var (
	binOnce sync.Once
	binDir  string // temporary, removed by TestMain
	binErr  error
	// twill and twillCNI: $TWILL_BIN and twill-cni beside it (make bench:
	// bin/), else built from this checkout.
	twill, twillCNI string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries finds or builds twill and twill-cni and points the lab at the
// repository's bin/etcd and bin/flanneld (bridge, host-local and portmap
// are in bin/cni beside it), which scripts/setup.sh builds.
func binaries(tb testing.TB) {
	tb.Helper()
	binOnce.Do(func() { binErr = findBinaries() })
	if binErr != nil {
		tb.Fatal(binErr)
	}
}

func findBinaries() error {
	if p := os.Getenv("TWILL_BIN"); p != "" {
		twill, twillCNI = p, filepath.Join(filepath.Dir(p), "twill-cni")
	} else {
		var err error
		if binDir, err = os.MkdirTemp("", "twill-vsflannel-bin"); err != nil {
			return err
		}
		twill, twillCNI = filepath.Join(binDir, "twill"), filepath.Join(binDir, "twill-cni")
		for _, pkg := range []string{"twill", "twill-cni"} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "../../cmd/"+pkg).CombinedOutput(); err != nil {
				return fmt.Errorf("go build ./cmd/%s: %v\n%s", pkg, err, out)
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
			return fmt.Errorf("%w: run `make tools build` (make bench does both)", err)
		}
	}
	return nil
}
