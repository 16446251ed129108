package lab

import (
	"os"
	"strings"
	"testing"
)

func TestValidateKubernetesFlags(t *testing.T) {
	ok := Config{Kubernetes: true, Agent: true}.withDefaults()
	if err := ok.Validate(); err != nil || ok.ProxyMode != ProxyIptables || ok.Store != StoreKubernetes || ok.Containerd != Containerd16 {
		t.Fatalf("--kubernetes: %v (proxy mode %q, store %q, containerd %q), want valid, iptables, kubernetes, 1.6", err, ok.ProxyMode, ok.Store, ok.Containerd)
	}
	if c := (Config{Kubernetes: true, Agent: true, Containerd: Containerd2}).withDefaults(); c.Validate() != nil || plan(c).Real.Containerd != Containerd2 {
		t.Errorf("--kubernetes --containerd 2: %v, planned runtime %q", c.Validate(), plan(c).Real.Containerd)
	}
	for _, bad := range []struct {
		c    Config
		want string
	}{
		{Config{Kubernetes: true}, "drop --static"},
		{Config{Agent: true, ProxyMode: ProxyNftables}, "needs --kubernetes"},
		{Config{Kubernetes: true, Agent: true, ProxyMode: "ipvs"}, `--proxy-mode "ipvs"`},
		{Config{Kubernetes: true, Agent: true, DirectRouting: true}, "--direct-routing"},
		{Config{Agent: true, Containerd: Containerd2}, "--containerd 2 needs --kubernetes"},
		{Config{Kubernetes: true, Agent: true, Containerd: "1.7"}, `--containerd "1.7": want "1.6"`},
	} {
		err := bad.c.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want an error naming %q", bad.c, err, bad.want)
		}
	}
}

func TestPlanRealNodes(t *testing.T) {
	st := plan(Config{Name: "rk", Nodes: 2, Pods: 2, Agent: true, Kubernetes: true}.withDefaults())
	if !st.RealMode() || !st.KubeMode() || st.AgentMode() || st.Real.ProxyMode != ProxyIptables {
		t.Fatalf("mode %s, real %+v: want a real-nodes lab leasing through the API, no lab agents", st.Mode, st.Real)
	}
	n := st.Nodes[1]
	if n.Subnet != "" || n.Agent.PID != 0 || len(n.Agent.Argv) != 0 || n.Real == nil || n.Real.Dir != "/run/twill-lab/rk/nodes/node2" {
		t.Fatalf("node2 %+v: nodeipam picks the subnet, kubelet runs the agent, the node has its directory", n)
	}
	// Before the pods run, the Services have no endpoints (and no panic).
	for _, s := range st.Services()[1:] {
		if len(s.Endpoints) != 0 {
			t.Errorf("Service %s has endpoints %v before any pod has an address", s.Name, s.Endpoints)
		}
	}
}

func TestNodeMountScriptKeepsEverythingInTheNode(t *testing.T) {
	st := plan(Config{Name: "rk", Nodes: 1, Pods: 1, Agent: true, Kubernetes: true}.withDefaults())
	n := &st.Nodes[0]
	s := nodeMountScript(st, n)
	root := n.Root
	for _, want := range []string{
		"umount -R -l /run/netns",
		"mount -t sysfs sysfs /sys",
		"mount --move " + n.Real.Dir + "/mnt/cgroup /sys/fs/cgroup",
		"lowerdir=/var,upperdir=" + n.Real.Dir + "/ovl/var/upper",
		"mount --bind " + root + "/etc/cni/net.d /etc/cni/net.d",
		"mount --bind " + root + "/var/lib/kubelet /var/lib/kubelet",
		"mount --rbind " + root + "/run /run",
		"mount --bind " + n.Real.Dir + "/sysctl/vm.overcommit_memory /proc/sys/vm/overcommit_memory",
		"mount --bind " + n.Real.Dir + "/sysctl/kernel.panic /proc/sys/kernel/panic",
		"exec sleep infinity",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("mount script lacks %q:\n%s", want, s)
		}
	}
	// Every write goes below the node's directory or its root, or over a
	// mount point inside the new mount namespace: never to a host path.
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "echo ") && !strings.Contains(l, "> "+n.Real.Dir+"/sysctl/") {
			t.Errorf("script writes outside the node: %s", l)
		}
	}
	if strings.Index(s, "umount -R -l /run/netns") > strings.Index(s, "mount --rbind "+root+"/run /run") {
		t.Error("the host's /run/netns copies must be dropped before /run is covered")
	}
}

func TestRealConfigsPointInsideTheNode(t *testing.T) {
	st := plan(Config{Name: "rk", Nodes: 2, Pods: 1, Agent: true, Kubernetes: true}.withDefaults())
	n := &st.Nodes[1]
	k := kubeletConfig(st, n)
	for _, want := range []string{"cgroupRoot: /twill-lab-rk/node2", "address: 192.168.77.12", "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock",
		"failCgroupV1: false", "cgroupDriver: cgroupfs", `nodefs.available: "1%"`,
		"clusterDNS: [10.96.0.53]", "clusterDomain: cluster.local", "resolvConf: /run/twill-lab/rk/nodes/node2/resolv.conf"} {
		if !strings.Contains(k, want) {
			t.Errorf("kubelet config lacks %q:\n%s", want, k)
		}
	}
	c := containerdConfig(st.Real, n)
	for _, want := range []string{"restrict_oom_score_adj = true", `sandbox_image = "registry.k8s.io/pause:3.10"`,
		`root = "/run/twill-lab/rk/nodes/node2/containerd"`, "SystemdCgroup = false"} {
		if !strings.Contains(c, want) {
			t.Errorf("containerd config lacks %q:\n%s", want, c)
		}
	}
}

