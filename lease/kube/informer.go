package kube

import (
	"context"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// nodeInformer makes an informer on the Nodes (all of them, or the one
// named only) that keeps trimmed copies: name, pod CIDRs, twill's
// annotations and, with conditions, the status conditions. A cluster of
// 5,000 Nodes then costs a few MB instead of their full status (images,
// addresses, capacity). List and watch errors are logged once per distinct
// message, explained (a missing permission names list/watch on nodes).
func (s *Store) nodeInformer(only string, conditions bool) cache.SharedIndexInformer {
	opts := func(o *metav1.ListOptions) {
		if only != "" {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", only).String()
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			opts(&o)
			return s.c.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			opts(&o)
			return s.c.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	_ = inf.SetTransform(func(obj any) (any, error) { return trimNode(obj, conditions), nil }) // only fails after Run
	var last string
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		if ctx.Err() != nil {
			return
		}
		e := explain(err, "follow the Node objects", "list,watch", "nodes").Error()
		if e != last {
			s.log.Warn("node informer: listing/watching Nodes failed; retrying", "err", e)
			last = e
		}
	})
	return inf
}

// trimNode keeps of a Node only what twill reads, its creationTimestamp
// included (lease.Accept lets the older of two overlapping leases win).
// Other objects (a DeletedFinalStateUnknown tombstone) pass unchanged.
func trimNode(obj any, conditions bool) any {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj
	}
	t := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: slices.Clone(n.Spec.PodCIDRs)},
	}
	for _, k := range annotationKeys {
		if v, ok := n.Annotations[k]; ok {
			if t.Annotations == nil {
				t.Annotations = make(map[string]string, len(annotationKeys))
			}
			t.Annotations[k] = v
		}
	}
	if conditions {
		t.Status.Conditions = slices.Clone(n.Status.Conditions)
	}
	return t
}

// sameInfo reports whether two trimmed Nodes are the same for the lease
// set.
func sameInfo(a, b *corev1.Node) bool {
	return a.Name == b.Name && a.Spec.PodCIDR == b.Spec.PodCIDR && slices.Equal(a.Spec.PodCIDRs, b.Spec.PodCIDRs) &&
		maps.Equal(a.Annotations, b.Annotations)
}

// waitSynced waits until inf has listed once, or ctx ends (false).
func waitSynced(ctx context.Context, inf cache.SharedIndexInformer) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !inf.HasSynced() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// signal sends on a 1-buffered channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
