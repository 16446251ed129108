package image

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Kubernetes' end-to-end suite (e2e.test, make conformance) runs its pods
// from images of registry.k8s.io/e2e-test-images. A lab of real nodes pulls
// nothing, so make conformance rebuilds the ones it can here, under the tags
// the suite of the lab's Kubernetes version expects
// (test/utils/image/manifest.go of k8s.io/kubernetes): the same programs
// where upstream's image builds them from the same module (agnhost), and
// the host's Debian programs where upstream installs Alpine or Debian
// packages (busybox, curl, nc, dig, ip, ss, bash). They are stand-ins with
// the same tools, not upstream's bytes.
const (
	// AgnhostRef is agnhost as e2e.test of Kubernetes v1.34 names it.
	AgnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.56"
	// BusyboxRef is the suite's busybox image (here: Debian's busybox-static).
	BusyboxRef = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
	// JessieDnsutilsRef is the suite's DNS prober image (dig and a shell).
	JessieDnsutilsRef = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
	// E2EPauseRef is the pause image the suite itself runs in pods
	// (imageutils.GetPauseImageName), beside the nodes' sandbox PauseRef.
	E2EPauseRef = "registry.k8s.io/pause:3.10.1"
)

// E2ESpec is what the suite's images are made of.
type E2ESpec struct {
	// Agnhost is the host path of the agnhost binary
	// (k8s.io/kubernetes/test/images/agnhost); the libraries a dynamic one
	// loads are shipped with the tools'.
	Agnhost string
	// AgnhostFiles maps paths in the agnhost image to host files that
	// upstream's Dockerfile adds beside it (porter's localhost.crt and
	// localhost.key).
	AgnhostFiles map[string]string
	// Busybox is the host path of a static busybox, and Applets the paths
	// of its applets as `busybox --list-full` prints them (usr/bin/awk,
	// sbin/ip, ...): they become links to it, unless a Tools program has
	// the same name.
	Busybox string
	Applets []string
	// Tools are host paths of Debian programs (curl, nc, dig, ip, ss,
	// bash) shipped with the libraries they load.
	Tools []string
	// Host is where Busybox, Tools and their libraries are read.
	Host FS
	// Epoch is the time of every file and of the images.
	Epoch time.Time
	// Arch is the Go architecture of the images (runtime.GOARCH if empty).
	Arch string
}

// usrMerged are the root directories a Debian 12 system (and so the
// images) links into /usr.
var usrMerged = map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

// userland is the layer of tools the suite's images share: the Tools with
// their libraries, then the busybox applets whose names are still free, in
// a merged-/usr layout (one layer, so a link /bin can never hide a
// directory /bin of another layer).
func (s E2ESpec) userland() (Tree, error) {
	dirs, err := LibDirs(defaultArch(s.Arch))
	if err != nil {
		return nil, err
	}
	// agnhost's own libraries too: built with cgo (as e2e.test, sharing its
	// compile cache) it loads libc.
	start := append([]string(nil), s.Tools...)
	if f, err := s.Host.OpenELF(s.Agnhost); err == nil {
		f.Close()
		start = append(start, s.Agnhost)
	}
	libs, err := NeededClosure(s.Host, start, dirs)
	if err != nil {
		return nil, err
	}
	t := Tree{}
	for link, target := range usrMerged {
		if err := t.AddSymlink(link, target); err != nil {
			return nil, err
		}
	}
	for _, p := range append(append([]string(nil), s.Tools...), libs...) {
		if err := t.AddHost(s.Host, p); err != nil {
			return nil, err
		}
	}
	// Debian's default host lookup order (glibc's own default asks DNS first).
	if err := t.AddData("etc/nsswitch.conf", "hosts: files dns\n"); err != nil {
		return nil, err
	}
	if s.Busybox == "" {
		return nil, fmt.Errorf("image: no busybox binary given for the e2e images")
	}
	if err := t.AddFile("usr/bin/busybox", s.Busybox, true); err != nil {
		return nil, err
	}
	taken := map[string]bool{}
	for _, n := range t.Names() {
		taken[path.Base(n)] = true
	}
	for _, a := range s.Applets {
		a = strings.TrimPrefix(path.Clean("/"+a), "/")
		dir, name := path.Split(a)
		dir = strings.TrimSuffix(dir, "/")
		if m, ok := usrMerged[dir]; ok {
			dir = m
		}
		if name == "" || taken[name] {
			continue
		}
		taken[name] = true
		if err := t.AddSymlink(path.Join(dir, name), "/usr/bin/busybox"); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// e2eEnv is the environment of every e2e image.
var e2eEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// E2EImages builds the suite's images this host can make, by reference:
// agnhost (AgnhostRef: agnhost at /agnhost with the link /agnhost-2, porter's
// certificate, /uploads, the user 1000 and group 50000 its Dockerfile adds,
// over the shared tools), busybox (BusyboxRef: busybox and its applets in
// /bin) and
// jessie-dnsutils (JessieDnsutilsRef: the shared tools).
func E2EImages(s E2ESpec) (map[string]v1.Image, error) {
	tools, err := s.userland()
	if err != nil {
		return nil, err
	}
	if s.Agnhost == "" {
		return nil, fmt.Errorf("image: no agnhost binary given for the e2e images")
	}
	own := Tree{}
	if err := own.AddFile("agnhost", s.Agnhost, true); err != nil {
		return nil, err
	}
	if err := own.AddSymlink("agnhost-2", "agnhost"); err != nil {
		return nil, err
	}
	dsts := make([]string, 0, len(s.AgnhostFiles))
	for dst := range s.AgnhostFiles {
		dsts = append(dsts, dst)
	}
	sort.Strings(dsts)
	for _, dst := range dsts {
		if err := own.AddFile(dst, s.AgnhostFiles[dst], false); err != nil {
			return nil, err
		}
	}
	if err := own.AddDir("uploads"); err != nil {
		return nil, err
	}
	for p, body := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
	} {
		if err := own.AddData(p, body); err != nil {
			return nil, err
		}
	}
	busybox := Tree{}
	if err := busybox.AddFile("bin/busybox", s.Busybox, true); err != nil {
		return nil, err
	}
	for _, a := range s.Applets {
		if name := path.Base(a); name != "busybox" {
			if err := busybox.AddSymlink(path.Join("bin", name), "busybox"); err != nil {
				return nil, err
			}
		}
	}
	specs := []struct {
		ref   string
		rc    v1.Config
		trees []Tree
		what  []string
	}{
		{AgnhostRef, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Env: e2eEnv},
			[]Tree{tools, own}, []string{"busybox and Debian's curl, nc, dig, ip, ss, bash with their libraries", "agnhost"}},
		{BusyboxRef, v1.Config{Cmd: []string{"sh"}, Env: e2eEnv},
			[]Tree{busybox}, []string{"Debian's busybox-static"}},
		{JessieDnsutilsRef, v1.Config{Cmd: []string{"sh"}, Env: e2eEnv},
			[]Tree{tools}, []string{"busybox and Debian's curl, nc, dig, ip, ss, bash with their libraries"}},
	}
	out := map[string]v1.Image{}
	for _, sp := range specs {
		tag, arch, err := refArch(sp.ref, s.Arch)
		if err != nil {
			return nil, err
		}
		img, err := assemble(tag, arch, s.Epoch, sp.rc, sp.trees, sp.what)
		if err != nil {
			return nil, err
		}
		out[sp.ref] = img
	}
	return out, nil
}
