package kube

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// List returns the lease every Node publishes (its podCIDR and twill's
// annotations), for one-shot readers such as `twill snapshot` and `twill
// doctor`; the agent follows Nodes with Watch instead. Nodes that are not
// (yet) twill peers are left out; a malformed one is an error naming it.
func List(ctx context.Context, c kubernetes.Interface) ([]lease.Lease, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, explain(err, "list the Node objects", "list", "nodes")
	}
	var out []lease.Lease
	for i := range nodes.Items {
		l, ok, err := LeaseOf(infoOf(&nodes.Items[i]), netconf.Config{})
		if err != nil {
			return out, fmt.Errorf("leases from the API: %w", err)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out, nil
}
