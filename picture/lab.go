package picture

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/twillnet/twill/lab"
)

// Geometry of the lab picture.
const (
	labNodeW = 250
	labGap   = 56
	labPodH  = 34
	labTop   = 64 // below the underlay bar
)

// writeLabSVG draws a lab: the underlay bridge across the top, a box per
// node hanging from it (underlay address, pod subnet, agent, broken
// scenarios) with its pods inside, and the overlay between the nodes.
func writeLabSVG(b *strings.Builder, r *lab.Report) {
	n := max(len(r.Nodes), 1)
	maxPods := 0
	for _, nd := range r.Nodes {
		maxPods = max(maxPods, len(nd.Pods))
	}
	nodeH := 118 + maxPods*(labPodH+6)
	w := margin*2 + n*labNodeW + (n-1)*labGap
	h := labTop + 30 + nodeH + margin + 28
	fmt.Fprintf(b, `<svg class="trace lab" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="lab %s">`+"\n", w, h, w, h, esc(r.Name))
	fmt.Fprintf(b, "<title>lab %s: %d nodes, %s</title>\n", esc(r.Name), len(r.Nodes), esc(r.Backend))
	fmt.Fprintf(b, `<rect class="bg" x="0" y="0" width="%d" height="%d"/>`+"\n", w, h)
	under := "underlay"
	if r.State != nil {
		under += " " + r.State.Underlay
	}
	etcd := "etcd " + r.EtcdEndpoint
	if !r.EtcdHealthy {
		etcd += " (not answering)"
	}
	fmt.Fprintf(b, `<g class="lab-underlay lane lane-node"><rect class="head" x="%d" y="%d" width="%d" height="34" rx="6"/><text class="name" x="%d" y="%d">%s</text><text class="kind" x="%d" y="%d" text-anchor="end">%s</text></g>`+"\n",
		margin, margin, w-2*margin, margin+10, margin+22, esc(under+" · bridge br0"), w-margin-10, margin+22, esc(etcd))
	broken := map[string][]string{}
	for _, s := range r.Scenarios {
		broken[s.Node] = append(broken[s.Node], s.Scenario)
	}
	y := labTop + 30
	for i, nd := range r.Nodes {
		x := margin + i*(labNodeW+labGap)
		cx := x + labNodeW/2
		fmt.Fprintf(b, `<path class="link" d="M%d,%d V%d"/>`, cx, margin+34, y)
		fmt.Fprintf(b, `<text class="kind mono" x="%d" y="%d">eth0 %s</text>`+"\n", cx+6, y-10, esc(nd.IP))
		if i > 0 {
			px := x - labGap
			fmt.Fprintf(b, `<path class="link reply overlay" d="M%d,%d H%d"/><text class="kind" x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", px, y+60, x, x-labGap/2, y+52, esc(r.Backend))
		}
		cls := "lab-node lane lane-node"
		if len(broken[nd.Name]) > 0 {
			cls += " broken"
		}
		fmt.Fprintf(b, `<g class="%s" data-node="%s">`, cls, esc(nd.Name))
		fmt.Fprintf(b, `<rect class="head" x="%d" y="%d" width="%d" height="%d" rx="8"/>`, x, y, labNodeW, nodeH)
		fmt.Fprintf(b, `<text class="name" x="%d" y="%d">%s</text>`, x+10, y+20, esc(nd.Name))
		fmt.Fprintf(b, `<text class="kind mono" x="%d" y="%d">pods %s</text>`, x+10, y+38, esc(cmp.Or(nd.Subnet, nd.IPv6Subnet)))
		agent := "no agent"
		if a := nd.Agent; a != nil {
			switch {
			case !a.Alive:
				agent = "agent not running"
			case a.Paused:
				agent = "agent paused"
			case a.Ready:
				agent = "agent ready"
			default:
				agent = "agent not ready: " + a.NotReady
			}
		}
		fmt.Fprintf(b, `<text class="kind" x="%d" y="%d">%s</text>`, x+10, y+54, esc(clip(agent, 34)))
		if s := broken[nd.Name]; len(s) > 0 {
			fmt.Fprintf(b, `<g class="broken-marker"><text x="%d" y="%d">%s</text></g>`, x+10, y+72, esc(clip("broken: "+strings.Join(s, ", "), 34)))
		}
		fmt.Fprintf(b, `<text class="kind" x="%d" y="%d">bridge cni0</text>`, x+10, y+98)
		for k, p := range nd.Pods {
			py := y + 108 + k*(labPodH+6)
			pcls := "hop lab-pod"
			if !p.Exists || !p.Server.Alive {
				pcls += " drop"
			}
			fmt.Fprintf(b, `<g class="%s" data-pod="%s"><title>%s</title><rect class="box" x="%d" y="%d" width="%d" height="%d" rx="5"/><text class="title" x="%d" y="%d">%s</text><text class="sub mono" x="%d" y="%d">%s</text></g>`,
				pcls, esc(p.Name), esc(fmt.Sprintf("%s in netns %s, server pid %d", p.Name, p.Namespace, p.Server.PID)), x+12, py, labNodeW-24, labPodH, x+20, py+14, esc(p.Name), x+20, py+28, esc(cmp.Or(p.IP, p.IPv6)))
		}
		b.WriteString("</g>\n")
	}
	status := "healthy"
	if !r.Healthy {
		status = "not healthy: " + strings.Join(r.Problems, "; ")
	}
	fmt.Fprintf(b, `<text class="kind" x="%d" y="%d">%s</text>`+"\n", margin, h-margin, esc(clip(fmt.Sprintf("lab %s · %s · %s mode · %s", r.Name, r.Backend, r.Mode, status), (w-2*margin)/7)))
	b.WriteString("</svg>\n")
}

var labTmpl = template.Must(template.Must(pages.Clone()).New("lab").Parse(`{{template "head" (print "twill lab " .R.Name)}}
<body>
<div id="overview">
<header><h1>twill lab {{.R.Name}}</h1>
<div id="lab-health" class="{{if .R.Healthy}}verdict-good{{else}}verdict-bad{{end}}"><b>{{if .R.Healthy}}healthy{{else}}not healthy{{end}}</b> · {{.R.Backend}} · {{.R.Mode}} mode</div></header>
<div class="svgwrap">
{{.SVG}}
</div>
{{- if .R.Problems}}
<ul>{{range .R.Problems}}<li class="sev-ERROR">{{.}}</li>{{end}}</ul>
{{- end}}
</div>
<footer>Made by <code>twill lab status -o html</code>. This file is self-contained: it fetches nothing.</footer>
</body>
</html>
`))

// WriteLabHTML writes a lab's status (`twill lab status`) as one
// self-contained page with a picture of its topology.
func WriteLabHTML(w io.Writer, r *lab.Report) error {
	var svg strings.Builder
	writeLabSVG(&svg, r)
	if err := labTmpl.Execute(w, struct {
		R   *lab.Report
		SVG template.HTML
	}{r, template.HTML(svg.String())}); err != nil {
		return fmt.Errorf("lab page: %w", err)
	}
	return nil
}
