package image

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteDockerArchive writes img as a docker-archive tarball (manifest.json
// naming tag) at path: what `ctr images import`, `docker load` and
// `crane push` read.
func WriteDockerArchive(path string, tag name.Tag, img v1.Image) error {
	if err := writeAtomic(path, func(f *os.File) error { return tarball.Write(tag, img, f) }); err != nil {
		return fmt.Errorf("image: docker archive %s: %w", path, err)
	}
	return nil
}

// WriteArchive writes img as a docker-archive at path, tagged ref
// (ParseRef), and returns the line scripts read: "<reference> <digest>".
func WriteArchive(path, ref string, img v1.Image) (string, error) {
	tag, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	if err := WriteDockerArchive(path, tag, img); err != nil {
		return "", err
	}
	dig, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("image %s: digest: %w", ref, err)
	}
	return tag.Name() + " " + dig.String(), nil
}

// WriteOCI writes img as an OCI image layout packed in a tarball at path,
// its index annotated with the tag (org.opencontainers.image.ref.name) and
// the full reference (io.containerd.image.name). The tarball's entries are
// sorted and stamped with mtime, so it is as reproducible as the image.
func WriteOCI(path string, tag name.Tag, img v1.Image, mtime time.Time) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".oci-")
	if err != nil {
		return fmt.Errorf("image: OCI layout: %w", err)
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: OCI layout in %s: %w", dir, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image: OCI layout: %w", err)
	}
	err = lp.AppendImage(img,
		layout.WithPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture}),
		layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": tag.TagStr(),
			"io.containerd.image.name":          tag.Name(),
		}))
	if err != nil {
		return fmt.Errorf("image: OCI layout: %w", err)
	}
	if err := writeAtomic(path, func(f *os.File) error { return tarDir(f, dir, mtime) }); err != nil {
		return fmt.Errorf("image: OCI tarball %s: %w", path, err)
	}
	return nil
}

// tarDir packs the files below dir (regular files and directories only),
// sorted, with fixed owner, modes and times.
func tarDir(w io.Writer, dir string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, p := range names {
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime.UTC(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Mode, hdr.Name = tar.TypeDir, 0o755, hdr.Name+"/"
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
		default:
			return fmt.Errorf("%s: not a file or directory", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// writeAtomic writes path through a temporary file in its directory that
// is renamed over it once complete.
func writeAtomic(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
