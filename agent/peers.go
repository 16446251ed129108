package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twillnet/twill/lease"
)

// acceptPeers turns a store event into the peer set the node programs: the
// leases lease.Accept accepts (the same on every node), less any other
// node's lease that claims this node's own underlay address. Rejections
// are logged once per change and counted by reason.
func (a *agent) acceptPeers(ev lease.Event) []lease.Lease {
	a.mu.Lock()
	cfg, own := a.cfg, a.under.IP
	a.mu.Unlock()
	acc, rej := lease.Accept(cfg, ev.Leases)
	rej = append(rej, ev.Rejected...)
	out := acc[:0:0]
	for _, l := range acc {
		if l.Attrs.Node != a.opt.Node && own.IsValid() && l.Attrs.PublicIP == own {
			rej = append(rej, lease.Rejected{Key: l.Name(), Lease: l, Reason: lease.ReasonPublicIP,
				Detail: fmt.Sprintf("PublicIP %s is this node's own address", own)})
			continue
		}
		out = append(out, l)
	}
	a.reportRejected(rej)
	return out
}

// reportRejected logs each rejection that is new or changed (once, not at
// every resync), logs when one is gone, and sets twill_peers_rejected.
func (a *agent) reportRejected(rej []lease.Rejected) {
	now := make(map[string]string, len(rej))
	byReason := map[string]int{}
	for _, r := range rej {
		msg := r.Reason + ": " + r.Detail
		now[r.Key] = msg
		byReason[r.Reason]++
		if a.rejected[r.Key] == msg {
			continue
		}
		if r.Lease.Attrs.Node == a.opt.Node && lease.SameSubnets(r.Lease, a.self) {
			a.log.Error("this node's own lease is rejected by every node", "lease", r.Key, "reason", r.Reason, "detail", r.Detail,
				"fix", "delete this node's lease in the store and restart the agent: it gets a free subnet")
			continue
		}
		a.log.Warn("peer rejected: not programmed", "lease", r.Key, "reason", r.Reason, "detail", r.Detail)
	}
	for k := range a.rejected {
		if _, ok := now[k]; !ok {
			a.log.Info("peer no longer rejected", "lease", k)
		}
	}
	a.rejected = now
	a.m.peersRejected.Reset()
	for _, reason := range []string{lease.ReasonMalformed, lease.ReasonSubnet, lease.ReasonPublicIP, lease.ReasonVtepMAC, lease.ReasonBackend, lease.ReasonConflict} {
		a.m.peersRejected.WithLabelValues(reason).Set(float64(byReason[reason]))
	}
}

// logPeerErrors logs the peers the backend could not program, each once
// per change of its reason.
func (a *agent) logPeerErrors(errs []error) {
	now := make(map[string]string, len(errs))
	for _, e := range errs {
		now[e.Error()] = ""
		if _, seen := a.peerErrs[e.Error()]; !seen {
			a.log.Error("peer not programmed", "err", e.Error())
		}
	}
	a.peerErrs = now
}

// forbiddenPersists is how long one store operation must keep being
// refused (403) before the agent reports a permission problem: longer than
// an API server's restart takes to sync its authorizer, short enough that
// a missing grant shows within a few resyncs.
const forbiddenPersists = 10 * time.Second

// reacquired is the outcome of one background re-acquire.
type reacquired struct {
	old, new lease.Lease
	err      error
}

// checkOwnLease re-acquires the node's lease when the store's lease set no
// longer holds it (deleted by hand, expired, or taken over by another
// node): the same subnet if it is free. The request runs in the background
// (the loop keeps reconciling meanwhile) and its outcome comes back on
// a.reacq; the loop calls checkOwnLease again at the next event or resync
// until the lease is back.
func (a *agent) checkOwnLease(ctx context.Context, leases []lease.Lease) {
	a.mu.Lock()
	self := a.self
	a.mu.Unlock()
	for _, l := range leases {
		if lease.SameSubnets(l, self) && l.Attrs.Node == a.opt.Node {
			a.ownLost = false
			return
		}
	}
	if !a.ownLost {
		a.log.Warn("lease: this node's lease is gone from the store (deleted or taken over); acquiring it again", "subnet", self.Subnets())
		a.m.leaseLost.Inc()
		a.ownLost = true
	}
	if a.reacquiring {
		return
	}
	a.reacquiring = true
	req, cfg := a.req, a.cfg
	req.Previous, req.PreviousV6 = self.Subnet, self.IPv6Subnet
	go func() {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		l, err := a.deps.Store.Acquire(actx, cfg, req)
		a.reacq <- reacquired{old: self, new: l, err: err}
	}()
}

