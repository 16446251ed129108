package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The NetworkUnavailable condition twill sets.
const (
	// ConditionReason is the condition's reason (Flannel's is FlannelIsUp).
	ConditionReason = "TwillIsUp"
	// ConditionMessage is the condition's message.
	ConditionMessage = "twill is running on this node: the pod network is programmed"
)

// SetNetworkAvailable sets this node's condition NetworkUnavailable=False
// (reason TwillIsUp) through the nodes/status subresource, telling the
// scheduler and the node lifecycle controller that the pod network is up
// (a NetworkUnavailable=True condition taints the node
// node.kubernetes.io/network-unavailable). Call it once the node is
// programmed: the agent does after its first successful reconcile. From
// then on KeepAlive sets it again if it is lost. It needs a prior Acquire
// and 'patch' on 'nodes/status'.
func (s *Store) SetNetworkAvailable(ctx context.Context) error {
	s.mu.Lock()
	own := s.own
	s.mu.Unlock()
	if own == nil {
		return fmt.Errorf("set NetworkUnavailable=False: %w", errNoLease)
	}
	if err := s.setCondition(ctx, own.req.Node); err != nil {
		return err
	}
	s.mu.Lock()
	if s.own == own {
		s.available = true
	}
	s.mu.Unlock()
	return nil
}

// setCondition patches the named node's NetworkUnavailable condition.
func (s *Store) setCondition(ctx context.Context, name string) error {
	op := "node " + name + ": set condition NetworkUnavailable=False"
	_, err := s.c.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, conditionPatch(time.Now()), metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s: the Node object is gone (deleted from the API)", op)
	}
	return explain(err, op, "patch", "nodes/status")
}

// conditionPatch is the strategic merge patch of the node status that sets
// NetworkUnavailable=False (conditions merge by type: other conditions are
// kept).
func conditionPatch(now time.Time) []byte {
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	patch := map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		Reason:             ConditionReason,
		Message:            ConditionMessage,
		LastTransitionTime: t,
		LastHeartbeatTime:  t,
	}}}}
	b, _ := json.Marshal(patch) // plain data: cannot fail
	return b
}

// networkAvailable reports whether the node says NetworkUnavailable=False.
func networkAvailable(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return c.Status == corev1.ConditionFalse
		}
	}
	return false
}
