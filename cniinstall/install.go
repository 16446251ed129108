// Package cniinstall puts twill's CNI plugin, the loopback plugin and the
// CNI configuration on a node: what the DaemonSet's init container runs as
// `twill install-cni`. Every file is written atomically (a temporary file
// in the target directory, synced, then renamed), so a runtime never execs
// half a plugin or reads half a conflist. The loopback plugin (containerd
// 1.6 and 1.7 run it for every pod sandbox) is installed only when the node
// lacks it or has an older one: a newer loopback (from the node's
// kubernetes-cni package, say) is never replaced.
package cniinstall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// Where twill's image keeps the plugins it installs.
const (
	// DefaultPlugin is twill's CNI plugin in the image.
	DefaultPlugin = "/usr/local/bin/twill-cni"
	// DefaultLoopback is the loopback CNI plugin in the image.
	DefaultLoopback = "/usr/lib/twill/cni/loopback"
)

// Options says what to install where.
type Options struct {
	// BinDir and ConfDir are the node's CNI directories as mounted
	// (/opt/cni/bin, /etc/cni/net.d).
	BinDir, ConfDir string
	// Plugin and Loopback are the plugin binaries to install.
	Plugin, Loopback string
	// PluginName is the plugin's file name in BinDir: the "type" the
	// conflist names ("twill").
	PluginName string
	// Conflist is the CNI configuration file to install as ConfName.
	Conflist, ConfName string
}

// Action is one thing Install did or decided not to do.
type Action struct {
	// Path is the file on the node.
	Path string
	// Did is "installed", "replaced" or "kept".
	Did string
	// Why explains the decision (versions compared).
	Why string
}

// VersionFunc reports the version of the CNI plugin at path ("v1.10.0"),
// or an error when it cannot tell.
type VersionFunc func(ctx context.Context, path string) (string, error)

// Decide says whether to install our loopback over the node's: present
// tells whether the node has one, theirs is its version (or theirsErr why
// it is not known). The node's plugin is kept when it is as new as ours or
// newer, and when its version cannot be told (it may be newer).
func Decide(ours string, present bool, theirs string, theirsErr error) (install bool, why string) {
	switch {
	case !present:
		return true, "the node has no loopback plugin"
	case theirsErr != nil:
		return false, fmt.Sprintf("cannot tell the node's loopback version (%v); kept, ours is %s", theirsErr, ours)
	case semver.Compare(theirs, ours) < 0:
		return true, fmt.Sprintf("the node's loopback %s is older than ours %s", theirs, ours)
	default:
		return false, fmt.Sprintf("the node's loopback %s is not older than ours %s", theirs, ours)
	}
}

// Install validates the conflist, then installs the plugin (always: it is
// twill's own, and a new DaemonSet must replace it), the loopback plugin
// (per Decide) and the conflist, in that order so the runtime sees the
// configuration only when its plugins are there. On bad input nothing is
// changed.
func Install(ctx context.Context, o Options, version VersionFunc) ([]Action, error) {
	conf, err := os.ReadFile(o.Conflist)
	if err != nil {
		return nil, fmt.Errorf("install-cni: reading the CNI configuration: %w", err)
	}
	if err := CheckConflist(conf, o.PluginName); err != nil {
		return nil, fmt.Errorf("install-cni: %s: %w", o.Conflist, err)
	}
	for _, d := range []string{o.BinDir, o.ConfDir} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("install-cni: %s is not a directory (mount the node's CNI directories there)", d)
		}
	}
	ours, err := version(ctx, o.Loopback)
	if err != nil {
		return nil, fmt.Errorf("install-cni: the image's loopback plugin %s: %w", o.Loopback, err)
	}
	var acts []Action
	plugin := filepath.Join(o.BinDir, o.PluginName)
	did := "installed"
	if _, err := os.Lstat(plugin); err == nil {
		did = "replaced"
	}
	if err := CopyAtomic(o.Plugin, plugin, 0o755); err != nil {
		return acts, err
	}
	acts = append(acts, Action{Path: plugin, Did: did, Why: "twill's own plugin"})

	lo := filepath.Join(o.BinDir, "loopback")
	_, statErr := os.Stat(lo)
	present := statErr == nil
	var theirs string
	var theirsErr error
	if present {
		theirs, theirsErr = version(ctx, lo)
	}
	install, why := Decide(ours, present, theirs, theirsErr)
	if install {
		if err := CopyAtomic(o.Loopback, lo, 0o755); err != nil {
			return acts, err
		}
		did = "installed"
		if present {
			did = "replaced"
		}
		acts = append(acts, Action{Path: lo, Did: did, Why: why})
	} else {
		acts = append(acts, Action{Path: lo, Did: "kept", Why: why})
	}

	cl := filepath.Join(o.ConfDir, o.ConfName)
	if err := WriteAtomic(cl, conf, 0o644); err != nil {
		return acts, err
	}
	return append(acts, Action{Path: cl, Did: "installed", Why: "twill's CNI configuration"}), nil
}

// CheckConflist checks a CNI configuration list: JSON with a cniVersion, a
// name and a plugin of type pluginName.
func CheckConflist(b []byte, pluginName string) error {
	var c struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("not a CNI conflist: %w", err)
	}
	if c.CNIVersion == "" || c.Name == "" {
		return fmt.Errorf("the conflist needs \"cniVersion\" and \"name\"")
	}
	for _, p := range c.Plugins {
		if p.Type == pluginName {
			return nil
		}
	}
	return fmt.Errorf("the conflist has no plugin of \"type\": %q in \"plugins\"", pluginName)
}

// CopyAtomic copies src to dst with mode through a temporary file in dst's
// directory.
func CopyAtomic(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("install-cni: reading %s: %w", src, err)
	}
	return WriteAtomic(dst, b, mode)
}

// WriteAtomic writes b to path with mode: a temporary file in the same
// directory, synced, then renamed over path, so readers see the old file
// or the new one, never a part. A failure leaves path as it was.
func WriteAtomic(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".twill-tmp-")
	if err != nil {
		return fmt.Errorf("install-cni: writing %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("install-cni: writing %s: %w", path, err)
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install-cni: writing %s: %w", path, err)
	}
	return nil
}

// aboutVersion finds the version in a CNI plugin's about line
// ("CNI loopback plugin v1.10.0").
var aboutVersion = regexp.MustCompile(`\bv?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\b`)

// ParseAbout returns the semantic version ("v1.10.0") in the about text a
// CNI plugin prints when run without CNI_COMMAND.
func ParseAbout(about string) (string, error) {
	line := strings.TrimSpace(strings.SplitN(about, "\n", 2)[0])
	m := aboutVersion.FindStringSubmatch(line)
	if m == nil || !semver.IsValid("v"+m[1]) {
		return "", fmt.Errorf("no version in %q", line)
	}
	return "v" + m[1], nil
}

// PluginVersion runs the CNI plugin at path without CNI_COMMAND (it prints
// its about line, with the version it was built as) and parses it.
func PluginVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = bytes.NewReader(nil)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("running %s: %w (%s)", path, err, strings.TrimSpace(out.String()))
	}
	return ParseAbout(out.String())
}
