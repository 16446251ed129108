package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// Options configure one agent.
type Options struct {
	// Node is this node's name (it identifies the node's lease).
	Node string
	// Iface, PublicIP and PublicIPv6 choose the underlay (see
	// backend.PickUnderlay); all may be empty (the default route's
	// interface and its first global address of each family).
	Iface      string
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr
	// Root prefixes the files the agent writes (subnet file), "" for "/".
	Root string
	// NetConf is the network config from a file; nil reads it from the store.
	NetConf *netconf.Config
	// Resync is the drift-repair interval (default 5s).
	Resync time.Duration
	// HealthAddr is where /healthz, /readyz and /metrics are served
	// (default 127.0.0.1:9473; "off" disables).
	HealthAddr string
	// FlannelSubnetEnv also writes /run/flannel/subnet.env in Flannel's format.
	FlannelSubnetEnv bool
	// TakeOverFlannelDevice deletes Flannel's vxlan device (flannel.<VNI>)
	// when it holds the VNI and port of twill's, in the same kernel
	// transaction batch that creates twill's: the shortest gap when a node
	// moves from Flannel (`twill migrate from-flannel --leave-device`).
	// Off, the agent names the device and waits for it to go.
	TakeOverFlannelDevice bool
	// Log receives the agent's logs (default slog.Default()).
	Log *slog.Logger
	// OnHealth, when set, is called with the health server's address.
	OnHealth func(addr string)
}

// Kernel is the node's kernel as the agent uses it: capture the state,
// apply backend changes, write sysctls. The real one works on a network
// namespace through netlink and /proc.
type Kernel interface {
	Capture(ctx context.Context) (*nodestate.Snapshot, error)
	Apply(ctx context.Context, changes []backend.Change) ([]backend.Repair, error)
	SetSysctls(ctx context.Context, actions []doctor.Action) error
}

// Firewall keeps twill's firewall rules true for the node's current view.
type Firewall interface {
	// Ensure creates or corrects what is missing and reports it.
	Ensure(ctx context.Context, v View) ([]Repair, error)
}

// View is what the firewall needs to know about the node.
type View struct {
	Config netconf.Config
	Self   lease.Lease
	Peers  []lease.Lease
	Snap   *nodestate.Snapshot
}

// Repair is one object the agent had to create or correct.
type Repair struct {
	Kind   string // "route", "fdb", "sysctl", "masquerade", "subnet-file", ...
	Action string // "add", "replace", "delete", "set"
	Object string
	Reason string
}

// Deps are the adapters the agent drives.
type Deps struct {
	Store    lease.Store
	Kernel   Kernel
	Firewall Firewall
}

// DefaultHealthAddr is where the health server listens by default.
const DefaultHealthAddr = "127.0.0.1:9473"

// agent is one running agent's state.
type agent struct {
	opt  Options
	deps Deps
	log  *slog.Logger
	m    *metrics
	h    *health

	mu    sync.Mutex
	cfg   netconf.Config
	self  lease.Lease
	peers []lease.Lease
	under backend.Underlay
	// programmed is true after the first successful reconcile: later
	// changes are drift repairs (counted), the first ones are set-up.
	programmed bool
	// appliedPeers identifies the peer set of the last successful reconcile.
	appliedPeers string
	// announced is true once the store was told the node is programmed.
	announced bool
	// req is the lease request of the node (re-acquire uses it again).
	req lease.Request
	// rejected are the rejections logged last (key -> reason: detail).
	rejected map[string]string
	// peerErrs are the backend's peer errors logged last.
	peerErrs map[string]string
	// ownLost is true while the node's lease is missing from the store.
	ownLost bool
	// warnedConfig is the changed store config already warned about.
	warnedConfig string
	// warnedConflict is the vxlan device conflict already logged.
	warnedConflict string
	// lastEvent is the store's last lease set.
	lastEvent lease.Event
	// reacquiring is true while a background re-acquire runs; its outcome
	// arrives on reacq.
	reacquiring bool
	reacq       chan reacquired
	// forbidden holds, per operation, since when the store refuses it
	// (HTTP 403) and whether that was reported as a permission problem.
	// An operation's success clears its entry.
	forbidden map[string]*refusal
	// storeBackAt is when the store last came back after an outage;
	// storeFlap is set while a relapse within storeSettle of it lasts
	// (logged at DEBUG: one outage, one WARN and one INFO).
	storeBackAt time.Time
	storeFlap   bool
	// subnetWaitLogged is when the agent last logged that the store has
	// no subnet for this node yet (zero: not waiting).
	subnetWaitLogged time.Time
}

// refusal is one operation the store keeps refusing.
type refusal struct {
	since    time.Time
	reported bool
}

