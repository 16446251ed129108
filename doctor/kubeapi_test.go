package doctor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/kubeview"
	"github.com/twillnet/twill/nodestate"
)

// labView is what the API of the recorded lab says (testdata/lab-node1.json):
// lab/web on 10.96.0.10:80 over the six pods 10.244.{1,2,3}.{10,11}:8080,
// lab/local-node<i> on 10.96.1.<i>:80 over 10.244.<i>.11:8080, and
// default/kubernetes on 10.96.0.1:443 over 192.168.77.11:6443.
func labView() *kubeview.View {
	a := netip.MustParseAddr
	ep := func(s, port string, ready bool) kubeview.Endpoint {
		return kubeview.Endpoint{PortName: port, Protocol: "TCP", Addr: netip.MustParseAddrPort(s), Ready: ready}
	}
	http := []kubeview.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}
	web := kubeview.Service{Namespace: "lab", Name: "web", ClusterIP: a("10.96.0.10"), Ports: http}
	for _, n := range []string{"1", "2", "3"} {
		web.Endpoints = append(web.Endpoints, ep("10.244."+n+".10:8080", "http", true), ep("10.244."+n+".11:8080", "http", true))
	}
	v := &kubeview.View{Services: []kubeview.Service{
		{Namespace: "default", Name: "kubernetes", ClusterIP: a("10.96.0.1"), Ports: []kubeview.ServicePort{{Name: "https", Protocol: "TCP", Port: 443}},
			Endpoints: []kubeview.Endpoint{ep("192.168.77.11:6443", "https", true)}},
		web,
	}}
	for _, n := range []string{"1", "2", "3"} {
		v.Services = append(v.Services, kubeview.Service{Namespace: "lab", Name: "local-node" + n, ClusterIP: a("10.96.1." + n), Ports: http,
			Endpoints: []kubeview.Endpoint{ep("10.244."+n+".11:8080", "http", true)}})
	}
	return v
}

