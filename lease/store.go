package lease

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/netconf"
)

// Request says who asks for a lease and what it publishes.
type Request struct {
	// Node is the node's name; a lease with the same Node is this node's.
	Node string
	// PublicIP is the node's IPv4 underlay address, published to the
	// peers; required when the cluster runs IPv4.
	PublicIP netip.Addr
	// PublicIPv6 is the node's IPv6 underlay address; required when the
	// cluster runs IPv6.
	PublicIPv6 netip.Addr
	// BackendType is "vxlan" or "host-gw".
	BackendType string
	// BackendData is published with the lease (vxlan: the VTEP MAC); may be nil.
	BackendData *BackendData
	// BackendV6Data is the IPv6 backend's data (vxlan: the IPv6 VTEP's MAC).
	BackendV6Data *BackendData
	// Previous is the subnet of the node's last subnet file. It is asked for
	// first when the node has no lease in the store; it may be invalid
	// (zero) or outside the current config, then it is not used.
	Previous netip.Prefix
	// PreviousV6 is the same for the IPv6 subnet.
	PreviousV6 netip.Prefix
}

// Check reports a Request that cannot be published in a cluster running
// cfg's families: each needs the node's underlay address of that family.
func (r Request) Check(cfg netconf.Config) error {
	if r.Node == "" {
		return errors.New("lease request: Node is empty: every lease names its node (pass the node name)")
	}
	if (cfg.EnableIPv4() || !cfg.EnableIPv6()) && !r.PublicIP.IsValid() {
		return fmt.Errorf("lease request for node %s: PublicIP is not set: pass the node's IPv4 underlay address", r.Node)
	}
	if cfg.EnableIPv6() && !r.PublicIPv6.IsValid() {
		return fmt.Errorf("lease request for node %s: PublicIPv6 is not set, but the cluster runs IPv6 (EnableIPv6): give the node's underlay interface an IPv6 address, or pass it", r.Node)
	}
	return nil
}

// Owns tells whether a lease with attributes a is this node's: it names
// r.Node, or it names no node and carries r.PublicIP (or r.PublicIPv6), the
// way Flannel matches a node's lease (flanneld writes no node name). So a
// node moved from Flannel adopts its Flannel lease, and flanneld adopts
// twill's on the way back.
func (r Request) Owns(a Attrs) bool {
	if a.Node == r.Node {
		return true
	}
	return a.Node == "" && ((a.PublicIP.IsValid() && a.PublicIP == r.PublicIP) ||
		(a.PublicIPv6.IsValid() && a.PublicIPv6 == r.PublicIPv6))
}

// PreviousOf returns the request's previous subnet of family f.
func (r Request) PreviousOf(f netconf.Family) netip.Prefix {
	if f == netconf.IPv6 {
		return r.PreviousV6
	}
	return r.Previous
}

// Lease returns the lease the request publishes for the IPv4 subnet sn and
// the IPv6 subnet sn6 (either may be zero).
func (r Request) Lease(sn, sn6 netip.Prefix) Lease {
	a := Attrs{
		PublicIP:    r.PublicIP,
		BackendType: r.BackendType,
		BackendData: r.BackendData,
		Node:        r.Node,
	}
	if sn6.IsValid() {
		a.PublicIPv6, a.BackendV6Data = r.PublicIPv6, r.BackendV6Data
	}
	if !sn.IsValid() {
		a.PublicIP, a.BackendData = netip.Addr{}, nil
	}
	return Lease{Subnet: sn, IPv6Subnet: sn6, Attrs: a}
}

// Event is the full current lease set: every node's lease, this node's
// included, sorted by subnet.
type Event struct {
	Leases []Lease
	// Rejected are the entries the store holds that do not even decode
	// (ReasonMalformed), sorted by key. Leases still go through Accept.
	Rejected []Rejected
}

