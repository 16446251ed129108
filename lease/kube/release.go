package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Release removes twill's annotations from this node's Node, so the peers
// drop their routes to it at once (the podCIDR stays: it is the API's).
// A Node already gone is not an error. It needs a prior Acquire.
func (s *Store) Release(ctx context.Context) error {
	s.mu.Lock()
	own := s.own
	s.mu.Unlock()
	if own == nil {
		return fmt.Errorf("release: %w", errNoLease)
	}
	if _, err := s.ReleaseNode(ctx, own.req.Node); err != nil {
		return err
	}
	s.mu.Lock()
	if s.own == own {
		s.own, s.available = nil, false
	}
	s.mu.Unlock()
	return nil
}

// ReleaseNode removes twill's annotations from the named Node, whoever
// wrote them (`twill uninstall` runs after the agent is gone). released is
// false when the Node carries none, or does not exist.
func (s *Store) ReleaseNode(ctx context.Context, node string) (released bool, err error) {
	n, err := s.c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, nodeGetError(err, node)
	}
	if !annotationsDiffer(n.Annotations, nil) {
		return false, nil
	}
	if err := s.patchAnnotations(ctx, node, nil); err != nil {
		return false, err
	}
	return true, nil
}

// NodeInfo reads the named Node as twill reads it (name, podCIDRs,
// annotations); `twill migrate` plans from it.
func (s *Store) NodeInfo(ctx context.Context, node string) (NodeInfo, error) {
	n, err := s.c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return NodeInfo{}, nodeGetError(err, node)
	}
	return infoOf(n), nil
}

// RemoveTwillSet removes twill's own annotation set (twill.io/*) from the
// named Node and keeps Flannel's, which flanneld takes over when the node
// goes back to Flannel (`twill migrate to-flannel`): without it twill's set,
// which wins on a Node carrying both, would keep a stale lease in front of
// the peers. removed is false when the Node carries none.
func (s *Store) RemoveTwillSet(ctx context.Context, node string) (removed bool, err error) {
	n, err := s.NodeInfo(ctx, node)
	if err != nil {
		return false, err
	}
	if len(TwillKeys(n.Annotations)) == 0 {
		return false, nil
	}
	return true, s.patchAnnotations(ctx, node, flannelSet(n.Annotations))
}
