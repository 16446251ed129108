// Command twill-e2e-images builds the test images Kubernetes' own e2e suite
// (e2e.test) runs, for a lab of real nodes that pulls nothing: make
// conformance runs it with the agnhost it built from k8s.io/kubernetes and
// the lab's pause program (see image.E2EImages and docs/conformance.md).
//
//	twill-e2e-images --agnhost bin/conformance/agnhost \
//	  --agnhost-src ~/go/pkg/mod/k8s.io/kubernetes@v1.34.3/test/images/agnhost \
//	  --pause bin/image/twill-pause --out bin/conformance
//
// It writes one docker-archive per image into --out (agnhost.docker.tar,
// busybox.docker.tar, jessie-dnsutils.docker.tar, pause.docker.tar) and
// prints "<reference> <digest>" for each.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/twillnet/twill/image"
)

// tools are the Debian programs the shared layer ships, as upstream's
// agnhost Dockerfile installs them from Alpine (curl, netcat-openbsd,
// iproute2, bind-tools, bash), and the packages that hold them.
var tools = map[string]string{
	"/usr/bin/curl": "curl",
	"/usr/bin/nc":   "netcat-openbsd",
	"/usr/bin/ip":   "iproute2",
	"/usr/bin/ss":   "iproute2",
	"/usr/bin/dig":  "bind9-dnsutils",
	"/usr/bin/bash": "bash",
	// /bin/sh is Debian's dash, not busybox: Debian's busybox-static sh runs
	// its own applets before PATH (FEATURE_PREFER_APPLETS), so the suite's
	// `sh -c '... | nc -v ...'` got busybox's nc, which has no -v.
	"/usr/bin/sh": "dash",
	// getent: the DNS tests' /etc/hosts probe (Alpine's musl has one).
	"/usr/bin/getent": "libc-bin",
}

// busybox is the static busybox of Debian's busybox-static.
const busybox = "/usr/bin/busybox"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "twill-e2e-images:", err)
		os.Exit(1)
	}
}

func run() error {
	var agnhost, src, pause, out, epoch string
	flag.StringVar(&agnhost, "agnhost", "", "static agnhost binary (k8s.io/kubernetes/test/images/agnhost)")
	flag.StringVar(&src, "agnhost-src", "", "agnhost's source directory in the module cache (for porter's localhost.crt and localhost.key)")
	flag.StringVar(&pause, "pause", "", "static twill-pause binary: also write pause.docker.tar ("+image.E2EPauseRef+")")
	flag.StringVar(&out, "out", "bin/conformance", "output directory")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "time of every file, in seconds since 1970 (default $SOURCE_DATE_EPOCH)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if agnhost == "" || src == "" || pause == "" {
		return fmt.Errorf("--agnhost, --agnhost-src and --pause are required (make conformance passes them)")
	}
	when, err := image.ParseEpoch(epoch, "make conformance")
	if err != nil {
		return err
	}
	s := image.E2ESpec{
		Agnhost: agnhost,
		AgnhostFiles: map[string]string{
			"localhost.crt": filepath.Join(src, "porter", "localhost.crt"),
			"localhost.key": filepath.Join(src, "porter", "localhost.key"),
		},
		Busybox: busybox,
		Host:    image.FS{Root: "/"},
		Epoch:   when,
	}
	for p, pkg := range tools {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s (Debian package %s) is missing: apt-get install %s", p, pkg, pkg)
		}
		s.Tools = append(s.Tools, p)
	}
	sort.Strings(s.Tools)
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("listing the applets of %s: %w (apt-get install busybox-static)", busybox, err)
	}
	s.Applets = strings.Fields(string(list))
	imgs, err := image.E2EImages(s)
	if err != nil {
		return err
	}
	if imgs[image.E2EPauseRef], err = image.BuildProgram(image.ProgramSpec{Binary: pause, Path: image.PausePath, Ref: image.E2EPauseRef, Epoch: when}); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	refs := make([]string, 0, len(imgs))
	for ref := range imgs {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		if err := write(out, ref, imgs[ref]); err != nil {
			return err
		}
	}
	return nil
}

// write writes img into out as <repository base name>.docker.tar and prints
// its reference and digest.
func write(out, ref string, img v1.Image) error {
	base := ref[strings.LastIndex(ref, "/")+1:]
	base = base[:strings.Index(base, ":")]
	line, err := image.WriteArchive(filepath.Join(out, base+".docker.tar"), ref, img)
	if err != nil {
		return err
	}
	fmt.Println(line)
	return nil
}
