package picture

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/trace"
)

// pageBudget is the size goal of a trace page (issue 13): one attachment.
const pageBudget = 200 << 10

// bigTrace traces a call to a Service with three endpoints (a statistic
// split, two of them across the vxlan overlay) on nodes whose kube-proxy
// (iptables mode, from kubeproxy's renderer) has 10,000 Services.
func bigTrace(t testing.TB) *trace.Result {
	t.Helper()
	pods := labPods(map[string]bool{"node1": true, "node2": true})
	var svcs []kubeproxy.Service
	for i := range 10000 {
		s := kubeproxy.Service{Namespace: "big", Name: fmt.Sprintf("s%d", i), PortName: "http", Port: 80, Protocol: "tcp",
			ClusterIP: netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})}
		for k := range 3 {
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(pods[(i+k)%len(pods)].IP.Addr(), 8080))
		}
		svcs = append(svcs, s)
	}
	rules := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, svcs)
	var snaps []*nodestate.Snapshot
	for _, f := range []string{"healthy-node1", "healthy-node2"} {
		s, err := nodestate.LoadFile(traceData + f + ".json")
		if err != nil {
			t.Fatal(err)
		}
		s.Iptables.NFT.Save, s.Nftables.JSON = rules, ""
		snaps = append(snaps, s)
	}
	w, err := trace.NewWorld(snaps, pods)
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.Trace(trace.Request{From: "node1-a", To: netip.AddrFrom4([4]byte{10, 97, 39, 15}), Port: 80}) // Service 9999
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Paths) < 3 {
		t.Fatalf("want the 3-way split, got %d paths", len(r.Paths))
	}
	return r
}

// TestTracePageSize10k: the page of a 10,000-Service node's trace stays
// within the size budget (the size is deterministic; the time to render and
// open it is measured by the benchmarks below).
func TestTracePageSize10k(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTraceHTML(&b, bigTrace(t)); err != nil {
		t.Fatal(err)
	}
	if b.Len() > pageBudget {
		t.Errorf("page is %d bytes, budget %d", b.Len(), pageBudget)
	}
	t.Logf("page: %d bytes", b.Len())
}

// BenchmarkTraceHTML10k: rendering the page of a 10,000-Service node's
// trace; reports the page size.
func BenchmarkTraceHTML10k(b *testing.B) {
	r := bigTrace(b)
	var size int
	for b.Loop() {
		var cw countWriter
		if err := WriteTraceHTML(&cw, r); err != nil {
			b.Fatal(err)
		}
		size = int(cw)
	}
	b.ReportMetric(float64(size)/1024, "KB/page")
}

// BenchmarkTraceHTMLOpen10k: opening that page in headless Chromium; ns/op
// is the whole round trip through the DevTools protocol, ms/load the
// browser's own time from navigation start to the end of the load event.
func BenchmarkTraceHTMLOpen10k(b *testing.B) {
	r := bigTrace(b)
	dir := b.TempDir()
	file := filepath.Join(dir, "big.html")
	var buf bytes.Buffer
	if err := WriteTraceHTML(&buf, r); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := browser(b)
	var page float64
	n := 0
	for b.Loop() {
		if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file)); err != nil {
			b.Fatal(err)
		}
		// The browser's own clock: from the start of the navigation to the
		// end of the load event, after a forced layout of the diagram.
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("svg.trace").getBoundingClientRect().height,
			(() => { const e = performance.getEntriesByType("navigation")[0]; return e.loadEventEnd - e.startTime })()`))
		if err != nil {
			b.Fatal(err)
		}
		page += ms
		n++
	}
	b.ReportMetric(page/float64(n), "ms/load")
}

// countWriter counts the bytes written to it.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
