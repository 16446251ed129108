package cniinstall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		theirs  string
		present bool
		err     error
		install bool
	}{
		{present: false, install: true},
		{theirs: "v1.9.1", present: true, install: true},
		{theirs: "v0.8.6", present: true, install: true},
		{theirs: "v1.10.0-rc1", present: true, install: true},
		{theirs: "v1.10.0", present: true, install: false},
		{theirs: "v1.10.1", present: true, install: false},
		{theirs: "v2.0.0", present: true, install: false},
		{present: true, err: errors.New("exec format error"), install: false},
	} {
		got, why := Decide("v1.10.0", c.present, c.theirs, c.err)
		if got != c.install || why == "" {
			t.Errorf("Decide(ours v1.10.0, present %v, theirs %q, %v) = %v (%q), want %v", c.present, c.theirs, c.err, got, why, c.install)
		}
	}
}

func TestParseAbout(t *testing.T) {
	for in, want := range map[string]string{
		"CNI loopback plugin v1.10.0\nCNI protocol versions supported: 0.1.0, 1.1.0": "v1.10.0",
		"CNI loopback plugin v1.4.0-rc.1":                                            "v1.4.0-rc.1",
		"CNI loopback plugin 0.8.7":                                                  "v0.8.7",
	} {
		if got, err := ParseAbout(in); err != nil || got != want {
			t.Errorf("ParseAbout(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"CNI loopback plugin version unknown\nCNI protocol versions supported: 0.1.0, 1.1.0", "", "garbage"} {
		if got, err := ParseAbout(in); err == nil {
			t.Errorf("ParseAbout(%q) = %q, want an error (a protocol version is not the plugin's)", in, got)
		}
	}
}

// node is a fake node: CNI directories and the image's files, in a temp dir.
type node struct {
	o        Options
	versions map[string]string // binary contents -> version its about line says
}

func newNode(t *testing.T, conflist string) *node {
	d := t.TempDir()
	n := &node{versions: map[string]string{"OUR-LOOPBACK": "v1.10.0"}, o: Options{
		BinDir: filepath.Join(d, "opt/cni/bin"), ConfDir: filepath.Join(d, "etc/cni/net.d"),
		Plugin: filepath.Join(d, "img/twill-cni"), Loopback: filepath.Join(d, "img/loopback"),
		PluginName: "twill", Conflist: filepath.Join(d, "img/cni-conf.json"), ConfName: "10-twill.conflist",
	}}
	for _, p := range []string{n.o.BinDir, n.o.ConfDir, filepath.Dir(n.o.Plugin)} {
		must(t, os.MkdirAll(p, 0o755))
	}
	must(t, os.WriteFile(n.o.Plugin, []byte("TWILL-CNI"), 0o755))
	must(t, os.WriteFile(n.o.Loopback, []byte("OUR-LOOPBACK"), 0o755))
	must(t, os.WriteFile(n.o.Conflist, []byte(conflist), 0o644))
	return n
}

// version is the VersionFunc: the fake binaries' contents name their version.
func (n *node) version(_ context.Context, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if v, ok := n.versions[string(b)]; ok {
		return v, nil
	}
	return "", fmt.Errorf("no version in %q", b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const goodConf = `{"cniVersion":"1.0.0","name":"twill","plugins":[{"type":"twill"}]}`

// files returns every file in dir with its content and mode.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		fi, err := e.Info()
		must(t, err)
		out[e.Name()] = fmt.Sprintf("%s %v", b, fi.Mode())
	}
	return out
}

func TestInstallLoopbackNeverOverwritesNewer(t *testing.T) {
	for _, c := range []struct {
		name     string
		existing string // content of the node's loopback, "" for none
		want     string // content after install
		did      string
	}{
		{"absent", "", "OUR-LOOPBACK", "installed"},
		{"older", "OLD", "OUR-LOOPBACK", "replaced"},
		{"same", "SAME", "SAME", "kept"},
		{"newer", "NEW", "NEW", "kept"},
		{"unknown version", "UNKNOWN", "UNKNOWN", "kept"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t, goodConf)
			n.versions["OLD"], n.versions["SAME"], n.versions["NEW"] = "v1.4.0", "v1.10.0", "v1.11.0"
			if c.existing != "" {
				must(t, os.WriteFile(filepath.Join(n.o.BinDir, "loopback"), []byte(c.existing), 0o755))
			}
			acts, err := Install(context.Background(), n.o, n.version)
			if err != nil {
				t.Fatal(err)
			}
			bin := files(t, n.o.BinDir)
			want := map[string]string{"twill": "TWILL-CNI -rwxr-xr-x", "loopback": c.want + " -rwxr-xr-x"}
			if fmt.Sprint(bin) != fmt.Sprint(want) {
				t.Errorf("node's %s after install: %v, want %v (no temporary file left)", n.o.BinDir, bin, want)
			}
			if conf := files(t, n.o.ConfDir); fmt.Sprint(conf) != fmt.Sprint(map[string]string{"10-twill.conflist": goodConf + " -rw-r--r--"}) {
				t.Errorf("node's %s after install: %v", n.o.ConfDir, conf)
			}
			if len(acts) != 3 || acts[1].Did != c.did || acts[1].Path != filepath.Join(n.o.BinDir, "loopback") {
				t.Errorf("actions %+v: want the loopback %s", acts, c.did)
			}
		})
	}
}

