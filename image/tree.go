package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FS reads the host files that go into the image, below Root ("/" for the
// running system).
type FS struct {
	// Root is the directory host paths are read below.
	Root string
}

func (h FS) real(p string) string { return filepath.Join(h.Root, filepath.FromSlash(p)) }

// OpenELF opens the ELF object at host path p.
func (h FS) OpenELF(p string) (*elf.File, error) { return elf.Open(h.real(p)) }

// IsELF reports whether p (following symbolic links below Root) is an ELF
// object of the given class and machine.
func (h FS) IsELF(p string, class elf.Class, machine elf.Machine) bool {
	rp, err := h.resolve(p, 0)
	if err != nil {
		return false
	}
	f, err := elf.Open(h.real(rp))
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Class == class && f.Machine == machine
}

// resolve follows symbolic links in every component of p, below Root.
func (h FS) resolve(p string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("too many symbolic links at %s", p)
	}
	comps := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for i, c := range comps {
		next := path.Join(cur, c)
		fi, err := os.Lstat(h.real(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(h.real(next))
			if err != nil {
				return "", err
			}
			if !path.IsAbs(t) {
				t = path.Join(cur, t)
			}
			return h.resolve(path.Join(append([]string{t}, comps[i+1:]...)...), depth+1)
		}
		cur = next
	}
	return cur, nil
}

// entry is one file, directory or symbolic link of a layer.
type entry struct {
	typ  byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode int64  // fixed: 0755 or 0644 (0777 for links)
	link string // symbolic link target
	src  string // host file to copy (regular files)
	data string // the content of a regular file without src
}

// Tree is the content of one image layer: paths (relative, no leading
// slash) to entries. Directories are added for every parent.
type Tree map[string]entry

// AddFile adds the host file src at dst in the image, with mode 0755 when
// exec is true and 0644 otherwise.
func (t Tree) AddFile(dst, src string, exec bool) error {
	mode := int64(0o644)
	if exec {
		mode = 0o755
	}
	return t.put(dst, entry{typ: tar.TypeReg, mode: mode, src: src})
}

// AddData adds a regular file (mode 0644) holding body at dst.
func (t Tree) AddData(dst, body string) error {
	return t.put(dst, entry{typ: tar.TypeReg, mode: 0o644, data: body})
}

// AddDir adds an empty directory (mode 0755) at dst.
func (t Tree) AddDir(dst string) error {
	return t.put(dst, entry{typ: tar.TypeDir, mode: 0o755})
}

// AddSymlink adds a symbolic link at dst pointing to target.
func (t Tree) AddSymlink(dst, target string) error {
	return t.put(dst, entry{typ: tar.TypeSymlink, mode: 0o777, link: target})
}

// AddHost adds host path p (below h.Root) at the same path in the image,
// reproducing every symbolic link met on the way (/lib -> usr/lib, a
// library's soname link) and then the file it reaches, so that the image
// resolves p exactly as the host does. Executable bits decide the mode.
func (t Tree) AddHost(h FS, p string) error { return t.addHost(h, p, 0) }

func (t Tree) addHost(h FS, p string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("image: too many symbolic links at %s", p)
	}
	comps := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for i, c := range comps {
		next := path.Join(cur, c)
		fi, err := os.Lstat(h.real(next))
		if err != nil {
			return fmt.Errorf("image: adding %s: %w", p, err)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(h.real(next))
			if err != nil {
				return fmt.Errorf("image: adding %s: %w", p, err)
			}
			if err := t.AddSymlink(next, target); err != nil {
				return err
			}
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			return t.addHost(h, path.Join(append([]string{target}, comps[i+1:]...)...), depth+1)
		case i == len(comps)-1:
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("image: adding %s: %s is not a regular file", p, next)
			}
			return t.AddFile(next, h.real(next), fi.Mode().Perm()&0o111 != 0)
		case !fi.IsDir():
			return fmt.Errorf("image: adding %s: %s is not a directory", p, next)
		}
		cur = next
	}
	return nil
}

// put adds e at dst and a directory for each parent; two different
// entries for one path are an error.
func (t Tree) put(dst string, e entry) error {
	name := strings.TrimPrefix(path.Clean("/"+dst), "/")
	if name == "" {
		return fmt.Errorf("image: cannot add the root directory")
	}
	if old, ok := t[name]; ok && old != e {
		return fmt.Errorf("image: %s added twice with different contents", name)
	}
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		if old, ok := t[d]; ok && old.typ != tar.TypeDir {
			return fmt.Errorf("image: %s needs directory %s, but the image has a link or file there", name, d)
		}
		t[d] = entry{typ: tar.TypeDir, mode: 0o755}
	}
	t[name] = e
	return nil
}

// Names returns the tree's paths, sorted.
func (t Tree) Names() []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Tar writes the tree as an uncompressed tar: sorted entries, uid and gid
// 0, every time set to mtime.
func (t Tree) Tar(mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range t.Names() {
		e := t[name]
		hdr := &tar.Header{Typeflag: e.typ, Name: name, Mode: e.mode, Linkname: e.link,
			ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		var body []byte
		if e.typ == tar.TypeReg && e.src == "" {
			body = []byte(e.data)
			hdr.Size = int64(len(body))
		} else if e.typ == tar.TypeReg {
			b, err := os.ReadFile(e.src)
			if err != nil {
				return nil, fmt.Errorf("image: reading %s for %s: %w", e.src, name, err)
			}
			body = b
			hdr.Size = int64(len(b))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image: tar header %s: %w", name, err)
		}
		if _, err := io.Copy(tw, bytes.NewReader(body)); err != nil {
			return nil, fmt.Errorf("image: tar %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: closing tar: %w", err)
	}
	return buf.Bytes(), nil
}
