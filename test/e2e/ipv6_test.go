package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	labpkg "github.com/twillnet/twill/lab"
)

// TestIPv6Labs builds one lab per IP family (dual stack, IPv6 only) and
// backend (vxlan, host-gw) with `lab up --ip-family` and checks, over each
// family the lab runs: every pod has an address in its node's subnet of
// that family, every pod reaches every pod without NAT, and traffic to the
// outside (the underlay's br0) leaves masqueraded to the node's underlay
// address of that family; the lab's Services have a ClusterIP of each
// family and answer over each, same node and across nodes, and `twill
// trace` explains an IPv6 Service call (the ip6tables DNAT to its
// endpoint); a deleted IPv6 route to a peer comes back; an
// IPv6 TCP stream survives an agent kill -9 and restart; pods keep talking
// over IPv6 into a node whose ip6tables FORWARD policy is DROP (Docker's
// doing); and IPv6 pod traffic flows while the store is down, the agents
// ready again once it is back. In IPv6-only labs the IPv6 twins of F2, F3
// and F6 are broken, named by doctor and fixed. The labs use this run's store (etcd or
// kubernetes: TWILL_E2E_STORE).
func TestIPv6Labs(t *testing.T) {
	// vxlan labs get three nodes (a VTEP with several peers), host-gw labs
	// two (a route per peer is the same with one), to keep the time down.
	for _, c := range []struct{ family, backend, suffix, nodes string }{
		{"dual", "vxlan", "d6x", "3"},
		{"dual", "host-gw", "d6g", "2"},
		{"ipv6", "vxlan", "o6x", "3"},
		{"ipv6", "host-gw", "o6g", "2"},
	} {
		t.Run(c.family+"-"+c.backend, func(t *testing.T) {
			name := otherLab(t, c.suffix, "--ip-family", c.family, "--backend", c.backend, "--nodes", c.nodes, "--pods", "2", "--store", store)
			st := status(t, name)
			if !st.Healthy {
				t.Fatalf("lab %s is not healthy: %v", name, st.Problems)
			}
			families := []string{"ipv6"}
			if c.family == "dual" {
				families = []string{"ipv4", "ipv6"}
			}
			podsHaveFamilies(t, st, families)
			if t.Failed() {
				return // the pair checks would only repeat it
			}
			for _, f := range families {
				t.Run(f, func(t *testing.T) {
					everyPairTalksOver(t, name, st, f)
					leavesMasqueradedOver(t, name, st, f)
				})
			}
			t.Run("services", func(t *testing.T) { servicesOverEachFamily(t, name, st, families) })
			t.Run("trace-ipv6-service", func(t *testing.T) { traceExplainsIPv6Service(t, name, st) })
			t.Run("ipv6-drift", func(t *testing.T) { ipv6RouteRepaired(t, name, st) })
			t.Run("doctor", func(t *testing.T) { doctorCleanOnIPv6(t, name, st, c.family) })
			if store == "etcd" {
				// With the Kubernetes store default/kubernetes is the API
				// server's own Service, IPv4 only: F5a has no IPv6 twin there.
				t.Run("F5a-ipv6-twin", func(t *testing.T) { noDNAT6Named(t, name, st, c.family) })
			}
			t.Run("F1-ipv6-twin", func(t *testing.T) { bridgeNF6Named(t, name, st, c.family) })
			t.Run("ipv6-agent-restart", func(t *testing.T) { ipv6StreamSurvivesAgentKill(t, name, st) })
			t.Run("ipv6-forward-drop", func(t *testing.T) { ipv6ForwardDropDoesNotStopPods(t, name, st) })
			t.Run("ipv6-store-outage", func(t *testing.T) { ipv6StoreOutage(t, name, st) })
			if c.family == "ipv6" {
				t.Run("ipv6-scenarios", func(t *testing.T) { ipv6ScenariosNamed(t, name, st, c.backend) })
			}
		})
	}
}

// famAddr is a node's or pod's address of family f ("" when it has none).
func famAddr(f, v4, v6 string) string {
	if f == "ipv6" {
		return v6
	}
	return v4
}

