package cni

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/twillnet/twill/cni/invoke"
)

// BenchmarkCNIAddDel measures CNI ADD and DEL latency over 100 pods on one
// node, executing the plugin the way a container runtime does (CNI_*
// variables, config on stdin, one process per call), sequentially. It
// reports p50/p99 in milliseconds, plus the cost of starting the plugin
// process at all (CNI VERSION) as a baseline. The sub-benchmarks compare
// an IPv4 node with a dual-stack one (two addresses, four routes) in the
// same run. Run with -benchtime=1x.
func BenchmarkCNIAddDel(b *testing.B) {
	b.Run("ipv4", func(b *testing.B) {
		benchAddDel(b, newNode(b, "10.244.6.1/24", 1450))
	})
	b.Run("dual", func(b *testing.B) {
		n := newNode(b, "", 0)
		n.writeSubnetInfo(dualStackInfo(6, 1450))
		benchAddDel(b, n)
	})
}

func benchAddDel(b *testing.B, n *testNode) {
	const pods = 100
	names := make([]string, pods)
	for i := range names {
		names[i] = n.newPod(i)
	}
	conf := n.pluginConf("")
	var adds, dels, execs []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for _, p := range names {
			_, took, err := n.plugin("VERSION", "", "", conf)
			if err != nil {
				b.Fatal(err)
			}
			execs = append(execs, took)
			_, took, err = n.plugin("ADD", containerIDOf(p), p, conf)
			if err != nil {
				b.Fatal(err)
			}
			adds = append(adds, took)
		}
		for _, p := range names {
			_, took, err := n.plugin("DEL", containerIDOf(p), p, conf)
			if err != nil {
				b.Fatal(err)
			}
			dels = append(dels, took)
		}
	}
	b.StopTimer()
	b.ReportMetric(percentileMS(adds, 50), "add-p50-ms")
	b.ReportMetric(percentileMS(adds, 99), "add-p99-ms")
	b.ReportMetric(percentileMS(dels, 50), "del-p50-ms")
	b.ReportMetric(percentileMS(dels, 99), "del-p99-ms")
	b.ReportMetric(percentileMS(execs, 50), "exec-p50-ms")
}

// percentileMS is the p-th percentile (nearest rank) of d in milliseconds.
func percentileMS(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (p*len(s) + 99) / 100
	if k < 1 {
		k = 1
	}
	return float64(s[k-1].Microseconds()) / 1000
}

// BenchmarkCNIAddDelVsFlannel measures twill-cni beside the chain Flannel's
// CNI plugin delegates to (the reference bridge plugin calling host-local,
// with the configuration flannel hands it: bin/cni/bridge and bin/cni/host-local,
// built by scripts/setup.sh), each on a node of its own, 100 pods each, in
// the same run. The flannel plugin's own process (it execs bridge) is not
// in Flannel's figures: the module is not served here, so its chain costs
// at least this much. It reports both p50/p99 and twill's ratios (below 1:
// twill is faster). Run with -benchtime=1x.
func BenchmarkCNIAddDelVsFlannel(b *testing.B) {
	const pods = 100
	bridge, err := filepath.Abs("../bin/cni/bridge")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bridge), "host-local")); err != nil {
		b.Fatalf("bin/cni/bridge and bin/cni/host-local are missing: run `make tools` (%v)", err)
	}
	tw := newNode(b, "10.244.6.1/24", 1450)
	fl := newNode(b, "", 0)
	twConf := tw.pluginConf("")
	flConf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"bridge","bridge":"cni0","isGateway":true,"isDefaultGateway":true,"hairpinMode":true,"ipMasq":false,"mtu":1450,`+
		`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.7.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"dataDir":%q}}`, fl.network, filepath.Join(fl.root, "var/lib/cni/networks"))
	flCall := func(command, pod string) (time.Duration, error) {
		call := invoke.Call{Plugin: bridge, NodeNetns: fl.ns, Command: command, ContainerID: containerIDOf(pod), Netns: netnsPath(pod), Config: []byte(flConf)}
		_, took, err := call.Run(context.Background())
		return took, err
	}
	twCall := func(command, pod string) (time.Duration, error) {
		_, took, err := tw.plugin(command, containerIDOf(pod), pod, twConf)
		return took, err
	}
	var twPods, flPods []string
	for i := 0; i < pods; i++ {
		twPods, flPods = append(twPods, tw.newPod(i)), append(flPods, fl.newPod(i))
	}
	var twAdd, twDel, flAdd, flDel []time.Duration
	// both runs command for pod i on each node, alternating, so both see
	// the same machine load.
	both := func(command string, i int, twTo, flTo *[]time.Duration) {
		for _, s := range []struct {
			call func(string, string) (time.Duration, error)
			pod  string
			to   *[]time.Duration
		}{{twCall, twPods[i], twTo}, {flCall, flPods[i], flTo}} {
			took, err := s.call(command, s.pod)
			if err != nil {
				b.Fatalf("%s %s: %v", command, s.pod, err)
			}
			*s.to = append(*s.to, took)
		}
	}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := range twPods {
			both("ADD", i, &twAdd, &flAdd)
		}
		for i := range twPods {
			both("DEL", i, &twDel, &flDel)
		}
	}
	b.StopTimer()
	b.ReportMetric(percentileMS(twAdd, 50), "twill-add-p50-ms")
	b.ReportMetric(percentileMS(twAdd, 99), "twill-add-p99-ms")
	b.ReportMetric(percentileMS(flAdd, 50), "flannel-add-p50-ms")
	b.ReportMetric(percentileMS(flAdd, 99), "flannel-add-p99-ms")
	b.ReportMetric(percentileMS(twDel, 50), "twill-del-p50-ms")
	b.ReportMetric(percentileMS(twDel, 99), "twill-del-p99-ms")
	b.ReportMetric(percentileMS(flDel, 50), "flannel-del-p50-ms")
	b.ReportMetric(percentileMS(flDel, 99), "flannel-del-p99-ms")
	b.ReportMetric(percentileMS(twAdd, 50)/percentileMS(flAdd, 50), "add-p50-ratio")
	b.ReportMetric(percentileMS(twDel, 50)/percentileMS(flDel, 50), "del-p50-ratio")
}
