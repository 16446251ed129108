package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/firewall"
)

// Severity says how bad a finding is.
type Severity string

// Severities, from worst to mildest. Only ERROR findings make doctor exit 1.
const (
	Error   Severity = "ERROR"
	Warning Severity = "WARNING"
	Info    Severity = "INFO"
)

// Finding is one problem found on the node.
type Finding struct {
	// ID is the stable check ID, e.g. "TW002". Use it with --ignore.
	ID string `json:"id"`
	// Name is the check's short name, e.g. "bridge-nf-call-iptables".
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	// Failure is the FAILURES.md section this finding belongs to, e.g. "F1".
	Failure string `json:"failure,omitempty"`
	// Title is one line saying what is wrong.
	Title string `json:"title"`
	// Evidence lists the facts seen on the node that prove it.
	Evidence []string `json:"evidence,omitempty"`
	// Explanation says what breaks because of it, in a few sentences.
	Explanation string `json:"explanation"`
	// Fix says exactly what to do, as commands or steps.
	Fix string `json:"fix"`
	// Actions are the fixes `twill doctor --fix` may apply by itself. Empty
	// when no fix is safe to apply automatically.
	Actions []Action `json:"actions,omitempty"`
}

// Headline renders the finding's one-line form:
// "[ERROR TW002 bridge-nf-call-iptables]: ... contents are not set to 1".
func (f Finding) Headline() string {
	return fmt.Sprintf("[%s %s %s]: %s", f.Severity, f.ID, f.Name, f.Title)
}

// ActionKind says which adapter applies an Action.
type ActionKind string

// Action kinds.
const (
	// ActSysctl writes Value to the sysctl Name.
	ActSysctl ActionKind = "sysctl"
	// ActForwardAccept inserts the firewall's accepts for Network at the
	// top of the chain Placement names (firewall.EnsureForwardAccepts: the
	// same rules the agent places).
	ActForwardAccept ActionKind = "forward-accept"
)

// Action is one safe, idempotent change that fixes (part of) a finding.
type Action struct {
	Kind ActionKind `json:"kind"`
	// Name and Value for ActSysctl, e.g. "net.ipv4.ip_forward", "1".
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
	// Placement and Network for ActForwardAccept: where the drop is, and
	// the pod network to accept there.
	Placement *firewall.Placement `json:"placement,omitempty"`
	Network   netip.Prefix        `json:"network,omitzero"`
}

// String renders the action as the commands a person would type.
func (a Action) String() string {
	switch a.Kind {
	case ActSysctl:
		return fmt.Sprintf("sysctl -w %s=%s", a.Name, a.Value)
	case ActForwardAccept:
		if a.Placement != nil {
			return strings.Join(a.Placement.Commands(a.Network), "; ")
		}
	}
	return string(a.Kind)
}

// NotChecked records a check that could not run and why.
type NotChecked struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Report is the result of running the checks on one node.
type Report struct {
	Node       string       `json:"node,omitempty"`
	Netns      string       `json:"netns,omitempty"`
	Findings   []Finding    `json:"findings"`
	NotChecked []NotChecked `json:"notChecked,omitempty"`
	// Ignored lists the IDs suppressed with --ignore that did fire.
	Ignored []string `json:"ignored,omitempty"`
}

// Errors counts the ERROR findings.
func (r Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// IDs returns the distinct finding IDs in report order.
func (r Report) IDs() []string {
	var ids []string
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
		}
	}
	return ids
}
