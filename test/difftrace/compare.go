package difftrace

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/trace"
)

// Observed is what a real probe saw.
type Observed struct {
	// Kind is "ok", "timeout", "refused", "unreachable" or "other".
	Kind string
	// Receiver and Src are the server's name and the client address it saw (ok only).
	Receiver string
	Src      netip.Addr
	Detail   string
}

func (o Observed) String() string {
	if o.Kind == "ok" {
		return fmt.Sprintf("ok: %s saw %s", o.Receiver, o.Src)
	}
	return o.Kind + ": " + o.Detail
}

// Observe turns lab.Call's result into an Observed.
func Observe(line string, err error) Observed {
	if err != nil {
		var ce *lab.CallError
		reason := err.Error()
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		switch {
		case strings.HasPrefix(reason, "timed out"):
			return Observed{Kind: "timeout", Detail: reason}
		case reason == "connection refused", reason == "reset by peer":
			return Observed{Kind: "refused", Detail: reason}
		case reason == "no route to host", reason == "network unreachable":
			return Observed{Kind: "unreachable", Detail: reason}
		}
		return Observed{Kind: "other", Detail: reason}
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return Observed{Kind: "other", Detail: "unexpected answer " + line}
	}
	ap, perr := netip.ParseAddrPort(f[1])
	if perr != nil {
		return Observed{Kind: "other", Detail: "unexpected answer " + line}
	}
	return Observed{Kind: "ok", Receiver: f[0], Src: ap.Addr()}
}

// Expected is one outcome the simulator declares possible, in the probe's
// terms.
type Expected struct {
	Kinds    []string // observed kinds this outcome is consistent with
	Receiver string
	Src      netip.Addr
	Prob     float64
	From     trace.Outcome
	// Assumes are the orders of equal-priority base chains the outcome
	// needs (empty: whatever the order); see trace.Result.OrderUnknown.
	Assumes []string
}

// Expect maps the simulated outcomes to observable ones: the set of
// outcomes the simulator declares possible, over random branches and over
// every order of equal-priority base chains it could not know. The lab's
// pod servers listen on lab.ServerPort only, and nothing listens on the
// nodes.
func Expect(res *trace.Result) []Expected {
	var out []Expected
	for _, s := range res.Summaries() {
		if s.Prob < 1e-9 {
			continue
		}
		e := Expected{Prob: s.Prob, From: s.Outcome, Assumes: s.Assumes}
		switch s.Kind {
		case trace.Established:
			if s.SeenDst.Port() != lab.ServerPort {
				e.Kinds = []string{"refused"} // a pod with no listener on that port answers RST
			} else {
				e.Kinds, e.Receiver, e.Src = []string{"ok"}, s.Receiver, s.SeenSrc.Addr()
			}
		case trace.Local:
			e.Kinds = []string{"refused"}
		case trace.Refused:
			e.Kinds = []string{"refused"}
			if strings.Contains(s.Where, "icmp") {
				// ICMP errors are rate limited per destination (net.ipv4.icmp_ratelimit):
				// a burst of rejects can leave the client waiting.
				e.Kinds = append(e.Kinds, "timeout")
			}
		case trace.Unreachable:
			// ICMP errors are rate limited and ARP failures take seconds:
			// the client may see the error or just time out.
			e.Kinds = []string{"unreachable", "timeout"}
		default: // dropped, reset (F1), reply dropped, lost
			e.Kinds = []string{"timeout"}
		}
		out = append(out, e)
	}
	return out
}

// Ambiguous reports whether the expected outcomes differ by an unknown
// order of base chains (the simulator declares more than one answer).
func Ambiguous(exp []Expected) bool {
	for _, e := range exp {
		if len(e.Assumes) > 0 {
			return true
		}
	}
	return false
}

// Agree reports whether the observation is in the set of expected
// outcomes. When the simulator declares one outcome only, that outcome
// must be what the kernel did.
func Agree(exp []Expected, obs Observed) bool {
	for _, e := range exp {
		for _, k := range e.Kinds {
			if k != obs.Kind {
				continue
			}
			if k == "ok" && (e.Receiver != obs.Receiver || e.Src != obs.Src) {
				continue
			}
			return true
		}
	}
	return false
}
