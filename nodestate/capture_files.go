//go:build linux

package nodestate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxFileSize bounds what is kept of one captured file.
const maxFileSize = 1 << 20

// captureFiles records the CNI configuration files, the CNI plugin names and
// the subnet files. A missing directory or file is evidence, not a capture
// error: it shows up as no configs, no plugins, or Exists false.
func captureFiles(s *Snapshot, opt CaptureOptions) {
	f := &s.Files
	f.CNIConfDir = opt.path(opt.CNIConfDir)
	f.CNIBinDir = opt.path(opt.CNIBinDir)

	if entries, err := os.ReadDir(f.CNIConfDir); err == nil {
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".conf" && ext != ".conflist" && ext != ".json") {
				continue
			}
			file, err := readFile(filepath.Join(f.CNIConfDir, e.Name()))
			if err != nil {
				s.addErr("file:"+file.Path, err)
			}
			f.CNIConfigs = append(f.CNIConfigs, file)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.addErr("dir:"+f.CNIConfDir, err)
	}

	if entries, err := os.ReadDir(f.CNIBinDir); err == nil {
		for _, e := range entries {
			// Stat follows symlinks: a dangling link is not a usable plugin.
			st, err := os.Stat(filepath.Join(f.CNIBinDir, e.Name()))
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				continue
			}
			f.CNIPlugins = append(f.CNIPlugins, e.Name())
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.addErr("dir:"+f.CNIBinDir, err)
	}

	for _, p := range opt.SubnetFiles {
		file, err := readFile(opt.path(p))
		if err != nil {
			s.addErr("file:"+file.Path, err)
		}
		f.SubnetFiles = append(f.SubnetFiles, file)
	}
}

// readFile reads a file into a File; a missing file is Exists false without
// an error.
func readFile(path string) (File, error) {
	out := File{Path: path}
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	defer fh.Close()
	out.Exists = true
	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return out, err
	}
	if len(b) > maxFileSize {
		out.Content = string(b[:maxFileSize])
		return out, fmt.Errorf("larger than %d bytes; only the first %d are kept", maxFileSize, maxFileSize)
	}
	out.Content = string(b)
	return out, nil
}
