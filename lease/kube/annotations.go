package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// Annotations twill writes on its node's Node object. Together with
// spec.podCIDRs they are the node's lease: a Node without
// AnnotationPublicIP or AnnotationPublicIPv6 is not a twill peer.
const (
	// AnnotationPublicIP is the node's IPv4 underlay address
	// ("192.168.1.10"); absent on an IPv6-only node.
	AnnotationPublicIP = "twill.io/public-ip"
	// AnnotationPublicIPv6 is the node's IPv6 underlay address, present
	// when the cluster runs IPv6 (as Flannel's public-ipv6).
	AnnotationPublicIPv6 = "twill.io/public-ipv6"
	// AnnotationBackendV6Data is the IPv6 backend's data as JSON (vxlan:
	// the IPv6 VTEP's MAC), as Flannel's backend-v6-data.
	AnnotationBackendV6Data = "twill.io/backend-v6-data"
	// AnnotationBackendType is "vxlan" or "host-gw".
	AnnotationBackendType = "twill.io/backend-type"
	// AnnotationBackendData is the backend's data as JSON, e.g.
	// {"VtepMAC":"0e:11:22:33:44:55"}; absent when the backend has none.
	AnnotationBackendData = "twill.io/backend-data"
)

// Flannel's annotations (--kube-subnet-mgr, the default prefix
// flannel.alpha.coreos.com). twill publishes its lease in them too and reads
// a Node that has only them as a peer, so Flannel and twill nodes of one
// cluster see each other while it moves node by node (docs/migrate.md).
const (
	// FlannelAnnotationPublicIP is the node's IPv4 underlay address.
	FlannelAnnotationPublicIP = "flannel.alpha.coreos.com/public-ip"
	// FlannelAnnotationPublicIPv6 is the node's IPv6 underlay address.
	FlannelAnnotationPublicIPv6 = "flannel.alpha.coreos.com/public-ipv6"
	// FlannelAnnotationBackendType is "vxlan" or "host-gw".
	FlannelAnnotationBackendType = "flannel.alpha.coreos.com/backend-type"
	// FlannelAnnotationBackendData is the backend's data as JSON (vxlan:
	// {"VNI":1,"VtepMAC":"..."}; host-gw: null).
	FlannelAnnotationBackendData = "flannel.alpha.coreos.com/backend-data"
	// FlannelAnnotationBackendV6Data is the IPv6 backend's data as JSON.
	FlannelAnnotationBackendV6Data = "flannel.alpha.coreos.com/backend-v6-data"
	// FlannelAnnotationKubeSubnetManager is "true" on every Flannel node:
	// flanneld ignores Nodes without it.
	FlannelAnnotationKubeSubnetManager = "flannel.alpha.coreos.com/kube-subnet-manager"
)

// dialect names the annotation keys of one lease publisher: twill's own
// set or Flannel's.
type dialect struct {
	publicIP, backendType, backendData, publicIPv6, backendV6Data string
}

var (
	twillDialect   = dialect{AnnotationPublicIP, AnnotationBackendType, AnnotationBackendData, AnnotationPublicIPv6, AnnotationBackendV6Data}
	flannelDialect = dialect{FlannelAnnotationPublicIP, FlannelAnnotationBackendType, FlannelAnnotationBackendData, FlannelAnnotationPublicIPv6, FlannelAnnotationBackendV6Data}
)

// annotationKeys are all annotations twill owns, in a fixed order: its own
// set and Flannel's.
var annotationKeys = []string{AnnotationPublicIP, AnnotationBackendType, AnnotationBackendData, AnnotationPublicIPv6, AnnotationBackendV6Data,
	FlannelAnnotationPublicIP, FlannelAnnotationBackendType, FlannelAnnotationBackendData, FlannelAnnotationPublicIPv6, FlannelAnnotationBackendV6Data,
	FlannelAnnotationKubeSubnetManager}

