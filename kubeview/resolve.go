package kubeview

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Target is what a "ns/name[:port]" reference resolved to.
type Target struct {
	// Addr is the pod's IP or the Service's ClusterIP.
	Addr netip.Addr
	// Port is the numeric port (0 when none was given or needed).
	Port uint16
	// Protocol is the Service port's protocol in lower case ("tcp", "udp"),
	// "" for pods (the caller's --proto decides).
	Protocol string
	// Kind is "pod" or "service"; Key is its "namespace/name".
	Kind, Key string
}

// IsRef reports whether s looks like a "namespace/name[:port]" reference
// rather than an address (it has a '/' and is not a CIDR).
func IsRef(s string) bool {
	host, _, _ := strings.Cut(s, ":")
	if !strings.Contains(host, "/") {
		return false
	}
	_, err := netip.ParsePrefix(host)
	return err != nil
}

// ResolvePod resolves "namespace/pod" to the pod's IP.
func (v *View) ResolvePod(ref string) (Target, error) {
	ns, name, port, err := splitRef(ref)
	if err != nil {
		return Target{}, err
	}
	if port != "" {
		return Target{}, fmt.Errorf("%q: a sender is a pod, without a port (ns/pod)", ref)
	}
	return v.pod(ns, name, ref)
}

func (v *View) pod(ns, name, ref string) (Target, error) {
	p := v.Pod(ns, name)
	if p == nil {
		return Target{}, fmt.Errorf("%q: no pod %s/%s in the API (kubectl -n %s get pods)", ref, ns, name, ns)
	}
	if !p.IP.IsValid() {
		return Target{}, fmt.Errorf("%q: pod %s/%s has no IP yet (not scheduled or sandbox not created; kubectl -n %s describe pod %s)", ref, ns, name, ns, name)
	}
	return Target{Addr: p.IP, Kind: "pod", Key: p.Key()}, nil
}

// ResolveTarget resolves a destination: "namespace/service[:port]" (port
// a number or a port name; optional when the Service has one port) to the
// ClusterIP and port, or "namespace/pod:port" (a number) to the pod's IP.
// A name that is both a Service and a Pod means the Service.
func (v *View) ResolveTarget(ref string) (Target, error) {
	ns, name, port, err := splitRef(ref)
	if err != nil {
		return Target{}, err
	}
	if s := v.Service(ns, name); s != nil {
		return resolveService(s, port, ref)
	}
	t, err := v.pod(ns, name, ref)
	if err != nil {
		if v.Pod(ns, name) == nil {
			return Target{}, fmt.Errorf("%q: no Service or pod %s/%s in the API (kubectl -n %s get svc,pods)", ref, ns, name, ns)
		}
		return Target{}, err
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("%q: a pod's port must be a number 1..65535", ref)
		}
		t.Port = uint16(n)
	}
	return t, nil
}

func resolveService(s *Service, port, ref string) (Target, error) {
	if !s.ClusterIP.IsValid() {
		return Target{}, fmt.Errorf("%q: Service %s has no ClusterIP (headless or ExternalName): trace a pod behind it instead (ns/pod:port)", ref, s.Key())
	}
	t := Target{Addr: s.ClusterIP, Kind: "service", Key: s.Key()}
	var match []ServicePort
	for _, p := range s.Ports {
		if port == "" || p.Name == port || strconv.Itoa(int(p.Port)) == port {
			match = append(match, p)
		}
	}
	switch {
	case len(match) == 1:
		t.Port, t.Protocol = match[0].Port, strings.ToLower(match[0].Protocol)
		return t, nil
	case port == "" && len(s.Ports) > 1:
		return Target{}, fmt.Errorf("%q: Service %s has %d ports (%s): name one, e.g. %s:%d", ref, s.Key(), len(s.Ports), portList(s.Ports), s.Key(), s.Ports[0].Port)
	case len(match) > 1: // same port number for TCP and UDP
		t.Port = match[0].Port
		return t, nil
	}
	return Target{}, fmt.Errorf("%q: Service %s has no port %s (it has %s)", ref, s.Key(), port, portList(s.Ports))
}

func portList(ps []ServicePort) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	if len(s) == 0 {
		return "no ports"
	}
	return strings.Join(s, ", ")
}

// splitRef splits "ns/name[:port]".
func splitRef(ref string) (ns, name, port string, err error) {
	host, port, _ := strings.Cut(ref, ":")
	ns, name, ok := strings.Cut(host, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", "", fmt.Errorf("%q: want namespace/name or namespace/name:port", ref)
	}
	return ns, name, port, nil
}
