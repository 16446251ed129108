package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

func TestFlannelTraces(t *testing.T) {
	flannel1 := nodestate.Link{Name: "flannel.1", Kind: "vxlan", Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472}}
	twill1 := nodestate.Link{Name: "twill.1", Kind: "vxlan", Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472}}
	eth0 := nodestate.Link{Name: "eth0", Kind: "device"}
	env := func(exists bool) nodestate.Files {
		return nodestate.Files{SubnetFiles: []nodestate.File{{Path: subnetfile.TwillPath, Exists: true}, {Path: subnetfile.FlannelPath, Exists: exists}}}
	}
	const dev = "flanneld ran on this node; its vxlan device flannel.1 uses VNI 1 port 8472, which twill.1 needs too: stop flanneld and delete flannel.1 (ip link del flannel.1), or see docs/migrate.md"
	const file = "flanneld ran on this node (/run/flannel/subnet.env exists)"
	for _, c := range []struct {
		name     string
		snap     nodestate.Snapshot
		writeEnv bool
		want     string
	}{
		{"clean node", nodestate.Snapshot{Links: []nodestate.Link{eth0}, Files: env(false)}, false, ""},
		{"twill's own device", nodestate.Snapshot{Links: []nodestate.Link{eth0, twill1}, Files: env(false)}, false, ""},
		{"flannel.1", nodestate.Snapshot{Links: []nodestate.Link{eth0, flannel1}, Files: env(false)}, false, dev},
		{"flannel.1 and its file", nodestate.Snapshot{Links: []nodestate.Link{eth0, flannel1}, Files: env(true)}, true, dev},
		{"flannel.1 not vxlan", nodestate.Snapshot{Links: []nodestate.Link{eth0, {Name: "flannel.1", Kind: "dummy"}}}, false, ""},
		{"flannel's subnet file", nodestate.Snapshot{Links: []nodestate.Link{eth0}, Files: env(true)}, false, file},
		{"the agent writes that file itself", nodestate.Snapshot{Links: []nodestate.Link{eth0}, Files: env(true)}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := flannelTraces(&c.snap, c.writeEnv)
			if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
				t.Fatalf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestLinkConflict(t *testing.T) {
	want := backend.Desired{Backend: "vxlan", Links: []backend.LinkSpec{{Name: "twill.1", Kind: "vxlan", VNI: 1, Port: 8472}}}
	vx := func(name string, vni, port int) nodestate.Link {
		return nodestate.Link{Name: name, Kind: "vxlan", Vxlan: &nodestate.VxlanAttrs{VNI: vni, Port: port}}
	}
	for _, c := range []struct {
		name  string
		links []nodestate.Link
		want  string
	}{
		{"none", nil, ""},
		{"own device", []nodestate.Link{vx("twill.1", 1, 8472)}, ""},
		{"other VNI", []nodestate.Link{vx("flannel.2", 2, 8472)}, ""},
		{"other port", []nodestate.Link{vx("vx0", 1, 4789)}, ""},
		{"flannel.1", []nodestate.Link{vx("flannel.2", 2, 8472), vx("flannel.1", 1, 8472)}, "flannel.1"},
		{"any name", []nodestate.Link{vx("vxlan-x", 1, 8472)}, "vxlan-x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ce := linkConflict(&nodestate.Snapshot{Links: c.links}, want)
			switch {
			case c.want == "" && ce != nil:
				t.Fatalf("conflict %v, want none", ce)
			case c.want != "" && (ce == nil || ce.Holder != c.want):
				t.Fatalf("conflict %v, want one with %s", ce, c.want)
			}
		})
	}
	if linkConflict(&nodestate.Snapshot{Links: []nodestate.Link{vx("flannel.1", 1, 8472)}}, backend.Desired{Backend: "host-gw"}) != nil {
		t.Fatal("host-gw has no vxlan device to conflict with")
	}
}

// readyReason returns /readyz's status and reason.
func (r *running) readyReason(t *testing.T) (int, string) {
	t.Helper()
	code, body := r.get(t, "/readyz")
	var rd readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("/readyz %q: %v", body, err)
	}
	return code, rd.Reason
}