// Store keeps the cluster's network config and the nodes' subnet leases.
type Store interface {
	// Config reads <prefix>/config (the cluster's net-conf.json); ErrNoConfig when absent.
	Config(ctx context.Context) (netconf.Config, error)
	// Acquire returns this node's lease: its existing one (same Node name) if any, else Previous if
	// free, else a free subnet allocated atomically (etcd txn, create-only). Attaches a TTL lease.
	Acquire(ctx context.Context, cfg netconf.Config, req Request) (Lease, error)
	// KeepAlive renews the lease until ctx ends; it re-acquires (same subnet) if the lease was lost
	// (etcd down longer than the TTL, then back). Errors are reported on the returned channel, not
	// fatal; a re-acquired lease is reported as a *ReacquiredError.
	KeepAlive(ctx context.Context) <-chan error
	// Watch sends the full lease set now and after every change; resyncs after compaction or a
	// broken watch; never closes before ctx ends.
	Watch(ctx context.Context) <-chan Event
	// Release deletes this node's lease (twill uninstall, graceful leave).
	Release(ctx context.Context) error
}

// Pinger is a Store that can say cheaply whether it answers: the agent
// calls Ping at every resync to show store outages (twill_store_up, the
// store field of /readyz) and to notice their end.
type Pinger interface {
	// Ping makes one small read; an error means the store did not answer.
	Ping(ctx context.Context) error
}

// ErrForbidden is matched (errors.Is) by a store's error for a request
// the store refused for lack of permission (Kubernetes: HTTP 403). Right
// after an API server restart such refusals are transient; the agent calls
// them a permission problem only when they persist.
var ErrForbidden = errors.New("forbidden by the store")

// ErrNoConfig is returned by Store.Config when the store holds no network
// config.
var ErrNoConfig = errors.New("no network config in the store")

// FlannelConfigError is returned by Store.Config when the store holds no
// config under the agent's prefix but holds Flannel's: the node most likely
// belongs to a Flannel cluster that the agent could join with another
// prefix. It wraps ErrNoConfig.
type FlannelConfigError struct {
	// Key is the config key the agent read ("/twill.io/network/config").
	Key string
	// FlannelKey is Flannel's config key that exists.
	FlannelKey string
	// FlannelPrefix is the prefix to pass with --etcd-prefix.
	FlannelPrefix string
}

// Error says where Flannel's config is and which flag joins that cluster.
func (e *FlannelConfigError) Error() string {
	return fmt.Sprintf("no config at %s, but Flannel's is at %s: to join that Flannel cluster, run with --etcd-prefix %s", e.Key, e.FlannelKey, e.FlannelPrefix)
}

// Unwrap makes errors.Is(err, ErrNoConfig) true.
func (e *FlannelConfigError) Unwrap() error { return ErrNoConfig }

// ErrIncompatibleConfig is returned by Store.Acquire when the network config
// does not fit the leases in the store (another SubnetLen than the cluster
// was built with), or this node's lease overlaps an older one: the agent
// must not start with it.
var ErrIncompatibleConfig = errors.New("network config incompatible with the leases in the store")

// ErrNoFreeSubnet is returned by Store.Acquire when every subnet between
// SubnetMin and SubnetMax is leased to another node.
var ErrNoFreeSubnet = errors.New("no free subnet")

// ErrNoSubnetYet is matched (errors.Is) by Store.Acquire's error when
// something outside twill assigns the subnets (Kubernetes: the Node's
// spec.podCIDR from kube-controller-manager's nodeipam) and this node has
// none yet: not a store outage, the agent waits and says what is missing.
var ErrNoSubnetYet = errors.New("no subnet assigned to this node yet")

// ReacquiredError is sent on KeepAlive's channel when the lease had been lost
// (it expired while the store was unreachable) and was acquired again. New
// is normally the same subnet as Old; when it is not (another node took the
// subnet meanwhile), the node must reprogram everything for New.
type ReacquiredError struct {
	Old, New Lease
	// Reason says how the lease was lost when it was not by expiry (e.g.
	// the Kubernetes store's annotations removed by hand); empty: expired.
	Reason string
}

func (e *ReacquiredError) Error() string {
	if e.Reason != "" && e.Old.Subnet == e.New.Subnet {
		return fmt.Sprintf("lease %s of node %s: %s", e.New.Subnet, e.New.Attrs.Node, e.Reason)
	}
	if e.Old.Subnet == e.New.Subnet {
		return fmt.Sprintf("lease %s of node %s had expired; re-acquired it", e.New.Subnet, e.New.Attrs.Node)
	}
	return fmt.Sprintf("lease %s of node %s had expired and was taken; acquired %s instead: reprogram the node", e.Old.Subnet, e.New.Attrs.Node, e.New.Subnet)
}