// adoptReacquired takes the outcome of a background re-acquire.
func (a *agent) adoptReacquired(r reacquired) {
	a.reacquiring = false
	old, l, err := r.old, r.new, r.err
	if err != nil {
		a.storeFailed("re-acquire lease", err)
		if errors.Is(err, lease.ErrIncompatibleConfig) || errors.Is(err, lease.ErrNoFreeSubnet) {
			a.log.Error("lease: cannot re-acquire this node's lease", "err", err.Error())
		}
		return
	}
	a.storeOK("re-acquire lease")
	a.ownLost = false
	a.mu.Lock()
	a.self = l
	a.mu.Unlock()
	a.m.lease.Reset()
	a.m.lease.WithLabelValues(l.Subnets()).Set(1)
	if !lease.SameSubnets(l, old) {
		a.log.Error("lease: re-acquired a different subnet (the old one was taken): pods of the old subnet lose their network; restart them", "old", old.Subnets(), "new", l.Subnets())
		return
	}
	a.log.Info("lease: re-acquired this node's lease", "subnet", l.Subnets())
}

// storeFailed records a store error: counted always, logged as a WARN at
// the start of an outage only (then at DEBUG), and shown in /readyz's
// store field and twill_store_up.
//
// A refusal (HTTP 403) is not an outage: the store answered. It is logged
// once per operation at WARN, and reported as a permission problem only
// when the same operation is still refused forbiddenPersists later (a
// restarting API server refuses requests for a few seconds until its
// authorizer has synced).
func (a *agent) storeFailed(op string, err error) {
	a.m.storeErrors.Inc()
	if errors.Is(err, lease.ErrForbidden) {
		a.refused(op, err)
		return
	}
	if a.h.setStore(false, op+": "+err.Error()) {
		a.m.storeUp.Set(0)
		if !a.storeBackAt.IsZero() && time.Since(a.storeBackAt) < storeSettle {
			// A store that just came back often fails a request or two
			// more (an etcd electing its leader): still the same outage
			// for the log, not a new WARN/INFO pair.
			a.storeFlap = true
			a.log.Debug("store unreachable again right after recovering", "op", op, "err", err.Error())
			return
		}
		a.log.Warn("store unreachable; the node keeps its programmed network and retries", "op", op, "err", err.Error())
		return
	}
	a.log.Debug("store still unreachable", "op", op, "err", err.Error())
}

// storeSettle is how long after a recovery a new store failure counts as
// the same outage in the log (metrics and /readyz show it all the same).
const storeSettle = 10 * time.Second

// refused tracks one operation the store refuses (403).
func (a *agent) refused(op string, err error) {
	now := time.Now()
	if a.forbidden == nil {
		a.forbidden = map[string]*refusal{}
	}
	r := a.forbidden[op]
	if r == nil {
		r = &refusal{since: now}
		a.forbidden[op] = r
		a.log.Warn("the store refused a request (HTTP 403); retrying", "op", op)
		return
	}
	if !r.reported && now.Sub(r.since) >= forbiddenPersists {
		r.reported = true
		a.log.Error("the store keeps refusing twill's requests: a permission problem", "op", op, "for", now.Sub(r.since).Round(time.Second).String(), "err", err.Error())
		return
	}
	a.log.Debug("store still refuses", "op", op)
}

// storeOK records a successful store call of operation op: an INFO when it
// ends an outage; op is no longer refused.
func (a *agent) storeOK(op string) {
	a.m.storeUp.Set(1)
	delete(a.forbidden, op)
	if a.h.setStore(true, "") {
		if a.storeFlap {
			a.storeFlap = false
			a.log.Debug("store reachable again after a relapse")
			return
		}
		a.storeBackAt = time.Now()
		a.log.Info("store reachable again")
	}
}

// probeStore checks that the store answers (and, with the config in the
// store, whether it changed): run at each resync.
func (a *agent) probeStore(ctx context.Context) {
	p, ok := a.deps.Store.(lease.Pinger)
	if !ok {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, min(a.opt.Resync, 3*time.Second))
	defer cancel()
	if err := p.Ping(pctx); err != nil {
		if ctx.Err() == nil {
			a.storeFailed("ping", err)
		}
		return
	}
	a.storeOK("ping")
	if a.opt.NetConf != nil {
		return
	}
	cfg, err := a.deps.Store.Config(pctx)
	if err != nil {
		return
	}
	a.mu.Lock()
	running := a.cfg
	a.mu.Unlock()
	changed := string(cfg.JSON()) != string(running.JSON())
	if changed && string(cfg.JSON()) != a.warnedConfig {
		a.log.Warn("the network config in the store changed; this agent keeps the config it started with until it is restarted (a restart refuses a config that does not fit the leases)",
			"running", string(running.JSON()), "store", string(cfg.JSON()))
	}
	if changed {
		a.warnedConfig = string(cfg.JSON())
	} else {
		a.warnedConfig = ""
	}
}
