package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runDoctorCmd runs `twill doctor args...` in-process and returns its output
// and exit code (0, 1 errors found, 2 could not run).
func runDoctorCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newDoctorCmd()
	var o bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&o)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if err != nil {
		o.WriteString(err.Error())
		return o.String(), exitCode(err)
	}
	return o.String(), 0
}

func TestDoctorRejectsBadInputWithoutRunning(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\n  \"version\": 1,\n  \"routes\": [\n    {\"dst\": 12}\n  ]\n}\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--snapshot", bad}, "line 4"},
		{[]string{"--snapshot", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"--snapshot", bad, "--fix"}, "cannot be combined with --snapshot"},
		{[]string{"--ignore", "TW999"}, "TW999: no such check"},
		{[]string{"--cluster-cidr", "10.244.0.0/33"}, "--cluster-cidr"},
		{[]string{"-o", "yaml"}, "want text, json or html"},
		{[]string{"--netns", "twill-t-does-not-exist"}, "ip netns list"},
	} {
		out, code := runDoctorCmd(t, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("doctor %v: exit %d, output %q; want exit 2 and %q", c.args, code, out, c.want)
		}
	}
}

// TestDoctorSaysWhatItCouldNotCheck runs doctor on a namespace with no
// iptables or nft binary on PATH: it must run, and list what it could not check.
func TestDoctorSaysWhatItCouldNotCheck(t *testing.T) {
	snapRequireRoot(t)
	ns := snapTestNetns(t)
	t.Setenv("PATH", t.TempDir())
	out, code := runDoctorCmd(t, "--netns", ns, "--root", t.TempDir(), "--cluster-cidr", "10.244.0.0/16", "-o", "json")
	if code == 2 {
		t.Fatalf("doctor could not run: %s", out)
	}
	var rep struct {
		NotChecked []struct{ ID, Reason string } `json:"notChecked"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, n := range rep.NotChecked {
		got[n.ID] = n.Reason
	}
	for _, id := range []string{"TW010", "TW020", "TW021", "TW030"} {
		if !strings.Contains(got[id], "not found in PATH") {
			t.Errorf("%s: not-checked reason %q, want it to say the binary is not found", id, got[id])
		}
	}
}

func TestDoctorListsChecks(t *testing.T) {
	out, code := runDoctorCmd(t, "--list")
	if code != 0 || !strings.Contains(out, "TW002  bridge-nf-call-iptables") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestDoctorSnapshotHTML(t *testing.T) {
	out, code := runDoctorCmd(t, "--snapshot", traceData+"f1-node1.json", "-o", "html")
	if code != 1 || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `id="TW002"`) || !strings.Contains(out, "FAILURES.md F1") {
		t.Fatalf("exit %d (want 1), output:\n%.400s", code, out)
	}
}