// podsHaveFamilies requires each pod to have exactly the families of its
// lab, each address inside its node's subnet of that family.
func podsHaveFamilies(t *testing.T, st labStatus, families []string) {
	t.Helper()
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			for _, f := range []string{"ipv4", "ipv6"} {
				want := strings.Contains(strings.Join(families, ","), f)
				addr, subnet := famAddr(f, p.IP, p.IPv6), famAddr(f, n.Subnet, n.IPv6Subnet)
				if !want {
					if addr != "" || subnet != "" {
						t.Errorf("pod %s has %s address %q (node subnet %q) in a lab without %s", p.Name, f, addr, subnet, f)
					}
					continue
				}
				a, err1 := netip.ParseAddr(addr)
				sn, err2 := netip.ParsePrefix(subnet)
				if err1 != nil || err2 != nil || !sn.Contains(a) {
					t.Errorf("pod %s: %s address %q, want one in node %s's subnet %q", p.Name, f, addr, n.Name, subnet)
				}
			}
		}
	}
}

// everyPairTalksOver calls every pod from every pod by name over family f
// (`lab call POD POD --family f`) and checks the server saw the caller's
// own address of that family (pod-to-pod is never masqueraded).
func everyPairTalksOver(t *testing.T, name string, st labStatus, f string) {
	t.Helper()
	pods := allPodsBoth(st)
	ok := 0
	for _, from := range pods {
		for _, to := range pods {
			r := tw(t, "lab", "call", from.name, to.name, "--family", f, "--timeout", "2s", "--name", name)
			want := to.name + " " + hostOf(famAddr(f, from.ip, from.ip6)) + ":"
			switch {
			case r.code != 0:
				t.Errorf("%s -> %s over %s (%s): %s", from.name, to.name, f, famAddr(f, to.ip, to.ip6), strings.TrimSpace(r.out))
			case !strings.HasPrefix(r.out, want):
				t.Errorf("%s -> %s over %s: server answered %q, want it to start with %q", from.name, to.name, f, strings.TrimSpace(r.out), want)
			default:
				ok++
			}
		}
	}
	if ok != len(pods)*len(pods) {
		t.Errorf("over %s: %d of %d pod pairs talked", f, ok, len(pods)*len(pods))
	}
}

type podBoth struct{ name, ip, ip6 string }

func allPodsBoth(st labStatus) []podBoth {
	var out []podBoth
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			out = append(out, podBoth{p.Name, p.IP, p.IPv6})
		}
	}
	return out
}

// hostOf is an address as it prints in host:port ("[fd00::2]" for IPv6).
func hostOf(a string) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]"
	}
	return a
}

// leavesMasqueradedOver starts a server on the lab's outside (br0 in the
// underlay namespace) over family f and requires the first pod of every
// node to reach it with its node's underlay address of f as the source.
func leavesMasqueradedOver(t *testing.T, name string, st labStatus, f string) {
	t.Helper()
	outside, serve := "192.168.77.1", labpkg.OutsideServer
	if f == "ipv6" {
		outside, serve = "fd00:77::1", labpkg.OutsideServerV6
	}
	stop, err := serve(name, 9999)
	if err != nil {
		t.Fatalf("outside server on %s: %v", outside, err)
	}
	defer stop()
	for _, n := range st.Nodes {
		from := n.Pods[0].Name
		r := tw(t, "lab", "call", from, net.JoinHostPort(outside, "9999"), "--timeout", "2s", "--name", name)
		want := "outside " + hostOf(famAddr(f, n.IP, n.IPv6)) + ":"
		if r.code != 0 || !strings.HasPrefix(r.out, want) {
			t.Errorf("%s -> outside %s over %s: %q (exit %d), want the outside to see %s's address (%q)", from, outside, f, strings.TrimSpace(r.out), r.code, n.Name, want)
		}
	}
}

// ipv6RouteRepaired deletes node1's IPv6 route to node2's pod subnet and
// requires node1's agent to put it back and node1's pod to reach node2's
// over IPv6 again.
func ipv6RouteRepaired(t *testing.T, name string, st labStatus) {
	t.Helper()
	peer := st.Nodes[1]
	if r := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "-6", "route", "del", peer.IPv6Subnet); r.code != 0 {
		t.Fatalf("node1: ip -6 route del %s: exit %d\n%s", peer.IPv6Subnet, r.code, r.out)
	}
	within(t, 15*time.Second, "node1's IPv6 route to "+peer.IPv6Subnet+" repaired", func() error {
		r := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "-6", "route", "show", peer.IPv6Subnet)
		if !strings.Contains(r.out, peer.IPv6Subnet) {
			return fmt.Errorf("ip -6 route show %s: %q", peer.IPv6Subnet, strings.TrimSpace(r.out))
		}
		return nil
	})
	from, to := st.Nodes[0].Pods[0], peer.Pods[0]
	r := tw(t, "lab", "call", from.Name, to.Name, "--family", "ipv6", "--timeout", "2s", "--name", name)
	if r.code != 0 || !strings.HasPrefix(r.out, to.Name+" ["+from.IPv6+"]:") {
		t.Errorf("%s -> %s over ipv6 after the repair: %q (exit %d)", from.Name, to.Name, strings.TrimSpace(r.out), r.code)
	}
}

