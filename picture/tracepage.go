package picture

import (
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/twillnet/twill/trace"
)

// FailuresURL is where the FAILURES.md links of the pages point.
const FailuresURL = "https://github.com/twillnet/twill/blob/main/docs/FAILURES.md"

// printOpen opens every <details> before printing, so paper shows all.
const printOpen = `addEventListener("beforeprint",function(){document.querySelectorAll("details").forEach(function(d){d.open=true})})`

var funcs = template.FuncMap{
	"css":      func() template.CSS { return template.CSS(css) },
	"printJS":  func() template.JS { return template.JS(printOpen) },
	"percent":  percent,
	"failures": func() string { return FailuresURL },
	"good":     good,
	"stepLine": stepLine,
	"bypass":   bypassesConntrack,
	"inc":      func(i int) int { return i + 1 },
}

// pages holds the templates of every page; "head" is their common start
// (it takes the page title).
var pages = template.Must(template.New("head").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{.}}</title>
<style>{{css}}</style>
</head>`))

var traceTmpl = template.Must(template.Must(pages.Clone()).New("trace").Parse(`{{template "head" (printf "twill trace: %s from %s" .R.Packet .R.Client)}}
<body>
<div id="overview">
<header>
<h1>twill trace</h1>
<div class="mono" id="packet">{{.R.Packet}} from {{.R.Client}}</div>
</header>
<section id="verdict">
<h2>Verdict</h2>
<ul class="verdicts">
{{- range .Sums}}
<li class="verdict-item verdict-{{.Kind}} {{if good .Kind}}verdict-good{{else}}verdict-bad{{end}}"><b>{{percent .Prob}}</b> {{.Kind}} · <span class="text">{{.Outcome}}</span>
{{- with .Failure}}
<div class="failure">matches <a href="{{failures}}">FAILURES.md {{.ID}}</a> (<code>twill doctor</code> {{.Check}}): {{.Why}}</div>
{{- end}}
</li>
{{- end}}
</ul>
{{- if .R.Uncertain}}
<p class="uncertain" id="uncertain"><b>Uncertain:</b> some rules could not be evaluated; they are marked <b>?</b> and listed per path below.</p>
{{- end}}
{{- range .R.Notes}}
<p class="muted note">note: {{.}}</p>
{{- end}}
</section>
<section id="diagram">
<h2>Path</h2>
<p class="muted">One lane per pod or node, one box per hop, in kernel order. Solid arrows: the packet; dashed: the reply. Yellow badges mark rewrites (DNAT, SNAT, masquerade, mark, reverse NAT); red boxes drop or bypass conntrack; <b>?</b> marks what could not be evaluated. Hover a box for its rules.</p>
<div class="svgwrap">
{{.SVG}}
</div>
</section>
</div>
<section id="hops">
<h2>Hops</h2>
{{- range $i, $p := .R.Paths}}
<details class="path"{{if eq $i 0}} open{{end}}>
<summary>Path {{inc $i}} ({{percent $p.Prob}}): {{$p.Outcome}}</summary>
<ol class="steps">
{{- range $p.Forward}}
<li{{if bypass .}} class="bypass"{{end}}>[{{.Host}}] {{stepLine .}}</li>
{{- end}}
{{- if $p.Reply}}
<li class="reply-start">reply</li>
{{- range $p.Reply}}
<li{{if bypass .}} class="bypass"{{end}}>[{{.Host}}] {{stepLine .}}</li>
{{- end}}
{{- end}}
</ol>
{{- range $p.Uncertain}}
<p class="uncertain">UNCERTAIN: {{.}}</p>
{{- end}}
</details>
{{- end}}
</section>
<footer>Made by <code>twill trace -o html</code>. This file is self-contained: it fetches nothing.</footer>
<script>{{printJS}}</script>
</body>
</html>
`))

// WriteTraceHTML writes the trace as one self-contained HTML page: the
// verdict, the lane diagram and every path hop by hop.
func WriteTraceHTML(w io.Writer, r *trace.Result) error {
	var svg strings.Builder
	writeTraceSVG(&svg, r, false)
	err := traceTmpl.Execute(w, struct {
		R    *trace.Result
		Sums []trace.Summary
		SVG  template.HTML
	}{r, r.Summaries(), template.HTML(svg.String())})
	if err != nil {
		return fmt.Errorf("trace page: %w", err)
	}
	return nil
}
