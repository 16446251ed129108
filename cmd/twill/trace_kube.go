package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twillnet/twill/kubeview"
)

// traceRefs are --from, --to and --proto after resolving Kubernetes names.
type traceRefs struct {
	from, to, proto string
	// notes say what each name resolved to, for the user.
	notes []string
}

// resolveTraceRefs turns `--from ns/pod` into the pod's IP and
// `--to ns/svc[:port]` or `--to ns/pod:port` into IP:PORT, using the API
// view v. Plain addresses pass through. A Service port's protocol becomes
// --proto unless the user set --proto (protoSet). v is nil without
// --kubeconfig: then a name is an error that says so.
func resolveTraceRefs(v *kubeview.View, from, to, proto string, protoSet bool) (traceRefs, error) {
	r := traceRefs{from: from, to: to, proto: proto}
	needAPI := func(flag, val string) error {
		return fmt.Errorf("%s %s names a Kubernetes object: add --kubeconfig FILE (or --kubeconfig auto) so trace can ask the API for its address", flag, val)
	}
	if kubeview.IsRef(from) {
		if v == nil {
			return r, needAPI("--from", from)
		}
		t, err := v.ResolvePod(from)
		if err != nil {
			return r, fmt.Errorf("--from %w", err)
		}
		r.from = t.Addr.String()
		r.notes = append(r.notes, fmt.Sprintf("--from pod %s is %s", t.Key, t.Addr))
	}
	if kubeview.IsRef(to) {
		if v == nil {
			return r, needAPI("--to", to)
		}
		t, err := v.ResolveTarget(to)
		if err != nil {
			return r, fmt.Errorf("--to %w", err)
		}
		r.to = t.Addr.String()
		if t.Port != 0 {
			r.to = net.JoinHostPort(t.Addr.String(), strconv.Itoa(int(t.Port)))
		}
		if t.Protocol != "" && !protoSet {
			r.proto = t.Protocol
		}
		r.notes = append(r.notes, fmt.Sprintf("--to %s %s is %s", t.Kind, t.Key, r.to))
	}
	return r, nil
}