// TwillKeys returns the keys of twill's own set (twill.io/*) that ann
// carries, in a fixed order.
func TwillKeys(ann map[string]string) []string {
	var out []string
	for _, k := range []string{twillDialect.publicIP, twillDialect.backendType, twillDialect.backendData, twillDialect.publicIPv6, twillDialect.backendV6Data} {
		if _, ok := ann[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// flannelSet returns the annotations of Flannel's set that ann carries.
func flannelSet(ann map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range []string{flannelDialect.publicIP, flannelDialect.backendType, flannelDialect.backendData, flannelDialect.publicIPv6, flannelDialect.backendV6Data, FlannelAnnotationKubeSubnetManager} {
		if v, ok := ann[k]; ok {
			out[k] = v
		}
	}
	return out
}

// Annotations returns the annotations that publish req on its Node: twill's
// set and Flannel's (which flanneld on other nodes reads).
func Annotations(req lease.Request) map[string]string {
	a := map[string]string{FlannelAnnotationKubeSubnetManager: "true"}
	for _, d := range []dialect{twillDialect, flannelDialect} {
		a[d.backendType] = req.BackendType
		for _, f := range []struct {
			ip          netip.Addr
			bd          *lease.BackendData
			ipKey, bKey string
		}{
			{req.PublicIP, req.BackendData, d.publicIP, d.backendData},
			{req.PublicIPv6, req.BackendV6Data, d.publicIPv6, d.backendV6Data},
		} {
			if !f.ip.IsValid() {
				continue
			}
			a[f.ipKey] = f.ip.String()
			switch {
			case f.bd != nil && *f.bd != (lease.BackendData{}):
				b, _ := json.Marshal(f.bd) // strings only: cannot fail
				a[f.bKey] = string(b)
			case d == flannelDialect:
				a[f.bKey] = "null" // what flanneld writes for host-gw
			}
		}
	}
	return a
}

// annotationsDiffer reports whether have lacks or differs from any of want's
// twill annotations, or carries a twill annotation want does not.
func annotationsDiffer(have, want map[string]string) bool {
	for _, k := range annotationKeys {
		hv, hok := have[k]
		wv, wok := want[k]
		if hok != wok || hv != wv {
			return true
		}
	}
	return false
}

// annotationPatch returns a JSON merge patch that sets twill's annotations
// to want: keys in want are written, twill's other keys are removed (null).
// want nil removes all of them (Release).
func annotationPatch(want map[string]string) []byte {
	ann := make(map[string]any, len(annotationKeys))
	for _, k := range annotationKeys {
		if v, ok := want[k]; ok {
			ann[k] = v
		} else {
			ann[k] = nil
		}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	return b
}

// NodeInfo is what twill reads from a Node object: its name, pod CIDRs and
// annotations. It is the informer's trimmed copy of a Node (see trimNode),
// and the input of LeaseOf.
type NodeInfo struct {
	Name        string
	PodCIDR     string
	PodCIDRs    []string
	Annotations map[string]string
}

// LeaseOf returns the lease a Node publishes in the cluster config cfg
// (zero: any IPv4 podCIDR, and an IPv6 one when present). ok is false when
// the node is not (yet) a peer: no podCIDR of a family cfg runs, or neither
// twill.io/public-ip(v6) nor Flannel's (a Flannel node:
// flannel.alpha.coreos.com/public-ip(v6) with kube-subnet-manager "true");
// twill's set wins when a Node has both. Malformed values and a podCIDR
// outside its network are errors naming the node and the field.
func LeaseOf(n NodeInfo, cfg netconf.Config) (l lease.Lease, ok bool, err error) {
	has := func(d dialect) bool {
		_, has4 := n.Annotations[d.publicIP]
		_, has6 := n.Annotations[d.publicIPv6]
		return has4 || has6
	}
	d := twillDialect
	if !has(d) && n.Annotations[FlannelAnnotationKubeSubnetManager] == "true" {
		d = flannelDialect
	}
	if !has(d) {
		return lease.Lease{}, false, nil
	}
	sn4, sn6, err := Subnets(n, cfg)
	var none *NoPodCIDRError
	if errors.As(err, &none) {
		return lease.Lease{}, false, nil
	}
	if err != nil {
		return lease.Lease{}, false, err
	}
	l = lease.Lease{Subnet: sn4, IPv6Subnet: sn6, Attrs: lease.Attrs{BackendType: n.Annotations[d.backendType], Node: n.Name}}
	for _, f := range []struct {
		ip          *netip.Addr
		bd          **lease.BackendData
		ipKey, bKey string
	}{
		{&l.Attrs.PublicIP, &l.Attrs.BackendData, d.publicIP, d.backendData},
		{&l.Attrs.PublicIPv6, &l.Attrs.BackendV6Data, d.publicIPv6, d.backendV6Data},
	} {
		if ip, ok := n.Annotations[f.ipKey]; ok {
			addr, err := netip.ParseAddr(strings.TrimSpace(ip))
			if err != nil {
				return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s=%q: not an IP address", n.Name, f.ipKey, ip)
			}
			*f.ip = addr
		}
		raw, ok := n.Annotations[f.bKey]
		if len(raw) > lease.MaxValueSize {
			return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s has %d bytes, more than the %d a lease value may have", n.Name, f.bKey, len(raw), lease.MaxValueSize)
		}
		if ok && raw != "" && raw != "null" {
			var bd lease.BackendData
			if err := json.Unmarshal([]byte(raw), &bd); err != nil {
				return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s=%q: want JSON like {\"VtepMAC\":\"0e:00:00:00:00:01\"}: %w", n.Name, f.bKey, raw, err)
			}
			*f.bd = &bd
		}
	}
	return l, true, nil
}
