package kube

import (
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event reasons the store records (Kubernetes Events of type Warning, seen
// in `kubectl describe node` and, when Options.Pod is set, `kubectl
// describe pod` of the agent's pod).
const (
	// ReasonNoPodCIDR: the node has no spec.podCIDR (of a family the
	// network runs); the agent waits for one.
	ReasonNoPodCIDR = "NoPodCIDR"
	// ReasonPodCIDROutsideNetwork: the node's podCIDR is outside the
	// network of net-conf.json; the agent waits for the two to agree.
	ReasonPodCIDROutsideNetwork = "PodCIDROutsideNetwork"
)

// EventComponent is the source component of the store's Events.
const EventComponent = "twill-agent"

// PodRef names the pod the agent runs in, so the store's Events also show
// in `kubectl describe pod` (the UID is part of what kubectl matches).
type PodRef struct {
	Namespace, Name string
	UID             types.UID
}

// PodFromEnv reads the agent's pod from $POD_NAMESPACE, $POD_NAME and
// $POD_UID (the DaemonSet sets them from the downward API); nil when any is
// missing (the agent runs outside a pod, or an older manifest).
func PodFromEnv() *PodRef {
	p := PodRef{Namespace: os.Getenv("POD_NAMESPACE"), Name: os.Getenv("POD_NAME"), UID: types.UID(os.Getenv("POD_UID"))}
	if p.Namespace == "" || p.Name == "" || p.UID == "" {
		return nil
	}
	return &p
}

// eventRefs are the objects a warning about node is recorded on: the Node
// (its UID is its name, as kubelet and kubectl describe node have it) and
// the agent's pod when known. Pure.
func eventRefs(node string, pod *PodRef) []*corev1.ObjectReference {
	refs := []*corev1.ObjectReference{{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)}}
	if pod != nil {
		refs = append(refs, &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID})
	}
	return refs
}

// events records the store's Warning Events through client-go's event
// recorder (repeats of one Event are counted, not duplicated; bursts are
// rate-limited). It starts on the first warning: stores that never warn
// (doctor, trace, uninstall) start nothing.
type events struct {
	once        sync.Once
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// warn records a Warning Event with reason and message on node (and the
// agent's pod). Sending is asynchronous; a refused Event (an older
// ClusterRole without events create/patch) is logged by client-go, never
// an error of the caller.
func (s *Store) warn(node, reason, message string) {
	s.ev.once.Do(func() {
		s.ev.broadcaster = record.NewBroadcaster()
		s.ev.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.c.CoreV1().Events("")})
		s.ev.recorder = s.ev.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent, Host: node})
	})
	for _, ref := range eventRefs(node, s.pod) {
		s.ev.recorder.Event(ref, corev1.EventTypeWarning, reason, message)
	}
}

// stopEvents flushes nothing and stops the recorder, if it started.
func (s *Store) stopEvents() {
	if s.ev.broadcaster != nil {
		s.ev.broadcaster.Shutdown()
	}
}
