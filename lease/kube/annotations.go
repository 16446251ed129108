package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/lease"
)

// Annotations twill writes on its node's Node object. Together with
// spec.podCIDR they are the node's lease: a Node without AnnotationPublicIP
// is not a twill peer.
const (
	// AnnotationPublicIP is the node's underlay address ("192.168.1.10").
	AnnotationPublicIP = "twill.io/public-ip"
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
	// FlannelAnnotationPublicIP is the node's underlay address.
	FlannelAnnotationPublicIP = "flannel.alpha.coreos.com/public-ip"
	// FlannelAnnotationBackendType is "vxlan" or "host-gw".
	FlannelAnnotationBackendType = "flannel.alpha.coreos.com/backend-type"
	// FlannelAnnotationBackendData is the backend's data as JSON (vxlan:
	// {"VNI":1,"VtepMAC":"..."}; host-gw: null).
	FlannelAnnotationBackendData = "flannel.alpha.coreos.com/backend-data"
	// FlannelAnnotationKubeSubnetManager is "true" on every Flannel node:
	// flanneld ignores Nodes without it.
	FlannelAnnotationKubeSubnetManager = "flannel.alpha.coreos.com/kube-subnet-manager"
)

// annotationKeys are all annotations twill owns, in a fixed order: its own
// set and Flannel's.
var annotationKeys = []string{AnnotationPublicIP, AnnotationBackendType, AnnotationBackendData,
	FlannelAnnotationPublicIP, FlannelAnnotationBackendType, FlannelAnnotationBackendData, FlannelAnnotationKubeSubnetManager}

// Annotations returns the annotations that publish req on its Node: twill's
// set and Flannel's (which flanneld on other nodes reads).
func Annotations(req lease.Request) map[string]string {
	a := map[string]string{
		AnnotationPublicIP:                 req.PublicIP.String(),
		AnnotationBackendType:              req.BackendType,
		FlannelAnnotationPublicIP:          req.PublicIP.String(),
		FlannelAnnotationBackendType:       req.BackendType,
		FlannelAnnotationBackendData:       "null",
		FlannelAnnotationKubeSubnetManager: "true",
	}
	if req.BackendData != nil && *req.BackendData != (lease.BackendData{}) {
		b, _ := json.Marshal(req.BackendData) // strings only: cannot fail
		a[AnnotationBackendData] = string(b)
		a[FlannelAnnotationBackendData] = string(b)
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

// LeaseOf returns the lease a Node publishes in the cluster network
// (invalid: any). ok is false when the node is not (yet) a peer: no IPv4
// podCIDR, or neither a twill.io/public-ip annotation nor Flannel's (a
// Flannel node: flannel.alpha.coreos.com/public-ip with
// kube-subnet-manager "true"). twill's set wins when a Node has both.
// Malformed values and a podCIDR outside network are errors naming the
// node and the field.
func LeaseOf(n NodeInfo, network netip.Prefix) (l lease.Lease, ok bool, err error) {
	keyIP, keyType, keyData := AnnotationPublicIP, AnnotationBackendType, AnnotationBackendData
	ip, hasIP := n.Annotations[keyIP]
	if !hasIP && n.Annotations[FlannelAnnotationKubeSubnetManager] == "true" {
		keyIP, keyType, keyData = FlannelAnnotationPublicIP, FlannelAnnotationBackendType, FlannelAnnotationBackendData
		ip, hasIP = n.Annotations[keyIP]
	}
	if !hasIP {
		return lease.Lease{}, false, nil
	}
	sn, err := Subnet(n, network)
	var none *NoPodCIDRError
	if errors.As(err, &none) {
		return lease.Lease{}, false, nil
	}
	if err != nil {
		return lease.Lease{}, false, err
	}
	addr, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s=%q: not an IP address", n.Name, keyIP, ip)
	}
	l = lease.Lease{Subnet: sn, Attrs: lease.Attrs{
		PublicIP:    addr,
		BackendType: n.Annotations[keyType],
		Node:        n.Name,
	}}
	if raw := n.Annotations[keyData]; len(raw) > lease.MaxValueSize {
		return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s has %d bytes, more than the %d a lease value may have", n.Name, keyData, len(raw), lease.MaxValueSize)
	}
	if raw, ok := n.Annotations[keyData]; ok && raw != "" && raw != "null" {
		var bd lease.BackendData
		if err := json.Unmarshal([]byte(raw), &bd); err != nil {
			return lease.Lease{}, false, fmt.Errorf("node %s: annotation %s=%q: want JSON like {\"VtepMAC\":\"0e:00:00:00:00:01\"}: %w", n.Name, keyData, raw, err)
		}
		l.Attrs.BackendData = &bd
	}
	return l, true, nil
}
