package image

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerEntries reads every layer of img into name -> header.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = h
		}
		rc.Close()
	}
	return out
}

// The suite's images from this host's programs (curl, bash and
// busybox-static are what make conformance ships; the test needs them):
// agnhost keeps its Dockerfile's layout, a Debian tool wins over the busybox
// applet of the same name, and the merged-/usr links resolve as on Debian.
func TestE2EImages(t *testing.T) {
	for _, p := range []string{"/usr/bin/curl", "/usr/bin/bash", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing (apt-get install curl bash busybox-static): %v", p, err)
		}
	}
	dir := t.TempDir()
	agn := filepath.Join(dir, "agnhost")
	crt := filepath.Join(dir, "localhost.crt")
	for _, f := range []string{agn, crt} {
		if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := E2ESpec{Agnhost: agn, AgnhostFiles: map[string]string{"localhost.crt": crt}, Busybox: "/usr/bin/busybox",
		Applets: []string{"bin/sh", "usr/bin/curl", "sbin/ip", "usr/bin/awk"},
		Tools:   []string{"/usr/bin/bash", "/usr/bin/curl"}, Host: FS{Root: "/"}, Epoch: time.Unix(1700000000, 0), Arch: "amd64"}
	imgs, err := E2EImages(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{AgnhostRef, BusyboxRef, JessieDnsutilsRef} {
		if imgs[ref] == nil {
			t.Fatalf("no image %s", ref)
		}
	}
	agnhost := layerEntries(t, imgs[AgnhostRef])
	want := map[string]string{ // path: link target, or "" for a regular file
		"agnhost": "", "agnhost-2": "agnhost", "localhost.crt": "", "usr/bin/curl": "", "usr/bin/bash": "",
		"usr/bin/busybox": "", "usr/bin/sh": "/usr/bin/busybox", "usr/sbin/ip": "/usr/bin/busybox",
		"usr/bin/awk": "/usr/bin/busybox", "bin": "usr/bin", "lib64": "usr/lib64", "etc/passwd": "", "etc/group": "",
	}
	for p, link := range want {
		h, ok := agnhost[p]
		switch {
		case !ok:
			t.Errorf("agnhost image: no %s", p)
		case link != "" && (h.Typeflag != tar.TypeSymlink || h.Linkname != link):
			t.Errorf("agnhost image: %s is %c -> %q, want a link to %s", p, h.Typeflag, h.Linkname, link)
		case link == "" && h.Typeflag != tar.TypeReg:
			t.Errorf("agnhost image: %s is type %c, want a regular file (Debian's tool, not the applet)", p, h.Typeflag)
		}
	}
	if h, ok := agnhost["uploads/"]; !ok || h.Typeflag != tar.TypeDir {
		t.Error("agnhost image: no directory /uploads")
	}
	cf, err := imgs[AgnhostRef].ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/agnhost" || len(cf.Config.Cmd) != 1 || cf.Config.Cmd[0] != "pause" {
		t.Errorf("agnhost config %+v: want entrypoint /agnhost, cmd pause (as upstream)", cf.Config)
	}
	busybox := layerEntries(t, imgs[BusyboxRef])
	if h, ok := busybox["bin/sh"]; !ok || h.Linkname != "busybox" {
		t.Errorf("busybox image: bin/sh %+v, want a link to busybox", h)
	}
	if _, ok := busybox["usr/bin/curl"]; ok {
		t.Error("busybox image ships Debian's curl: want busybox alone")
	}
	again, err := E2EImages(s)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := imgs[AgnhostRef].Digest()
	d2, _ := again[AgnhostRef].Digest()
	if d1 != d2 {
		t.Errorf("two builds of agnhost: digests %s and %s", d1, d2)
	}
	s.Busybox = ""
	if _, err := E2EImages(s); err == nil {
		t.Error("E2EImages without busybox succeeded")
	}
}