func labNode1(t *testing.T) *nodestate.Snapshot {
	t.Helper()
	s, err := nodestate.LoadFile("testdata/lab-node1.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func findingsOf(r Report, id string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func notChecked(r Report, id string) string {
	for _, n := range r.NotChecked {
		if n.ID == id {
			return n.Reason
		}
	}
	return ""
}

func TestAPIChecksAgreeOnHealthyLab(t *testing.T) {
	r := Run(labNode1(t), Config{Cluster: labView()})
	if len(findingsOf(r, "TW033"))+len(findingsOf(r, "TW034")) != 0 || len(r.NotChecked) != 0 || r.Errors() != 0 {
		for _, f := range r.Findings {
			t.Logf("%s %v", f.Headline(), f.Evidence)
		}
		t.Fatalf("healthy lab with its own API view: findings %v, not checked %+v", r.IDs(), r.NotChecked)
	}
}

func TestAPIChecksNeedAView(t *testing.T) {
	r := Run(labNode1(t), Config{})
	for _, id := range []string{"TW033", "TW034"} {
		if len(findingsOf(r, id)) != 0 || notChecked(r, id) != "" {
			t.Errorf("%s ran without an API view: %+v", id, r)
		}
	}
}

func TestEndpointsMismatch(t *testing.T) {
	v := labView()
	web := v.Service("lab", "web")
	web.Endpoints[5].Ready = false // 10.244.3.11: not ready, still in the rules
	web.Endpoints = append(web.Endpoints, kubeview.Endpoint{PortName: "http", Protocol: "TCP", Addr: netip.MustParseAddrPort("10.244.1.12:8080"), Ready: true})
	v.Services = append(v.Services, kubeview.Service{Namespace: "lab", Name: "new", ClusterIP: netip.MustParseAddr("10.96.0.99"),
		Ports:     []kubeview.ServicePort{{Protocol: "TCP", Port: 8080}},
		Endpoints: []kubeview.Endpoint{{Protocol: "TCP", Addr: netip.MustParseAddrPort("10.244.2.12:8080"), Ready: true}}})
	// A Service whose endpoints are all unready has no rules: that agrees.
	v.Services = append(v.Services, kubeview.Service{Namespace: "lab", Name: "down", ClusterIP: netip.MustParseAddr("10.96.0.98"),
		Ports:     []kubeview.ServicePort{{Protocol: "TCP", Port: 80}},
		Endpoints: []kubeview.Endpoint{{Protocol: "TCP", Addr: netip.MustParseAddrPort("10.244.2.13:80")}}})

	r := Run(labNode1(t), Config{Cluster: v})
	if r.Errors() != 0 {
		t.Fatalf("endpoint mismatches are warnings (kube-proxy lags), got errors %v", r.IDs())
	}
	fs := findingsOf(r, "TW034")
	if len(fs) != 2 {
		t.Fatalf("TW034 findings %+v, want 2 (lab/web, lab/new)", fs)
	}
	for _, f := range fs {
		if f.Severity != Warning || f.Fix == "" || f.Explanation == "" {
			t.Errorf("incomplete finding %+v", f)
		}
	}
	if strings.Contains(fs[0].Title, "lab/web") {
		fs[0], fs[1] = fs[1], fs[0]
	}
	ev := strings.Join(fs[1].Evidence, "\n")
	if !strings.Contains(fs[1].Title, "lab/web") || !strings.Contains(ev, "(missing): 10.244.1.12:8080") || !strings.Contains(ev, "(stale): 10.244.3.11:8080") ||
		!strings.Contains(ev, "KUBE-SVC-NAVV37HDGJLPWY47") {
		t.Errorf("lab/web finding: %s\n%s", fs[1].Title, ev)
	}
	ev = strings.Join(fs[0].Evidence, "\n")
	if !strings.Contains(fs[0].Title, "lab/new") || !strings.Contains(ev, "no rule for 10.96.0.99:8080/tcp") || !strings.Contains(ev, "(missing): 10.244.2.12:8080") {
		t.Errorf("lab/new finding: %s\n%s", fs[0].Title, ev)
	}
}

func TestKubernetesVIPFromTheAPI(t *testing.T) {
	// The cluster's Service range is not kubeadm's default: the API says
	// 10.100.0.1, which this node does not translate. TW030 (guessing
	// 10.96.0.1) is satisfied; TW033 is not.
	v := labView()
	v.Service("default", "kubernetes").ClusterIP = netip.MustParseAddr("10.100.0.1")
	r := Run(labNode1(t), Config{Cluster: v})
	fs := findingsOf(r, "TW033")
	if len(fs) != 1 || fs[0].Severity != Error || fs[0].Failure != "F5" {
		t.Fatalf("TW033 = %+v, want one F5 error", fs)
	}
	ev := strings.Join(fs[0].Evidence, "\n")
	if !strings.Contains(fs[0].Title, "10.100.0.1") || !strings.Contains(ev, "TW030 checked 10.96.0.1") {
		t.Errorf("finding does not name the API's VIP and the TW030 mismatch: %s\n%s", fs[0].Title, ev)
	}
	if slices.Contains(r.IDs(), "TW030") {
		t.Errorf("TW030 fired on the healthy rules: %v", r.IDs())
	}

	// The rule for the VIP lost (kube-proxy broken): both fire.
	s := labNode1(t)
	var keep []string
	for _, l := range strings.Split(s.Iptables.NFT.Save, "\n") {
		if !strings.HasPrefix(l, "-A KUBE-SERVICES -d 10.96.0.1/32") {
			keep = append(keep, l)
		}
	}
	s.Iptables.NFT.Save = strings.Join(keep, "\n")
	r = Run(s, Config{Cluster: labView()})
	if ids := r.IDs(); !slices.Contains(ids, "TW030") || !slices.Contains(ids, "TW033") {
		t.Fatalf("VIP rule removed: findings %v, want TW030 and TW033", ids)
	}

	// No default/kubernetes in the API: not checked, with the reason.
	v = labView()
	v.Services = v.Services[1:]
	r = Run(labNode1(t), Config{Cluster: v})
	if why := notChecked(r, "TW033"); !strings.Contains(why, "default/kubernetes") {
		t.Errorf("TW033 without default/kubernetes: not-checked reason %q", why)
	}
}
