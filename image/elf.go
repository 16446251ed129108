package image

import (
	"debug/elf"
	"fmt"
	"path"
	"sort"
	"strings"
)

// LibDirs returns the directories the dynamic loader searches on a Debian
// system of the given Go architecture, in its order: the multiarch
// directories first, then the generic ones.
func LibDirs(goarch string) ([]string, error) {
	triples := map[string]string{
		"amd64":   "x86_64-linux-gnu",
		"arm64":   "aarch64-linux-gnu",
		"arm":     "arm-linux-gnueabihf",
		"ppc64le": "powerpc64le-linux-gnu",
		"s390x":   "s390x-linux-gnu",
		"riscv64": "riscv64-linux-gnu",
	}
	t, ok := triples[goarch]
	if !ok {
		return nil, fmt.Errorf("image: no Debian multiarch triple known for GOARCH %q", goarch)
	}
	return []string{"/lib/" + t, "/usr/lib/" + t, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}, nil
}

// NeededClosure returns the files the dynamic loader opens to start the ELF
// programs and libraries in start: their program interpreter (PT_INTERP),
// and every DT_NEEDED library, transitively, found in the object's
// DT_RUNPATH or else in dirs (as LibDirs returns). Paths are as the loader
// names them (they may go through symbolic links), read below root, sorted
// and without duplicates; start itself is not in the result. A library
// that cannot be found is an error naming the object that needs it.
func NeededClosure(fsys FS, start []string, dirs []string) ([]string, error) {
	seen := map[string]bool{}
	out := map[string]bool{}
	queue := append([]string(nil), start...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		f, err := fsys.OpenELF(p)
		if err != nil {
			return nil, fmt.Errorf("image: reading ELF %s: %w", p, err)
		}
		interp, needed, runpath, err := dynInfo(f)
		class, machine := f.Class, f.Machine
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("image: ELF %s: %w", p, err)
		}
		if interp != "" && !out[interp] {
			out[interp] = true
			queue = append(queue, interp)
		}
		for _, lib := range needed {
			found := ""
			for _, d := range append(runpath, dirs...) {
				cand := path.Join(d, lib)
				if fsys.IsELF(cand, class, machine) {
					found = cand
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("image: %s needs %s, not found in %s (install the Debian package that ships it)",
					p, lib, strings.Join(append(runpath, dirs...), ":"))
			}
			if !out[found] {
				out[found] = true
				queue = append(queue, found)
			}
		}
	}
	for _, s := range start {
		delete(out, s)
	}
	list := make([]string, 0, len(out))
	for p := range out {
		list = append(list, p)
	}
	sort.Strings(list)
	return list, nil
}

// dynInfo reads an ELF object's interpreter, DT_NEEDED and DT_RUNPATH.
// $ORIGIN in a runpath is not supported (Debian's packages do not use it).
func dynInfo(f *elf.File) (interp string, needed, runpath []string, err error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, nil, fmt.Errorf("reading PT_INTERP: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, nil, fmt.Errorf("reading DT_NEEDED: %w", err)
	}
	rp, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return "", nil, nil, fmt.Errorf("reading DT_RUNPATH: %w", err)
	}
	for _, s := range rp {
		for _, d := range strings.Split(s, ":") {
			if d != "" && !strings.Contains(d, "$") {
				runpath = append(runpath, d)
			}
		}
	}
	return interp, needed, runpath, nil
}
