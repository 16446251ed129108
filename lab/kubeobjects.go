package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/lease/kube"
)

// KubeNamespace is the namespace of the lab's pods and Services.
const KubeNamespace = "lab"

// KubeBindingName is the ClusterRoleBinding that binds every node's agent
// user to the ClusterRole twill ships.
const KubeBindingName = "twill-lab-agents"

// labManagedBy marks the EndpointSlices the lab writes (there is no
// endpointslice controller in the lab).
const labManagedBy = "twill-lab"

// setupKubeRBAC installs the shipped ClusterRole (kube.ClusterRole, the
// rules of deploy/) and binds it to every node's agent user, and creates the
// lab's namespace and its default ServiceAccount (no controller-manager
// runs in the lab to make it).
func setupKubeRBAC(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, kube.ClusterRole(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube: create the shipped ClusterRole %s: %w", kube.ClusterRoleName, err)
	}
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: KubeBindingName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kube.ClusterRoleName},
	}
	for _, n := range st.Nodes {
		b.Subjects = append(b.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: KubeNodeUser(n.Name)})
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube: bind ClusterRole %s to the agents: %w", kube.ClusterRoleName, err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: KubeNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube: create namespace %s: %w", KubeNamespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: KubeNamespace}}
	if _, err := c.CoreV1().ServiceAccounts(KubeNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube: create ServiceAccount %s/default: %w", KubeNamespace, err)
	}
	return nil
}

// kubeNode is node n's Node object as a node registers and
// kube-controller-manager (--allocate-node-cidrs) completes it: spec.podCIDRs
// are the node's planned subnets (one per family the lab runs). Like a
// kubelet's registration it carries an annotation (flanneld's Kubernetes
// subnet manager writes into the Node's annotation map and panics on a
// Node without one).
func kubeNode(n *Node) *corev1.Node {
	cidrs := familyList(n.Subnet, n.IPv6Subnet)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
			"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "twill.io/lab": "true"},
			Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs},
	}
}

// familyList is the non-empty values of an IPv4/IPv6 pair, IPv4 first (the
// order Kubernetes wants in podCIDRs, podIPs and node addresses of a
// dual-stack cluster whose primary family is IPv4).
func familyList(v4, v6 string) []string {
	var l []string
	for _, v := range []string{v4, v6} {
		if v != "" {
			l = append(l, v)
		}
	}
	return l
}

// kubeNodeStatus is the status the lab writes for node n: its addresses and
// NetworkUnavailable=True until its agent says otherwise (as a cloud route
// controller starts nodes).
func kubeNodeStatus(n *Node) corev1.NodeStatus {
	now := metav1.Now()
	return corev1.NodeStatus{
		Addresses: nodeAddresses(n),
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue,
			Reason: "NoNetworkYet", Message: "twill lab: the node's agent has not reported yet", LastTransitionTime: now, LastHeartbeatTime: now}},
	}
}

