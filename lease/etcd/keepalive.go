package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/twillnet/twill/lease"
)

// Renewal timing: a renewal every TTL/3; after a failure, retries with a
// backoff from minRetry doubling up to TTL/3.
const minRetry = 500 * time.Millisecond

// KeepAlive renews this node's lease every TTL/3 until ctx ends, then closes
// the channel. A failed renewal (etcd unreachable) is sent on the channel
// and retried with a bounded backoff; it never stops the loop. When etcd
// says the lease is gone (it expired while etcd was unreachable from this
// node, or was revoked), the lease is acquired again with the same request
// and config, preferring the same subnet, and a *lease.ReacquiredError is
// sent. Plain errors are dropped when the reader lags (16 are buffered);
// ReacquiredError is always delivered. It follows the lease of the latest
// Acquire; called before any Acquire, it sends one error and closes.
func (s *Store) KeepAlive(ctx context.Context) <-chan error {
	out := make(chan error, 16)
	go func() {
		defer close(out)
		if _, ok := s.Lease(); !ok {
			out <- errors.New("lease keepalive: no lease to renew: call Acquire first")
			return
		}
		period := max(s.ttl/3, time.Second)
		retry := minRetry
		wait := period
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			err := s.renewOnce(ctx, period)
			switch {
			case err == nil:
				wait, retry = period, minRetry
				continue
			case ctx.Err() != nil:
				return
			}
			var re *lease.ReacquiredError
			if errors.As(err, &re) {
				select {
				case out <- err:
				case <-ctx.Done():
					return
				}
				wait, retry = period, minRetry
				continue
			}
			// The agent receives the error and reports the outage once.
			s.log.Debug("lease: renewal failed; retrying", "err", err, "retry_in", retry)
			select {
			case out <- err:
			default:
			}
			wait, retry = retry, min(retry*2, period)
		}
	}()
	return out
}

// renewOnce renews the current lease once, or re-acquires it when etcd no
// longer knows it. A re-acquire is reported as *lease.ReacquiredError.
func (s *Store) renewOnce(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	own := s.own
	s.mu.Unlock()
	if own == nil {
		return errors.New("lease keepalive: the lease was released; nothing to renew")
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := s.c.KeepAliveOnce(cctx, own.id)
	if err == nil {
		return nil
	}
	if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("lease %s of node %s: renew: %w", own.lease.Subnets(), own.req.Node, err)
	}
	s.log.Warn("lease: etcd lost our lease (expired or revoked); acquiring it again", "node", own.req.Node, "subnet", own.lease.Subnets())
	req := own.req
	req.Previous, req.PreviousV6 = own.lease.Subnet, own.lease.IPv6Subnet
	l, err := s.Acquire(cctx, own.cfg, req)
	if err != nil {
		return fmt.Errorf("lease %s of node %s expired and re-acquiring failed: %w", own.lease.Subnets(), own.req.Node, err)
	}
	return &lease.ReacquiredError{Old: own.lease, New: l}
}
