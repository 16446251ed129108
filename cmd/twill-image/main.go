// Command twill-image builds twill's container image without a Docker
// daemon or a registry (see package image): make image runs it with the
// static binaries it just built.
//
//	twill-image --twill bin/image/twill --twill-cni bin/image/twill-cni \
//	  --loopback bin/image/loopback --ref ghcr.io/twillnet/twill:v0.3.0 --out bin/image
//
// It writes <out>/twill.oci.tar (OCI image layout), <out>/twill.docker.tar
// (docker-archive), <out>/twill.ref and, with --manifest, <out>/twill.yaml, and prints the reference and the
// manifest digest. With --pause and --testserver it also writes the lab's
// one-program images as docker-archives: <out>/pause.docker.tar (tagged
// image.PauseRef) and <out>/testserver.docker.tar (image.TestServerRepository
// with --ref's tag), for `twill lab up --kubernetes`; with --coredns also
// <out>/coredns.docker.tar (image.CoreDNSRepository with --ref's tag), the
// lab's cluster DNS.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/twillnet/twill/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "twill-image:", err)
		os.Exit(1)
	}
}

func run() error {
	var s image.Spec
	var out, epoch, manifest, pause, testserver, coredns, corednsVersion string
	flag.StringVar(&s.Twill, "twill", "", "static twill binary")
	flag.StringVar(&s.TwillCNI, "twill-cni", "", "static twill-cni binary")
	flag.StringVar(&s.Loopback, "loopback", "", "static loopback CNI plugin")
	flag.StringVar(&s.Ref, "ref", "", "image reference with the version tag ("+image.Repository+":<git describe>)")
	flag.StringVar(&manifest, "manifest", "", "also write <out>/twill.yaml: this manifest with twill's image set to --ref")
	flag.StringVar(&pause, "pause", "", "static twill-pause binary: also write <out>/pause.docker.tar ("+image.PauseRef+")")
	flag.StringVar(&testserver, "testserver", "", "static twill-testserver binary: also write <out>/testserver.docker.tar ("+image.TestServerRepository+":<tag of --ref>)")
	flag.StringVar(&coredns, "coredns", "", "static coredns binary (scripts/setup.sh --kube builds bin/coredns): also write <out>/coredns.docker.tar ("+image.CoreDNSRepository+":<tag of --ref>)")
	flag.StringVar(&corednsVersion, "coredns-version", "", "CoreDNS's version, the coredns image's org.opencontainers.image.version label")
	flag.StringVar(&out, "out", "bin/image", "output directory")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "time of every file, in seconds since 1970 (default $SOURCE_DATE_EPOCH)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	var err error
	if s.Epoch, err = image.ParseEpoch(epoch, "make image"); err != nil {
		return err
	}
	s.Host = image.FS{Root: "/"}
	tag, err := image.ParseRef(s.Ref)
	if err != nil {
		return err
	}
	if s.Netfilter, err = image.FindNetfilter(); err != nil {
		return err
	}
	img, err := image.Build(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := image.WriteOCI(filepath.Join(out, "twill.oci.tar"), tag, img, s.Epoch); err != nil {
		return err
	}
	if err := image.WriteDockerArchive(filepath.Join(out, "twill.docker.tar"), tag, img); err != nil {
		return err
	}
	dig, err := img.Digest()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "twill.ref"), []byte(tag.Name()+"\n"), 0o644); err != nil {
		return err
	}
	if manifest != "" {
		b, err := os.ReadFile(manifest)
		if err != nil {
			return err
		}
		if b, err = image.RenderManifest(b, tag.Name()); err != nil {
			return fmt.Errorf("%s: %w", manifest, err)
		}
		if err := os.WriteFile(filepath.Join(out, "twill.yaml"), b, 0o644); err != nil {
			return err
		}
	}
	var corednsLabels map[string]string
	if corednsVersion != "" {
		corednsLabels = map[string]string{"org.opencontainers.image.version": corednsVersion,
			"org.opencontainers.image.source": "https://github.com/coredns/coredns"}
	}
	for _, p := range []struct {
		bin, path, ref, file string
		labels               map[string]string
	}{
		{pause, image.PausePath, image.PauseRef, "pause.docker.tar", nil},
		{testserver, image.TestServerPath, image.TestServerRepository + ":" + tag.TagStr(), "testserver.docker.tar", nil},
		{coredns, image.CoreDNSPath, image.CoreDNSRepository + ":" + tag.TagStr(), "coredns.docker.tar", corednsLabels},
	} {
		if p.bin == "" {
			continue
		}
		if err := writeProgram(filepath.Join(out, p.file), image.ProgramSpec{Binary: p.bin, Path: p.path, Ref: p.ref, Epoch: s.Epoch, Labels: p.labels}); err != nil {
			return err
		}
	}
	// twill's own line last: scripts read the reference and digest there.
	fmt.Printf("%s %s\n", tag.Name(), dig)
	return nil
}

// writeProgram builds a one-program image and writes it as a docker-archive
// at path, printing its reference and digest.
func writeProgram(path string, s image.ProgramSpec) error {
	img, err := image.BuildProgram(s)
	if err != nil {
		return err
	}
	line, err := image.WriteArchive(path, s.Ref, img)
	if err != nil {
		return err
	}
	fmt.Println(line)
	return nil
}
