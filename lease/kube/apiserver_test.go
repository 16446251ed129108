package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/lease/kube/kubetest"
	"github.com/twillnet/twill/netconf"
)

// Users with a part of the shipped permissions.
const (
	noStatus = "no-status" // the shipped rules without nodes/status
	noPatch  = "no-patch"  // nodes get/list/watch only
	nobody   = "nobody"    // nothing
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestAgainstAPIServer runs the store against a real kube-apiserver (one
// for all subtests: it takes seconds to start). Every store talks as user
// "twill", bound to exactly the shipped ClusterRole, unless a subtest says
// otherwise. Subtests use their own node names.
func TestAgainstAPIServer(t *testing.T) {
	srv := kubetest.StartServer(t, kubetest.Options{Users: []string{noStatus, noPatch, nobody}})
	admin := srv.Client(kubetest.Admin)
	grantPartial(t, srv, admin)
	cfg := mustConfig(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)

	// store returns a Store for the user, built from its kubeconfig file as
	// the agent's --kubeconfig does.
	store := func(t *testing.T, user string) *kube.Store {
		t.Helper()
		s, err := kube.New(kube.Options{Kubeconfig: srv.Kubeconfig(user), Recheck: time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("acquire waits for a podCIDR with a clear message", func(t *testing.T) {
		ctx := timeout(t, 30*time.Second)
		createNode(t, admin, "acq-1", "")
		s := store(t, kubetest.Twill)
		_, err := s.Acquire(ctx, cfg, request("acq-1", "192.168.50.1"))
		want := `node acq-1 has no spec.podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs --cluster-cidr=10.244.0.0/16, or set a subnet of 10.244.0.0/16 that no other node has (see: kubectl get nodes -o custom-columns=NAME:.metadata.name,PODCIDR:.spec.podCIDR): kubectl patch node acq-1 -p '{"spec":{"podCIDR":"<free subnet>"}}'`
		if err == nil || err.Error() != want {
			t.Fatalf("Acquire without podCIDR:\n got %v\nwant %s", err, want)
		}
		// Do what the message says.
		patch := `{"spec":{"podCIDR":"10.244.7.0/24"}}`
		if _, err := admin.CoreV1().Nodes().Patch(ctx, "acq-1", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		l, err := s.Acquire(ctx, cfg, request("acq-1", "192.168.50.1"))
		if err != nil {
			t.Fatalf("Acquire after the podCIDR was set: %v", err)
		}
		if l.Subnet != netip.MustParsePrefix("10.244.7.0/24") || l.Attrs.Node != "acq-1" || l.Attrs.PublicIP.String() != "192.168.50.1" {
			t.Fatalf("lease = %+v", l)
		}
		n, err := admin.CoreV1().Nodes().Get(ctx, "acq-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"twill.io/public-ip":    "192.168.50.1",
			"twill.io/backend-type": "vxlan",
			"twill.io/backend-data": `{"VtepMAC":"0e:00:c0:a8:32:01"}`,
		} {
			if n.Annotations[k] != v {
				t.Errorf("annotation %s = %q, want %q", k, n.Annotations[k], v)
			}
		}
	})

	t.Run("a node without a podCIDR gets a Warning Event kubectl describe shows", func(t *testing.T) {
		ctx := timeout(t, 60*time.Second)
		createNode(t, admin, "acq-ev", "")
		pod := &kube.PodRef{Namespace: "default", Name: "twill-abcde", UID: "0a1b2c3d-0000-4000-8000-000000000001"}
		s, err := kube.New(kube.Options{Kubeconfig: srv.Kubeconfig(kubetest.Twill), Logger: quiet, Pod: pod})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The agent retries; every failed Acquire warns, the recorder counts.
		var msg string
		for range 2 {
			_, err := s.Acquire(ctx, cfg, request("acq-ev", "192.168.50.9"))
			if err == nil || !errors.Is(err, lease.ErrNoSubnetYet) {
				t.Fatalf("Acquire without podCIDR: %v, want an error matching lease.ErrNoSubnetYet", err)
			}
			msg = err.Error()
		}
		// As the shipped ClusterRole allows (the store talks as user twill).
		var onNode, onPod *corev1.Event
		for onNode == nil || onPod == nil {
			evs, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=" + kube.ReasonNoPodCIDR})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range evs.Items {
				switch o := e.InvolvedObject; {
				case o.Kind == "Node" && o.Name == "acq-ev":
					onNode = &evs.Items[i]
				case o.Kind == "Pod" && o.Namespace == pod.Namespace && o.Name == pod.Name && o.UID == pod.UID:
					onPod = &evs.Items[i]
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("no NoPodCIDR Event on the Node (%v) and the pod (%v) within 60s", onNode != nil, onPod != nil)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, e := range []*corev1.Event{onNode, onPod} {
			if e.Type != corev1.EventTypeWarning || e.Message != msg || e.Source.Component != kube.EventComponent || e.Source.Host != "acq-ev" {
				t.Errorf("Event on %s %s: type %s, source %+v, message %q; want Warning from %s on acq-ev with Acquire's message %q",
					e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Type, e.Source, e.Message, kube.EventComponent, msg)
			}
		}
		// What the user runs: kubectl describe node lists it.
		kubectl, err := kubetest.KubectlBin()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", srv.Kubeconfig(kubetest.Admin), "describe", "node", "acq-ev").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl describe node: %v\n%s", err, out)
		}
		for _, want := range []string{"Warning", kube.ReasonNoPodCIDR, "node acq-ev has no spec.podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("kubectl describe node acq-ev lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("acquire refuses a podCIDR outside the network and an unknown node", func(t *testing.T) {
		ctx := timeout(t, 30*time.Second)
		createNode(t, admin, "acq-out", "10.99.1.0/24")
		s := store(t, kubetest.Twill)
		_, err := s.Acquire(ctx, cfg, request("acq-out", "192.168.50.2"))
		var out *kube.OutsideNetworkError
		if !errors.As(err, &out) || !strings.Contains(err.Error(), "spec.podCIDR 10.99.1.0/24 is outside the cluster network 10.244.0.0/16") {
			t.Fatalf("Acquire: %v", err)
		}
		_, err = s.Acquire(ctx, cfg, request("acq-none", "192.168.50.3"))
		if err == nil || !strings.Contains(err.Error(), "node acq-none: not found in the API server: --node") {
			t.Fatalf("Acquire of a missing node: %v", err)
		}
	})

	t.Run("watch follows the nodes; a deleted or released node disappears", func(t *testing.T) {
		ctx := timeout(t, 60*time.Second)
		var stores []*kube.Store
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("w-%d", i)
			createNode(t, admin, name, fmt.Sprintf("10.244.%d.0/24", 20+i))
			s := store(t, kubetest.Twill)
			if _, err := s.Acquire(ctx, cfg, request(name, fmt.Sprintf("192.168.60.%d", i))); err != nil {
				t.Fatal(err)
			}
			stores = append(stores, s)
		}
		createNode(t, admin, "w-plain", "10.244.29.0/24") // not a twill node: no annotations
		events := stores[0].Watch(ctx)
		ev := waitSet(t, ctx, events, "w-", "w-1=10.244.21.0/24@192.168.60.1 w-2=10.244.22.0/24@192.168.60.2 w-3=10.244.23.0/24@192.168.60.3")
		for _, l := range ev.Leases {
			if l.Attrs.Node == "w-2" && (l.Attrs.BackendType != "vxlan" || l.Attrs.BackendData == nil || l.Attrs.BackendData.VtepMAC != "0e:00:c0:a8:3c:02") {
				t.Fatalf("w-2's lease = %+v", l)
			}
		}

		// A status update (a heartbeat) is no change: no event.
		if _, err := admin.CoreV1().Nodes().Patch(ctx, "w-1", types.StrategicMergePatchType,
			[]byte(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"2025-01-01T00:00:00Z"}]}}`),
			metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-events:
			t.Fatalf("a status update sent an event: %v", names(ev, "w-"))
		case <-time.After(time.Second):
		}

		if err := admin.CoreV1().Nodes().Delete(ctx, "w-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSet(t, ctx, events, "w-", "w-1=10.244.21.0/24@192.168.60.1 w-3=10.244.23.0/24@192.168.60.3")

		if err := stores[2].Release(ctx); err != nil {
			t.Fatal(err)
		}
		waitSet(t, ctx, events, "w-", "w-1=10.244.21.0/24@192.168.60.1")
		n, err := admin.CoreV1().Nodes().Get(ctx, "w-3", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k := range n.Annotations {
			if strings.HasPrefix(k, "twill.io/") {
				t.Fatalf("Release left annotation %s on w-3", k)
			}
		}
		if n.Spec.PodCIDR != "10.244.23.0/24" {
			t.Fatalf("Release changed the podCIDR: %q", n.Spec.PodCIDR)
		}
	})

	t.Run("dual stack: both podCIDRs, IPv6 annotations, peers see both", func(t *testing.T) {
		ctx := timeout(t, 60*time.Second)
		dual := mustConfig(t, `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`)
		var stores []*kube.Store
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("ds-%d", i)
			n := node(name, fmt.Sprintf("10.244.%d.0/24", 90+i))
			n.Spec.PodCIDRs = []string{n.Spec.PodCIDR, fmt.Sprintf("fd00:10:244:%x::/64", 90+i)}
			if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			req := request(name, fmt.Sprintf("192.168.70.%d", i))
			req.PublicIPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:70::%d", i))
			req.BackendV6Data = &lease.BackendData{VtepMAC: fmt.Sprintf("0e:00:00:00:06:%02x", i)}
			s := store(t, kubetest.Twill)
			l, err := s.Acquire(ctx, dual, req)
			if err != nil {
				t.Fatal(err)
			}
			if l.Subnet.String() != fmt.Sprintf("10.244.%d.0/24", 90+i) || l.IPv6Subnet.String() != fmt.Sprintf("fd00:10:244:%x::/64", 90+i) || l.Attrs.PublicIPv6 != req.PublicIPv6 {
				t.Fatalf("lease = %+v", l)
			}
			got, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Annotations["twill.io/public-ipv6"] != req.PublicIPv6.String() || got.Annotations["twill.io/backend-v6-data"] != fmt.Sprintf(`{"VtepMAC":"0e:00:00:00:06:%02x"}`, i) {
				t.Fatalf("annotations %v", got.Annotations)
			}
			stores = append(stores, s)
		}
		var peers []lease.Lease
		for ev := range stores[0].Watch(ctx) {
			peers = peers[:0]
			for _, l := range ev.Leases {
				if strings.HasPrefix(l.Attrs.Node, "ds-") {
					peers = append(peers, l)
				}
			}
			if len(peers) == 2 {
				break
			}
		}
		acc, rej := lease.Accept(dual, peers)
		if len(acc) != 2 || len(rej) != 0 || acc[1].IPv6Subnet.String() != "fd00:10:244:5c::/64" || acc[1].Attrs.BackendV6Data == nil {
			t.Fatalf("peers accepted %v rejected %v", acc, rej)
		}
		// A node without an IPv6 podCIDR in a dual-stack cluster: a clear error.
		createNode(t, admin, "ds-v4", "10.244.99.0/24")
		req := request("ds-v4", "192.168.70.9")
		req.PublicIPv6 = netip.MustParseAddr("fd00:70::9")
		if _, err := store(t, kubetest.Twill).Acquire(ctx, dual, req); err == nil || !strings.Contains(err.Error(), "node ds-v4 has no IPv6 entry in spec.podCIDRs") {
			t.Fatalf("no IPv6 podCIDR: %v", err)
		}
	})

	t.Run("many nodes at startup are one event", func(t *testing.T) {
		ctx := timeout(t, 120*time.Second)
		const count = 300
		for i := range count {
			n := node(fmt.Sprintf("m-%03d", i), fmt.Sprintf("10.245.%d.%d/28", i/16, (i%16)*16))
			n.Annotations = map[string]string{"twill.io/public-ip": fmt.Sprintf("172.16.%d.%d", i/250, i%250+1), "twill.io/backend-type": "host-gw"}
			if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		s := store(t, kubetest.Twill) // no Acquire: no network known, every podCIDR counts
		events := s.Watch(ctx)
		var first lease.Event
		select {
		case first = <-events:
		case <-ctx.Done():
			t.Fatal("no event")
		}
		if got := len(names(first, "m-")); got != count {
			t.Fatalf("first event has %d of the %d nodes", got, count)
		}
		select {
		case ev := <-events:
			t.Fatalf("a second event without any change (%d nodes): the initial list must be one event", len(ev.Leases))
		case <-time.After(time.Second):
		}

		// A burst of 100 registrations after the start: a few events, not 100.
		const burst = 100
		go func() {
			for i := range burst {
				n := node(fmt.Sprintf("m-b%03d", i), fmt.Sprintf("10.246.%d.0/24", i))
				n.Annotations = map[string]string{"twill.io/public-ip": fmt.Sprintf("172.17.0.%d", i+1), "twill.io/backend-type": "host-gw"}
				if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
					t.Errorf("create: %v", err)
					return
				}
			}
		}()
		sets := 0
		for {
			select {
			case ev := <-events:
				sets++
				if len(names(ev, "m-")) < count+burst {
					continue
				}
			case <-ctx.Done():
				t.Fatalf("the burst never showed in full (%d events)", sets)
			}
			break
		}
		if sets > burst/4 {
			t.Fatalf("%d events for a burst of %d registrations: changes are not coalesced", sets, burst)
		}
		t.Logf("a burst of %d registrations: %d events", burst, sets)
	})

	t.Run("keepalive re-publishes annotations and follows a re-registered node", func(t *testing.T) {
		ctx := timeout(t, 60*time.Second)
		createNode(t, admin, "ka-1", "10.244.40.0/24")
		s := store(t, kubetest.Twill)
		if _, err := s.Acquire(ctx, cfg, request("ka-1", "192.168.70.1")); err != nil {
			t.Fatal(err)
		}
		keep := s.KeepAlive(ctx)
		// Someone removes twill's annotations: they come back.
		if _, err := admin.CoreV1().Nodes().Patch(ctx, "ka-1", types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"twill.io/public-ip":null}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctx, "the public-ip annotation is back", func() bool {
			n, err := admin.CoreV1().Nodes().Get(ctx, "ka-1", metav1.GetOptions{})
			return err == nil && n.Annotations["twill.io/public-ip"] == "192.168.70.1"
		})
		// ... and the agent hears of it (it logs and counts the lost lease).
		var restored *lease.ReacquiredError
		if err := nextErr(t, ctx, keep); !errors.As(err, &restored) || restored.Reason == "" ||
			restored.New.Subnet.String() != "10.244.40.0/24" || !strings.Contains(err.Error(), "annotations were removed") {
			t.Fatalf("after the annotations came back: %v, want a ReacquiredError for the same subnet saying why", err)
		}
		// The node is deleted: KeepAlive says so. kubelet registers it
		// again with another podCIDR: a re-acquired lease, annotations back.
		if err := admin.CoreV1().Nodes().Delete(ctx, "ka-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := nextErr(t, ctx, keep)
		if !strings.Contains(err.Error(), "node ka-1: the Node object was deleted from the API") {
			t.Fatalf("after delete: %v", err)
		}
		createNode(t, admin, "ka-1", "10.244.41.0/24")
		for {
			err := nextErr(t, ctx, keep)
			var re *lease.ReacquiredError
			if errors.As(err, &re) {
				if re.Old.Subnet.String() != "10.244.40.0/24" || re.New.Subnet.String() != "10.244.41.0/24" {
					t.Fatalf("reacquired %v -> %v", re.Old.Subnet, re.New.Subnet)
				}
				break
			}
		}
		if l, _ := s.Lease(); l.Subnet.String() != "10.244.41.0/24" {
			t.Fatalf("Lease() = %v after the re-acquire", l.Subnet)
		}
		eventually(t, ctx, "annotations on the re-registered node", func() bool {
			n, err := admin.CoreV1().Nodes().Get(ctx, "ka-1", metav1.GetOptions{})
			return err == nil && n.Annotations["twill.io/public-ip"] == "192.168.70.1"
		})
	})

	t.Run("condition NetworkUnavailable=False, kept by keepalive", func(t *testing.T) {
		ctx := timeout(t, 60*time.Second)
		createNode(t, admin, "cond-1", "10.244.42.0/24")
		s := store(t, kubetest.Twill)
		if _, err := s.Acquire(ctx, cfg, request("cond-1", "192.168.70.2")); err != nil {
			t.Fatal(err)
		}
		if err := s.SetNetworkAvailable(ctx); err != nil {
			t.Fatal(err)
		}
		c := condition(t, ctx, admin, "cond-1")
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != "TwillIsUp" || c.Message == "" {
			t.Fatalf("condition = %+v", c)
		}
		keep := s.KeepAlive(ctx)
		go func() {
			for range keep {
			}
		}()
		if _, err := admin.CoreV1().Nodes().Patch(ctx, "cond-1", types.StrategicMergePatchType,
			[]byte(`{"status":{"conditions":[{"type":"NetworkUnavailable","status":"True","reason":"NoRouteCreated"}]}}`),
			metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctx, "NetworkUnavailable=False again", func() bool {
			c := condition(t, ctx, admin, "cond-1")
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "TwillIsUp"
		})
	})

	t.Run("a missing permission is named", func(t *testing.T) {
		ctx := timeout(t, 30*time.Second)
		createNode(t, admin, "perm-1", "10.244.43.0/24")
		s := store(t, noStatus)
		if _, err := s.Acquire(ctx, cfg, request("perm-1", "192.168.70.3")); err != nil {
			t.Fatalf("Acquire with all but nodes/status: %v", err)
		}
		err := s.SetNetworkAvailable(ctx)
		var fe *kube.ForbiddenError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "forbidden: twill needs 'patch' on 'nodes/status' — see deploy/twill.yaml (ClusterRole twill)") {
			t.Fatalf("SetNetworkAvailable without nodes/status: %v", err)
		}
		// On a node without twill's annotations yet: the patch is needed.
		createNode(t, admin, "perm-2", "10.244.44.0/24")
		_, err = store(t, noPatch).Acquire(ctx, cfg, request("perm-2", "192.168.70.4"))
		if err == nil || !strings.Contains(err.Error(), "forbidden: twill needs 'patch' on 'nodes' — see deploy/twill.yaml (ClusterRole twill)") {
			t.Fatalf("Acquire without patch on nodes: %v", err)
		}
		_, err = store(t, nobody).Acquire(ctx, cfg, request("perm-2", "192.168.70.4"))
		if err == nil || !strings.Contains(err.Error(), "forbidden: twill needs 'get' on 'nodes' — see deploy/twill.yaml (ClusterRole twill)") {
			t.Fatalf("Acquire without get on nodes: %v", err)
		}
		// Watch cannot return an error: the informer's failures are logged.
		var log syncBuffer
		s, err = kube.New(kube.Options{Kubeconfig: srv.Kubeconfig(nobody), Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Watch(ctx)
		eventually(t, ctx, "the informer's error logged", func() bool {
			return strings.Contains(log.String(), "forbidden: twill needs 'list' on 'nodes' — see deploy/twill.yaml (ClusterRole twill)")
		})
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// grantPartial binds the partial roles of the test users.
func grantPartial(t *testing.T, srv *kubetest.Server, admin kubernetes.Interface) {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	var withoutStatus []rbacv1.PolicyRule
	for _, r := range kube.RBACRules() {
		if !slices.Contains(r.Resources, "nodes/status") {
			withoutStatus = append(withoutStatus, r)
		}
	}
	roles := map[string][]rbacv1.PolicyRule{
		noStatus: withoutStatus,
		noPatch:  {{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	for user, rules := range roles {
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "twill-" + user}, Rules: rules}
		if _, err := admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		srv.Bind(user, cr.Name)
	}
}

func mustConfig(t *testing.T, js string) netconf.Config {
	t.Helper()
	c, err := netconf.Parse("test net-conf.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(node, ip string) lease.Request {
	a := netip.MustParseAddr(ip)
	b := a.As4()
	mac := fmt.Sprintf("0e:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
	return lease.Request{Node: node, PublicIP: a, BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: mac}}
}

func node(name, podCIDR string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
}

func createNode(t *testing.T, c kubernetes.Interface, name, podCIDR string) {
	t.Helper()
	ctx := timeout(t, 10*time.Second)
	if _, err := c.CoreV1().Nodes().Create(ctx, node(name, podCIDR), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

func condition(t *testing.T, ctx context.Context, c kubernetes.Interface, name string) *corev1.NodeCondition {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// names renders the event's leases of nodes with the prefix as
// "node=subnet@ip", in the event's order.
func names(ev lease.Event, prefix string) []string {
	var out []string
	for _, l := range ev.Leases {
		if strings.HasPrefix(l.Attrs.Node, prefix) {
			out = append(out, fmt.Sprintf("%s=%s@%s", l.Attrs.Node, l.Subnet, l.Attrs.PublicIP))
		}
	}
	return out
}

// waitSet reads events until one holds exactly want (for nodes with the
// prefix).
func waitSet(t *testing.T, ctx context.Context, events <-chan lease.Event, prefix, want string) lease.Event {
	t.Helper()
	var last []string
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("Watch closed its channel before ctx ended")
			}
			last = names(ev, prefix)
			if strings.Join(last, " ") == want {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no event with %s; last: %v", want, last)
		}
	}
}

func nextErr(t *testing.T, ctx context.Context, c <-chan error) error {
	t.Helper()
	select {
	case err, ok := <-c:
		if !ok {
			t.Fatal("KeepAlive closed its channel before ctx ended")
		}
		return err
	case <-ctx.Done():
		t.Fatal("no error from KeepAlive")
	}
	return nil
}

func eventually(t *testing.T, ctx context.Context, what string, f func() bool) {
	t.Helper()
	for !f() {
		select {
		case <-ctx.Done():
			t.Fatalf("not within the time: %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
