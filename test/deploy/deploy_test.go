package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/lease/kube/kubetest"
)

// manifest is the path of the shipped manifests, relative to this package.
const manifest = "../../deploy/twill.yaml"

// docs splits the manifest file into its YAML documents, keyed by kind.
func docs(t *testing.T) map[string][][]byte {
	t.Helper()
	f, err := os.Open(manifest)
	if err != nil {
		t.Fatalf("the shipped manifests: %v", err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	out := map[string][][]byte{}
	for i := 0; i < 100; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", manifest, i, err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: document %d: %v", manifest, i, err)
		}
		if meta.Kind != "" {
			out[meta.Kind] = append(out[meta.Kind], doc)
		}
	}
	t.Fatalf("%s: more than 100 documents", manifest)
	return nil
}

// one decodes the only document of the kind into v.
func one(t *testing.T, all map[string][][]byte, kind string, v any) {
	t.Helper()
	if n := len(all[kind]); n != 1 {
		t.Fatalf("%s: %d %s documents, want exactly 1", manifest, n, kind)
	}
	if err := yaml.UnmarshalStrict(all[kind][0], v); err != nil {
		t.Fatalf("%s: %s: %v", manifest, kind, err)
	}
}

// TestManifestsPassServerDryRun applies deploy/twill.yaml with the real
// kubectl against a real kube-apiserver, server-side dry run, as admin:
// every object must be accepted by the API's validation and admission.
func TestManifestsPassServerDryRun(t *testing.T) {
	kubectl, err := kubetest.KubectlBin()
	if err != nil {
		t.Fatalf("%v (the lead's build log is /tmp/kube-build.log)", err)
	}
	s := kubetest.StartServer(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	abs, err := filepath.Abs(manifest)
	if err != nil {
		t.Fatal(err)
	}
	kc := s.Kubeconfig(kubetest.Admin)
	// A server dry run of namespaced objects needs their namespace to
	// exist (it is only pretended to be created): create the manifest's
	// Namespace for real first, as an admin's first apply would.
	all := docs(t)
	var ns corev1.Namespace
	one(t, all, "Namespace", &ns)
	create := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "apply", "-f", "-")
	create.Stdin = bytes.NewReader(all["Namespace"][0])
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply the Namespace %s: %v\n%s", ns.Name, err, out)
	}
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "apply", "--dry-run=server", "-f", abs)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f deploy/twill.yaml: %v\n%s", err, out)
	}
	// Every object is named in kubectl's answer, with "(server dry run)".
	for _, want := range []string{
		"namespace/" + ns.Name, "serviceaccount/twill", "clusterrole.rbac.authorization.k8s.io/twill",
		"clusterrolebinding.rbac.authorization.k8s.io/twill", "configmap/twill-cfg", "daemonset.apps/twill",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("kubectl output does not name %s:\n%s", want, out)
		}
	}
	if n := bytes.Count(out, []byte("(server dry run)")); n != 6 {
		t.Errorf("%d objects accepted by the server dry run, want 6:\n%s", n, out)
	}
}

// TestClusterRoleIsTheShippedOne: the ClusterRole in deploy/ is exactly
// what lease/kube uses (and what its tests prove sufficient), so the two
// cannot drift.
func TestClusterRoleIsTheShippedOne(t *testing.T) {
	all := docs(t)
	var cr rbacv1.ClusterRole
	one(t, all, "ClusterRole", &cr)
	if cr.Name != kube.ClusterRoleName {
		t.Errorf("ClusterRole name %q, want %q", cr.Name, kube.ClusterRoleName)
	}
	if !reflect.DeepEqual(cr.Rules, kube.RBACRules()) {
		t.Errorf("deploy/twill.yaml ClusterRole rules differ from kube.RBACRules():\n manifest: %+v\n code:     %+v\nupdate the manifest (kube.ClusterRoleYAML() prints the code's)", cr.Rules, kube.RBACRules())
	}
	var b rbacv1.ClusterRoleBinding
	one(t, all, "ClusterRoleBinding", &b)
	var sa corev1.ServiceAccount
	one(t, all, "ServiceAccount", &sa)
	if b.RoleRef.Name != cr.Name || len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
		b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind ClusterRole %s to ServiceAccount %s/%s", b, cr.Name, sa.Namespace, sa.Name)
	}
}

// flagRE finds the long flags in `--help` output.
var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// TestDaemonSetUsesRealAgentFlags builds twill and checks that every flag
// the DaemonSet passes to `twill agent` is in `twill agent --help`, that
// the probes point at the agent's health port, and that the config files
// the args name are mounted from the ConfigMap.
func TestDaemonSetUsesRealAgentFlags(t *testing.T) {
	all := docs(t)
	var ds appsv1.DaemonSet
	one(t, all, "DaemonSet", &ds)
	var cm corev1.ConfigMap
	one(t, all, "ConfigMap", &cm)

	have := helpFlags(t, "agent")
	if !have["store"] || !have["net-conf"] {
		t.Fatalf("could not read the flags from `twill agent --help` (found %v)", have)
	}

	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1 (the agent), and %d init containers, want 1 (install-cni)", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "agent" {
		t.Fatalf("agent container args %q: want `agent` first", c.Args)
	}
	mounts := map[string]string{} // mount path -> volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, a := range c.Args[1:] {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("agent arg %q: want --flag or --flag=value", a)
			continue
		}
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !have[name] {
			t.Errorf("DaemonSet passes --%s, which `twill agent --help` does not list", name)
		}
		if name == "net-conf" {
			dir, file := filepath.Split(val)
			if _, ok := cm.Data[file]; !ok {
				t.Errorf("--net-conf=%s: the ConfigMap has no key %q", val, file)
			}
			if mounts[filepath.Clean(dir)] == "" {
				t.Errorf("--net-conf=%s: nothing is mounted at %s", val, dir)
			}
		}
	}
	if !spec.HostNetwork {
		t.Error("DaemonSet is not hostNetwork: the agent must program the node's own network")
	}
	caps := c.SecurityContext.Capabilities.Add
	for _, want := range []corev1.Capability{"NET_ADMIN", "NET_RAW"} {
		found := false
		for _, c := range caps {
			found = found || c == want
		}
		if !found {
			t.Errorf("agent container lacks capability %s", want)
		}
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet on the agent's health address", name)
			continue
		}
		if p.HTTPGet.Port.IntValue() != 9473 || p.HTTPGet.Host != "127.0.0.1" {
			t.Errorf("%s probe %s:%s: the agent serves health on 127.0.0.1:9473 (agent.DefaultHealthAddr)", name, p.HTTPGet.Host, p.HTTPGet.Port.String())
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness path %s, want /healthz", c.LivenessProbe.HTTPGet.Path)
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness path %s, want /readyz", c.ReadinessProbe.HTTPGet.Path)
	}
}
