package picture

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twillnet/twill/trace"
)

// branchNode is one hop of the trie that merges the paths of a trace by
// their common beginning: a random split shows as a node with several kids.
type branchNode struct {
	hop   hop
	kids  []*branchNode
	paths []int // indexes of the paths through this node
}

// sequence is one path as hops: forward, a "reply" separator, reply, verdict.
func sequence(r *trace.Result, i int) []hop {
	p := r.Paths[i]
	seq := hopsOf(p.Forward, p.Uncertain, false)
	if len(p.Reply) > 0 {
		seq = append(seq, hop{Stage: "reply", key: "reply"})
		seq = append(seq, hopsOf(p.Reply, p.Uncertain, true)...)
	}
	host := ""
	for _, h := range slices.Backward(seq) {
		if h.Host != "" {
			host = h.Host
			break
		}
	}
	o := p.Outcome
	seq = append(seq, hop{Host: host, Stage: "verdict", Outcome: &o, Prob: p.Prob, Reply: len(p.Reply) > 0, key: fmt.Sprintf("verdict %d", i)})
	return seq
}

// buildTrie merges the paths' hop sequences by common prefix.
func buildTrie(r *trace.Result) *branchNode {
	root := &branchNode{}
	for i := range r.Paths {
		n := root
		for _, h := range sequence(r, i) {
			var next *branchNode
			for _, k := range n.kids {
				if k.hop.key == h.key {
					next = k
					break
				}
			}
			if next == nil {
				next = &branchNode{hop: h}
				n.kids = append(n.kids, next)
			}
			next.hop.Uncertain = next.hop.Uncertain || h.Uncertain
			next.paths = append(next.paths, i)
			n = next
		}
	}
	return root
}

// lane is one column of the diagram: a pod or a node.
type lane struct {
	Host string
	Node bool // a node (netfilter, bridge, overlay), else a pod
	X, W int
}

// rowKind says what a diagram row holds.
type rowKind int

const (
	rowHop    rowKind = iota
	rowBand           // "reply" separator
	rowFork           // a random split starts
	rowBranch         // one branch of a split
)

// row is one line of the diagram.
type row struct {
	Kind rowKind
	Hop  *hop
	Lane int // the hop's lane
	// From is the lane of the previous hop to connect from, -1 for none.
	From int
	// FromBypass is true when the previous hop bypassed conntrack.
	FromBypass bool
	Text       string
	Y, H       int
}

// Geometry of the diagram, in SVG user units (CSS pixels).
const (
	podLaneW  = 230
	verdictW  = 520
	nodeLaneW = 300
	headerH   = 44
	rowGap    = 10
	bandH     = 24
	margin    = 12
)

// diagram is a laid-out trace.
type diagram struct {
	Lanes []lane
	Rows  []row
	W, H  int
}

func hopHeight(h *hop) int {
	n := 2
	if h.Rewrite != "" {
		n++
	}
	if h.Bypass {
		n++
	}
	if h.Outcome != nil && h.Outcome.Failure != nil {
		n++
	}
	return 8 + 14*n
}

// nodeStages are the stages only a node (not a pod) has.
var nodeStages = map[string]bool{"hook": true, "conntrack": true, "bridge": true, "vxlan": true, "wire": true}

// layout places the trie: lanes in order of first visit, rows depth first.
func layout(r *trace.Result) *diagram {
	root := buildTrie(r)
	d := &diagram{}
	laneOf := map[string]int{}
	var visit func(n *branchNode)
	visit = func(n *branchNode) {
		if h := n.hop; h.Host != "" {
			i, ok := laneOf[h.Host]
			if !ok {
				i = len(d.Lanes)
				laneOf[h.Host] = i
				d.Lanes = append(d.Lanes, lane{Host: h.Host})
			}
			if nodeStages[h.Stage] {
				d.Lanes[i].Node = true
			}
		}
		for _, k := range n.kids {
			visit(k)
		}
	}
	visit(root)
	x := margin
	for i := range d.Lanes {
		w := podLaneW
		if d.Lanes[i].Node {
			w = nodeLaneW
		}
		d.Lanes[i].X, d.Lanes[i].W = x, w
		x += w
	}
	d.W = x + margin

	y := margin + headerH + rowGap
	add := func(rw row) {
		rw.Y = y
		d.Rows = append(d.Rows, rw)
		y += rw.H + rowGap
	}
	var walk func(n *branchNode, from int, fromBypass bool)
	// walk adds the rows of n and its only kids; at a split, a band per way.
	walk = func(n *branchNode, from int, fromBypass bool) {
		for {
			h := &n.hop
			switch {
			case h.Stage == "reply":
				add(row{Kind: rowBand, Text: "reply", From: -1, H: bandH})
			case h.Host != "":
				l := laneOf[h.Host]
				add(row{Kind: rowHop, Hop: h, Lane: l, From: from, FromBypass: fromBypass, H: hopHeight(h)})
				from, fromBypass = l, h.Bypass
			}
			if len(n.kids) == 0 {
				return
			}
			if len(n.kids) == 1 {
				n = n.kids[0]
				continue
			}
			add(row{Kind: rowFork, From: -1, H: bandH, Text: fmt.Sprintf("the packet takes one of %d ways from here (random split):", len(n.kids))})
			for i, k := range n.kids {
				add(row{Kind: rowBranch, From: -1, H: bandH, Text: branchText(r, k, i, len(n.kids))})
				walk(k, -1, false) // the band above starts each way
			}
			return
		}
	}
	for _, k := range root.kids {
		walk(k, -1, false)
	}
	d.H = y - rowGap + margin
	return d
}

// branchText describes one branch of a split: its probability, why it is
// taken (the first note of its first hop) and how its paths end.
func branchText(r *trace.Result, n *branchNode, i, of int) string {
	p := 0.0
	ends := []string{}
	for _, pi := range n.paths {
		p += r.Paths[pi].Prob
		if s := r.Paths[pi].Outcome.String(); !slices.Contains(ends, s) {
			ends = append(ends, s)
		}
	}
	t := fmt.Sprintf("way %d of %d · %s", i+1, of, percent(p))
	if why := firstNote(n.hop); why != "" {
		t += " · " + why
	} else if i == of-1 {
		t += " · otherwise (no random rule before it was taken)"
	}
	if len(ends) == 1 {
		t += " → " + ends[0]
	}
	return t
}

// firstNote is the first note of a hop's steps (the probability of a
// statistic branch, an assumption).
func firstNote(h hop) string {
	if len(h.Notes) > 0 {
		return h.Notes[0]
	}
	return ""
}

func percent(p float64) string {
	t := fmt.Sprintf("%.1f", 100*p)
	return strings.TrimSuffix(t, ".0") + "%"
}
