package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// Acquire reads the Node named req.Node and returns its lease: its subnets
// are the node's spec.podCIDRs, one per family cfg runs (IPv4: inside
// cfg.Network, IPv6: inside cfg.IPv6Network). It publishes req on the Node
// as twill.io/* annotations (one merge patch, skipped when they are
// already right).
//
// Errors, all retried by the agent: *NoPodCIDRError when the node has no
// podCIDR of a family yet (it says how to get one); *OutsideNetworkError
// when a podCIDR is not in its network (both also recorded as a Warning
// Event on the Node and the agent's pod: ReasonNoPodCIDR,
// ReasonPodCIDROutsideNetwork); the node not found (--node must be
// the Node object's name); *ForbiddenError naming the missing permission.
func (s *Store) Acquire(ctx context.Context, cfg netconf.Config, req lease.Request) (lease.Lease, error) {
	if err := req.Check(cfg); err != nil {
		return lease.Lease{}, err
	}
	node, err := s.c.CoreV1().Nodes().Get(ctx, req.Node, metav1.GetOptions{})
	if err != nil {
		return lease.Lease{}, nodeGetError(err, req.Node)
	}
	sn4, sn6, err := Subnets(infoOf(node), cfg)
	if err != nil {
		if reason := eventReason(err); reason != "" {
			s.warn(req.Node, reason, err.Error())
		}
		return lease.Lease{}, err
	}
	for _, f := range cfg.Families() {
		if sn, pl := map[netconf.Family]netip.Prefix{netconf.IPv4: sn4, netconf.IPv6: sn6}[f], cfg.Pool(f); pl.SubnetLen != 0 && sn.Bits() != pl.SubnetLen {
			s.log.Info("the node's podCIDR length differs from the subnet length of net-conf.json; the podCIDR is used", "node", req.Node, "podCIDR", sn.String(), "family", f.String(), "SubnetLen", pl.SubnetLen)
		}
	}
	if err := s.publish(ctx, node, Annotations(req)); err != nil {
		return lease.Lease{}, err
	}
	l := req.Lease(sn4, sn6)
	s.mu.Lock()
	s.own = &owned{lease: l, cfg: cfg, req: req}
	s.mu.Unlock()
	return l, nil
}

// eventReason is the Event reason of an Acquire error the cluster's
// administrator must act on ("" for the others). Pure.
func eventReason(err error) string {
	var none *NoPodCIDRError
	var outside *OutsideNetworkError
	switch {
	case errors.As(err, &none):
		return ReasonNoPodCIDR
	case errors.As(err, &outside):
		return ReasonPodCIDROutsideNetwork
	}
	return ""
}

// nodeGetError explains a failed GET of this node.
func nodeGetError(err error, node string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("node %s: not found in the API server: --node (env NODE_NAME, from the pod's spec.nodeName) must be this node's Node object name (kubectl get nodes)", node)
	}
	return explain(err, "node "+node+": read the Node", "get", "nodes")
}

// Subnet returns the node's podCIDR of network's family inside network
// (network invalid: any IPv4 podCIDR). It is the pure core of Acquire.
func Subnet(n NodeInfo, network netip.Prefix) (netip.Prefix, error) {
	f := netconf.IPv4
	if network.IsValid() {
		f = netconf.FamilyOf(network.Addr())
	}
	return familySubnet(n, f, network)
}

// Subnets returns the node's podCIDRs for the families cfg runs (zero for
// a family it does not run). A config without families (not from Parse)
// takes the node's podCIDR of each family it has (at least one).
func Subnets(n NodeInfo, cfg netconf.Config) (sn4, sn6 netip.Prefix, err error) {
	if len(cfg.Families()) == 0 {
		sn4, err = familySubnet(n, netconf.IPv4, netip.Prefix{})
		sn6, _ = familySubnet(n, netconf.IPv6, netip.Prefix{})
		var none *NoPodCIDRError
		if errors.As(err, &none) && sn6.IsValid() {
			return netip.Prefix{}, sn6, nil // an IPv6-only node
		}
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
		return sn4, sn6, nil
	}
	if cfg.EnableIPv4() {
		if sn4, err = familySubnet(n, netconf.IPv4, cfg.Network); err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
	}
	if cfg.EnableIPv6() {
		if sn6, err = familySubnet(n, netconf.IPv6, cfg.IPv6Network); err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
	}
	return sn4, sn6, nil
}

// familySubnet returns the node's podCIDR of family f inside network
// (invalid: any of family f).
func familySubnet(n NodeInfo, f netconf.Family, network netip.Prefix) (netip.Prefix, error) {
	cidrs := n.PodCIDRs
	if len(cidrs) == 0 && n.PodCIDR != "" {
		cidrs = []string{n.PodCIDR}
	}
	var first netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("node %s: spec.podCIDR %q: %w", n.Name, c, err)
		}
		if netconf.FamilyOf(p.Addr()) != f || p.Addr().Is4In6() {
			continue
		}
		p = p.Masked()
		if !network.IsValid() || (network.Contains(p.Addr()) && p.Bits() >= network.Bits()) {
			return p, nil
		}
		if !first.IsValid() {
			first = p
		}
	}
	if !first.IsValid() {
		return netip.Prefix{}, &NoPodCIDRError{Node: n.Name, Network: network, Family: f}
	}
	return netip.Prefix{}, &OutsideNetworkError{Node: n.Name, PodCIDR: first, Network: network}
}

// publish makes node's twill annotations equal want (nil: none), with one
// merge patch when they differ.
func (s *Store) publish(ctx context.Context, node *corev1.Node, want map[string]string) error {
	if !annotationsDiffer(node.Annotations, want) {
		return nil
	}
	return s.patchAnnotations(ctx, node.Name, want)
}

// patchAnnotations sends the merge patch that sets twill's annotations of
// the named node to want.
func (s *Store) patchAnnotations(ctx context.Context, name string, want map[string]string) error {
	op := "node " + name + ": publish the twill.io annotations"
	if want == nil {
		op = "node " + name + ": remove the twill.io annotations"
	}
	_, err := s.c.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, annotationPatch(want), metav1.PatchOptions{FieldManager: fieldManager})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s: the Node object is gone (deleted from the API)", op)
	}
	return explain(err, op, "patch", "nodes")
}

// fieldManager names twill in the Node's managedFields.
const fieldManager = "twill"

// infoOf extracts what twill reads from a Node.
func infoOf(n *corev1.Node) NodeInfo {
	return NodeInfo{Name: n.Name, PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs, Annotations: n.Annotations}
}