func TestRenderTwillManifestBackend(t *testing.T) {
	in := []byte("net-conf.json: |\n    {\n      \"Network\": \"10.244.0.0/16\",\n      " + twillBackendLine + "\n    }\n")
	if out, err := renderTwillManifest(in, BackendVXLAN); err != nil || string(out) != string(in) {
		t.Errorf("vxlan: %v, %q: want the manifest unchanged", err, out)
	}
	out, err := renderTwillManifest(in, BackendHostGW)
	if err != nil || !strings.Contains(string(out), `"Backend": {"Type": "host-gw"}`) {
		t.Errorf("host-gw: %v, %q", err, out)
	}
	if _, err := renderTwillManifest([]byte("no backend here"), BackendHostGW); err == nil {
		t.Error("a manifest without the shipped backend line was accepted")
	}
}

func TestFindImageDirNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/twill.docker.tar", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := FindImageDir(dir)
	if err == nil || !strings.Contains(err.Error(), "pause.docker.tar") || !strings.Contains(err.Error(), "make image") {
		t.Errorf("FindImageDir of an incomplete dir: %v, want the missing files and `make image`", err)
	}
}

func TestCgroupTreeIsDeepestFirst(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/node1/kubepods/besteffort/podx", "a/node2", "b"} {
		if err := os.MkdirAll(root+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dirs := cgroupTree([]string{root + "/a", root + "/b"})
	if len(dirs) != 7 {
		t.Fatalf("cgroupTree: %v, want the 7 directories", dirs)
	}
	pos := map[string]int{}
	for i, d := range dirs {
		pos[strings.TrimPrefix(d, root+"/")] = i
	}
	for child, parent := range map[string]string{"a/node1/kubepods/besteffort/podx": "a/node1/kubepods/besteffort",
		"a/node1/kubepods": "a/node1", "a/node1": "a", "a/node2": "a"} {
		if pos[child] > pos[parent] {
			t.Errorf("%s comes after its parent %s: rmdir would fail", child, parent)
		}
	}
}

func TestPidsNamedReadsComm(t *testing.T) {
	self := os.Getpid()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := pidsNamed([]int{self}, strings.TrimSpace(string(b))); len(got) != 1 || got[0] != self {
		t.Errorf("pidsNamed found %v, want this process", got)
	}
	if got := pidsNamed([]int{self}, "kubelet", "kube-proxy"); len(got) != 0 {
		t.Errorf("pidsNamed(kubelet, kube-proxy) matched this test: %v", got)
	}
}

func TestImportedRefsReadsCtrOutput(t *testing.T) {
	out := "unpacking ghcr.io/twillnet/twill:v1-next (sha256:0123abcd)...done\nunpacking registry.k8s.io/pause:3.10 (sha256:4567)...done\n"
	got := importedRefs(out)
	if len(got) != 2 || got[0] != "ghcr.io/twillnet/twill:v1-next" || got[1] != "registry.k8s.io/pause:3.10" {
		t.Errorf("importedRefs = %q, want the two references", got)
	}
	if got := importedRefs("something else\n"); len(got) != 1 || got[0] != "something else" {
		t.Errorf("importedRefs of unknown output = %q, want the output itself", got)
	}
}

func TestRealScenariosAreF1F3F5a(t *testing.T) {
	got := realScenarioIDs()
	if strings.Join(got, ",") != "F1,F3,F5a" {
		t.Errorf("scenarios on real nodes = %v, want F1, F3, F5a in FAILURES.md order", got)
	}
	for id, rs := range realScenarios {
		if _, err := LookupScenario(id); err != nil || rs.apply == nil || rs.undo == nil || rs.pause == 0 {
			t.Errorf("real scenario %s: lookup %v, apply/undo/pause set: %v %v %v", id, err, rs.apply != nil, rs.undo != nil, rs.pause != 0)
		}
	}
}

func TestHostPodIsTheTestServerOnTheNodesNetwork(t *testing.T) {
	st := &State{Name: "x", Real: &RealState{TestServerImage: "ghcr.io/twillnet/twill-testserver:v1"}}
	n := &Node{Name: "node2"}
	p := hostPod(st, n)
	c := p.Spec.Containers[0]
	if p.Name != "node2-host" || !p.Spec.HostNetwork || p.Spec.NodeSelector["kubernetes.io/hostname"] != "node2" ||
		strings.Join(c.Args, " ") != "--port 8090 --echo-port 0" || c.ReadinessProbe.TCPSocket.Port.IntValue() != HostServerPort ||
		p.Labels[labelApp] == "web" {
		t.Errorf("hostPod = %+v", p)
	}
}