// nodeAddresses is node n's status addresses: its underlay address of
// each family (an IPv6-only lab's nodes keep IPv4 underlay addresses for
// the control plane, so IPv4 is always first) and its hostname.
func nodeAddresses(n *Node) []corev1.NodeAddress {
	var as []corev1.NodeAddress
	for _, ip := range familyList(n.IP, n.IPv6) {
		as = append(as, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return append(as, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
}

// registerNodes creates every node's Node object with its podCIDR and status.
func registerNodes(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range st.Nodes {
		n := &st.Nodes[i]
		obj, err := c.CoreV1().Nodes().Create(ctx, kubeNode(n), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("kube: create Node %s: %w", n.Name, err)
		}
		obj.Status = kubeNodeStatus(n)
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("kube: Node %s: status: %w", n.Name, err)
		}
	}
	return nil
}

// readKubeLeases checks that every node's Node object carries its agent's
// lease (the twill.io annotations on the planned podCIDR) and records the
// VTEP MAC its agent published.
func readKubeLeases(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	cfg, err := netConf(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range st.Nodes {
		n := &st.Nodes[i]
		obj, err := c.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("kube: Node %s: %w", n.Name, err)
		}
		l, ok, err := kube.LeaseOf(kube.NodeInfo{Name: obj.Name, PodCIDR: obj.Spec.PodCIDR, PodCIDRs: obj.Spec.PodCIDRs, Annotations: obj.Annotations}, cfg)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("node %s: its agent is ready but its Node object carries no twill.io annotations", n.Name)
		}
		if err := checkLeased(n, l); err != nil {
			return err
		}
		n.adoptLeaseMACs(l)
	}
	return nil
}

// registerWorkloads creates the lab's Pod objects (with the pods' real
// addresses as status), its Services with their fixed ClusterIPs, and one
// EndpointSlice per Service listing the real pod addresses, so tools
// reading the API (twill doctor and trace with --kubeconfig) resolve the
// same names and addresses the kube-proxy rules use.
func registerWorkloads(ctx context.Context, st *State) error {
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			if err := registerPod(ctx, c, &n, &p); err != nil {
				return err
			}
		}
	}
	for _, s := range st.Services() {
		if s.Namespace != KubeNamespace {
			continue // default/kubernetes is the API server's own
		}
		if err := createService(ctx, c, st, s); err != nil {
			return err
		}
		for _, a := range s.Addrs() {
			es := endpointSlice(st, s.Name, s.PortName, a.Is6(), s.Endpoints)
			if _, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, es, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("kube: create EndpointSlice %s of %s/%s: %w", es.Name, s.Namespace, s.Name, err)
			}
		}
	}
	return nil
}

// createService creates lab Service s with its fixed ClusterIPs (one per
// family the lab runs: ipFamilies in that order, RequireDualStack when
// there are two) and its selector (serviceSelector).
func createService(ctx context.Context, c kubernetes.Interface, st *State, s kubeproxy.Service) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
		Spec: corev1.ServiceSpec{
			ClusterIP: s.ClusterIP.String(),
			Type:      corev1.ServiceTypeClusterIP,
			Selector:  serviceSelector(st, s.Name),
			Ports:     []corev1.ServicePort{{Name: s.PortName, Protocol: corev1.ProtocolTCP, Port: int32(s.Port), TargetPort: intstr.FromInt32(ServerPort)}},
		},
	}
	policy := corev1.IPFamilyPolicySingleStack
	for _, a := range s.Addrs() {
		svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, a.String())
		svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, map[bool]corev1.IPFamily{false: corev1.IPv4Protocol, true: corev1.IPv6Protocol}[a.Is6()])
	}
	if len(svc.Spec.IPFamilies) > 1 {
		policy = corev1.IPFamilyPolicyRequireDualStack
	}
	svc.Spec.IPFamilyPolicy = &policy
	if _, err := c.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube: create Service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// Pod labels the lab sets: every pod is app=web; the pod's own name selects
// it alone (lab/local-node<i>).
const (
	labelApp = "app"
	labelPod = "twill.io/lab-pod"
)

// serviceSelector is the selector of lab Service name.
func serviceSelector(st *State, name string) map[string]string {
	for _, n := range st.Nodes {
		if name == "local-"+n.Name {
			return map[string]string{labelPod: localPod(&n).Name}
		}
	}
	return map[string]string{labelApp: "web"}
}

// localPod is the endpoint of node n's lab/local-<node> Service: pod b (or
// the only pod).
func localPod(n *Node) Pod {
	if len(n.Pods) > 1 {
		return n.Pods[1]
	}
	return n.Pods[0]
}

