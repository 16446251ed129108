package picture

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/twillnet/twill/lab"
)

// labReport is a 3-node lab as `lab status` reports it, with F1 applied
// on node1 (its agent paused).
func labReport() *lab.Report {
	r := &lab.Report{Name: "twill", Backend: "vxlan", Mode: lab.ModeAgent, Healthy: true, EtcdHealthy: true,
		EtcdEndpoint: "http://192.168.77.1:2379", State: &lab.State{Underlay: "twill-underlay"},
		Scenarios: []lab.Applied{{Scenario: "F1", Node: "node1"}}}
	for i := 1; i <= 3; i++ {
		n := lab.NodeStatus{Name: fmt.Sprintf("node%d", i), Exists: true, IP: fmt.Sprintf("192.168.77.%d", 10+i), Subnet: fmt.Sprintf("10.244.%d.0/24", i),
			Agent: &lab.AgentStatus{ProcessStatus: lab.ProcessStatus{PID: 100 + i, Alive: true}, Ready: i != 1, Paused: i == 1}}
		for k, c := range []string{"a", "b"} {
			n.Pods = append(n.Pods, lab.PodStatus{Name: fmt.Sprintf("node%d-%s", i, c), Exists: true, IP: fmt.Sprintf("10.244.%d.%d", i, 2+k), Server: lab.ProcessStatus{PID: 200 + i, Alive: true}})
		}
		r.Nodes = append(r.Nodes, n)
	}
	return r
}

func TestLabPicture(t *testing.T) {
	var b bytes.Buffer
	if err := WriteLabHTML(&b, labReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Count(out, `class="lab-node`) != 3 || strings.Count(out, `class="hop lab-pod"`) != 6 || strings.Count(out, `class="lab-node lane lane-node broken"`) != 1 {
		t.Errorf("want 3 nodes (one broken) and 6 pods:\n%s", out)
	}
	for _, want := range []string{"agent paused", "broken: F1", "10.244.2.0/24", "eth0 192.168.77.13", "etcd http://192.168.77.1:2379"} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestBrowserLabPage(t *testing.T) {
	bctx := browser(t)
	file := writeFile(t, "lab.html", func(f *os.File) error { return WriteLabHTML(f, labReport()) })
	ctx := open(t, bctx, file)
	if n := count(t, ctx, "svg.lab g.lab-node"); n != 3 {
		t.Errorf("%d nodes drawn", n)
	}
	if !anyContains(texts(t, ctx, "svg.lab .broken-marker"), "F1") {
		t.Errorf("the broken node is not marked")
	}
	screenshot(t, ctx, "#overview", "lab-status", 1)
}
