// Command kube-controller-manager is the upstream Kubernetes controller
// manager (nodeipam, EndpointSlices, DaemonSets...), built from
// k8s.io/kubernetes through the Go module proxy for the twill lab.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
