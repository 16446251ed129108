package main

import (
	"context"
	"time"

	"github.com/twillnet/twill/kubeview"
	"github.com/twillnet/twill/kubeview/apiload"
)

// kubeconfigAuto is the --kubeconfig value of doctor and trace that means
// "the pod's in-cluster ServiceAccount, else $KUBECONFIG".
const kubeconfigAuto = "auto"

// kubeconfigHelp documents --kubeconfig for doctor and trace.
const kubeconfigHelp = `read Services, EndpointSlices and Pods from the Kubernetes API with this kubeconfig ("auto": the pod's in-cluster ServiceAccount, else $KUBECONFIG); the user needs list on services, endpointslices and pods (the built-in "view" ClusterRole)`

// loadAPIView reads the API's view for doctor and trace; nil when
// kubeconfig is "" (the flag was not given).
func loadAPIView(ctx context.Context, kubeconfig string) (*kubeview.View, error) {
	if kubeconfig == "" {
		return nil, nil
	}
	if kubeconfig == kubeconfigAuto {
		kubeconfig = ""
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return apiload.Load(ctx, kubeconfig)
}
