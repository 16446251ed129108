package picture

import (
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/twillnet/twill/trace"
)

// WriteTraceSVG writes the trace as one standalone SVG document (with its
// own style sheet, light and dark).
func WriteTraceSVG(w io.Writer, r *trace.Result) error {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	writeTraceSVG(&b, r, true)
	_, err := io.WriteString(w, b.String())
	return err
}

// esc escapes text for XML and HTML.
func esc(s string) string { return html.EscapeString(s) }

// clip shortens s to about n characters, with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n < 2 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}

// good reports whether an outcome means the call works.
func good(kind string) bool { return kind == trace.Established || kind == trace.Local }

// writeTraceSVG draws the diagram; standalone adds the XML namespace and
// the style sheet.
func writeTraceSVG(b *strings.Builder, r *trace.Result, standalone bool) {
	d := layout(r)
	title := fmt.Sprintf("trace %s from %s", r.Packet, r.Client)
	fmt.Fprintf(b, `<svg class="trace" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`+"\n", d.W, d.H, d.W, d.H, esc(title))
	fmt.Fprintf(b, "<title>%s</title>\n", esc(title))
	if standalone {
		fmt.Fprintf(b, "<style>%s</style>\n", css)
	}
	b.WriteString(`<defs>`)
	for _, m := range []struct{ id, color string }{{"arrow", "var(--path)"}, {"arrow-reply", "var(--reply)"}, {"arrow-bypass", "var(--bad)"}} {
		fmt.Fprintf(b, `<marker id="%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" style="fill:%s"/></marker>`, m.id, m.color)
	}
	b.WriteString("</defs>\n")
	fmt.Fprintf(b, `<rect class="bg" x="0" y="0" width="%d" height="%d"/>`+"\n", d.W, d.H)

	// Lanes: a head box and a dotted body down the whole diagram.
	for _, l := range d.Lanes {
		kind, cls := "pod", "lane lane-pod"
		if l.Node {
			kind, cls = "node", "lane lane-node"
		}
		fmt.Fprintf(b, `<g class="%s" data-host="%s">`, cls, esc(l.Host))
		fmt.Fprintf(b, `<rect class="body" x="%d" y="%d" width="%d" height="%d" rx="6"/>`, l.X+3, margin, l.W-6, d.H-2*margin)
		fmt.Fprintf(b, `<rect class="head" x="%d" y="%d" width="%d" height="%d" rx="6"/>`, l.X+3, margin, l.W-6, headerH)
		fmt.Fprintf(b, `<text class="name" x="%d" y="%d" text-anchor="middle">%s</text>`, l.X+l.W/2, margin+19, esc(clip(l.Host, (l.W-12)/8)))
		fmt.Fprintf(b, `<text class="kind" x="%d" y="%d" text-anchor="middle">%s</text>`, l.X+l.W/2, margin+35, kind)
		b.WriteString("</g>\n")
	}

	// Links first, so the boxes are drawn over their ends.
	bottom := map[int]int{} // lane -> bottom of its last hop
	for _, rw := range d.Rows {
		if rw.Kind != rowHop {
			continue
		}
		if rw.From >= 0 {
			from, to := d.Lanes[rw.From], d.Lanes[rw.Lane]
			x1, x2 := from.X+from.W/2, to.X+to.W/2
			y1, y2 := bottom[rw.From], rw.Y
			cls, mk := "link", "arrow"
			if rw.Hop.Reply {
				cls, mk = "link reply", "arrow-reply"
			}
			if rw.FromBypass || rw.Hop.Bypass {
				cls, mk = cls+" bypass", "arrow-bypass"
			}
			path := fmt.Sprintf("M%d,%d V%d", x1, y1, y2)
			if x1 != x2 {
				mid := y2 - rowGap/2
				path = fmt.Sprintf("M%d,%d V%d H%d V%d", x1, y1, mid, x2, y2)
			}
			fmt.Fprintf(b, `<path class="%s" d="%s" marker-end="url(#%s)"/>`+"\n", cls, path, mk)
		}
		bottom[rw.Lane] = rw.Y + rw.H
		// a row's From lane keeps its bottom: later rows link from the newest hop
	}

	for i, rw := range d.Rows {
		switch rw.Kind {
		case rowHop:
			writeHop(b, d, rw, i)
		default:
			cls := "band"
			switch rw.Kind {
			case rowBand:
				cls += " reply-band"
			case rowFork:
				cls += " fork"
			case rowBranch:
				cls += " branch"
			}
			fmt.Fprintf(b, `<g class="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="4"/><text x="%d" y="%d">%s</text><title>%s</title></g>`+"\n",
				cls, margin, rw.Y, d.W-2*margin, rw.H, margin+10, rw.Y+16, esc(clip(rw.Text, (d.W-2*margin-20)/7)), esc(rw.Text))
		}
	}
	b.WriteString("</svg>\n")
}

