package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testVersion and testEpoch are the inputs both builds get.
const (
	testVersion = "v0.0.0-imagetest"
	testEpoch   = "1700000000"
)

// makeImage runs `make image` into dir and returns the reference and
// digest it printed.
func makeImage(t *testing.T, dir string) (ref, digest string) {
	t.Helper()
	cmd := exec.Command("make", "-s", "-C", "..", "image", "IMAGE_OUT="+dir, "VERSION="+testVersion, "SOURCE_DATE_EPOCH="+testEpoch)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("make image: %v\n%s%s", err, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 2 || !strings.HasPrefix(f[1], "sha256:") {
		t.Fatalf("make image printed %q, want `<ref> <digest>` last", out.String())
	}
	return f[0], f[1]
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestMakeImage builds the image twice and checks it is reproducible,
// tagged with the version and never latest, holds only what the agent
// needs, and that every program in it runs from the unpacked image with
// chroot: version commands, and rules written by the iptables and nft
// programs in a network namespace the test creates.
func TestMakeImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (chroot, ip netns): run make test as root")
	}
	a, b := t.TempDir(), t.TempDir()
	refA, digA := makeImage(t, a)
	refB, digB := makeImage(t, b)
	if refA != Repository+":"+testVersion || refB != refA {
		t.Fatalf("make image tagged %s and %s, want %s:%s", refA, refB, Repository, testVersion)
	}
	if digA != digB {
		t.Fatalf("two builds from the same inputs gave digests %s and %s", digA, digB)
	}
	for _, f := range []string{"twill.oci.tar", "twill.docker.tar", "twill.yaml", "pause.docker.tar", "testserver.docker.tar"} {
		if sa, sb := fileSum(t, filepath.Join(a, f)), fileSum(t, filepath.Join(b, f)); sa != sb {
			t.Errorf("%s differs between two builds from the same inputs (%s, %s)", f, sa, sb)
		}
	}

	// The OCI layout: its index names the image by tag, never latest.
	oci := filepath.Join(t.TempDir(), "oci")
	untar(t, filepath.Join(a, "twill.oci.tar"), oci)
	idx, err := layout.ImageIndexFromPath(oci)
	if err != nil {
		t.Fatalf("twill.oci.tar is not an OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != digA {
		t.Fatalf("OCI index %+v: want one manifest %s", im.Manifests, digA)
	}
	ann := im.Manifests[0].Annotations
	if ann["org.opencontainers.image.ref.name"] != testVersion || ann["io.containerd.image.name"] != refA {
		t.Errorf("OCI index annotations %v: want the tag %s and the name %s", ann, testVersion, refA)
	}
	// The docker archive: the same image, named by the same tag.
	img, err := tarball.ImageFromPath(filepath.Join(a, "twill.docker.tar"), nil)
	if err != nil {
		t.Fatalf("twill.docker.tar: %v", err)
	}
	// (docker-archive records no media types, so its manifest digest is a
	// Docker one: the config, which names every layer, must be the same.)
	ociImg, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := ociImg.ConfigName()
	if cb, _ := img.ConfigName(); ca != cb {
		t.Errorf("docker archive holds config %s, the OCI layout %s", cb, ca)
	}
	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(filepath.Join(a, "twill.docker.tar")) })
	if err != nil {
		t.Fatal(err)
	}
	if len(mf) != 1 || fmt.Sprint(mf[0].RepoTags) != "["+refA+"]" {
		t.Errorf("docker archive tags %+v, want [%s]", mf, refA)
	}
	for _, f := range []string{"twill.ref", "twill.yaml"} {
		if body, _ := os.ReadFile(filepath.Join(a, f)); bytes.Contains(body, []byte(":latest")) || !bytes.Contains(body, []byte(refA)) {
			t.Errorf("%s does not name %s, or names a latest tag:\n%s", f, refA, body)
		}
	}

	// The files: only the agent's programs and their libraries.
	root := filepath.Join(t.TempDir(), "root")
	names := unpackImage(t, filepath.Join(a, "twill.docker.tar"), root)
	allowed := regexp.MustCompile(`^(usr/local/bin/twill|usr/local/bin/twill-cni|usr/lib/twill/cni/loopback|` +
		`usr/sbin/(nft|xtables-nft-multi|xtables-legacy-multi)|usr/lib/[a-z0-9_]+-linux-gnu[a-z]*/(xtables/)?[^/]+\.so[.0-9]*)$`)
	for _, n := range names {
		if !allowed.MatchString(n) {
			t.Errorf("image file %s is not one the agent needs", n)
		}
	}

	chroot := func(env []string, stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin"}, env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("chroot image %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := chroot(nil, "", "/usr/local/bin/twill", "version"); strings.TrimSpace(out) != "twill "+testVersion {
		t.Errorf("twill version in the image: %q, want %q", out, "twill "+testVersion)
	}
	for _, p := range []string{"/usr/local/bin/twill-cni", "/usr/lib/twill/cni/loopback"} {
		out := chroot([]string{"CNI_COMMAND=VERSION"}, `{"cniVersion":"1.0.0"}`, p)
		var v struct {
			Supported []string `json:"supportedVersions"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.Contains(strings.Join(v.Supported, " "), "1.0.0 1.1.0") {
			t.Errorf("%s VERSION: %q (%v): want supportedVersions with 1.0.0 and 1.1.0", p, out, err)
		}
	}
	if out := chroot(nil, "", "/usr/lib/twill/cni/loopback"); !strings.Contains(out, "CNI loopback plugin v1.10.0") {
		t.Errorf("loopback about: %q, want CNI loopback plugin v1.10.0 (install-cni compares it)", out)
	}
	for bin, want := range map[string]string{"nft --version": "nftables v", "iptables-nft -V": "(nf_tables)", "iptables-legacy -V": "(legacy)"} {
		if out := chroot(nil, "", strings.Fields(bin)...); !strings.Contains(out, want) {
			t.Errorf("%s in the image: %q, want %q", bin, out, want)
		}
	}

	// install-cni in the image, on node directories inside the unpacked
	// root, with the image's defaults: it installs, then keeps the loopback
	// it finds at its own version (read from the real plugin's about line).
	for _, d := range []string{"opt/cni/bin", "etc/cni/net.d", "etc/twill"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `{"cniVersion":"1.0.0","name":"twill","plugins":[{"type":"twill"}]}`
	if err := os.WriteFile(filepath.Join(root, "etc/twill/cni-conf.json"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	first := chroot(nil, "", "/usr/local/bin/twill", "install-cni")
	second := chroot(nil, "", "/usr/local/bin/twill", "install-cni")
	if !strings.Contains(first, "installed /opt/cni/bin/loopback") || !strings.Contains(second, "kept /opt/cni/bin/loopback: the node's loopback v1.10.0 is not older than ours v1.10.0") {
		t.Errorf("install-cni twice in the image:\n%s\n%s\nwant loopback installed, then kept", first, second)
	}
	for _, f := range []string{"opt/cni/bin/twill", "opt/cni/bin/loopback", "etc/cni/net.d/10-twill.conflist"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("after install-cni: %v", err)
		}
	}

	// Rules, in a network namespace of the test's own: the iptables
	// programs load their xtables modules, nft its libraries.
	ns := fmt.Sprintf("twill-imgtest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	// As in a container: /run for /run/xtables.lock (the DaemonSet mounts
	// it), /proc (iptables-legacy-save reads /proc/net/ip_tables_names),
	// mounted in a mount namespace of the command's own.
	for _, d := range []string{"run", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inNetns := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "unshare", "--mount-proc=" + filepath.Join(root, "proc"), "chroot", root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("in netns %s, image %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, ipt := range []string{"iptables-nft", "iptables-legacy"} {
		inNetns(ipt, "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16",
			"-m", "comment", "--comment", "twill image test", "-j", "MASQUERADE")
		inNetns(ipt, "-A", "FORWARD", "-p", "tcp", "--dport", "80", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
		out := inNetns(ipt + "-save")
		for _, want := range []string{`--comment "twill image test" -j MASQUERADE`, "-p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s-save in the image does not show the rule written (%s):\n%s", ipt, want, out)
			}
		}
	}
	inNetns("nft", "add", "table", "inet", "twilltest")
	inNetns("nft", "add", "chain", "inet", "twilltest", "twchain", "{ type filter hook forward priority 0; }")
	inNetns("nft", "add", "rule", "inet", "twilltest", "twchain", "ip", "saddr", "10.244.0.0/16", "counter", "accept")
	if out := inNetns("nft", "-j", "list", "ruleset"); !strings.Contains(out, `"twilltest"`) || !strings.Contains(out, `"10.244.0.0"`) {
		t.Errorf("nft -j list ruleset in the image does not show the rule written:\n%s", out)
	}
}

// untar unpacks a tar of files and directories into dir.
func untar(t *testing.T, tarPath, dir string) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	extract(t, f, dir)
}

// unpackImage flattens the image's layers into dir and returns its
// regular files.
func unpackImage(t *testing.T, dockerTar, dir string) []string {
	t.Helper()
	img, err := tarball.ImageFromPath(dockerTar, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	return extract(t, rc, dir)
}

func extract(t *testing.T, r io.Reader, dir string) (files []string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("tar entry %q escapes the directory", h.Name)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode))
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			files = append(files, filepath.ToSlash(name))
			var w *os.File
			if w, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)); err == nil {
				_, err = io.Copy(w, tr)
				w.Close()
			}
		default:
			t.Fatalf("tar entry %s: unexpected type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
