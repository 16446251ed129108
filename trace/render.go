package trace

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteJSON writes the result as indented JSON, with the summaries and
// failures beside the paths.
func (r *Result) WriteJSON(w io.Writer) error {
	out := struct {
		*Result
		Summary  []Summary `json:"summary"`
		Failures []Failure `json:"failures,omitempty"`
	}{r, r.Summaries(), r.Failures()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteText writes the result for people: the verdict first, then every
// distinct path hop by hop.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "trace %s from %s\n\n", r.Packet, r.Client)
	sums := r.Summaries()
	fmt.Fprintf(w, "Verdict:\n")
	if len(r.OrderUnknown) > 0 {
		fmt.Fprintf(w, "  The outcome depends on the order of base chains hooked in at equal priority:\n")
		for _, t := range r.OrderUnknown {
			fmt.Fprintf(w, "    %s\n", t)
		}
	}
	var group []string
	for i, s := range sums {
		indent := "  "
		if len(r.OrderUnknown) > 0 {
			indent = "    "
			if i == 0 || !slices.Equal(s.Assumes, group) {
				group = s.Assumes
				if len(group) == 0 {
					fmt.Fprintf(w, "  whatever the order:\n")
				} else {
					fmt.Fprintf(w, "  if %s:\n", strings.Join(group, "; and "))
				}
			}
		}
		fmt.Fprintf(w, "%s%5.1f%%  %s\n", indent, 100*s.Prob, s.Outcome)
		if f := s.Failure; f != nil {
			fmt.Fprintf(w, "%s        matches FAILURES.md %s (twill doctor %s): %s\n", indent, f.ID, f.Check, f.Why)
		}
	}
	if r.Uncertain {
		fmt.Fprintf(w, "  UNCERTAIN: some rules could not be evaluated (listed per path below)\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	shown := map[string]bool{}
	for i, p := range r.Paths {
		key := p.Outcome.Kind + p.Outcome.Receiver + p.Outcome.Where + p.Outcome.SeenSrc.Addr().String() + strings.Join(p.Assumes, ";")
		if shown[key] {
			continue
		}
		shown[key] = true
		fmt.Fprintf(w, "\nPath %d (probability %.4g): %s\n", i+1, p.Prob, p.Outcome)
		for _, a := range p.Assumes {
			fmt.Fprintf(w, "  assuming %s\n", a)
		}
		writeSteps(w, "  ", p.Forward)
		if len(p.Reply) > 0 {
			fmt.Fprintf(w, "  -- reply --\n")
			writeSteps(w, "  ", p.Reply)
		}
		for _, u := range p.Uncertain {
			fmt.Fprintf(w, "  UNCERTAIN: %s\n", u)
		}
	}
}

func writeSteps(w io.Writer, indent string, steps []Step) {
	for _, s := range steps {
		where := s.Host
		switch s.Stage {
		case "hook":
			rule := s.Action
			if s.Rule > 0 {
				rule = fmt.Sprintf("rule %d: %s => %s", s.Rule, s.Text, s.Action)
			}
			fmt.Fprintf(w, "%s[%s] %s %s %s/%s %s", indent, where, s.Hook, s.Backend, s.Table, s.Chain, rule)
		default:
			fmt.Fprintf(w, "%s[%s] %s: %s", indent, where, s.Stage, s.Text)
		}
		if s.Note != "" {
			fmt.Fprintf(w, " (%s)", s.Note)
		}
		if s.Stage == "hook" && s.Packet != nil && strings.Contains(s.Action, "NAT") {
			fmt.Fprintf(w, " -> %s", s.Packet)
		}
		fmt.Fprintln(w)
	}
}