// writeHop draws one hop box with its tooltip (every rule with its text).
func writeHop(b *strings.Builder, d *diagram, rw row, i int) {
	h := rw.Hop
	l := d.Lanes[rw.Lane]
	x, w := l.X+10, l.W-20
	if h.Outcome != nil && w < verdictW {
		// the verdict needs room: widen its box over the next lanes
		w = min(verdictW, d.W-2*margin-10)
		x = min(x, d.W-margin-5-w)
	}
	cls := "hop stage-" + h.Stage
	if h.Reply {
		cls += " reply"
	}
	if h.Rewrite != "" {
		cls += " rewrite"
	}
	if h.Bypass {
		cls += " bypass"
	}
	if h.Uncertain {
		cls += " uncertain"
	}
	if h.Drop {
		cls += " drop"
	}
	title, sub := h.Title, h.Sub
	var tip []string
	if h.Outcome != nil {
		cls += " verdict verdict-" + h.Outcome.Kind
		if good(h.Outcome.Kind) {
			cls += " verdict-good"
			title = "✔ " + h.Outcome.Kind
		} else {
			cls += " verdict-bad"
			title = "✘ " + h.Outcome.Kind
		}
		title += " · " + percent(h.Prob)
		sub = h.Outcome.String()
		tip = append(tip, sub)
		if f := h.Outcome.Failure; f != nil {
			tip = append(tip, fmt.Sprintf("matches FAILURES.md %s (twill doctor %s): %s", f.ID, f.Check, f.Why))
		}
	} else {
		tip = append(tip, h.Host)
		tip = append(tip, h.Rules...)
	}
	fmt.Fprintf(b, `<g class="%s" id="hop-%d" data-host="%s" data-stage="%s">`, cls, i, esc(h.Host), esc(h.Stage))
	fmt.Fprintf(b, "<title>%s</title>", esc(strings.Join(tip, "\n")))
	fmt.Fprintf(b, `<rect class="box" x="%d" y="%d" width="%d" height="%d" rx="5"/>`, x, rw.Y, w, rw.H)
	chars := (w - 16) / 7
	ty := rw.Y + 16
	titleW := chars
	if h.Rewrite != "" {
		bw := 10 + 8*len([]rune(h.Rewrite))
		fmt.Fprintf(b, `<rect class="rewrite-badge" x="%d" y="%d" width="%d" height="16" rx="8"/><text class="rewrite-label" x="%d" y="%d" text-anchor="middle">%s</text>`,
			x+w-bw-6, rw.Y+5, bw, x+w-6-bw/2, rw.Y+17, esc(h.Rewrite))
		titleW -= len([]rune(h.Rewrite)) + 2
	}
	if h.Uncertain {
		title = "? " + title
	}
	fmt.Fprintf(b, `<text class="title" x="%d" y="%d">%s</text>`, x+8, ty, esc(clip(title, titleW)))
	ty += 14
	fmt.Fprintf(b, `<text class="sub mono" x="%d" y="%d">%s</text>`, x+8, ty, esc(clip(sub, chars)))
	if h.Rewrite != "" {
		ty += 14
		fmt.Fprintf(b, `<text class="after mono" x="%d" y="%d">→ %s</text>`, x+8, ty, esc(clip(h.After, chars-2)))
	}
	if h.Bypass {
		ty += 14
		fmt.Fprintf(b, `<g class="bypass-marker" id="bypass-%d"><path d="M%d,%d l6,-11 l6,11 z"/><text x="%d" y="%d">%s</text></g>`,
			i, x+8, ty+2, x+20, ty, esc(clip("bypassed conntrack: no reverse NAT", chars-2)))
	}
	if h.Outcome != nil && h.Outcome.Failure != nil {
		ty += 14
		f := h.Outcome.Failure
		fmt.Fprintf(b, `<text class="failure" x="%d" y="%d">%s</text>`, x+8, ty, esc(clip(fmt.Sprintf("FAILURES.md %s · twill doctor %s", f.ID, f.Check), chars)))
	}
	b.WriteString("</g>\n")
}
