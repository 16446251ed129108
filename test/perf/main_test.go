package perf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the twill binary built for this run (removed by TestMain).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// requireRoot fails the benchmark when not run as root.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this benchmark needs root: it creates network namespaces, runs etcd and the twill agent in them; run it as root (sudo go test -run '^$' -bench . -benchtime=1x ./test/perf)")
	}
}

// twillBinary returns the twill binary the agents run: $TWILL_BIN when set
// (e.g. bin/twill from `make build`), else one built from this checkout
// with `go build ./cmd/twill` into a temporary directory, once per run.
func twillBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("TWILL_BIN"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			tb.Fatalf("TWILL_BIN=%s: not an executable file (%v): unset it to build twill from this checkout", p, err)
		}
		return p
	}
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			binErr = fmt.Errorf("find the module root with `go env GOMOD`: %q %v", mod, err)
			return
		}
		if binDir, err = os.MkdirTemp("", "twill-perf-bin-"); err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(binDir, "twill")
		start := time.Now()
		cmd := exec.Command(goBin, "build", "-o", binPath, "./cmd/twill")
		cmd.Dir = filepath.Dir(mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/twill in %s: %v\n%s", cmd.Dir, err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "perf: built %s in %s\n", binPath, time.Since(start).Round(time.Millisecond))
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}
