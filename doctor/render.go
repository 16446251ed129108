package doctor

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for people: one headline per finding in the
// kubeadm style, then its evidence, consequence and fix, then what could not
// be checked and a one-line summary.
func (r Report) WriteText(w io.Writer, verbose bool) {
	where := r.Node
	if r.Netns != "" {
		where = strings.TrimSpace(where + " (netns " + r.Netns + ")")
	}
	if where == "" {
		where = "this node"
	}
	for _, f := range r.Findings {
		fmt.Fprintln(w, f.Headline())
		for _, ev := range f.Evidence {
			fmt.Fprintf(w, "        evidence: %s\n", ev)
		}
		fmt.Fprintf(w, "        why it matters: %s\n", f.Explanation)
		fmt.Fprintf(w, "        fix: %s\n", f.Fix)
		if len(f.Actions) > 0 {
			fmt.Fprintf(w, "        `twill doctor --fix` can do this for you: %s\n", actionsText(f.Actions))
		}
		if f.Failure != "" {
			fmt.Fprintf(w, "        see FAILURES.md %s\n", f.Failure)
		}
		fmt.Fprintln(w)
	}
	if len(r.NotChecked) > 0 {
		fmt.Fprintln(w, "Not checked:")
		for _, n := range r.NotChecked {
			fmt.Fprintf(w, "  %s %s: %s\n", n.ID, n.Name, n.Reason)
		}
		fmt.Fprintln(w)
	}
	errs, warns := r.Errors(), 0
	for _, f := range r.Findings {
		if f.Severity == Warning {
			warns++
		}
	}
	ign := ""
	if len(r.Ignored) > 0 {
		ign = fmt.Sprintf(", ignored %s", strings.Join(r.Ignored, ","))
	}
	switch {
	case errs == 0 && warns == 0:
		fmt.Fprintf(w, "%s: no problems found (%d checks, %d not checked%s)\n", where, len(checks), len(r.NotChecked), ign)
	default:
		fmt.Fprintf(w, "%s: %s, %s (%d not checked%s)\n", where, plural(errs, "error"), plural(warns, "warning"), len(r.NotChecked), ign)
	}
}

func actionsText(as []Action) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, "; ")
}

// plural renders "1 error", "2 errors".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
