package image

import (
	"strings"
	"testing"
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
