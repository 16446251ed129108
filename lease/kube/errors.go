package kube

import (
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"

	"fmt"
	"net/netip"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// RBACFile is where the shipped RBAC lives, named in permission errors.
const RBACFile = "deploy/twill.yaml (ClusterRole twill)"

// ForbiddenError is an API request refused by authorization: the agent's
// identity lacks Verb on Resource (e.g. "patch" on "nodes/status").
type ForbiddenError struct {
	Verb, Resource string
	// Op says what twill was doing, e.g. "node n1: publish annotations".
	Op  string
	Err error
}

func (e *ForbiddenError) Error() string {
	verbs := strings.Split(e.Verb, ",")
	for i, v := range verbs {
		verbs[i] = "'" + v + "'"
	}
	return fmt.Sprintf("%s: forbidden: twill needs %s on '%s' — see %s (the API server said: %v)", e.Op, strings.Join(verbs, " and "), e.Resource, RBACFile, e.Err)
}

// deniedRE finds the verb and resource in the API server's Forbidden
// message: `User "x" cannot patch resource "nodes/status" in API group ""`.
var deniedRE = regexp.MustCompile(`cannot (\w+) resource "([^"]+)"`)

func (e *ForbiddenError) Unwrap() error { return e.Err }

// Is makes a ForbiddenError match lease.ErrForbidden.
func (e *ForbiddenError) Is(target error) bool { return target == lease.ErrForbidden }

// NoPodCIDRError says the node has no spec.podCIDR yet. It is not fatal:
// the agent retries Acquire until kube-controller-manager (or an
// administrator) assigns one.
type NoPodCIDRError struct {
	Node    string
	Network netip.Prefix
	// Family is the family of the missing podCIDR (zero: IPv4).
	Family netconf.Family
}

// Error names no concrete CIDR for a hand-set podCIDR: any example could
// be another node's, and two nodes with one podCIDR break both. It says
// how to see which are taken instead.
func (e *NoPodCIDRError) Error() string {
	network := "<Network>"
	if e.Network.IsValid() {
		network = e.Network.String()
	}
	if e.Family == netconf.IPv6 {
		if !e.Network.IsValid() {
			network = "<IPv6Network>"
		}
		return fmt.Sprintf("node %s has no IPv6 entry in spec.podCIDRs, but the cluster runs IPv6 (EnableIPv6): kube-controller-manager must run dual-stack with --allocate-node-cidrs --cluster-cidr=<Network>,%s (IPv6-only: --cluster-cidr=%s); podCIDRs are set when the Node is created, so a node created before needs to be re-registered (kubectl delete node %s, then restart its kubelet)",
			e.Node, network, network, e.Node)
	}
	return fmt.Sprintf("node %s has no spec.podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs --cluster-cidr=%s, or set a subnet of %s that no other node has (see: kubectl get nodes -o custom-columns=NAME:.metadata.name,PODCIDR:.spec.podCIDR): kubectl patch node %s -p '{\"spec\":{\"podCIDR\":\"<free subnet>\"}}'",
		e.Node, network, network, e.Node)
}

// Is makes a NoPodCIDRError match lease.ErrNoSubnetYet.
func (e *NoPodCIDRError) Is(target error) bool { return target == lease.ErrNoSubnetYet }

// OutsideNetworkError says the node's podCIDR is not inside the cluster
// network of net-conf.json: the two configurations disagree.
type OutsideNetworkError struct {
	Node    string
	PodCIDR netip.Prefix
	Network netip.Prefix
}

func (e *OutsideNetworkError) Error() string {
	key := "Network"
	if e.PodCIDR.Addr().Is6() {
		key = "IPv6Network"
	}
	return fmt.Sprintf("node %s: spec.podCIDR %s is outside the cluster network %s of net-conf.json: kube-controller-manager's --cluster-cidr and the %s in the twill ConfigMap must be the same", e.Node, e.PodCIDR, e.Network, key)
}

// explain turns an API error of a request that needed verb on resource into
// an error a person can act on. op says what twill was doing. verb may list
// several verbs, comma separated ("list,watch"); the server's message, when
// it names the verb and resource, wins.
func explain(err error, op, verb, resource string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		// The server's own words are exact (which of list and watch failed).
		if m := deniedRE.FindStringSubmatch(err.Error()); m != nil {
			verb, resource = m[1], m[2]
		}
		return &ForbiddenError{Verb: verb, Resource: resource, Op: op, Err: err}
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: unauthorized: the API server does not accept twill's credentials (the ServiceAccount token, or the user of --kubeconfig): %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