// registerPod creates pod p's Pod object on node n and sets its status
// (Running, its real address) through the status subresource.
func registerPod(ctx context.Context, c kubernetes.Interface, n *Node, p *Pod) error {
	no := false
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: KubeNamespace, Labels: map[string]string{labelApp: "web", labelPod: p.Name}},
		Spec: corev1.PodSpec{
			NodeName:                     n.Name,
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "serve", Image: "twill.io/lab-serve:lab", Command: []string{"twill", "lab", "serve"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: ServerPort, Protocol: corev1.ProtocolTCP}, {Name: "echo", ContainerPort: EchoPort, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	obj, err := c.CoreV1().Pods(KubeNamespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kube: create Pod %s/%s: %w", KubeNamespace, p.Name, err)
	}
	now := metav1.Now()
	obj.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, HostIP: n.IP, HostIPs: []corev1.HostIP{{IP: n.IP}},
		StartTime:  &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "serve", Image: obj.Spec.Containers[0].Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	for _, ip := range familyList(p.IP, p.IPv6) {
		obj.Status.PodIPs = append(obj.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	obj.Status.PodIP = obj.Status.PodIPs[0].IP
	if _, err := c.CoreV1().Pods(KubeNamespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kube: Pod %s/%s: status: %w", KubeNamespace, p.Name, err)
	}
	return nil
}

// endpointSlice is the EndpointSlice of one family (IPv6 when v6) of lab
// Service svc: the pods behind endpoints of that family (the same
// addresses the kube-proxy rules use). The IPv4 slice is "<svc>-lab", the
// IPv6 one "<svc>-lab-v6", as the EndpointSlice controller keeps one slice
// per address type.
func endpointSlice(st *State, svc, portName string, v6 bool, endpoints []netip.AddrPort) *discoveryv1.EndpointSlice {
	ready, proto := true, corev1.ProtocolTCP
	port := int32(ServerPort)
	name, addrType := svc+"-lab", discoveryv1.AddressTypeIPv4
	if v6 {
		name, addrType = svc+"-lab-v6", discoveryv1.AddressTypeIPv6
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: KubeNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: labManagedBy}},
		AddressType: addrType,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}
	for _, ep := range endpoints {
		if ep.Addr().Is6() != v6 {
			continue
		}
		e := discoveryv1.Endpoint{Addresses: []string{ep.Addr().String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
		for _, n := range st.Nodes {
			for _, p := range n.Pods {
				if p.IP == ep.Addr().String() || p.IPv6 == ep.Addr().String() {
					node := n.Name
					e.NodeName = &node
					e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: KubeNamespace, Name: p.Name}
				}
			}
		}
		es.Endpoints = append(es.Endpoints, e)
	}
	return es
}

// KubeNodeDelete deletes node's Node object from the lab's API server, as
// `kubectl delete node` would. The other nodes' agents see it go (their
// Node informers) and remove their routes to its subnet. The node's
// namespace, agent and pods stay as they are.
func KubeNodeDelete(ctx context.Context, name, node string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	st, err := Load(name)
	if err != nil {
		return err
	}
	n, err := st.node(node)
	if err != nil {
		return err
	}
	c, err := kubeAdmin(st)
	if err != nil {
		return err
	}
	if err := deleteNodeObject(ctx, c, n.Name, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "Deleted Node %s from the API: the other nodes' agents drop their routes to %s (its namespace, agent and pods are left as they are).\n", n.Name, n.Subnet)
	return nil
}

// nodeDeleteAttempts bounds deleteNodeObject's retries.
const nodeDeleteAttempts = 3

// deleteNodeObject deletes one Node. A busy API server (a loaded machine)
// can let a request time out after it was carried out, so a timed-out
// delete is tried again, and NotFound on a later attempt counts as done.
func deleteNodeObject(ctx context.Context, c kubernetes.Interface, node string, out io.Writer) error {
	var err error
	for attempt := 1; attempt <= nodeDeleteAttempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = c.CoreV1().Nodes().Delete(actx, node, metav1.DeleteOptions{})
		cancel()
		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err) && attempt > 1:
			return nil
		case ctx.Err() != nil || !retriableKubeError(err):
			return fmt.Errorf("kube: delete Node %s: %w", node, err)
		}
		fmt.Fprintf(out, "kube: delete Node %s: %s; trying again (%d/%d)\n", node, shortErr(err), attempt+1, nodeDeleteAttempts)
	}
	return fmt.Errorf("kube: delete Node %s: %d attempts failed, the last: %w", node, nodeDeleteAttempts, err)
}

// retriableKubeError tells whether a request failed in a way that a second
// try may cure: a timeout, a dropped connection, or a server-side overload.
func retriableKubeError(err error) bool {
	if apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
