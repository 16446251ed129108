package picture

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nodestate"
)

// DoctorPage is what a doctor report page shows.
type DoctorPage struct {
	Report doctor.Report
	// Snapshot is the capture the report was made from; its summary
	// (overlay, subnets, sysctls, rule counts) heads the page. May be nil.
	Snapshot *nodestate.Snapshot
	// EmbedSnapshot puts the snapshot itself into the page as a download
	// link (a data: URL), so one attachment carries report and capture.
	EmbedSnapshot bool
	// Applied lists the fixes `doctor --fix` applied before this report.
	Applied []doctor.Action
}

var doctorTmpl = template.Must(template.Must(pages.Clone()).New("doctor").Parse(`{{template "head" (print "twill doctor: " .Where)}}
<body>
<div id="report">
<header>
<h1>twill doctor: {{.Where}}</h1>
<div id="summary-line" class="{{if .Errors}}verdict-bad{{else}}verdict-good{{end}}"><b>{{.Headline}}</b></div>
</header>
{{- with .Node}}
<section id="node">
<h2>Node</h2>
<table class="kv">
{{- if .Node}}<tr><th>node</th><td>{{.Node}}</td></tr>{{end}}
{{- if .Hostname}}<tr><th>host</th><td>{{.Hostname}}</td></tr>{{end}}
{{- if .Netns}}<tr><th>netns</th><td>{{.Netns}}</td></tr>{{end}}
{{- if .Captured}}<tr><th>captured</th><td>{{.Captured}}</td></tr>{{end}}
<tr><th>overlay</th><td>{{range .Overlay}}<div class="mono">{{.}}</div>{{else}}no vxlan device, no backend in a subnet file{{end}}</td></tr>
<tr><th>subnets</th><td>{{range .Subnets}}<div class="mono">{{.}}</div>{{else}}none found{{end}}</td></tr>
<tr><th>sysctls</th><td>{{range .KeySysctls}}<div class="mono">{{index . 0}} = {{index . 1}}</div>{{end}}</td></tr>
<tr><th>rules</th><td>{{range .Rules}}<div class="mono rules" data-backend="{{.Backend}}">{{.Backend}}: {{.Total}} ({{.Tables}})</div>{{end}}</td></tr>
{{- if .Leases}}<tr><th>leases</th><td>{{range .Leases}}<div class="mono">{{.}}</div>{{end}}</td></tr>{{end}}
{{- if .Errors}}<tr><th>not captured</th><td>{{range .Errors}}<div class="mono sev-WARNING">{{.}}</div>{{end}}</td></tr>{{end}}
</table>
<details><summary>all {{len .AllSysctls}} sysctls</summary>
<table class="kv mono">{{range .AllSysctls}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
</details>
</section>
{{- end}}
{{- if .Applied}}
<section id="applied">
<h2>Fixes applied</h2>
<ul>{{range .Applied}}<li><code>{{.}}</code></li>{{end}}</ul>
<p class="muted">The findings below are the check after these fixes.</p>
</section>
{{- end}}
<section id="findings">
<h2>Findings</h2>
{{- range .Report.Findings}}
<article class="finding sev-{{.Severity}}" id="{{.ID}}" data-id="{{.ID}}">
<h3><span class="badge">{{.Severity}}</span> {{.ID}} <span class="mono">{{.Name}}</span>: <span class="body">{{.Title}}</span></h3>
<div class="body">
{{- if .Evidence}}
<div><b>Evidence</b><ul class="evidence">{{range .Evidence}}<li class="mono">{{.}}</li>{{end}}</ul></div>
{{- end}}
<p><b>Why it matters:</b> {{.Explanation}}</p>
<div><b>Fix:</b><pre class="fix">{{.Fix}}</pre></div>
{{- if .Actions}}
<div><code>twill doctor --fix</code> can do this for you:<pre>{{range .Actions}}{{.}}
{{end}}</pre></div>
{{- end}}
{{- if .Failure}}
<p>See <a href="{{failures}}">FAILURES.md {{.Failure}}</a>.</p>
{{- end}}
</div>
</article>
{{- else}}
<p class="verdict-good" id="no-findings">No problems found.</p>
{{- end}}
</section>
</div>
{{- if .Report.NotChecked}}
<section id="not-checked">
<h2>Not checked</h2>
<ul>{{range .Report.NotChecked}}<li><b>{{.ID}}</b> <span class="mono">{{.Name}}</span>: {{.Reason}}</li>{{end}}</ul>
</section>
{{- end}}
{{- if .Report.Ignored}}
<p class="muted">Ignored with --ignore: {{range .Report.Ignored}}{{.}} {{end}}</p>
{{- end}}
{{- if .SnapshotURL}}
<section id="snapshot">
<h2>Snapshot</h2>
<p><a id="snapshot-download" download="{{.SnapshotName}}" href="{{.SnapshotURL}}">Download the snapshot this report was made from</a> ({{.SnapshotSize}}); check it again with <code>twill doctor --snapshot {{.SnapshotName}}</code> or trace through it with <code>twill trace --snapshot {{.SnapshotName}}</code>.</p>
</section>
{{- end}}
<footer>Made by <code>twill doctor -o html</code>. This file is self-contained: it fetches nothing.</footer>
<script>{{printJS}}</script>
</body>
</html>
`))

// WriteDoctorHTML writes a doctor report as one self-contained HTML page:
// the node's summary, then each finding with its severity, evidence,
// consequence, fix, check ID and FAILURES.md link.
func WriteDoctorHTML(w io.Writer, p DoctorPage) error {
	r := p.Report
	where := r.Node
	if r.Netns != "" {
		where += " (netns " + r.Netns + ")"
	}
	if where == "" {
		where = "this node"
	}
	warns := 0
	for _, f := range r.Findings {
		if f.Severity == doctor.Warning {
			warns++
		}
	}
	headline := fmt.Sprintf("%s, %s, %s in all (%s not run)", plural(r.Errors(), "error"), plural(warns, "warning"), plural(len(r.Findings), "finding"), plural(len(r.NotChecked), "check"))
	if len(r.Findings) == 0 {
		headline = fmt.Sprintf("no problems found (%s not run)", plural(len(r.NotChecked), "check"))
	}
	data := struct {
		DoctorPage
		Where, Headline string
		Errors          int
		Node            *nodeSummary
		SnapshotURL     template.URL
		SnapshotName    string
		SnapshotSize    string
	}{DoctorPage: p, Where: where, Headline: headline, Errors: r.Errors()}
	if p.Snapshot != nil {
		n := summarizeNode(p.Snapshot)
		data.Node = &n
		if p.EmbedSnapshot {
			var b bytes.Buffer
			if err := nodestate.Save(&b, p.Snapshot); err != nil {
				return fmt.Errorf("doctor page: embed snapshot: %w", err)
			}
			data.SnapshotURL = template.URL("data:application/json;base64," + base64.StdEncoding.EncodeToString(b.Bytes()))
			data.SnapshotName = "snapshot.json"
			if r.Node != "" {
				data.SnapshotName = r.Node + ".json"
			}
			data.SnapshotSize = fmt.Sprintf("%.1f KB", float64(b.Len())/1024)
		}
	}
	if err := doctorTmpl.Execute(w, data); err != nil {
		return fmt.Errorf("doctor page: %w", err)
	}
	return nil
}

// plural renders "1 error", "2 errors".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
