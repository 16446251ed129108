package image

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRefRefusesLatestAndUntagged(t *testing.T) {
	for _, bad := range []string{Repository + ":latest", Repository, "", Repository + ":bad tag"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted it", bad)
		}
	}
	if tag, err := ParseRef(Repository + ":v0.3.0-2-gabc1234-dirty"); err != nil || tag.TagStr() != "v0.3.0-2-gabc1234-dirty" {
		t.Errorf("ParseRef of a git describe tag: %v, %v", tag, err)
	}
}

func TestRenderManifest(t *testing.T) {
	in := "image: " + Repository + ":v0.0.0-dev\n  x: 1\nimage: " + Repository + ":v0.0.0-dev\nimage: other.io/x:v1\n"
	out, err := RenderManifest([]byte(in), Repository+":v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	want := "image: " + Repository + ":v1.2.3\n  x: 1\nimage: " + Repository + ":v1.2.3\nimage: other.io/x:v1\n"
	if string(out) != want {
		t.Errorf("RenderManifest:\n%s\nwant:\n%s", out, want)
	}
	if _, err := RenderManifest([]byte("image: other.io/x:v1\n"), Repository+":v1.2.3"); err == nil {
		t.Error("RenderManifest of a manifest without twill's image succeeded")
	}
	if _, err := RenderManifest([]byte(in), Repository+":latest"); err == nil {
		t.Error("RenderManifest to latest succeeded")
	}
}

func TestTreeRefusesConflicts(t *testing.T) {
	tr := Tree{}
	if err := tr.AddSymlink("lib", "usr/lib"); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFile("lib/x.so", "/dev/null", false); err == nil || !strings.Contains(err.Error(), "needs directory lib") {
		t.Errorf("a file below a symbolic link: %v, want an error", err)
	}
	if err := tr.AddFile("usr/bin/a", "/src/a", true); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddFile("usr/bin/a", "/src/b", true); err == nil {
		t.Error("one path with two contents accepted")
	}
	if got := strings.Join(tr.Names(), " "); got != "lib usr usr/bin usr/bin/a" {
		t.Errorf("Names() = %q: want sorted paths with their parent directories", got)
	}
}

func TestNeededClosureOfNft(t *testing.T) {
	dirs, err := LibDirs("amd64")
	if err != nil {
		t.Fatal(err)
	}
	libs, err := NeededClosure(FS{Root: "/"}, []string{"/usr/sbin/nft"}, dirs)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(libs, " ")
	for _, want := range []string{"/lib64/ld-linux-x86-64.so.2", "/libnftables.so.1", "/libc.so.6", "/libnftnl.so."} {
		if !strings.Contains(got, want) {
			t.Errorf("NeededClosure(nft) = %s: missing %s", got, want)
		}
	}
	if _, err := NeededClosure(FS{Root: "/"}, []string{"/usr/sbin/nft"}, []string{"/nonexistent"}); err == nil || !strings.Contains(err.Error(), "needs") {
		t.Errorf("NeededClosure with no library dirs: %v, want an error naming the missing library", err)
	}
}

func TestBuildProgramIsOneReproducibleLayer(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := ProgramSpec{Binary: bin, Path: TestServerPath, Ref: TestServerRepository + ":v1.2.3", Epoch: time.Unix(1700000000, 0), Arch: "amd64"}
	a, err := BuildProgram(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildProgram(s)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same program: digests %s and %s", da, db)
	}
	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != TestServerPath || cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("config %+v: want entrypoint %s, linux/amd64", cf.Config, TestServerPath)
	}
	layers, err := a.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if "/"+strings.TrimPrefix(h.Name, "/") == TestServerPath {
			found = h.Mode&0o111 != 0 && h.ModTime.Equal(s.Epoch)
		}
	}
	if !found {
		t.Errorf("the layer has no executable %s stamped %s", TestServerPath, s.Epoch)
	}
	if _, err := BuildProgram(ProgramSpec{Binary: bin, Path: PausePath, Ref: "registry.k8s.io/pause:latest"}); err == nil {
		t.Error("BuildProgram accepted the tag latest")
	}
	// A program with its own version (CoreDNS) carries it as a label; the
	// label changes the digest, its absence leaves the config label-free.
	if len(cf.Config.Labels) != 0 {
		t.Errorf("labels %v without ProgramSpec.Labels", cf.Config.Labels)
	}
	s.Path, s.Ref = CoreDNSPath, CoreDNSRepository+":v1.2.3"
	s.Labels = map[string]string{"org.opencontainers.image.version": "v1.15.0"}
	c, err := BuildProgram(s)
	if err != nil {
		t.Fatal(err)
	}
	ccf, err := c.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if ccf.Config.Labels["org.opencontainers.image.version"] != "v1.15.0" || ccf.Config.Entrypoint[0] != CoreDNSPath {
		t.Errorf("config %+v: want entrypoint %s and the version label", ccf.Config, CoreDNSPath)
	}
}
