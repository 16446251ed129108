package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/netconf"
)

// metric reads one sample of /metrics ("name" or `name{label="v"}`), -1 when absent.
func (r *running) metric(t *testing.T, sample string) int {
	t.Helper()
	_, body := r.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\d+)`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Hostile and broken leases in etcd: each is rejected with its reason on
// every node, the good nodes' pod traffic continues without a lost round
// trip, no /healthz flips, the log stays bounded; a deleted own lease comes
// back; an etcd outage shows in logs, metrics and /readyz.
func TestAgentHoldsTheNodeAgainstHostileStore(t *testing.T) {
	c := testbed.New(t, "agenthx", 2)
	srv := etcdtest.StartServer(t, etcdtest.Options{})
	agents, _ := startAgents(t, c, srv.Endpoint)
	for i, a := range agents {
		eventually(t, 15*time.Second, c.Nodes[i].Name+" ready", func() error {
			if code, body := a.get(t, "/readyz"); code != 200 || !strings.Contains(body, `"store":"ok"`) {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	n1, n2 := c.Nodes[0], c.Nodes[1]
	eventually(t, 15*time.Second, "node1's pod reaches node2's", func() error {
		_, err := testbed.Call(n1.Pod, n2.PodIP, 8080)
		return err
	})
	st := startStream(t, n1.Pod, n2.Pod, n2.PodIP)

	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(key, value string) {
		t.Helper()
		if _, err := cli.Put(ctx, lease.DefaultPrefix+"/subnets/"+key, value); err != nil {
			t.Fatal(err)
		}
	}
	val := func(ip, mac string) string {
		return fmt.Sprintf(`{"PublicIP":%q,"BackendType":"vxlan","BackendData":{"VtepMAC":%q},"Node":"evil"}`, ip, mac)
	}
	put("10.244.2.5-24", val("192.168.77.50", "02:00:00:00:00:50"))                              // host bits over node2
	put("10.244.1.0-25", val("192.168.77.51", "02:00:00:00:00:51"))                              // a /25 inside node1's
	put("10.244.9.0-24", val("192.168.77.52", "ff:ff:ff:ff:ff:ff"))                              // broadcast MAC
	put("10.244.10.0-24", val("224.0.0.1", "02:00:00:00:00:53"))                                 // multicast underlay
	put("10.244.11.0-24", val("0.0.0.0", "02:00:00:00:00:54"))                                   // unspecified
	put("10.244.12.0-24", val(n1.IP.String(), "02:00:00:00:00:55"))                              // node1's own address
	put("10.244.13.0-24", `{"PublicIP":"192.168.77.56","Node":"`+strings.Repeat("x", 8000)+`"}`) // too large
	for i, a := range agents {
		eventually(t, 10*time.Second, c.Nodes[i].Name+" rejects every bad lease", func() error {
			want := map[string]int{"subnet": 2, "vtep-mac": 1, "public-ip": 2, "malformed": 1}
			if i == 0 {
				want["public-ip"] = 3 // node1's own address, claimed by another
			}
			for reason, n := range want {
				if got := a.metric(t, `twill_peers_rejected{reason="`+reason+`"}`); got != n {
					return fmt.Errorf("twill_peers_rejected{reason=%q} = %d, want %d", reason, got, n)
				}
			}
			return nil
		})
	}
	// The good peers stay programmed, nothing is programmed for the bad ones.
	for _, nd := range c.Nodes {
		fdb := testbed.In(t, nd.NS, "bridge", "fdb", "show", "dev", "twill.1")
		if strings.Contains(fdb, "ff:ff:ff:ff:ff:ff") || strings.Contains(fdb, "224.0.0.1") || strings.Contains(fdb, "0.0.0.0") {
			t.Errorf("%s programmed a rejected lease:\n%s", nd.Name, fdb)
		}
		routes := testbed.In(t, nd.NS, "ip", "route")
		for _, bad := range []string{"10.244.9.0", "10.244.10.0", "10.244.11.0", "10.244.12.0", "10.244.13.0", "10.244.1.0/25"} {
			if bad == "10.244.12.0" && nd.Name != n1.Name {
				continue // node1's address claimed by another: only node1 can tell
			}
			if strings.Contains(routes, bad) {
				t.Errorf("%s has a route for rejected %s:\n%s", nd.Name, bad, routes)
			}
		}
	}
	// 3 s of resyncs (10 of them) with the bad leases in place: no reconcile
	// error, the log does not grow with each resync.
	logLen := len(agents[0].logs.String())
	errsBefore := agents[0].metric(t, "twill_reconcile_errors_total")
	time.Sleep(3 * time.Second)
	if grown := strings.Count(agents[0].logs.String()[logLen:], "\n"); grown > 3 {
		t.Errorf("node1 logged %d lines in 3s of resyncs with bad leases in place:\n%s", grown, agents[0].logs.String()[logLen:])
	}
	if e := agents[0].metric(t, "twill_reconcile_errors_total"); e != errsBefore {
		t.Errorf("reconcile errors %d -> %d with bad leases in place", errsBefore, e)
	}
	if got := strings.Count(agents[0].logs.String(), "peer rejected"); got != 7 {
		t.Errorf("node1 logged %d rejections, want 7 (each once):\n%s", got, agents[0].logs.String())
	}

	if n, err := st.stop(); err != nil || n < 50 {
		t.Errorf("pod stream node1 -> node2 through the bad leases: %d round trips, error %v", n, err)
	}

	// node2's own lease deleted by hand: back within seconds.
	key := lease.SubnetKey(lease.DefaultPrefix, n2.Subnet)
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "node2's lease back", func() error {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			return fmt.Errorf("not there (%v)", err)
		}
		if n := agents[1].metric(t, "twill_lease_lost_total"); n != 1 {
			return fmt.Errorf("twill_lease_lost_total = %d", n)
		}
		return nil
	})

	eventually(t, 10*time.Second, "node1's pod reaches node2's again", func() error {
		_, err := testbed.Call(n1.Pod, n2.PodIP, 8080)
		return err
	})
	st = startStream(t, n1.Pod, n2.Pod, n2.PodIP)

	// etcd down: one WARN, store_up 0, /readyz ready with store degraded;
	// back: one INFO, store_up 1.
	srv.Kill() // a crash: etcd restores every lease with a full TTL when it restarts
	eventually(t, 10*time.Second, "outage seen", func() error {
		code, body := agents[0].get(t, "/readyz")
		if code != 200 || !strings.Contains(body, `"store":"degraded"`) || agents[0].metric(t, "twill_store_up") != 0 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	if n := strings.Count(agents[0].logs.String(), "store unreachable"); n != 1 {
		t.Errorf("%d 'store unreachable' lines, want 1:\n%s", n, agents[0].logs.String())
	}
	if agents[0].metric(t, "twill_store_errors_total") < 1 {
		t.Error("twill_store_errors_total did not count the outage")
	}
	srv.Restart()
	eventually(t, 20*time.Second, "recovery seen", func() error {
		if _, body := agents[0].get(t, "/readyz"); !strings.Contains(body, `"store":"ok"`) || agents[0].metric(t, "twill_store_up") != 1 {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	if n := strings.Count(agents[0].logs.String(), "store reachable again"); n != 1 {
		t.Errorf("%d 'store reachable again' lines, want 1", n)
	}

	if n, err := st.stop(); err != nil || n < 50 {
		t.Errorf("pod stream node1 -> node2 through the etcd outage: %d round trips, error %v", n, err)
	}
	for i, a := range agents {
		if code, body := a.get(t, "/healthz"); code != 200 {
			t.Errorf("%s /healthz %d %s", c.Nodes[i].Name, code, body)
		}
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(m, "http://"+a.health+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s /healthz: %d, want 405", m, resp.StatusCode)
			}
		}
	}
}

// The net-conf in the store changes under a running agent: one WARN, the
// agent keeps its config; restarted with a SubnetLen that does not fit its
// lease, it refuses and changes nothing.
func TestAgentNetConfChange(t *testing.T) {
	c := testbed.New(t, "agentcfg", 1)
	srv := etcdtest.StartServer(t, etcdtest.Options{})
	nd := c.Nodes[0]
	admin, err := etcd.New(context.Background(), etcd.Options{Endpoints: []string{srv.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(js string) {
		t.Helper()
		cfg, err := netconf.Parse("test", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.PutConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	root := t.TempDir()
	seedSubnetFile(t, root, nd)
	a := startAgent(t, srv.Endpoint, nd, root, nil)
	eventually(t, 15*time.Second, "ready", func() error {
		if code, body := a.get(t, "/readyz"); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	put(`{"Network": "10.244.0.0/16", "SubnetLen": 23, "Backend": {"Type": "vxlan"}}`)
	eventually(t, 10*time.Second, "the change is noticed", func() error {
		if !strings.Contains(a.logs.String(), "network config in the store changed") {
			return fmt.Errorf("no warning yet")
		}
		return nil
	})
	time.Sleep(2 * time.Second) // several resyncs
	if n := strings.Count(a.logs.String(), "network config in the store changed"); n != 1 {
		t.Errorf("%d warnings for one config change, want 1", n)
	}
	if got := testbed.In(t, nd.NS, "ip", "route"); !strings.Contains(got, "10.244.1.0/24 dev vpod") {
		t.Errorf("the running agent changed the node after a config change:\n%s", got)
	}
	a.stop()
	before := testbed.In(t, nd.NS, "ip", "-d", "link") + testbed.In(t, nd.NS, "ip", "route")
	err = Run(ctx, Options{Node: nd.Name, Iface: "eth0", Root: root, HealthAddr: "off", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Deps{Store: admin, Kernel: NodeKernel{Netns: nd.NS, Root: root}})
	if !errors.Is(err, lease.ErrIncompatibleConfig) || !strings.Contains(err.Error(), "SubnetLen 23") {
		t.Fatalf("restart with SubnetLen 23: %v, want a refusal naming it", err)
	}
	if after := testbed.In(t, nd.NS, "ip", "-d", "link") + testbed.In(t, nd.NS, "ip", "route"); after != before {
		t.Errorf("the refused restart changed the node:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
