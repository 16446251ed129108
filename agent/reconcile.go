package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// prerequisites are the sysctls every twill node needs (FAILURES.md F1, F2).
var prerequisites = []struct{ name, value string }{
	{"net.ipv4.ip_forward", "1"},
	{"net.bridge.bridge-nf-call-iptables", "1"},
	{"net.bridge.bridge-nf-call-ip6tables", "1"},
}

// ipv6Forwarding is the prerequisite of a node that runs IPv6 pods (the
// IPv6 twin of F2).
const ipv6Forwarding = "net.ipv6.conf.all.forwarding"

// sysctlDrift returns the prerequisite sysctls that are not right (with
// v6, IPv6 forwarding too). A sysctl that does not exist (br_netfilter not
// loaded) cannot be set: it is returned in missing.
func sysctlDrift(s *nodestate.Snapshot, v6 bool) (fix []doctor.Action, missing []string) {
	want := prerequisites
	if v6 {
		want = append(want[:len(want):len(want)], struct{ name, value string }{ipv6Forwarding, "1"})
	}
	for _, p := range want {
		v, ok := s.Sysctls[p.name]
		switch {
		case !ok:
			missing = append(missing, p.name)
		case v != p.value:
			fix = append(fix, doctor.Action{Kind: doctor.ActSysctl, Name: p.name, Value: p.value})
		}
	}
	return fix, missing
}

func (a *agent) prerequisites(ctx context.Context, s *nodestate.Snapshot) ([]Repair, error) {
	fix, missing := sysctlDrift(s, a.cfg.EnableIPv6())
	if len(missing) > 0 {
		a.log.Error("kernel prerequisites missing", "sysctls", fmt.Sprint(missing),
			"fix", "load br_netfilter: modprobe br_netfilter; echo br_netfilter > /etc/modules-load.d/br_netfilter.conf")
	}
	if len(fix) == 0 {
		return nil, nil
	}
	if err := a.deps.Kernel.SetSysctls(ctx, fix); err != nil {
		return nil, fmt.Errorf("set kernel prerequisites: %w", err)
	}
	var out []Repair
	for _, f := range fix {
		out = append(out, Repair{Kind: "sysctl", Action: "set", Object: f.Name + "=" + f.Value, Reason: fmt.Sprintf("was %s", s.Sysctls[f.Name])})
	}
	return out, nil
}

// reconcile captures the node, computes what it should be and repairs the
// difference. Errors are logged and retried at the next interval.
func (a *agent) reconcile(ctx context.Context) {
	start := time.Now()
	a.mu.Lock()
	peersKey := peerSetKey(a.self, a.peers)
	a.mu.Unlock()
	// Overlay changes made while the peer set changed are programming for
	// nodes that joined or left, not drift.
	membership := peersKey != a.appliedPeers
	repairs, err := a.reconcileOnce(ctx)
	a.m.reconcile.Observe(time.Since(start).Seconds())
	a.h.reconciled(err)
	programmedN := 0
	for _, r := range repairs {
		switch {
		case !a.programmed || (membership && overlayKind[r.Kind]):
			programmedN++
			a.log.Debug("programmed", "kind", r.Kind, "action", r.Action, "object", r.Object)
		default:
			a.m.repairs.WithLabelValues(r.Kind).Inc()
			a.log.Warn("repaired drift", "kind", r.Kind, "action", r.Action, "object", r.Object, "reason", r.Reason)
		}
	}
	if programmedN > 0 {
		a.log.Info("programmed", "changes", programmedN, "peers_changed", membership)
	}
	if err != nil {
		a.m.reconcileErrors.Inc()
		var ce *backend.ConflictError
		if errors.As(err, &ce) {
			// Named once; until the device is gone /readyz says it.
			if !a.programmed {
				a.h.setReady(false, ce.Error())
			}
			if ce.Error() != a.warnedConflict {
				a.warnedConflict = ce.Error()
				a.log.Error("cannot create the vxlan device", "err", ce.Error())
			}
			return
		}
		a.log.Error("reconcile failed; retrying at the next interval", "err", err.Error(), "interval", a.opt.Resync.String())
		return
	}
	a.warnedConflict = ""
	a.programmed = true
	a.appliedPeers = peersKey
	a.announce(ctx)
	a.h.setReady(true, "")
	a.m.ready.Set(1)
}

