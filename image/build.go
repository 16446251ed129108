package image

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/twillnet/twill/cniinstall"
)

// Paths of twill's own programs inside the image.
const (
	// TwillPath is the twill command (the agent; the image's entrypoint).
	TwillPath = "/usr/local/bin/twill"
	// Repository is where releases push the image; make image tags it so.
	Repository = "ghcr.io/twillnet/twill"
)

// Spec is what goes into the image.
type Spec struct {
	// Twill, TwillCNI and Loopback are the host paths of the static twill,
	// twill-cni and loopback binaries (built with CGO_ENABLED=0).
	Twill, TwillCNI, Loopback string
	// Ref is the image reference with its version tag
	// (ghcr.io/twillnet/twill:v0.3.0); "latest" is refused.
	Ref string
	// Epoch is the time of every file and of the image (SOURCE_DATE_EPOCH).
	Epoch time.Time
	// Host is where the Debian programs and libraries are read.
	Host FS
	// Netfilter are the Debian programs to ship (FindNetfilter).
	Netfilter Netfilter
	// Arch is the Go architecture of the image (runtime.GOARCH if empty).
	Arch string
}

// ParseRef checks an image reference for the image: it must carry an
// explicit tag, and not "latest" (a node would never know which twill it
// runs, and IfNotPresent would keep a stale one).
func ParseRef(ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image: reference %q: %w (want repository:tag, e.g. %s:v0.3.0)", ref, err, Repository)
	}
	if tag.TagStr() == "latest" {
		return name.Tag{}, fmt.Errorf("image: reference %q: the tag must be twill's version (git describe), never latest", ref)
	}
	return tag, nil
}

// Layers returns the image's layers as trees: first the Debian netfilter
// programs with their libraries and modules (changes only with the host's
// packages), then twill's own binaries and loopback (changes every build).
func Layers(s Spec) ([]Tree, error) {
	dirs, err := LibDirs(defaultArch(s.Arch))
	if err != nil {
		return nil, err
	}
	nf := s.Netfilter
	libs, err := NeededClosure(s.Host, append(append([]string(nil), nf.Programs...), nf.Modules...), dirs)
	if err != nil {
		return nil, err
	}
	debian := Tree{}
	for _, p := range append(append(append([]string(nil), nf.Programs...), nf.Modules...), libs...) {
		if err := debian.AddHost(s.Host, p); err != nil {
			return nil, err
		}
	}
	for link, target := range nf.Links {
		if err := debian.AddSymlink(link, target); err != nil {
			return nil, err
		}
	}
	own := Tree{}
	for dst, src := range map[string]string{TwillPath: s.Twill, cniinstall.DefaultPlugin: s.TwillCNI, cniinstall.DefaultLoopback: s.Loopback} {
		if src == "" {
			return nil, fmt.Errorf("image: no binary given for %s", dst)
		}
		if err := own.AddFile(dst, src, true); err != nil {
			return nil, err
		}
	}
	return []Tree{debian, own}, nil
}

// Build assembles the image: OCI media types, the layers of Layers, and a
// config that runs twill with a PATH holding the netfilter programs.
func Build(s Spec) (v1.Image, error) {
	tag, arch, err := refArch(s.Ref, s.Arch)
	if err != nil {
		return nil, err
	}
	trees, err := Layers(s)
	if err != nil {
		return nil, err
	}
	return assemble(tag, arch, s.Epoch, v1.Config{
		Entrypoint: []string{TwillPath},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "twill",
			"org.opencontainers.image.version": tag.TagStr(),
			"org.opencontainers.image.source":  "https://github.com/twillnet/twill",
		},
	}, trees, []string{"nft, iptables-nft, iptables-legacy and their libraries from Debian packages",
		"twill, twill-cni and the loopback CNI plugin"})
}

// ProgramSpec is an image holding one static program and nothing else (the
// lab's pause and test-server images).
type ProgramSpec struct {
	// Binary is the host path of the static program (CGO_ENABLED=0).
	Binary string
	// Path is where it goes in the image (also the entrypoint).
	Path string
	// Ref is the image reference; any explicit tag but latest (ParseRef).
	Ref string
	// Epoch is the time of the file and of the image.
	Epoch time.Time
	// Arch is the Go architecture of the image (runtime.GOARCH if empty).
	Arch string
	// Labels are the image config's labels (none if empty), e.g.
	// org.opencontainers.image.version for a program with its own version.
	Labels map[string]string
}

// BuildProgram assembles a one-program image, as reproducibly as Build.
func BuildProgram(s ProgramSpec) (v1.Image, error) {
	tag, arch, err := refArch(s.Ref, s.Arch)
	if err != nil {
		return nil, err
	}
	t := Tree{}
	if err := t.AddFile(s.Path, s.Binary, true); err != nil {
		return nil, err
	}
	return assemble(tag, arch, s.Epoch, v1.Config{Entrypoint: []string{s.Path}, Labels: s.Labels}, []Tree{t}, []string{s.Path})
}

// refArch checks an image reference (ParseRef) and defaults the
// architecture to runtime.GOARCH.
func refArch(ref, arch string) (name.Tag, string, error) {
	tag, err := ParseRef(ref)
	return tag, defaultArch(arch), err
}

// defaultArch is arch, or runtime.GOARCH if it is empty.
func defaultArch(arch string) string {
	if arch == "" {
		return runtime.GOARCH
	}
	return arch
}

// ParseEpoch reads SOURCE_DATE_EPOCH (seconds since 1970), the time of
// every file of the images; what names where the value came from.
func ParseEpoch(epoch, what string) (time.Time, error) {
	sec, err := strconv.ParseInt(strings.TrimSpace(epoch), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("--source-date-epoch %q: want seconds since 1970 (%s passes the last commit's time)", epoch, what)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// assemble makes an OCI image of trees (one layer each, described by what)
// with the given runtime config, every time set to epoch.
func assemble(tag name.Tag, arch string, when time.Time, rc v1.Config, trees []Tree, what []string) (v1.Image, error) {
	epoch := v1.Time{Time: when.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg := &v1.ConfigFile{Architecture: arch, OS: "linux", Created: epoch, Config: rc}
	img, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", tag.Name(), err)
	}
	for i, t := range trees {
		b, err := t.Tar(when)
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %d: %w", tag.Name(), i, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer,
			History: v1.History{Created: epoch, CreatedBy: "make image: " + what[i]}})
		if err != nil {
			return nil, fmt.Errorf("image %s: appending layer %d: %w", tag.Name(), i, err)
		}
	}
	return img, nil
}

// The lab's own images (twill lab up --kubernetes), built by make image
// beside twill's: a pause program tagged as the sandbox image its
// containerd is configured with (so no node ever pulls one), and the pod
// test server.
const (
	// PauseRef is the pause image's reference: containerd's sandbox_image.
	PauseRef = "registry.k8s.io/pause:3.10"
	// PausePath is the pause program in its image.
	PausePath = "/pause"
	// TestServerRepository is the test server's repository; make image tags
	// it with twill's version.
	TestServerRepository = "ghcr.io/twillnet/twill-testserver"
	// TestServerPath is the test server in its image.
	TestServerPath = "/testserver"
	// CoreDNSRepository is the repository of the lab's cluster DNS: CoreDNS
	// built from its Go module with only the plugins the lab's Corefile
	// uses (tools/coredns); make image tags it with twill's version, like
	// the test server, and labels it with CoreDNS's own.
	CoreDNSRepository = "ghcr.io/twillnet/twill-coredns"
	// CoreDNSPath is CoreDNS in its image (the entrypoint).
	CoreDNSPath = "/coredns"
)