func TestInstallReplacesOwnPluginAndConflist(t *testing.T) {
	n := newNode(t, goodConf)
	must(t, os.WriteFile(filepath.Join(n.o.BinDir, "twill"), []byte("OLD-TWILL"), 0o700))
	must(t, os.WriteFile(filepath.Join(n.o.ConfDir, "10-twill.conflist"), []byte("{}"), 0o600))
	if _, err := Install(context.Background(), n.o, n.version); err != nil {
		t.Fatal(err)
	}
	if got := files(t, n.o.BinDir)["twill"]; got != "TWILL-CNI -rwxr-xr-x" {
		t.Errorf("twill plugin after install: %s", got)
	}
	if got := files(t, n.o.ConfDir)["10-twill.conflist"]; got != goodConf+" -rw-r--r--" {
		t.Errorf("conflist after install: %s", got)
	}
}

func TestInstallBadInputChangesNothing(t *testing.T) {
	for name, conf := range map[string]string{
		"not JSON":       `{"cniVersion":`,
		"no twill":       `{"cniVersion":"1.0.0","name":"twill","plugins":[{"type":"bridge"}]}`,
		"no cniVersion":  `{"name":"twill","plugins":[{"type":"twill"}]}`,
		"single plugin":  `{"cniVersion":"1.0.0","name":"twill","type":"twill"}`,
		"empty document": ``,
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t, conf)
			must(t, os.WriteFile(filepath.Join(n.o.BinDir, "twill"), []byte("OLD-TWILL"), 0o755))
			before := fmt.Sprint(files(t, n.o.BinDir), files(t, n.o.ConfDir))
			_, err := Install(context.Background(), n.o, n.version)
			if err == nil {
				t.Fatal("Install accepted a bad conflist")
			}
			if after := fmt.Sprint(files(t, n.o.BinDir), files(t, n.o.ConfDir)); after != before {
				t.Errorf("bad conflist (%v) changed the node: before %s, after %s", err, before, after)
			}
		})
	}
	n := newNode(t, goodConf)
	n.o.BinDir = filepath.Join(n.o.BinDir, "missing")
	if _, err := Install(context.Background(), n.o, n.version); err == nil {
		t.Error("Install into a missing CNI bin dir succeeded")
	}
}

func TestWriteAtomicFailureKeepsOld(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "f")
	must(t, os.WriteFile(p, []byte("old"), 0o644))
	// A directory where the temporary file would be renamed: rename fails.
	q := filepath.Join(d, "dir")
	must(t, os.MkdirAll(filepath.Join(q, "x"), 0o755))
	if err := WriteAtomic(q, []byte("new"), 0o644); err == nil {
		t.Fatal("WriteAtomic over a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 2 {
		t.Errorf("a failed WriteAtomic left files behind: %v", ents)
	}
	must(t, WriteAtomic(p, []byte("new"), 0o600))
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("WriteAtomic wrote %q", b)
	}
}
