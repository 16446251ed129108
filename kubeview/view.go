package kubeview

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// View is a read-only picture of the cluster's Services and Pods.
type View struct {
	Services []Service `json:"services"`
	Pods     []Pod     `json:"pods"`
}

// Service is one Service with the endpoints of its EndpointSlices.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ClusterIP is invalid for headless Services (clusterIP: None) and
	// ExternalName Services: kube-proxy programs nothing for them.
	ClusterIP netip.Addr    `json:"clusterIP"`
	Ports     []ServicePort `json:"ports"`
	// Endpoints are every address x port of the Service's EndpointSlices
	// (IPv4 and IPv6 slices alike), ready or not.
	Endpoints []Endpoint `json:"endpoints"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	// Name is the port's name ("" when the Service has a single unnamed port).
	Name string `json:"name,omitempty"`
	// Protocol is "TCP", "UDP" or "SCTP".
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
}

// Endpoint is one address:port of an EndpointSlice.
type Endpoint struct {
	// PortName matches the ServicePort.Name it serves.
	PortName string         `json:"portName,omitempty"`
	Protocol string         `json:"protocol"`
	Addr     netip.AddrPort `json:"addr"`
	// Ready is the slice's conditions.ready (unset counts as ready, as the
	// API defines). kube-proxy sends new connections only to ready ones.
	Ready bool `json:"ready"`
	// Node is the endpoint's nodeName, when the slice says.
	Node string `json:"node,omitempty"`
}

// Pod is one Pod with its node and address.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
	// IP is status.podIP; invalid while the pod has none yet.
	IP netip.Addr `json:"ip"`
	// HostNetwork pods have their node's address.
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// Key returns "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Key returns "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Service returns the Service namespace/name, or nil.
func (v *View) Service(namespace, name string) *Service {
	for i := range v.Services {
		if v.Services[i].Namespace == namespace && v.Services[i].Name == name {
			return &v.Services[i]
		}
	}
	return nil
}

// Pod returns the Pod namespace/name, or nil.
func (v *View) Pod(namespace, name string) *Pod {
	for i := range v.Pods {
		if v.Pods[i].Namespace == namespace && v.Pods[i].Name == name {
			return &v.Pods[i]
		}
	}
	return nil
}

// ServiceByIP returns the Service whose ClusterIP is a, or nil.
func (v *View) ServiceByIP(a netip.Addr) *Service {
	for i := range v.Services {
		if v.Services[i].ClusterIP == a {
			return &v.Services[i]
		}
	}
	return nil
}

// ReadyEndpoints returns the distinct ready endpoint addresses of the
// Service's port p (matched by port name and protocol), sorted.
func (s *Service) ReadyEndpoints(p ServicePort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range s.Endpoints {
		if e.Ready && e.PortName == p.Name && e.Protocol == p.Protocol && !slices.Contains(out, e.Addr) {
			out = append(out, e.Addr)
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Sort orders Services, their ports and endpoints, and Pods by name, so
// reports are stable.
func (v *View) Sort() {
	slices.SortFunc(v.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for i := range v.Services {
		s := &v.Services[i]
		slices.SortFunc(s.Endpoints, func(a, b Endpoint) int {
			return cmp.Or(cmp.Compare(a.PortName, b.PortName), a.Addr.Compare(b.Addr))
		})
	}
	slices.SortFunc(v.Pods, func(a, b Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// String renders the port as "name 80/TCP".
func (p ServicePort) String() string {
	if p.Name == "" {
		return fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	}
	return fmt.Sprintf("%s %d/%s", p.Name, p.Port, p.Protocol)
}