// ipv6StreamSurvivesAgentKill runs an IPv6 TCP stream from node2's first pod
// to node1's while node1's agent is killed with SIGKILL and started again:
// the stream must see no reset and no stall.
func ipv6StreamSurvivesAgentKill(t *testing.T, name string, st labStatus) {
	t.Helper()
	from, to := st.Nodes[1].Pods[0], st.Nodes[0].Pods[0]
	target := net.JoinHostPort(to.IPv6, fmt.Sprint(labpkg.EchoPort))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream := exec.CommandContext(ctx, twill, "lab", "stream", from.Name, target, "--for", "6s", "--name", name)
	var out strings.Builder
	stream.Stdout, stream.Stderr = &out, &out
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	labOn(t, name, "agent", "node1", "kill")
	time.Sleep(time.Second)
	labOn(t, name, "agent", "node1", "start")
	if err := stream.Wait(); err != nil {
		t.Fatalf("IPv6 stream %s -> %s across node1's agent kill: %v\n%s", from.Name, target, err, out.String())
	}
	t.Logf("stream: %s", strings.TrimSpace(out.String()))
}

// ipv6ForwardDropDoesNotStopPods sets node2's ip6tables FORWARD policy to
// DROP behind its agent's back, with a DOCKER-USER chain as Docker makes
// it, and requires node1's pod to reach node2's over IPv6 within 10 s.
func ipv6ForwardDropDoesNotStopPods(t *testing.T, name string, st labStatus) {
	t.Helper()
	in := func(argv ...string) result {
		return tw(t, append([]string{"lab", "exec", "node2", "--name", name, "--"}, argv...)...)
	}
	must := func(argv ...string) {
		if r := in(argv...); r.code != 0 {
			t.Fatalf("node2: %s: exit %d\n%s", strings.Join(argv, " "), r.code, r.out)
		}
	}
	must("ip6tables-nft", "-N", "DOCKER-USER")
	must("ip6tables-nft", "-A", "DOCKER-USER", "-j", "RETURN")
	must("ip6tables-nft", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	must("ip6tables-nft", "-P", "FORWARD", "DROP")
	defer func() {
		must("ip6tables-nft", "-P", "FORWARD", "ACCEPT")
		must("ip6tables-nft", "-D", "FORWARD", "-j", "DOCKER-USER")
		// The agent may put its accept back between the flush and the delete.
		within(t, 10*time.Second, "DOCKER-USER (ip6) removed from node2", func() error {
			in("ip6tables-nft", "-F", "DOCKER-USER")
			if r := in("ip6tables-nft", "-X", "DOCKER-USER"); r.code != 0 {
				return fmt.Errorf("ip6tables-nft -X DOCKER-USER: exit %d: %s", r.code, r.out)
			}
			return nil
		})
	}()
	from, to := st.Nodes[0].Pods[0], st.Nodes[1].Pods[0]
	within(t, 10*time.Second, "IPv6 pod traffic into node2 with ip6tables FORWARD DROP", func() error {
		r := tw(t, "lab", "call", from.Name, to.Name, "--family", "ipv6", "--timeout", "2s", "--name", name)
		if r.code != 0 {
			return fmt.Errorf("%s -> %s: %s", from.Name, to.Name, strings.TrimSpace(r.out))
		}
		return nil
	})
}

// ipv6StoreOutage stops the lab's etcd (the store itself, or the one behind
// kube-apiserver) for 10 s: IPv6 pod traffic across nodes keeps flowing,
// and once etcd is back every agent is ready again.
func ipv6StoreOutage(t *testing.T, name string, st labStatus) {
	t.Helper()
	labOn(t, name, "etcd", "stop")
	started := false
	defer func() {
		if !started {
			labOn(t, name, "etcd", "start")
		}
	}()
	from, to := st.Nodes[0].Pods[0], st.Nodes[len(st.Nodes)-1].Pods[0]
	end := time.Now().Add(10 * time.Second)
	for calls := 0; time.Now().Before(end) && calls < 20; calls++ {
		r := tw(t, "lab", "call", from.Name, to.Name, "--family", "ipv6", "--timeout", "2s", "--name", name)
		if r.code != 0 {
			t.Fatalf("%s -> %s over IPv6 with the store down (after %d good calls): %s", from.Name, to.Name, calls, strings.TrimSpace(r.out))
		}
		time.Sleep(time.Second)
	}
	labOn(t, name, "etcd", "start")
	started = true
	within(t, 45*time.Second, "agents of "+name+" ready again", func() error {
		if st := status(t, name); !st.Healthy {
			return fmt.Errorf("lab not healthy: %v", st.Problems)
		}
		return nil
	})
}

// doctorCleanOnIPv6 requires doctor to run every check on every node of an
// IPv6 lab and find nothing wrong (an IPv6-only lab has IPv6 Services, so
// not even "no Service proxy", TW031).
func doctorCleanOnIPv6(t *testing.T, name string, st labStatus, family string) {
	t.Helper()
	for _, n := range st.Nodes {
		rep, code := doctorOn(t, name, n.Name)
		var unexpected []string
		for _, f := range rep.Findings {
			unexpected = append(unexpected, f.ID+" "+f.Severity+": "+f.Title)
		}
		if code != 0 || len(unexpected) > 0 || len(rep.NotChecked) > 0 {
			t.Errorf("doctor on %s of lab %s: exit %d, findings %q, not checked %+v", n.Name, name, code, unexpected, rep.NotChecked)
		}
	}
}

// bridgeNF6Named breaks F1 on node1 of an IPv6 lab: its IPv6 twin
// (bridge-nf-call-ip6tables=0) is broken too and doctor names it (TW003);
// after `lab fix` doctor is clean again.
func bridgeNF6Named(t *testing.T, name string, st labStatus, family string) {
	t.Helper()
	if r := tw(t, "lab", "break", "F1", "node1", "--name", name); r.code != 0 {
		t.Fatalf("lab break F1 node1: exit %d\n%s", r.code, r.out)
	}
	rep, code := doctorOn(t, name, "node1")
	if ids := rep.errorIDs(); code != 1 || !slices.Equal(ids, []string{"TW002", "TW003"}) {
		t.Errorf("doctor on node1 with F1 broken: exit %d, errors %v, want TW002 and TW003 (bridge-nf-call-ip6tables)", code, ids)
	}
	if r := tw(t, "lab", "fix", "F1", "node1", "--name", name); r.code != 0 {
		t.Fatalf("lab fix F1 node1: exit %d\n%s", r.code, r.out)
	}
	doctorCleanOnIPv6(t, name, st, family)
}

// localVIP is node i's lab/local-node<i> Service address over family f.
func localVIP(f string, i int) string {
	if f == "ipv6" {
		return labpkg.LocalVIPv6(i).String()
	}
	return labpkg.LocalVIP(i).String()
}

// servicesOverEachFamily checks the lab's Services over each family it
// runs: `lab status` lists a ClusterIP of each family per Service (IPv6
// ones in fd00:96::/108) with endpoints of each; node1's first pod reaches
// lab/local-node1 (its endpoint on the same bridge) and lab/local-node<last>
// (across nodes) by ClusterIP, answered by pod b of that node, which sees
// the caller's own address (a pod calling a Service is not masqueraded);
// and lab/web by name (`lab call POD web --family f`) answers from some pod.
func servicesOverEachFamily(t *testing.T, name string, st labStatus, families []string) {
	t.Helper()
	svcs := map[string][]string{}
	for _, s := range st.Services {
		svcs[s.Name] = s.ClusterIPs
		var fams []string
		for _, ip := range s.ClusterIPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				t.Fatalf("lab status: Service %s: ClusterIP %q: %v", s.Name, ip, err)
			}
			fams = append(fams, map[bool]string{false: "ipv4", true: "ipv6"}[a.Is6()])
			if a.Is6() && !labpkg.ServiceCIDRv6.Contains(a) {
				t.Errorf("lab status: Service %s: IPv6 ClusterIP %s outside %s", s.Name, a, labpkg.ServiceCIDRv6)
			}
		}
		want := families
		if s.Name == "default/kubernetes" && store == "kubernetes" {
			want = []string{"ipv4"} // the API server's own, of its primary family
		}
		if !slices.Equal(fams, want) {
			t.Errorf("lab status: Service %s has ClusterIPs %v, want one of each of %v", s.Name, s.ClusterIPs, want)
		}
		if s.Name == "lab/web" && len(s.Endpoints) != len(allPodsBoth(st))*len(families) {
			t.Errorf("lab status: lab/web has endpoints %v, want every pod's address of each of %v", s.Endpoints, families)
		}
	}
	if len(svcs["lab/web"]) == 0 {
		t.Fatalf("lab status lists no lab/web Service: %+v", st.Services)
	}
	from := st.Nodes[0].Pods[0]
	for _, f := range families {
		for _, n := range []int{0, len(st.Nodes) - 1} {
			node := st.Nodes[n]
			vip := localVIP(f, n+1)
			if !slices.Contains(svcs["lab/local-"+node.Name], strings.Trim(strings.TrimSuffix(vip, ":80"), "[]")) {
				t.Errorf("lab status: lab/local-%s has ClusterIPs %v, want %s among them", node.Name, svcs["lab/local-"+node.Name], vip)
			}
			r := tw(t, "lab", "call", from.Name, vip, "--timeout", "2s", "--name", name)
			want := node.Pods[1].Name + " " + hostOf(famAddr(f, from.IP, from.IPv6)) + ":"
			if r.code != 0 || !strings.HasPrefix(r.out, want) {
				t.Errorf("%s -> Service lab/local-%s at %s over %s: %q (exit %d), want %q...", from.Name, node.Name, vip, f, strings.TrimSpace(r.out), r.code, want)
			}
		}
		r := tw(t, "lab", "call", from.Name, "web", "--family", f, "--timeout", "2s", "--name", name)
		answered, _, _ := strings.Cut(r.out, " ")
		if r.code != 0 || !slices.ContainsFunc(allPodsBoth(st), func(p podBoth) bool { return p.name == answered }) {
			t.Errorf("%s -> Service lab/web over %s: %q (exit %d), want a pod's answer", from.Name, f, strings.TrimSpace(r.out), r.code)
		}
	}
}

