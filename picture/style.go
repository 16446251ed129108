package picture

// css is the one style sheet of every page and of the standalone SVG:
// colours are variables, switched by prefers-color-scheme and print.
const css = `
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa;
  --pod: #eef6ff; --pod-edge: #5b8fd1; --node: #f5f3ff; --node-edge: #8a72d6;
  --hop: #ffffff; --hop-edge: #8c959f; --path: #1f6feb; --reply: #8250df;
  --rewrite: #9a6700; --rewrite-bg: #fff8c5; --bad: #cf222e; --bad-bg: #ffebe9;
  --good: #1a7f37; --good-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff8c5;
  --band: #eaeef2;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #30363d; --panel: #161b22;
    --pod: #0f2440; --pod-edge: #4a8fe0; --node: #221a3d; --node-edge: #9a86e8;
    --hop: #161b22; --hop-edge: #6e7681; --path: #58a6ff; --reply: #bc8cff;
    --rewrite: #e3b341; --rewrite-bg: #3b2e00; --bad: #ff7b72; --bad-bg: #4c1215;
    --good: #3fb950; --good-bg: #0f2d16; --warn: #d29922; --warn-bg: #3b2e00;
    --band: #21262d;
  }
}
@media print {
  :root {
    --bg: #ffffff; --fg: #000000; --muted: #333333; --line: #999999; --panel: #ffffff;
    --pod: #ffffff; --node: #ffffff; --hop: #ffffff; --band: #eeeeee;
  }
  body { margin: 0; max-width: none; }
  section, .finding, li { break-inside: avoid; }
  .svgwrap { overflow: visible; }
  .svgwrap svg { max-width: 100%; height: auto; }
  a { color: inherit; }
}
html { background: var(--bg); color: var(--fg); }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
code, .mono, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .5rem; margin: .3rem 0; }
.muted { color: var(--muted); }
a { color: var(--path); }
.badge { display: inline-block; border-radius: 999px; padding: 0 .5em; font-size: 12px; font-weight: 600; border: 1px solid currentColor; }
.sev-ERROR, .verdict-bad { color: var(--bad); }
.sev-WARNING, .uncertain { color: var(--warn); }
.sev-INFO { color: var(--muted); }
.verdict-good { color: var(--good); }
ul.verdicts { list-style: none; padding: 0; }
ul.verdicts li { margin: .3rem 0; padding: .4rem .6rem; border-radius: 6px; background: var(--panel); border-left: 4px solid currentColor; }
ul.verdicts li span.text { color: var(--fg); }
.failure { color: var(--fg); margin-top: .2rem; }
.svgwrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); }
details { margin: .3rem 0; }
summary { cursor: pointer; }
ol.steps { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; padding-left: 2.5rem; }
ol.steps li.reply-start { list-style: none; margin: .3rem 0 .3rem -1.5rem; color: var(--reply); font-weight: 600; }
ol.steps li.bypass { color: var(--bad); font-weight: 600; }
table.kv { border-collapse: collapse; margin: .3rem 0; }
table.kv th, table.kv td { text-align: left; vertical-align: top; padding: .15rem .8rem .15rem 0; border-bottom: 1px solid var(--line); }
table.kv th { font-weight: 600; color: var(--muted); }
.finding { border: 1px solid var(--line); border-left: 5px solid currentColor; border-radius: 6px; padding: .5rem .8rem; margin: .6rem 0; background: var(--panel); }
.finding h3 { margin: 0 0 .3rem; font-size: 1rem; }
.finding .body { color: var(--fg); }
footer { margin-top: 2rem; color: var(--muted); font-size: 12px; }

/* the trace diagram */
svg.trace { font: 12px system-ui, -apple-system, "Segoe UI", sans-serif; }
svg.trace .bg { fill: var(--bg); }
svg.trace text { fill: var(--fg); }
svg.trace .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; }
svg.trace .lane-pod rect.head { fill: var(--pod); stroke: var(--pod-edge); }
svg.trace .lane-node rect.head { fill: var(--node); stroke: var(--node-edge); }
svg.trace .lane rect.body { fill: none; stroke: var(--line); stroke-dasharray: 2 4; }
svg.trace .lane text.name { font-weight: 700; font-size: 13px; }
svg.trace .lane text.kind { fill: var(--muted); font-size: 11px; }
svg.trace .hop rect.box { fill: var(--hop); stroke: var(--hop-edge); stroke-width: 1; }
svg.trace .hop text.title { font-weight: 600; }
svg.trace .hop text.sub { fill: var(--muted); }
svg.trace .hop.reply rect.box { stroke: var(--reply); stroke-dasharray: 5 3; }
svg.trace .hop.rewrite rect.box { stroke: var(--rewrite); stroke-width: 2; }
svg.trace .hop text.rewrite-label, svg.trace .hop text.after { fill: var(--rewrite); font-weight: 600; }
svg.trace .hop rect.rewrite-badge { fill: var(--rewrite-bg); stroke: var(--rewrite); }
svg.trace .hop.drop rect.box { stroke: var(--bad); stroke-width: 2; fill: var(--bad-bg); }
svg.trace .hop.uncertain rect.box { stroke: var(--warn); stroke-width: 2; stroke-dasharray: 2 2; }
svg.trace .hop text.uncertain-label { fill: var(--warn); font-weight: 700; }
svg.trace .hop.bypass rect.box { stroke: var(--bad); stroke-width: 2.5; fill: var(--bad-bg); stroke-dasharray: none; }
svg.trace .bypass-marker text { fill: var(--bad); font-weight: 700; }
svg.trace .bypass-marker path { fill: var(--bad); }
svg.trace .verdict rect.box { stroke-width: 2.5; }
svg.trace .verdict-good rect.box { stroke: var(--good); fill: var(--good-bg); }
svg.trace .verdict-bad rect.box { stroke: var(--bad); fill: var(--bad-bg); }
svg.trace .verdict-good text.title { fill: var(--good); }
svg.trace .verdict-bad text.title { fill: var(--bad); }
svg.trace .verdict text.failure { fill: var(--bad); font-weight: 600; }
svg.trace path.link { fill: none; stroke: var(--path); stroke-width: 2; }
svg.trace path.link.reply { stroke: var(--reply); stroke-dasharray: 6 4; }
svg.trace path.link.bypass { stroke: var(--bad); stroke-width: 3; stroke-dasharray: 2 3; }
svg.trace marker path { fill: context-stroke; }
svg.trace .band rect { fill: var(--band); }
svg.trace .band text { font-weight: 600; }
svg.trace .band.reply-band text { fill: var(--reply); }
svg.trace .band.fork text, svg.trace .band.branch text { fill: var(--fg); }
svg.trace .lab-node.broken rect.head { stroke: var(--bad); stroke-width: 2.5; }
svg.trace .broken-marker text { fill: var(--bad); font-weight: 700; }
svg.trace .band.branch rect { fill: none; stroke: var(--path); stroke-dasharray: 1 3; }
`
