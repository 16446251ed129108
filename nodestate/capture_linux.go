package nodestate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/twillnet/twill/subnetfile"
)

// Default locations of the files Capture reads.
const (
	DefaultCNIConfDir = "/etc/cni/net.d"
	DefaultCNIBinDir  = "/opt/cni/bin"
)

// CaptureOptions say what Capture looks at. The zero value captures the
// caller's own network namespace and the default file locations.
type CaptureOptions struct {
	// Netns is the named network namespace (under /run/netns) to capture;
	// empty captures the caller's own.
	Netns string
	// Root is prefixed to every file path read (CNI and subnet files). The lab
	// keeps each node's files under its own root directory, because lab nodes
	// share one filesystem. Empty means "/".
	Root string
	// CNIConfDir is the CNI configuration directory (default /etc/cni/net.d).
	CNIConfDir string
	// CNIBinDir is the CNI plugin directory (default /opt/cni/bin).
	CNIBinDir string
	// SubnetFiles are the subnet files to record (default twill's and
	// Flannel's, see package subnetfile).
	SubnetFiles []string
	// Node is recorded as Snapshot.Node.
	Node string
}

func (o CaptureOptions) withDefaults() CaptureOptions {
	if o.CNIConfDir == "" {
		o.CNIConfDir = DefaultCNIConfDir
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = DefaultCNIBinDir
	}
	if o.SubnetFiles == nil {
		o.SubnetFiles = []string{subnetfile.TwillPath, subnetfile.FlannelPath}
	}
	return o
}

// path applies Root to a node path.
func (o CaptureOptions) path(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

// ErrNoNetns is returned (wrapped) by Capture when the named namespace does
// not exist.
var ErrNoNetns = errors.New("network namespace does not exist")

// Capture records the state of one network namespace: kernel objects through
// netlink, sysctls and IPVS from /proc inside the namespace, both iptables
// backends and nftables through their tools run inside the namespace, and the
// CNI and subnet files.
//
// Every part that cannot be captured is recorded in Snapshot.Errors and the
// capture goes on, so a broken node still yields a snapshot. Only a missing
// namespace fails the whole capture (the error wraps ErrNoNetns).
func Capture(ctx context.Context, opt CaptureOptions) (*Snapshot, error) {
	opt = opt.withDefaults()
	s := &Snapshot{
		Version:    SchemaVersion,
		CapturedAt: time.Now().UTC().Round(0),
		Netns:      opt.Netns,
		Node:       opt.Node,
	}
	if h, err := os.Hostname(); err == nil {
		s.Hostname = h
	} else {
		s.addErr("hostname", err)
	}

	h, err := openHandle(opt.Netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()

	names := captureLinks(s, h)
	captureAddrs(s, h, names)
	captureRoutes(s, h, names)
	captureRules(s, opt.Netns)
	captureNeighbors(s, h, names)
	captureFDB(s, h, names)
	captureProc(s, opt.Netns)
	captureNetfilter(ctx, s, opt.Netns)
	captureFiles(s, opt)
	return s, nil
}

// openHandle returns a netlink handle whose sockets live in the namespace.
func openHandle(name string) (*netlink.Handle, error) {
	if name == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("netns %q: %w: %v (list namespaces with 'ip netns list'; omit --netns to capture the current one)", name, ErrNoNetns, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink: %w", name, err)
	}
	return h, nil
}

// addErr records a part that could not be captured.
func (s *Snapshot) addErr(source string, err error) {
	s.Errors = append(s.Errors, CaptureError{Source: source, Err: err.Error()})
}