// A node flanneld ran on, on a Flannel cluster's etcd: the agent says which
// prefix joins that cluster and what flannel.1 means, each once; with a
// config, /readyz names flannel.1 and the fix; once flannel.1 is deleted the
// node gets ready.
func TestFlannelNodeIsExplained(t *testing.T) {
	c := testbed.New(t, "agentfl", 1)
	nd := c.Nodes[0]
	srv := etcdtest.StartServer(t, etcdtest.Options{})
	ctx := context.Background()
	if _, err := srv.Client().Put(ctx, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	testbed.In(t, nd.NS, "ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472", "dev", "eth0", "nolearning")
	testbed.In(t, nd.NS, "ip", "link", "set", "flannel.1", "up")

	root := t.TempDir()
	seedSubnetFile(t, root, nd)
	r := startAgent(t, srv.Endpoint, nd, root, nil)

	const join = "no config at /twill.io/network/config, but Flannel's is at /coreos.com/network/config: to join that Flannel cluster, run with --etcd-prefix /coreos.com/network"
	const traces = "flanneld ran on this node; its vxlan device flannel.1 uses VNI 1 port 8472, which twill.1 needs too: stop flanneld and delete flannel.1 (ip link del flannel.1), or see docs/migrate.md"
	// Three reads of the config at least (the retry backs off 0.5 s, 1 s).
	eventually(t, 15*time.Second, "three failed config reads", func() error {
		if n := metric(t, r, "twill_store_errors_total"); n < 3 {
			return fmt.Errorf("%d store errors", n)
		}
		return nil
	})
	logs := r.logs.String()
	if n := strings.Count(logs, "level=WARN msg=\""+join); n != 1 {
		t.Fatalf("the Flannel prefix pointer logged %d times at WARN, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, "level=WARN msg=\""+traces); n != 1 {
		t.Fatalf("the flannel.1 notice logged %d times at WARN, want once:\n%s", n, logs)
	}
	if code, why := r.readyReason(t); code != http.StatusServiceUnavailable || !strings.Contains(why, join) {
		t.Fatalf("/readyz %d %q: want 503 naming the Flannel prefix", code, why)
	}

	// The cluster operator writes twill's config: the lease is taken, and
	// twill.1 cannot be created next to flannel.1.
	if _, err := srv.Client().Put(ctx, "/twill.io/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	const conflict = "vxlan device flannel.1 uses VNI 1 port 8472, which twill.1 needs (the kernel refuses a second device with both: file exists): if it is Flannel's, stop flanneld and delete it (ip link del flannel.1), or see docs/migrate.md"
	eventually(t, 15*time.Second, "/readyz naming flannel.1", func() error {
		if code, why := r.readyReason(t); code != http.StatusServiceUnavailable || why != conflict {
			return fmt.Errorf("/readyz %d %q", code, why)
		}
		return nil
	})
	eventually(t, 15*time.Second, "three failed reconciles", func() error {
		if n := metric(t, r, "twill_reconcile_errors_total"); n < 3 {
			return fmt.Errorf("%d reconcile errors", n)
		}
		return nil
	})
	if n := strings.Count(r.logs.String(), conflict); n != 1 {
		t.Fatalf("the conflict logged %d times, want once:\n%s", n, r.logs.String())
	}

	testbed.In(t, nd.NS, "ip", "link", "del", "flannel.1")
	eventually(t, 15*time.Second, "ready once flannel.1 is gone", func() error {
		if code, why := r.readyReason(t); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q", code, why)
		}
		return nil
	})
	if out := testbed.In(t, nd.NS, "ip", "-d", "link", "show", "twill.1"); !strings.Contains(out, "vxlan id 1") || !strings.Contains(out, "dstport 8472") {
		t.Fatalf("twill.1 after flannel.1 was deleted:\n%s", out)
	}
}

// metric returns the value of an unlabelled counter from /metrics.
func metric(t *testing.T, r *running, name string) int {
	t.Helper()
	_, body := r.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
