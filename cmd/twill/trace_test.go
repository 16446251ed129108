package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// runTraceCmd runs `twill trace args...` in-process and returns its output
// and exit code (0 all paths established, 1 some path fails, 2 error).
func runTraceCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newTraceCmd()
	var o bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&o)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		o.WriteString(err.Error())
		return o.String(), exitCode(err)
	}
	return o.String(), 0
}

const traceData = "../../trace/testdata/"

func TestTraceSnapshotsF1(t *testing.T) {
	out, code := runTraceCmd(t, "--snapshot", traceData+"f1-node1.json", "--snapshot", traceData+"healthy-node2.json",
		"--from", "10.244.1.10", "--to", "10.96.1.1:80")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a path fails):\n%s", code, out)
	}
	for _, want := range []string{"FAILURES.md F1", "TW002", "KUBE-SEP", "DNAT to 10.244.1.11:8080", "bridge-nf-call-iptables is 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestTraceSnapshotsHealthyJSON(t *testing.T) {
	out, code := runTraceCmd(t, "--snapshot", traceData+"healthy-node1.json", "--snapshot", traceData+"healthy-node2.json",
		"--from", "10.244.1.10", "--to", "10.244.2.11:8080", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	var doc struct {
		Summary []struct {
			Kind    string `json:"kind"`
			SeenSrc string `json:"seenSrc"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(doc.Summary) != 1 || doc.Summary[0].Kind != "established" || doc.Summary[0].SeenSrc != "10.244.1.10:40000" {
		t.Fatalf("summary %+v", doc.Summary)
	}
}

func TestTraceRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "10.96.0.1:443"}, "--from and --to are required"},
		{[]string{"--from", "x", "--to", "nonsense"}, "want IP, IP:PORT or [IPV6]:PORT"},
		{[]string{"--from", "x", "--to", "[fd00::1]80"}, "want [IPV6]:PORT"},
		{[]string{"--from", "x", "--to", "[fd00::1]:"}, "port must be 1..65535"},
		{[]string{"--from", "x", "--to", "fd00::1"}, "needs a port"},
		{[]string{"--from", "x", "--to", "[fe80::1%eth0]:80"}, "zones"},
		{[]string{"--from", "x", "--to", "[fd00::1]:80", "--snapshot", traceData + "healthy-node1.json"}, "no node of this trace has a global IPv6 address"},
		{[]string{"--from", "x", "--to", "10.96.0.1"}, "needs a port"},
		{[]string{"--from", "x", "--to", "10.96.0.1:80", "--proto", "gre"}, "want tcp, udp, sctp, icmp"},
		{[]string{"--from", "x", "--to", "10.96.0.1", "--proto", "sctp"}, "--proto sctp needs a port"},
		{[]string{"--from", "x", "--to", "10.96.0.1:80", "-o", "yaml"}, "want text, json, html or svg"},
		{[]string{"--from", "x", "--to", "10.96.0.1:80", "--live", "--lab", "-o", "html"}, "leave out -o html"},
		{[]string{"--from", "x", "--to", "10.96.0.1:80", "--snapshot", traceData + "missing.json"}, "missing.json"},
		{[]string{"--from", "nobody", "--to", "10.96.0.1:80", "--snapshot", traceData + "healthy-node1.json"}, "not a pod, node or address"},
		{[]string{"--from", "x", "--to", "10.96.0.1:80", "--live", "--snapshot", traceData + "healthy-node1.json"}, "--live needs --lab"},
	} {
		out, code := runTraceCmd(t, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("trace %v: exit %d, output %q; want exit 2 and %q", c.args, code, out, c.want)
		}
	}
}

func TestTraceSnapshotsHTMLAndSVG(t *testing.T) {
	args := []string{"--snapshot", traceData + "f1-node1.json", "--snapshot", traceData + "healthy-node2.json", "--from", "10.244.1.10", "--to", "10.96.1.1:80"}
	out, code := runTraceCmd(t, append(args, "-o", "html")...)
	if code != 1 || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `class="bypass-marker"`) || !strings.Contains(out, "FAILURES.md F1") {
		t.Fatalf("-o html: exit %d (want 1), output:\n%.400s", code, out)
	}
	out, code = runTraceCmd(t, append(args, "-o", "svg")...)
	if code != 1 || !strings.HasPrefix(out, "<?xml") || !strings.Contains(out, "<svg") || !strings.Contains(out, `class="bypass-marker"`) {
		t.Fatalf("-o svg: exit %d (want 1), output:\n%.400s", code, out)
	}
}
