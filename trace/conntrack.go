package trace

import "fmt"

// ctEntry is one connection tracking entry a traced packet created on a node.
type ctEntry struct {
	orig tuple // as first seen, before NAT
	cur  tuple // original direction after the NAT bindings so far
	dnat bool
	snat bool
	// replied is set once a reply passed this entry.
	replied bool
}

func (e *ctEntry) String() string {
	return fmt.Sprintf("%s %s:%d -> %s:%d, reply expected %s:%d -> %s:%d", e.orig.proto, e.orig.src, e.orig.sport, e.orig.dst, e.orig.dport,
		e.cur.dst, e.cur.dport, e.cur.src, e.cur.sport)
}

// conntrack is the set of entries the traced flow made, per node. It is
// copied when a path forks.
type conntrack map[string][]*ctEntry

func (c conntrack) clone() conntrack {
	n := make(conntrack, len(c))
	for k, es := range c {
		cp := make([]*ctEntry, len(es))
		for i, e := range es {
			x := *e
			cp[i] = &x
		}
		n[k] = cp
	}
	return n
}

// ctLookup finds the entry of a packet on host: orig is true when the
// packet is in the original direction.
func (c conntrack) lookup(host string, p Packet) (e *ctEntry, orig bool) {
	return c.lookupTuple(host, p.tuple())
}

// lookupTuple is lookup by tuple.
func (c conntrack) lookupTuple(host string, t tuple) (e *ctEntry, orig bool) {
	for _, e := range c[host] {
		if e.orig == t {
			return e, true
		}
		if e.cur.reverse() == t {
			return e, false
		}
	}
	return nil, false
}
