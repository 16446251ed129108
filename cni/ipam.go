package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lastReservedFile remembers the last address handed out in range set r
// (host-local's name: "last_reserved_ip.0", and ".1" for the second
// family of a dual-stack node, as host-local with two range sets).
func lastReservedFile(r int) string { return fmt.Sprintf("last_reserved_ip.%d", r) }

// lockFile is the file every twill-cni process locks (flock) while it reads
// or changes the IPAM state; host-local uses the same name.
const lockFile = "lock"

// lockTimeout bounds how long a call waits for another one holding the lock.
const lockTimeout = 30 * time.Second

// Store is the persistent IPAM state of one network on one node: a
// directory with one file per allocated address (named by the address,
// holding "<container id>\r\n<ifname>"), in host-local's format.
//
// Every method takes an exclusive file lock for its whole run, so concurrent
// plugin processes never hand out one address twice.
type Store struct {
	dir string
}

// NewStore returns the store kept in dir (created when missing).
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("IPAM state %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// locked runs fn while holding the store's lock.
func (s *Store) locked(fn func() error) error {
	path := filepath.Join(s.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("IPAM lock %s: %w", path, err)
	}
	defer f.Close() // closing releases the flock
	deadline := time.Now().Add(lockTimeout)
	wait := 100 * time.Microsecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("IPAM lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("IPAM lock %s: still held by another process after %s (a hung twill-cni? see `fuser %s`)", path, lockTimeout, path)
		}
		time.Sleep(wait)
		if wait < 5*time.Millisecond {
			wait *= 2
		}
	}
	return fn()
}

// list reads every allocation in the directory (lock held).
func (s *Store) list() ([]Allocation, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("IPAM state %s: %w", s.dir, err)
	}
	var out []Allocation
	for _, e := range entries {
		addr, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue // lock, last_reserved_ip.0, strangers
		}
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("IPAM state %s: %w", s.dir, err)
		}
		id, ifname := decodeOwner(string(data))
		out = append(out, Allocation{Addr: addr, ContainerID: id, IfName: ifname})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// List returns every allocation, sorted by address.
func (s *Store) List() ([]Allocation, error) {
	var out []Allocation
	err := s.locked(func() error {
		var err error
		out, err = s.list()
		return err
	})
	return out, err
}

// Lookup returns the address allocated to (id, ifname) inside subnet, if any.
func (s *Store) Lookup(subnet netip.Prefix, id, ifname string) (netip.Addr, error) {
	var found netip.Addr
	err := s.locked(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		found = ownedIn(all, subnet, id, ifname)
		return nil
	})
	return found, err
}

func ownedIn(all []Allocation, subnet netip.Prefix, id, ifname string) netip.Addr {
	for _, a := range all {
		if a.owns(id, ifname) && subnet.Contains(a.Addr) {
			return a.Addr
		}
	}
	return netip.Addr{}
}

// Allocate gives (id, ifname) an address of subnet other than the gateway
// (range set 0, see AllocateIn).
func (s *Store) Allocate(subnet netip.Prefix, gateway netip.Addr, id, ifname string) (netip.Addr, error) {
	return s.AllocateIn(0, subnet, gateway, id, ifname)
}

// AllocateIn gives (id, ifname) an address of subnet other than the
// gateway, round robin after the last address range set r handed out. If
// it already has one there, that one is returned (ADD is idempotent). A
// full subnet is an error saying how many addresses are in use.
func (s *Store) AllocateIn(r int, subnet netip.Prefix, gateway netip.Addr, id, ifname string) (netip.Addr, error) {
	var got netip.Addr
	err := s.locked(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		if a := ownedIn(all, subnet, id, ifname); a.IsValid() {
			got = a
			return nil
		}
		used := make(map[netip.Addr]bool, len(all))
		for _, a := range all {
			used[a.Addr] = true
		}
		var last netip.Addr
		if data, err := os.ReadFile(filepath.Join(s.dir, lastReservedFile(r))); err == nil {
			last, _ = netip.ParseAddr(strings.TrimSpace(string(data)))
		}
		for a := range candidates(subnet, gateway, last) {
			if used[a] {
				continue
			}
			f, err := os.OpenFile(filepath.Join(s.dir, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				continue // written by a process that did not take the lock (host-local?)
			}
			if err != nil {
				return fmt.Errorf("IPAM state %s: reserve %s: %w", s.dir, a, err)
			}
			_, werr := f.WriteString(encodeOwner(id, ifname))
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(f.Name())
				return fmt.Errorf("IPAM state %s: reserve %s: %w", s.dir, a, werr)
			}
			if err := os.WriteFile(filepath.Join(s.dir, lastReservedFile(r)), []byte(a.String()), 0o600); err != nil {
				return fmt.Errorf("IPAM state %s: %w", s.dir, err)
			}
			got = a
			return nil
		}
		return fmt.Errorf("no free address in %s: all %d pod addresses are allocated (see %s; stale ones are released by CNI GC)",
			subnet, countIn(all, subnet), s.dir)
	})
	return got, err
}

func countIn(all []Allocation, subnet netip.Prefix) int {
	n := 0
	for _, a := range all {
		if subnet.Contains(a.Addr) {
			n++
		}
	}
	return n
}

// Release frees every address of (id, ifname) and returns them. Releasing
// what is not allocated is not an error (DEL is idempotent).
func (s *Store) Release(id, ifname string) ([]netip.Addr, error) {
	var freed []netip.Addr
	err := s.locked(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		for _, a := range all {
			if !a.owns(id, ifname) {
				continue
			}
			if err := s.remove(a.Addr); err != nil {
				return err
			}
			freed = append(freed, a.Addr)
		}
		return nil
	})
	return freed, err
}

// GC frees every allocation whose (container ID, ifname) is not in valid,
// and returns the freed ones.
func (s *Store) GC(valid map[[2]string]bool) ([]Allocation, error) {
	var freed []Allocation
	err := s.locked(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		for _, a := range all {
			if valid[[2]string{a.ContainerID, a.IfName}] {
				continue
			}
			if a.IfName == "" && validID(valid, a.ContainerID) {
				continue // old format: kept while any interface of the container is valid
			}
			if err := s.remove(a.Addr); err != nil {
				return err
			}
			freed = append(freed, a)
		}
		return nil
	})
	return freed, err
}

func validID(valid map[[2]string]bool, id string) bool {
	for k := range valid {
		if k[0] == id {
			return true
		}
	}
	return false
}

func (s *Store) remove(a netip.Addr) error {
	err := os.Remove(filepath.Join(s.dir, a.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("IPAM state %s: release %s: %w", s.dir, a, err)
	}
	return nil
}
