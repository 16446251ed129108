package kube

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/twillnet/twill/lease"
)

// watchDebounce is how long Watch collects Node changes after the first
// one before it sends the new set: 5,000 Nodes listed at start, or a burst
// of kubelets registering, become one event.
const watchDebounce = 100 * time.Millisecond

// Watch follows the Node objects with an informer and sends the full lease
// set (every Node with an IPv4 podCIDR and twill's twill.io/public-ip
// annotation, sorted by subnet) once the first list arrived, then after
// every change that matters (podCIDR, twill annotations, a Node added or
// deleted), changes within 100ms coalesced. Status updates (heartbeats)
// send nothing. A deleted Node disappears from the next set, so its peers
// remove its routes. Nodes whose podCIDR lies outside the cluster network
// of the last Acquire, malformed annotations, and the second of two Nodes
// claiming one podCIDR are left out and logged. The informer re-lists and
// re-watches by itself after errors; a reader that lags only misses
// intermediate sets. The channel is closed when ctx ends, never before.
func (s *Store) Watch(ctx context.Context) <-chan lease.Event {
	out := make(chan lease.Event, 1)
	go func() {
		defer close(out)
		w := &watcher{s: s, out: out, bad: map[string]string{}}
		w.run(ctx)
	}()
	return out
}

// watcher is the state of one Watch.
type watcher struct {
	s    *Store
	out  chan lease.Event
	last []lease.Lease     // the set sent last; nil before the first
	bad  map[string]string // node -> the problem logged for it
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
	set, problems := leaseSet(objs, w.s.network())
	for node, p := range problems {
		if w.bad[node] != p {
			w.s.log.Warn("node watch: Node left out of the peer set", "node", node, "problem", p)
		}
	}
	w.bad = problems
	if w.last != nil && slices.EqualFunc(set, w.last, sameLease) {
		return
	}
	select {
	case <-w.out: // drop the stale, unread set
	default:
	}
	w.out <- lease.Event{Leases: set} // we are the only sender and just made room
	w.last = set
}

// leaseSet is the pure core of Watch: the leases of the Nodes, sorted by
// subnet, and for each Node left out although it carries twill's
// annotations, why. Two Nodes with one podCIDR: the one with the smaller
// name keeps it.
func leaseSet(objs []any, network netip.Prefix) ([]lease.Lease, map[string]string) {
	set := make([]lease.Lease, 0, len(objs))
	problems := map[string]string{}
	for _, o := range objs {
		n, ok := o.(*corev1.Node)
		if !ok {
			continue
		}
		l, ok, err := LeaseOf(infoOf(n), network)
		if err != nil {
			problems[n.Name] = err.Error()
			continue
		}
		if ok {
			set = append(set, l)
		}
	}
	slices.SortFunc(set, func(a, b lease.Lease) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()), cmp.Compare(a.Attrs.Node, b.Attrs.Node))
	})
	out := set[:0]
	for i, l := range set {
		if i > 0 && out[len(out)-1].Subnet.Overlaps(l.Subnet) {
			problems[l.Attrs.Node] = "podCIDR " + l.Subnet.String() + " overlaps node " + out[len(out)-1].Attrs.Node + "'s " + out[len(out)-1].Subnet.String() + ": every node needs its own podCIDR"
			continue
		}
		out = append(out, l)
	}
	return out, problems
}

// sameLease reports whether two leases carry the same data.
func sameLease(a, b lease.Lease) bool {
	return a.Subnet == b.Subnet && string(a.Encode()) == string(b.Encode())
}
