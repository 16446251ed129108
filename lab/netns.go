package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where named network namespaces are bind-mounted (as `ip netns add` does).
const netnsDir = "/run/netns"

// createNS creates the named network namespace and brings its loopback up.
// The work runs on a dedicated, locked OS thread that is thrown away if it
// cannot be switched back, so no other goroutine ever runs in the new
// namespace by accident.
func createNS(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: current namespace: %w", name, err)
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if h.IsOpen() {
			h.Close()
		}
		if serr := netns.Set(orig); serr != nil {
			// Keep the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("netns %s: switch back: %w", name, serr)
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			errc <- fmt.Errorf("netns %s: create: %w", name, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return err
	}
	return withHandle(name, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("netns %s: lo: %w", name, err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("netns %s: lo up: %w", name, err)
		}
		return nil
	})
}

// deleteNS removes the named namespace; a missing one is not an error.
func deleteNS(name string) error {
	p := filepath.Join(netnsDir, name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A file that is not a mount point (half-made namespace) is just removed.
		if rmErr := os.Remove(p); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("netns %s: delete: %w", name, err)
		}
	}
	return nil
}

// nsExists tells whether the named namespace exists.
func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// withHandle runs fn with a netlink handle bound to the named namespace.
func withHandle(ns string, fn func(h *netlink.Handle) error) error {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	defer h.Close()
	return fn(h)
}

// labNSPattern matches exactly the namespace names a lab creates.
func labNSPattern(name string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-(underlay|node[0-9]+(-[a-z])?)$`)
}

// labNamespaces lists the existing namespaces of lab name, sorted.
func labNamespaces(name string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	re := labNSPattern(name)
	var out []string
	for _, e := range ents {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// nsID identifies a network namespace (device and inode of its nsfs file).
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{uint64(st.Dev), st.Ino}, true
}

// pidsIn returns the processes (other than this one) whose network namespace
// is one of the named namespaces, found by scanning /proc like `ip netns pids`.
func pidsIn(namespaces []string) []int {
	want := map[nsID]bool{}
	for _, ns := range namespaces {
		if id, ok := statNS(filepath.Join(netnsDir, ns)); ok {
			want[id] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self || fmt.Sprint(pid) != e.Name() {
			continue
		}
		if id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid)); ok && want[id] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inNS tells whether process pid is alive (not a zombie) and lives in the
// named namespace. It is how the lab makes sure a recorded pid is still its
// own before signalling it.
func inNS(pid int, ns string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the last ')' of the command name.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			if i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X') {
				return false
			}
			break
		}
	}
	want, ok := statNS(filepath.Join(netnsDir, ns))
	if !ok {
		return false
	}
	got, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid))
	return ok && got == want
}