// traceExplainsIPv6Service traces node1's first pod calling the last
// node's local Service over IPv6 (`twill trace --lab`): the verdict is an
// established connection with that node's pod b, and the path names the
// ip6tables DNAT of the ClusterIP to that pod's IPv6 address.
func traceExplainsIPv6Service(t *testing.T, name string, st labStatus) {
	t.Helper()
	last := st.Nodes[len(st.Nodes)-1]
	vip, ep := labpkg.LocalVIPv6(len(st.Nodes)), last.Pods[1]
	r := tw(t, "trace", "--lab", "--name", name, "--from", st.Nodes[0].Pods[0].Name, "--to", vip.String())
	dnat := "DNAT to " + hostOf(ep.IPv6) + ":" + fmt.Sprint(labpkg.ServerPort)
	if r.code != 0 || !strings.Contains(r.out, "100.0%  established with "+ep.Name) || !strings.Contains(r.out, dnat) ||
		!strings.Contains(r.out, "-d "+vip.Addr().String()+"/128") {
		t.Errorf("twill trace to %s: exit %d, want an established connection with %s through %q and the KUBE-SERVICES rule of %s:\n%s", vip, r.code, ep.Name, dnat, vip.Addr(), r.out)
	}
}

// noDNAT6Named breaks F5a on node1 of a lab with IPv6 (etcd store): the
// KUBE-SERVICES rule of default/kubernetes goes in each family, and doctor
// told the IPv6 ClusterIP (--kubernetes-service-ip fd00:96::1) names it
// (TW030, in ip6tables); after `lab fix` doctor is clean again.
func noDNAT6Named(t *testing.T, name string, st labStatus, family string) {
	t.Helper()
	if r := tw(t, "lab", "break", "F5a", "node1", "--name", name); r.code != 0 {
		t.Fatalf("lab break F5a node1: exit %d\n%s", r.code, r.out)
	}
	kube6 := labpkg.KubernetesVIPv6.Addr().String()
	rep, code := doctorOn(t, name, "node1", "--kubernetes-service-ip", kube6)
	found := false
	for _, f := range rep.Findings {
		found = found || f.ID == "TW030" && strings.Contains(f.Title, kube6)
	}
	if code != 1 || !found {
		t.Errorf("doctor --kubernetes-service-ip %s on node1 with F5a broken: exit %d, findings %+v; want TW030 for %s", kube6, code, rep.Findings, kube6)
	}
	if r := tw(t, "lab", "fix", "F5a", "node1", "--name", name); r.code != 0 {
		t.Fatalf("lab fix F5a node1: exit %d\n%s", r.code, r.out)
	}
	if rep, code := doctorOn(t, name, "node1", "--kubernetes-service-ip", kube6); code != 0 || len(rep.Findings) > 0 {
		t.Errorf("doctor --kubernetes-service-ip %s on node1 after lab fix F5a: exit %d, findings %+v", kube6, code, rep.Findings)
	}
	doctorCleanOnIPv6(t, name, st, family)
}
