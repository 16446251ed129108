package backend

import (
	"fmt"

	"github.com/twillnet/twill/nodestate"
)

// Change actions.
const (
	ActionAdd     = "add"
	ActionReplace = "replace"
	ActionDelete  = "delete"
)

// Change kinds (also the Repair kinds and the agent's metric label).
const (
	KindLink     = "link"
	KindAddr     = "addr"
	KindRoute    = "route"
	KindNeighbor = "neighbor"
	KindFDB      = "fdb"
)

// Change is one kernel object to add, replace or delete. Exactly one of
// Link, Addr, Route, Neighbor, FDB is set, matching Kind.
type Change struct {
	Action string `json:"action"`
	Kind   string `json:"kind"`
	// Link is the desired device (add, replace) or the device to delete
	// (only Name is meaningful then).
	Link *LinkSpec `json:"link,omitempty"`
	// Recreate is set on a link replace whose immutable attributes (VNI,
	// port, local address, underlay device, learning) differ: the device is
	// deleted and created again, and everything on it is re-added. A replace
	// without Recreate fixes MTU, MAC or up state in place.
	Recreate bool                `json:"recreate,omitempty"`
	Addr     *nodestate.Addr     `json:"addr,omitempty"`
	Route    *nodestate.Route    `json:"route,omitempty"`
	Neighbor *nodestate.Neighbor `json:"neighbor,omitempty"`
	FDB      *nodestate.FDBEntry `json:"fdb,omitempty"`
	// Reason says why, e.g. "missing", "not desired", "mac 0e:74:.. != 0e:74:..".
	Reason string `json:"reason"`
}

// Object renders the changed object in `ip`/`bridge` command words.
func (c Change) Object() string {
	switch {
	case c.Link != nil:
		if c.Action == ActionDelete {
			return c.Link.Name
		}
		return c.Link.String()
	case c.Addr != nil:
		return fmt.Sprintf("%s dev %s", c.Addr.Prefix, c.Addr.Link)
	case c.Route != nil:
		return RouteString(*c.Route)
	case c.Neighbor != nil:
		return fmt.Sprintf("%s lladdr %s dev %s %s", c.Neighbor.IP, c.Neighbor.MAC, c.Neighbor.Dev, c.Neighbor.State)
	case c.FDB != nil:
		return fmt.Sprintf("%s dev %s dst %s self permanent", c.FDB.MAC, c.FDB.Dev, c.FDB.Dst)
	}
	return "?"
}

// String renders the change for logs: "add route 10.244.2.0/24 via ... (missing)".
func (c Change) String() string {
	return fmt.Sprintf("%s %s %s (%s)", c.Action, c.Kind, c.Object(), c.Reason)
}

// Repair is one change that was applied to the kernel, as reported to the
// agent (logged, and counted by Kind in twill_repairs_total).
type Repair struct {
	// Kind is "link", "addr", "route", "neighbor" or "fdb".
	Kind string `json:"kind"`
	// Action is "add", "replace" or "delete".
	Action string `json:"action"`
	// Object is the object in `ip` words, e.g. "10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink".
	Object string `json:"object"`
	// Reason says why it was needed ("missing", "not desired", "mac ... != ...").
	Reason string `json:"reason,omitempty"`
}

// Repair returns the report for an applied change.
func (c Change) Repair() Repair {
	return Repair{Kind: c.Kind, Action: c.Action, Object: c.Object(), Reason: c.Reason}
}

// RouteString renders a route in `ip route` words.
func RouteString(r nodestate.Route) string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Onlink {
		s += " onlink"
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.Table != 0 && r.Table != nodestate.TableMain {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}
