package kube

import (
	"cmp"
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// watchDebounce is how long Watch collects Node changes after the first
// one before it sends the new set: 5,000 Nodes listed at start, or a burst
// of kubelets registering, become one event.
const watchDebounce = 100 * time.Millisecond

// Watch follows the Node objects with an informer and sends the full lease
// set (every Node with an IPv4 podCIDR and twill's twill.io/public-ip
// annotation or Flannel's, see LeaseOf; sorted by subnet) once the first
// list arrived, then after every change that matters (podCIDR, twill's or
// Flannel's annotations, a Node added or
// deleted), changes within 100ms coalesced. Status updates (heartbeats)
// send nothing. A deleted Node disappears from the next set, so its peers
// remove its routes. Nodes whose podCIDR lies outside the cluster network
// of the last Acquire and malformed annotations are left out and reported
// in Event.Rejected; conflicts are lease.Accept's to decide (each lease's
// Created is its Node's creationTimestamp). The informer re-lists and
// re-watches by itself after errors; a reader that lags only misses
// intermediate sets. The channel is closed when ctx ends, never before.
func (s *Store) Watch(ctx context.Context) <-chan lease.Event {
	out := make(chan lease.Event, 1)
	go func() {
		defer close(out)
		w := &watcher{s: s, out: out}
		w.run(ctx)
	}()
	return out
}

// watcher is the state of one Watch.
type watcher struct {
	s       *Store
	out     chan lease.Event
	last    []lease.Lease    // the set sent last; nil before the first
	lastBad []lease.Rejected // the rejections sent last
}

func (w *watcher) run(ctx context.Context) {
	inf := w.s.nodeInformer("", false)
	dirty := make(chan struct{}, 1)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { signal(dirty) },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || !sameInfo(o, n) {
				signal(dirty)
			}
		},
		DeleteFunc: func(any) { signal(dirty) },
	})
	go inf.RunWithContext(ctx)
	if !waitSynced(ctx, inf) {
		return
	}
	w.publish(inf.GetStore().List())
	var flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty:
			if flush == nil {
				flush = time.After(watchDebounce)
			}
		case <-flush:
			flush = nil
			w.publish(inf.GetStore().List())
		}
	}
}

// publish computes the lease set of the Nodes and sends it when it differs
// from the last one sent. The channel holds one event: an unread older set
// is replaced by the new one.
func (w *watcher) publish(objs []any) {
	set, bad := leaseSet(objs, w.s.config())
	if w.last != nil && slices.EqualFunc(set, w.last, sameLease) && slices.Equal(bad, w.lastBad) {
		return
	}
	select {
	case <-w.out: // drop the stale, unread set
	default:
	}
	w.out <- lease.Event{Leases: set, Rejected: bad} // we are the only sender and just made room
	w.last, w.lastBad = set, bad
}

// leaseSet is the pure core of Watch: the leases of the Nodes, sorted by
// subnet then node name, and for each Node left out although it carries
// twill's annotations, why (sorted by key "node/<name>"). Overlapping
// podCIDRs are kept here: lease.Accept decides between them.
func leaseSet(objs []any, cfg netconf.Config) ([]lease.Lease, []lease.Rejected) {
	set := make([]lease.Lease, 0, len(objs))
	var bad []lease.Rejected
	for _, o := range objs {
		n, ok := o.(*corev1.Node)
		if !ok {
			continue
		}
		l, ok, err := LeaseOf(infoOf(n), cfg)
		if err != nil {
			bad = append(bad, lease.Rejected{Key: "node/" + n.Name, Reason: lease.ReasonMalformed, Detail: err.Error()})
			continue
		}
		if ok {
			l.Created = n.CreationTimestamp.UnixNano()
			set = append(set, l)
		}
	}
	slices.SortFunc(set, func(a, b lease.Lease) int {
		return cmp.Or(lease.BySubnet(a, b), cmp.Compare(a.Attrs.Node, b.Attrs.Node))
	})
	slices.SortFunc(bad, func(a, b lease.Rejected) int { return cmp.Compare(a.Key, b.Key) })
	return set, bad
}

// sameLease reports whether two leases carry the same data.
func sameLease(a, b lease.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet && a.Created == b.Created && string(a.Encode()) == string(b.Encode())
}
