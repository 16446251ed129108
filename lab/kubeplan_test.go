package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twillnet/twill/kubecreds"
)

func TestPlanKubeMode(t *testing.T) {
	c := Config{Name: "twill-x", Nodes: 2, Pods: 2, Agent: true, Store: StoreKubernetes, Self: "/usr/bin/twill",
		KubeAPIServerBin: "/b/kube-apiserver", KubectlBin: "/b/kubectl"}.withDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	st := plan(c)
	if !st.KubeMode() || st.Kube.APIServerBin != "/b/kube-apiserver" || st.Kube.URL != "https://192.168.77.1:6443" {
		t.Fatalf("kube state %+v", st.Kube)
	}
	want := "/usr/bin/twill agent --node node2 --root /run/twill-lab/twill-x/nodes/node2/root --store kubernetes" +
		" --kubeconfig /run/twill-lab/twill-x/nodes/node2/root/etc/twill/kubeconfig" +
		" --net-conf /run/twill-lab/twill-x/nodes/node2/root/etc/twill/net-conf.json --iface eth0 --resync 2s --health-addr 127.0.0.1:9473"
	if got := strings.Join(st.Nodes[1].Agent.Argv, " "); got != want {
		t.Errorf("agent argv:\n%s\nwant\n%s", got, want)
	}
	fill := func(st *State) { // the plugin's addresses, after CNI ADD
		for i := range st.Nodes {
			for k := range st.Nodes[i].Pods {
				st.Nodes[i].Pods[k].IP = PodIP(i+1, k).String()
			}
		}
	}
	fill(st)
	// default/kubernetes points at the real API server in kube mode, at node1 otherwise.
	if ep := st.Services()[0].Endpoints[0].String(); ep != "192.168.77.1:6443" {
		t.Errorf("default/kubernetes endpoint in kube mode %s", ep)
	}
	etcdMode := plan(Config{Name: "twill-x", Nodes: 1, Pods: 1, Agent: true}.withDefaults())
	fill(etcdMode)
	if etcdMode.KubeMode() || etcdMode.Store != StoreEtcd || etcdMode.Services()[0].Endpoints[0].String() != "192.168.77.11:6443" {
		t.Errorf("etcd mode: store %q kube %v endpoint %s", etcdMode.Store, etcdMode.Kube, etcdMode.Services()[0].Endpoints[0])
	}
}

func TestValidateStore(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Store: "consul", Agent: true}, `--store "consul"`},
		{Config{Store: StoreKubernetes}, "needs agent mode"},
	} {
		err := c.cfg.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{}).withDefaults().Validate(); err != nil {
		t.Errorf("library default: %v", err)
	}
}

func TestTokenFileAndKubeconfig(t *testing.T) {
	got := string(kubecreds.TokenFile([]kubecreds.User{{Name: "admin", Token: "t1", Group: "system:masters"}, {Name: "twill-node1", Token: "t2"}}))
	want := "t1,admin,uid-admin,\"system:masters\"\nt2,twill-node1,uid-twill-node1\n"
	if got != want {
		t.Errorf("token file:\n%s\nwant\n%s", got, want)
	}
	kc := string(kubeconfigYAML(KubeAPIServerURL, "/ca.pem", "twill-node1", "t2"))
	for _, s := range []string{"server: https://192.168.77.1:6443", "certificate-authority: /ca.pem", "token: t2", "current-context: twill-lab"} {
		if !strings.Contains(kc, s) {
			t.Errorf("kubeconfig lacks %q:\n%s", s, kc)
		}
	}
}

func TestLookPathIn(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kubectl")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := lookPathIn("kubectl", "/nonexistent:"+dir); err != nil || got != p {
		t.Errorf("lookPathIn: %q %v", got, err)
	}
	if _, err := lookPathIn("kubectl", "/nonexistent"); err == nil {
		t.Error("found kubectl where there is none")
	}
}
