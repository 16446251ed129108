package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// labName is this test run's lab; every namespace it creates starts with it.
var labName = fmt.Sprintf("twill-e2e%d", os.Getpid()%10000)

// twill is the path of the binary under test, built by TestMain.
var twill string

// store is the lease store the lab's agents use: "etcd" (default) or
// "kubernetes" (TWILL_E2E_STORE=kubernetes runs the same suite on the
// Kubernetes API: leases from Node.spec.podCIDR).
var store = envOr("TWILL_E2E_STORE", "etcd")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests build network namespaces and need root; run `make test` as root (CI does)")
		return 1
	}
	dir, err := os.MkdirTemp("", "twill-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	twill = filepath.Join(dir, "twill")
	// twill-cni goes next to twill, where the lab looks for it.
	for bin, pkg := range map[string]string{twill: "../../cmd/twill", filepath.Join(dir, "twill-cni"): "../../cmd/twill-cni"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	// The upstream binaries the lab runs, built by scripts/setup.sh into bin/.
	tools := map[string]string{"TWILL_ETCD_BIN": "etcd"}
	if store == "kubernetes" {
		tools["TWILL_KUBE_APISERVER_BIN"] = "kube-apiserver"
		tools["TWILL_KUBECTL_BIN"] = "kubectl"
	}
	for env, name := range tools {
		if os.Getenv(env) != "" {
			continue
		}
		p, _ := filepath.Abs("../../bin/" + name)
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: bin/%s missing: run `make tools-kube` (or `make test`, which does)\n", name)
			return 1
		}
		os.Setenv(env, p)
	}
	// A lab left by an interrupted earlier run of this name must not fail us.
	exec.Command(twill, "lab", "down", "--name", labName).Run()
	defer func() {
		if out, err := exec.Command(twill, "lab", "down", "--name", labName).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: lab down: %v\n%s", err, out)
		}
	}()
	args := []string{"lab", "up", "--name", labName, "--nodes", "3", "--pods", "2"}
	if store != "etcd" {
		args = append(args, "--store", store)
	}
	fmt.Fprintf(os.Stderr, "e2e: lab up with --store %s\n", store)
	up := exec.Command(twill, args...)
	if out, err := up.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab up: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is one finished command.
type result struct {
	out  string
	code int
}

// tw runs the twill binary with args (bounded to 2 minutes) and returns its
// combined output and exit code.
func tw(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, twill, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("twill %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{buf.String(), code}
}

// lab runs a `twill lab` subcommand on this run's lab and requires success.
func lab(t *testing.T, args ...string) string {
	t.Helper()
	return labOn(t, labName, args...)
}

// labOn runs a `twill lab` subcommand on lab name and requires success.
func labOn(t *testing.T, name string, args ...string) string {
	t.Helper()
	full := append([]string{"lab"}, args...)
	full = append(full, "--name", name)
	r := tw(t, full...)
	if r.code != 0 {
		t.Fatalf("twill %s: exit %d\n%s", strings.Join(full, " "), r.code, r.out)
	}
	return r.out
}

// call connects from a pod to addr and reports whether it succeeded.
func call(t *testing.T, pod, addr string) (bool, string) {
	t.Helper()
	r := tw(t, "lab", "call", pod, addr, "--timeout", "2s", "--name", labName)
	return r.code == 0, r.out
}

// report is the part of `twill doctor -o json` the tests read.
type report struct {
	Findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Title    string `json:"title"`
	} `json:"findings"`
	NotChecked []struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
	} `json:"notChecked"`
	Applied []json.RawMessage `json:"applied"`
}

// errorIDs returns the distinct IDs of ERROR findings.
func (r report) errorIDs() []string {
	var ids []string
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if f.Severity == "ERROR" && !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
		}
	}
	return ids
}

// doctor runs `twill doctor -o json` inside a lab node (as `lab exec` sets up
// a node: its namespace, its file root, the lab's etcd) and returns the
// report and exit code.
func doctor(t *testing.T, node string, extra ...string) (report, int) {
	t.Helper()
	return doctorOn(t, labName, node, extra...)
}

// doctorOn is doctor on a node of lab name.
func doctorOn(t *testing.T, name, node string, extra ...string) (report, int) {
	t.Helper()
	args := append([]string{"lab", "exec", node, "--name", name, "--", twill, "doctor", "-o", "json"}, extra...)
	r := tw(t, args...)
	if r.code == 2 {
		t.Fatalf("doctor could not run on %s:\n%s", node, r.out)
	}
	var rep report
	i := strings.Index(r.out, "{")
	if i < 0 || json.NewDecoder(strings.NewReader(r.out[i:])).Decode(&rep) != nil {
		t.Fatalf("doctor on %s: output is not a JSON report:\n%s", node, r.out)
	}
	return rep, r.code
}