func (a *agent) reconcileOnce(ctx context.Context) ([]Repair, error) {
	a.mu.Lock()
	self, peers, cfg, u := a.self, a.peers, a.cfg, a.under
	a.mu.Unlock()

	snap, err := a.deps.Kernel.Capture(ctx)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	repairs, err := a.prerequisites(ctx, snap)
	if err != nil {
		return repairs, err
	}
	want, err := backend.Compute(backend.NodeOf(self, peers, cfg, u))
	var peerErrs backend.PeerErrors
	var logged []error
	if errors.As(err, &peerErrs) {
		for _, pe := range peerErrs {
			logged = append(logged, pe)
		}
	} else if err != nil {
		return repairs, fmt.Errorf("compute desired state: %w", err)
	}
	n := 0
	for _, p := range peers {
		if !lease.SameSubnets(p, self) {
			n++
		}
	}
	a.logPeerErrors(logged)
	a.m.peers.Set(float64(n - len(peerErrs)))
	// Apply goes on past a failed change; so does the reconcile: one
	// peer's object the kernel refuses must not leave the firewall and the
	// subnet file unrepaired. The overlay error is returned at the end.
	changes := backend.Diff(want, snap)
	if ce := linkConflict(snap, want); ce != nil && a.opt.TakeOverFlannelDevice && strings.HasPrefix(ce.Holder, "flannel.") {
		// Deleted right before twill's device is created (the changes are
		// applied in order): the overlay is down only between the two.
		changes = append([]backend.Change{{Action: backend.ActionDelete, Kind: backend.KindLink, Link: &backend.LinkSpec{Name: ce.Holder},
			Reason: fmt.Sprintf("Flannel's device holds VNI %d port %d (--take-over-flannel-device)", ce.Want.VNI, ce.Want.Port)}}, changes...)
	}
	applied, overlayErr := a.deps.Kernel.Apply(ctx, changes)
	for _, r := range applied {
		repairs = append(repairs, Repair{Kind: r.Kind, Action: r.Action, Object: r.Object, Reason: r.Reason})
	}
	if overlayErr != nil {
		overlayErr = fmt.Errorf("program the overlay: %w", overlayErr)
		if ce := linkConflict(snap, want); ce != nil {
			overlayErr = ce
		}
	}
	if a.deps.Firewall != nil {
		fw, err := a.deps.Firewall.Ensure(ctx, View{Config: cfg, Self: self, Peers: peers, Snap: snap})
		repairs = append(repairs, fw...)
		if err != nil {
			return repairs, errors.Join(overlayErr, fmt.Errorf("firewall: %w", err))
		}
	}
	sf, err := a.ensureSubnetFiles(self, cfg, want.MTU)
	repairs = append(repairs, sf...)
	return repairs, errors.Join(overlayErr, err)
}

// linkConflict returns why the node's vxlan device cannot be created when
// another device holds its VNI and port (the kernel keeps at most one of
// them); nil otherwise.
func linkConflict(snap *nodestate.Snapshot, want backend.Desired) *backend.ConflictError {
	for _, spec := range want.Links {
		if l := backend.VxlanConflict(snap, spec); l != nil {
			return &backend.ConflictError{Want: spec, Holder: l.Name}
		}
	}
	return nil
}

// ensureSubnetFiles writes the subnet file(s) when their content is not
// what it should be.
func (a *agent) ensureSubnetFiles(self lease.Lease, cfg netconf.Config, mtu int) ([]Repair, error) {
	info := subnetfile.Info{
		Network: cfg.Network,
		Subnet:  subnetfile.Gateway(self.Subnet),
		MTU:     mtu,
		IPMasq:  true,
		Backend: cfg.Backend.Type,
		// DirectRouting is only meaningful (and only written) for vxlan.
		DirectRouting: cfg.Backend.Type == netconf.BackendVXLAN && cfg.Backend.DirectRouting,
	}
	if !cfg.EnableIPv4() {
		info.Network, info.Subnet = netip.Prefix{}, netip.Prefix{}
	}
	if cfg.EnableIPv6() {
		info.IPv6Network, info.IPv6Subnet = cfg.IPv6Network, subnetfile.Gateway(self.IPv6Subnet)
	}
	files := map[string]string{a.subnetPath(): info.Render()}
	if a.opt.FlannelSubnetEnv {
		files[filepath.Join(rootOr(a.opt.Root), subnetfile.FlannelPath)] = info.RenderFlannel()
	}
	var out []Repair
	for path, content := range files {
		old, readErr := os.ReadFile(path)
		if readErr == nil && string(old) == content {
			continue
		}
		if err := subnetfile.WriteContent(path, content); err != nil {
			return out, err
		}
		reason := "missing"
		if readErr == nil {
			reason = "content differs"
		}
		out = append(out, Repair{Kind: "subnet-file", Action: "write", Object: path, Reason: reason})
	}
	return out, nil
}

// overlayKind lists the backend's repair kinds: per-peer objects and the
// device they hang on.
var overlayKind = map[string]bool{"route": true, "neighbor": true, "fdb": true, "link": true, "addr": true}

// peerSetKey identifies the lease set the overlay is programmed for.
func peerSetKey(self lease.Lease, peers []lease.Lease) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s;", self.Subnet)
	if self.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "%s;", self.IPv6Subnet)
	}
	for _, p := range peers {
		mac := ""
		if p.Attrs.BackendData != nil {
			mac = p.Attrs.BackendData.VtepMAC
		}
		fmt.Fprintf(&b, "%s=%s/%s/%s;", p.Subnet, p.Attrs.PublicIP, p.Attrs.BackendType, mac)
		if p.IPv6Subnet.IsValid() {
			mac6 := ""
			if p.Attrs.BackendV6Data != nil {
				mac6 = p.Attrs.BackendV6Data.VtepMAC
			}
			fmt.Fprintf(&b, "%s=%s/%s;", p.IPv6Subnet, p.Attrs.PublicIPv6, mac6)
		}
	}
	return b.String()
}

// announce tells the store, once, that the node's network is programmed:
// with the Kubernetes store this sets the Node condition
// NetworkUnavailable=False. Retried at each reconcile until it succeeds;
// stores without a node condition (etcd) have nothing to announce.
func (a *agent) announce(ctx context.Context) {
	if a.announced {
		return
	}
	r, ok := a.deps.Store.(interface{ SetNetworkAvailable(context.Context) error })
	if !ok {
		a.announced = true
		return
	}
	const op = "set node condition NetworkUnavailable=False"
	if err := r.SetNetworkAvailable(ctx); err != nil {
		a.storeFailed(op, err)
		return
	}
	a.storeOK(op)
	a.announced = true
	a.log.Info("node condition NetworkUnavailable=False set")
}
