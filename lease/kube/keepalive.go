package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/twillnet/twill/lease"
)

// KeepAlive bounds: the backoff between failed attempts to re-assert.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 30 * time.Second
)

// KeepAlive keeps this node's lease true until ctx ends, then closes the
// channel. The lease here is the node's podCIDR plus twill's annotations;
// KeepAlive follows its own Node with an informer (a watch on that one
// object) and, at once on every change and every Recheck as a backstop:
//
//   - publishes the annotations again when they are missing or changed
//     (someone removed them, or the Node was deleted and kubelet registered
//     it again);
//   - reports a *lease.ReacquiredError when the podCIDR changed (the node
//     must be reprogrammed for the new subnet);
//   - after SetNetworkAvailable succeeded, sets NetworkUnavailable=False
//     again when the condition is missing or says otherwise.
//
// Problems (the Node deleted, no podCIDR, a patch forbidden, the API
// server down) are sent on the channel and retried with a backoff up to
// 30s; they never stop the loop. A failing list/watch of the Node is
// retried by the informer and logged (explained), not sent. Plain errors are dropped when the reader
// lags (16 are buffered); ReacquiredError is always delivered. Called
// before Acquire, it sends one error and closes. Reading the Node costs no
// API request: only a needed patch does.
func (s *Store) KeepAlive(ctx context.Context) <-chan error {
	out := make(chan error, 16)
	go func() {
		defer close(out)
		s.mu.Lock()
		own := s.own
		s.mu.Unlock()
		if own == nil {
			out <- fmt.Errorf("lease keepalive: %w", errNoLease)
			return
		}
		name := own.req.Node
		inf := s.nodeInformer(name, true)
		changed := make(chan struct{}, 1)
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { signal(changed) },
			UpdateFunc: func(any, any) { signal(changed) },
			DeleteFunc: func(any) { signal(changed) },
		})
		go inf.RunWithContext(ctx)
		if !waitSynced(ctx, inf) {
			return
		}
		tick := time.NewTicker(s.recheck)
		defer tick.Stop()
		retry := minRetry
		var again <-chan time.Time
		var patchedOver string // resourceVersion of the cached Node last patched
		for {
			err := s.assert(ctx, inf.GetStore(), name, &patchedOver)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				retry, again = minRetry, nil
			default:
				var re *lease.ReacquiredError
				if errors.As(err, &re) {
					select {
					case out <- err:
					case <-ctx.Done():
						return
					}
					retry, again = minRetry, nil
					break
				}
				// The error goes to the caller, who logs it; log it here only
				// when the caller has not taken the previous one yet.
				select {
				case out <- err:
					s.log.Debug("lease keepalive: retrying", "err", err.Error(), "retry_in", retry.String())
				default:
					s.log.Warn("lease keepalive: retrying", "err", err.Error(), "retry_in", retry.String())
				}
				again = time.After(retry)
				retry = min(retry*2, maxRetry)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-tick.C:
			case <-again:
			}
		}
	}()
	return out
}

// assert compares the cached Node with this node's lease and fixes what
// differs. It returns a *lease.ReacquiredError when the podCIDR changed,
// or when it had to publish the lease's annotations again (with Reason).
//
// patchedOver holds the resourceVersion of the cached Node that assert
// last patched; while the cache still holds that version, the informer has
// not yet seen the patch, and the Node is not judged again (a second
// patch, and a second "annotations were removed" report, would be wrong).
func (s *Store) assert(ctx context.Context, cache cache.Store, name string, patchedOver *string) error {
	s.mu.Lock()
	own, available := s.own, s.available
	s.mu.Unlock()
	if own == nil || own.req.Node != name {
		return fmt.Errorf("lease keepalive: %w (released?)", errNoLease)
	}
	obj, exists, err := cache.GetByKey(name)
	if err != nil {
		return fmt.Errorf("lease keepalive: node %s: %w", name, err)
	}
	if !exists {
		return fmt.Errorf("lease keepalive: node %s: the Node object was deleted from the API: peers drop this node's routes until kubelet registers it again", name)
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return fmt.Errorf("lease keepalive: node %s: unexpected object %T in the informer", name, obj)
	}
	if node.ResourceVersion != "" && node.ResourceVersion == *patchedOver {
		return nil
	}
	sn4, sn6, err := Subnets(infoOf(node), own.cfg)
	if err != nil {
		return fmt.Errorf("lease keepalive: %w", err)
	}
	want := Annotations(own.req)
	var restored error
	if annotationsDiffer(node.Annotations, want) {
		s.log.Warn("lease keepalive: the node's twill.io annotations are missing or changed; publishing them again", "node", name)
		if err := s.patchAnnotations(ctx, name, want); err != nil {
			return fmt.Errorf("lease keepalive: %w", err)
		}
		*patchedOver = node.ResourceVersion
		restored = &lease.ReacquiredError{Old: own.lease, New: own.lease, Reason: "its twill.io annotations were removed or changed in the API; published them again"}
	}
	if sn4 != own.lease.Subnet || sn6 != own.lease.IPv6Subnet {
		l := own.req.Lease(sn4, sn6)
		s.mu.Lock()
		if s.own == own {
			s.own = &owned{lease: l, cfg: own.cfg, req: own.req}
		}
		s.mu.Unlock()
		return &lease.ReacquiredError{Old: own.lease, New: l}
	}
	if available && !networkAvailable(node) {
		s.log.Warn("lease keepalive: condition NetworkUnavailable is not False; setting it again", "node", name)
		if err := s.setCondition(ctx, name); err != nil {
			return fmt.Errorf("lease keepalive: %w", err)
		}
		*patchedOver = node.ResourceVersion
	}
	return restored
}
