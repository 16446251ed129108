package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/twillnet/twill/cniinstall"
	"github.com/twillnet/twill/image"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

// twillBin builds ./cmd/twill once for the package's tests.
func twillBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "twill-deploy-test-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildOut, buildErr = exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(buildDir, "twill"), "../../cmd/twill").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/twill: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "twill")
}

// helpFlags returns the long flags `twill <sub> --help` lists.
func helpFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	help, err := exec.Command(twillBin(t), sub, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("twill %s --help: %v\n%s", sub, err, help)
	}
	have := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(string(help), -1) {
		have[m[1]] = true
	}
	if len(have) == 0 {
		t.Fatalf("could not read the flags from `twill %s --help`:\n%s", sub, help)
	}
	return have
}

// TestImageIsVersionTagged: both containers run the same twill image,
// with a version tag (never latest, which IfNotPresent would never
// refresh), pulled IfNotPresent, and make image's rendering replaces that
// tag with the one it built.
func TestImageIsVersionTagged(t *testing.T) {
	all := docs(t)
	var ds appsv1.DaemonSet
	one(t, all, "DaemonSet", &ds)
	spec := ds.Spec.Template.Spec
	cs := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
	for _, c := range cs {
		if _, err := image.ParseRef(c.Image); err != nil {
			t.Errorf("container %s: %v", c.Name, err)
		}
		if !strings.HasPrefix(c.Image, image.Repository+":") {
			t.Errorf("container %s runs %s, want %s:<version>", c.Name, c.Image, image.Repository)
		}
		if c.Image != cs[0].Image {
			t.Errorf("container %s runs %s, but %s runs %s: one image for both", c.Name, c.Image, cs[0].Name, cs[0].Image)
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("container %s: imagePullPolicy %q, want IfNotPresent", c.Name, c.ImagePullPolicy)
		}
	}
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	out, err := image.RenderManifest(raw, image.Repository+":v1.2.3")
	if err != nil {
		t.Fatalf("RenderManifest: %v", err)
	}
	if n := strings.Count(string(out), image.Repository+":v1.2.3"); n != len(cs) {
		t.Errorf("rendered manifest names the built image %d times, want %d (every container)", n, len(cs))
	}
	if strings.Contains(string(out), cs[0].Image) {
		t.Errorf("rendered manifest still names the placeholder %s", cs[0].Image)
	}
}

// TestInstallCNIContainer: the init container runs `twill install-cni`
// with flags it has, on the mounted node directories, and the shipped
// conflist says cniVersion 1.0.0 (what containerd 1.6 and 1.7 accept) and
// passes install-cni's own check.
func TestInstallCNIContainer(t *testing.T) {
	all := docs(t)
	var ds appsv1.DaemonSet
	one(t, all, "DaemonSet", &ds)
	var cm corev1.ConfigMap
	one(t, all, "ConfigMap", &cm)
	if len(ds.Spec.Template.Spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1 (install-cni)", len(ds.Spec.Template.Spec.InitContainers))
	}
	c := ds.Spec.Template.Spec.InitContainers[0]
	if strings.Join(c.Command, " ") != image.TwillPath+" install-cni" {
		t.Fatalf("init container command %q, want [%s install-cni]", c.Command, image.TwillPath)
	}
	have := helpFlags(t, "install-cni")
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	got := map[string]string{}
	for _, a := range c.Args {
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") || !have[name] {
			t.Errorf("install-cni arg %q: want --flag=value with a flag `twill install-cni --help` lists", a)
		}
		got[name] = val
	}
	for flag, host := range map[string]string{"cni-bin-dir": "/opt/cni/bin", "cni-conf-dir": "/etc/cni/net.d"} {
		v := vols[mounts[got[flag]]]
		if v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("--%s=%s: want the node's %s mounted there, have volume %+v", flag, got[flag], host, v)
		}
	}
	dir, file := filepath.Split(got["conflist"])
	if v := vols[mounts[filepath.Clean(dir)]]; v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("--conflist=%s: want ConfigMap %s mounted at %s", got["conflist"], cm.Name, dir)
	}
	conf, ok := cm.Data[file]
	if !ok {
		t.Fatalf("--conflist=%s: ConfigMap has no key %q", got["conflist"], file)
	}
	if err := cniinstall.CheckConflist([]byte(conf), "twill"); err != nil {
		t.Errorf("shipped conflist: %v", err)
	}
	var cl struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal([]byte(conf), &cl); err != nil || cl.CNIVersion != "1.0.0" {
		t.Errorf("shipped conflist cniVersion %q (%v), want 1.0.0: containerd 1.6 and 1.7 reject 1.1.0 results", cl.CNIVersion, err)
	}
}