// Run runs the agent until ctx ends. It returns early only for errors that
// retrying cannot fix (invalid config for this node, bad options); a store
// that is down is retried, and the node keeps forwarding meanwhile.
// Returning, even with ctx cancelled, leaves the node's networking in place.
func Run(ctx context.Context, opt Options, deps Deps) error {
	if opt.Resync <= 0 {
		opt.Resync = 5 * time.Second
	}
	if opt.HealthAddr == "" {
		opt.HealthAddr = DefaultHealthAddr
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Node == "" {
		return errors.New("agent: node name is empty: pass --node (or set NODE_NAME)")
	}
	a := &agent{opt: opt, deps: deps, log: opt.Log.With("node", opt.Node), m: newMetrics(), h: &health{interval: opt.Resync}, reacq: make(chan reacquired, 1)}
	a.h.setReady(false, "starting")
	a.m.storeUp.Set(1)
	if opt.HealthAddr != "off" {
		addr, err := serveHealth(ctx, opt.HealthAddr, a.h, a.m)
		if err != nil {
			return err
		}
		a.log.Info("health server listening", "addr", addr.String())
		if opt.OnHealth != nil {
			opt.OnHealth(addr.String())
		}
	}
	if err := a.start(ctx); err != nil {
		return err
	}
	return a.loop(ctx)
}

// start reads the config, checks it against the node, sets the
// prerequisites and acquires the lease.
func (a *agent) start(ctx context.Context) error {
	// One read of the node serves the whole start-up (on a node with many
	// Services it is the costliest step), and first a node flanneld ran on
	// is worth saying at once, whatever the store holds. The node is read
	// again only when waiting for the config took longer than a resync.
	read := time.Now()
	snap, err := a.deps.Kernel.Capture(ctx)
	if err != nil {
		return fmt.Errorf("agent: read node state: %w", err)
	}
	if msg := flannelTraces(snap, a.opt.FlannelSubnetEnv); msg != "" {
		a.log.Warn(msg)
	}
	cfg, err := a.config(ctx)
	if err != nil {
		return err
	}
	if time.Since(read) > a.opt.Resync {
		if snap, err = a.deps.Kernel.Capture(ctx); err != nil {
			return fmt.Errorf("agent: read node state: %w", err)
		}
	}
	u, err := backend.PickUnderlay(snap, backend.UnderlayChoice{Iface: a.opt.Iface, PublicIP: a.opt.PublicIP, PublicIPv6: a.opt.PublicIPv6})
	if err != nil {
		return fmt.Errorf("agent: underlay: %w", err)
	}
	if err := cfg.Validate(u.Nets); err != nil {
		return fmt.Errorf("agent: network config does not fit this node (nothing was changed): %w", err)
	}
	if err := underlayFits(cfg, u); err != nil {
		return fmt.Errorf("agent: network config does not fit this node (nothing was changed): %w", err)
	}
	a.cfg, a.under = cfg, u
	a.log.Info("network config", "network", cfg.Network.String(), "ipv6_network", cfg.IPv6Network.String(), "backend", cfg.Backend.Type,
		"underlay", u.Dev, "public_ip", u.IP.String(), "public_ipv6", u.IPv6.String(), "mtu", u.MTU)
	if _, err := a.prerequisites(ctx, snap); err != nil {
		return err
	}
	prev := a.previousSubnets()
	req := lease.Request{Node: a.opt.Node, BackendType: cfg.Backend.Type, Previous: prev.Subnet, PreviousV6: prev.IPv6Subnet}
	if cfg.EnableIPv4() {
		req.PublicIP = u.IP
		if cfg.Backend.Type == netconf.BackendVXLAN {
			req.BackendData = &lease.BackendData{VtepMAC: backend.VtepMAC(u.IP)}
		}
	}
	if cfg.EnableIPv6() {
		req.PublicIPv6 = u.IPv6
		if cfg.Backend.Type == netconf.BackendVXLAN {
			req.BackendV6Data = &lease.BackendData{VtepMAC: backend.VtepMAC(u.IPv6)}
		}
	}
	l, err := retry(ctx, a, "acquire lease", func() (lease.Lease, error) { return a.deps.Store.Acquire(ctx, cfg, req) })
	if err != nil {
		return err
	}
	a.self, a.req = l, req
	a.m.lease.Reset()
	a.m.lease.WithLabelValues(l.Subnets()).Set(1)
	a.log.Info("lease acquired", "subnet", l.Subnets())
	return nil
}

// config returns the network config: from the file, or from the store
// (retried while the store is down or holds none).
func (a *agent) config(ctx context.Context) (netconf.Config, error) {
	if a.opt.NetConf != nil {
		return *a.opt.NetConf, nil
	}
	warned := false
	return retry(ctx, a, "read network config", func() (netconf.Config, error) {
		cfg, err := a.deps.Store.Config(ctx)
		var fe *lease.FlannelConfigError
		if errors.As(err, &fe) && !warned {
			warned = true
			a.log.Warn(fe.Error())
		}
		return cfg, err
	})
}

// retry calls f until it succeeds or ctx ends, with a bounded backoff,
// counting each failure as a store error (logged at the start of an outage
// and at its end, not at every attempt). An incompatible config is not
// retried: the agent stops with it.
func retry[T any](ctx context.Context, a *agent, what string, f func() (T, error)) (T, error) {
	delay := 500 * time.Millisecond
	for {
		v, err := f()
		if err == nil {
			a.storeOK(what)
			return v, nil
		}
		if errors.Is(err, lease.ErrIncompatibleConfig) {
			var zero T
			return zero, fmt.Errorf("agent: %s: %w (nothing was changed)", what, err)
		}
		a.h.setReady(false, what+": "+err.Error())
		if errors.Is(err, lease.ErrNoSubnetYet) {
			a.waitingForSubnet(err)
		} else {
			a.storeFailed(what, err)
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// subnetWaitRelog is how often a wait for the node's subnet is logged
// again (at WARN: `kubectl logs --tail` shows it while it lasts).
const subnetWaitRelog = time.Minute

// waitingForSubnet logs that the store has no subnet for this node yet
// (lease.ErrNoSubnetYet, err says what is missing and how to fix it): once
// when the wait starts and every subnetWaitRelog while it lasts. The store
// answered: this is no outage.
func (a *agent) waitingForSubnet(err error) {
	if !a.subnetWaitLogged.IsZero() && time.Since(a.subnetWaitLogged) < subnetWaitRelog {
		a.log.Debug("still waiting for this node's subnet", "err", err.Error())
		return
	}
	a.subnetWaitLogged = time.Now()
	a.log.Warn("waiting for this node's subnet: nothing is programmed and no pod can start on this node until it has one; retrying", "err", err.Error())
}

// previousSubnets reads the subnets of the node's last subnet file (zero
// when there is none), so a restarted node asks for the subnets its pods
// already use.
func (a *agent) previousSubnets() lease.Lease {
	b, err := os.ReadFile(a.subnetPath())
	if err != nil {
		return lease.Lease{}
	}
	info, err := subnetfile.Parse(a.subnetPath(), string(b))
	if err != nil {
		return lease.Lease{}
	}
	var l lease.Lease
	if info.Subnet.IsValid() {
		l.Subnet = info.Subnet.Masked()
	}
	if info.IPv6Subnet.IsValid() {
		l.IPv6Subnet = info.IPv6Subnet.Masked()
	}
	return l
}

func (a *agent) subnetPath() string {
	return filepath.Join(rootOr(a.opt.Root), subnetfile.TwillPath)
}

func rootOr(r string) string {
	if r == "" {
		return "/"
	}
	return r
}

// loop follows the peers and repairs drift until ctx ends.
func (a *agent) loop(ctx context.Context) error {
	events := a.deps.Store.Watch(ctx)
	keep := a.deps.Store.KeepAlive(ctx)
	tick := time.NewTicker(a.opt.Resync)
	defer tick.Stop()
	// Nothing is reconciled before the first full peer set arrives: with an
	// empty set, a restarted agent would delete every peer's routes and cut
	// running pods off until the watch caught up.
	havePeers := false
	a.h.setReady(false, "waiting for the peer list from the store")
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; the node's networking stays in place")
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			peers := a.acceptPeers(ev)
			a.mu.Lock()
			a.peers = peers
			a.mu.Unlock()
			havePeers = true
			a.lastEvent = ev
			a.checkOwnLease(ctx, ev.Leases)
			a.reconcile(ctx)
		case err, ok := <-keep:
			if !ok {
				keep = nil
				continue
			}
			var re *lease.ReacquiredError
			if errors.As(err, &re) {
				a.log.Warn("lease", "event", err.Error())
				a.m.leaseLost.Inc()
				a.mu.Lock()
				a.self = re.New
				a.mu.Unlock()
				a.m.lease.Reset()
				a.m.lease.WithLabelValues(re.New.Subnets()).Set(1)
				if havePeers {
					a.reconcile(ctx)
				}
				continue
			}
			a.storeFailed("lease keepalive", err)
		case r := <-a.reacq:
			a.adoptReacquired(r)
			if havePeers {
				a.reconcile(ctx)
			}
		case <-tick.C:
			a.probeStore(ctx)
			if havePeers && a.ownLost {
				a.checkOwnLease(ctx, a.lastEvent.Leases)
			}
			if havePeers {
				a.reconcile(ctx)
			}
		}
	}
}

// underlayFits says why the node's underlay cannot carry the families
// the config runs: each needs an underlay address of its family (IPv6: a
// global one on the underlay interface, the outer address of IPv6 pod
// traffic).
func underlayFits(cfg netconf.Config, u backend.Underlay) error {
	if cfg.EnableIPv4() && !u.IP.IsValid() {
		return fmt.Errorf("the cluster runs IPv4 (Network %s), but interface %s has no IPv4 address to use as this node's public IP: give it one or pass --public-ip (or set \"EnableIPv4\": false for an IPv6-only cluster)", cfg.Network, u.Dev)
	}
	if cfg.EnableIPv6() && !u.IPv6.IsValid() {
		return fmt.Errorf("the cluster runs IPv6 (EnableIPv6, IPv6Network %s), but interface %s has no global IPv6 address: give the underlay interface an IPv6 address on every node (or pass --public-ipv6), or remove EnableIPv6 to run IPv4 only", cfg.IPv6Network, u.Dev)
	}
	return nil
}
