// Package apiload reads a kubeview.View from a live Kubernetes API server
// with client-go. It is kept apart from kubeview so that the packages that
// only consume a View (doctor, trace) do not pull client-go in.
package apiload

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/kubeview"
	"github.com/twillnet/twill/lease/kube"
)

// Load reads the View from the API server named by kubeconfig (empty: the
// pod's in-cluster config, else $KUBECONFIG; see kube.LoadRESTConfig).
// The user needs list on services, pods and discovery.k8s.io
// endpointslices in all namespaces (the "view" ClusterRole has them).
func Load(ctx context.Context, kubeconfig string) (*kubeview.View, error) {
	cfg, err := kube.LoadRESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return LoadFrom(ctx, c)
}

// LoadFrom reads the View with an existing client.
func LoadFrom(ctx context.Context, c kubernetes.Interface) (*kubeview.View, error) {
	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services in all namespaces: %w (the user needs list on services; the built-in view ClusterRole has it)", err)
	}
	slices, err := c.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list EndpointSlices in all namespaces: %w (the user needs list on discovery.k8s.io endpointslices)", err)
	}
	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Pods in all namespaces: %w (the user needs list on pods)", err)
	}
	return build(svcs.Items, slices.Items, pods.Items), nil
}

// build converts API objects to a View (pure; unparsable addresses are
// left out).
func build(svcs []corev1.Service, eps []discoveryv1.EndpointSlice, pods []corev1.Pod) *kubeview.View {
	v := &kubeview.View{Services: []kubeview.Service{}, Pods: []kubeview.Pod{}}
	index := map[string]int{}
	for _, s := range svcs {
		out := kubeview.Service{Namespace: s.Namespace, Name: s.Name}
		if a, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
			out.ClusterIP = a
		}
		for _, p := range s.Spec.Ports {
			out.Ports = append(out.Ports, kubeview.ServicePort{Name: p.Name, Protocol: protocol(p.Protocol), Port: uint16(p.Port)})
		}
		index[out.Key()] = len(v.Services)
		v.Services = append(v.Services, out)
	}
	for _, sl := range eps {
		name := sl.Labels[discoveryv1.LabelServiceName]
		i, ok := index[sl.Namespace+"/"+name]
		if !ok {
			continue
		}
		s := &v.Services[i]
		for _, e := range sl.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			node := ""
			if e.NodeName != nil {
				node = *e.NodeName
			}
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				for _, p := range sl.Ports {
					if p.Port == nil {
						continue
					}
					pe := kubeview.Endpoint{Addr: netip.AddrPortFrom(ip, uint16(*p.Port)), Ready: ready, Node: node, Protocol: "TCP"}
					if p.Name != nil {
						pe.PortName = *p.Name
					}
					if p.Protocol != nil {
						pe.Protocol = protocol(*p.Protocol)
					}
					s.Endpoints = append(s.Endpoints, pe)
				}
			}
		}
	}
	for _, p := range pods {
		out := kubeview.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork}
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			out.IP = a
		}
		v.Pods = append(v.Pods, out)
	}
	v.Sort()
	return v
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return "TCP"
	}
	return string(p)
}
