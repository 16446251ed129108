package picture

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/trace"
)

// wellFormed parses an SVG document as XML to its end.
func wellFormed(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
	}
}

func TestTraceSVGWellFormed(t *testing.T) {
	for _, c := range traceCases {
		var b bytes.Buffer
		if err := WriteTraceSVG(&b, c.result(t)); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, b.Bytes())
	}
}

// F1: exactly the reply's bridge hop bypasses conntrack, and the forward
// DNAT and the verdict are drawn. This pins the trace wording the bypass
// marker reads (bypassesConntrack).
func TestF1BypassMarker(t *testing.T) {
	r := caseNamed(t, "f1-same-node-service").result(t)
	var bypass []hop
	dnat := false
	for _, p := range r.Paths {
		for _, h := range hopsOf(p.Forward, nil, false) {
			if h.Bypass {
				t.Errorf("forward hop %q marked as bypass", h.Sub)
			}
			if strings.Contains(h.Rewrite, "DNAT") && strings.Contains(h.After, "10.244.1.11:8080") {
				dnat = true
			}
		}
		for _, h := range hopsOf(p.Reply, nil, true) {
			if h.Bypass {
				bypass = append(bypass, h)
			}
		}
	}
	if len(bypass) != 1 || bypass[0].Host != "node1" || bypass[0].Stage != "bridge" {
		t.Fatalf("want the reply's bridge hop on node1 marked, got %+v", bypass)
	}
	if !dnat {
		t.Errorf("the DNAT to 10.244.1.11:8080 is not marked as a rewrite")
	}
	var b bytes.Buffer
	if err := WriteTraceSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), `class="bypass-marker"`); n != 1 {
		t.Errorf("%d bypass markers in the SVG", n)
	}
}

// The statistic split: one fork, four ways, each with 25% and a lane for
// every node and pod.
func TestSplitLayout(t *testing.T) {
	r := caseNamed(t, "vxlan-statistic-split").result(t)
	d := layout(r)
	forks, ways := 0, 0
	for _, rw := range d.Rows {
		switch rw.Kind {
		case rowFork:
			forks++
		case rowBranch:
			ways++
			if !strings.Contains(rw.Text, "25%") {
				t.Errorf("way %q without its probability", rw.Text)
			}
		}
	}
	if forks != 1 || ways != 4 {
		t.Errorf("%d forks, %d ways; want 1 and 4", forks, ways)
	}
	var hosts []string
	for _, l := range d.Lanes {
		hosts = append(hosts, l.Host)
	}
	if strings.Join(hosts, " ") != "node2-a node2 node1 node1-a node1-b node2-b" {
		t.Errorf("lanes %v", hosts)
	}
}

// Rule text from a snapshot is hostile: it is escaped in the page and in
// the SVG, which stays well-formed.
func TestTraceEscapes(t *testing.T) {
	evil := `-A X -m comment --comment "</title><script>alert(1)</script>" -j DROP`
	pk := &trace.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: "tcp", Sport: 1, Dport: 2}
	r := &trace.Result{Client: `a<b>"c"`, Packet: *pk, Paths: []*trace.Path{{
		Prob: 1,
		Forward: []trace.Step{
			{Host: `a<b>"c"`, Stage: "send", Text: "<img src=x>", Packet: pk},
			{Host: "n&1", Stage: "hook", Hook: "FORWARD", Backend: "iptables-nft", Table: "filter", Chain: "X", Rule: 1, Text: evil, Action: "DROP"},
		},
		Outcome: trace.Outcome{Kind: trace.Dropped, Where: "<b>here</b>"},
	}}}
	var h, s bytes.Buffer
	if err := WriteTraceHTML(&h, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteTraceSVG(&s, r); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"html": h.String(), "svg": s.String()} {
		for _, bad := range []string{"<script>alert", "<img src=x>", "<b>here"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: %q reached the output unescaped", name, bad)
			}
		}
	}
	wellFormed(t, s.Bytes())
}

// A rule the simulator could not evaluate is flagged on its hop.
func TestUncertainHop(t *testing.T) {
	pk := &trace.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: "tcp", Sport: 1, Dport: 2}
	steps := []trace.Step{
		{Host: "n1", Stage: "route", Text: "forward", Packet: pk},
		{Host: "n1", Stage: "hook", Hook: "FORWARD", Backend: "iptables-nft", Table: "filter", Chain: "FORWARD", Rule: 3, Text: "-A FORWARD -m weird -j ACCEPT", Action: "ACCEPT"},
		{Host: "n1", Stage: "hook", Hook: "POSTROUTING", Backend: "iptables-nft", Table: "nat", Chain: "POSTROUTING", Action: "policy ACCEPT"},
	}
	hops := hopsOf(steps, []string{"iptables-nft filter/FORWARD rule 3 (-A FORWARD -m weird -j ACCEPT): match weird"}, false)
	if len(hops) != 3 || !hops[1].Uncertain || hops[0].Uncertain || hops[2].Uncertain {
		t.Fatalf("want only the FORWARD hop uncertain (and not folded into POSTROUTING): %+v", hops)
	}
	r := &trace.Result{Client: "n1", Packet: *pk, Uncertain: true, Paths: []*trace.Path{{Prob: 1, Forward: steps, Outcome: trace.Outcome{Kind: trace.Lost}, Uncertain: []string{"iptables-nft filter/FORWARD rule 3 (-A FORWARD -m weird -j ACCEPT): match weird"}}}}
	var b bytes.Buffer
	if err := WriteTraceHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `class="hop stage-hook uncertain"`) || !strings.Contains(b.String(), `id="uncertain"`) {
		t.Errorf("the uncertain hop or the page's uncertain note is missing")
	}
}
