// Package picture draws twill's results for people who look rather than
// read: a packet trace (trace.Result) as an SVG lane diagram or a
// self-contained HTML page, and a doctor report (doctor.Report) with the
// node's summary as an HTML page for a support ticket.
//
// Every page is one file with no network fetches: no external scripts,
// styles, fonts or images. The pages are readable in light and dark mode
// (prefers-color-scheme) and print on white paper with every detail open.
//
// The trace diagram has one lane per host the packet visits (pods and
// nodes, in order of first visit) and one row per hop. Consecutive netfilter
// rules of one hook, backend and table form one hop; every rule with its
// text is in the hop's tooltip (SVG <title>) and in the expandable hop list
// below the diagram. Rewrites (DNAT, SNAT, masquerade, mark, reverse NAT)
// are marked where they happen; the reply is drawn dashed; a reply bridged
// past conntrack (FAILURES.md F1) carries an element of class
// "bypass-marker"; each branch of a random split (statistic, numgen) is
// drawn after a band that gives its probability and its end.
//
// The package only reads trace's and doctor's exported results; it decides
// nothing about packets or findings itself.
package picture
