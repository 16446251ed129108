package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twillnet/twill/agent"
	"github.com/twillnet/twill/lease/kube"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/subnetfile"
)

// Options say which node to migrate.
type Options struct {
	// Netns is the node's named network namespace ("" for the current one).
	Netns string
	// Root prefixes the node's files ("" for "/").
	Root string
	// Iface is the underlay interface (host-gw routes); "" finds it.
	Iface string
	// Kube is the Kubernetes store, nil with etcd. Observe reads the node's
	// Node object (Node is its name) through it; Apply removes twill's
	// annotations from it (to-flannel).
	Kube KubeStore
	// Node is the node's Node object name (Kubernetes store).
	Node string
}

// KubeStore is what migrate needs of the Kubernetes store (*kube.Store).
type KubeStore interface {
	NodeInfo(ctx context.Context, node string) (kube.NodeInfo, error)
	RemoveTwillSet(ctx context.Context, node string) (bool, error)
}

// ipamDir is where host-local and twill-cni keep allocations, per network.
const ipamDir = "/var/lib/cni/networks"

// Observe reads the node's state for PlanFor: its network state and files,
// the network daemons running in its namespace, and the CNI allocations.
func Observe(ctx context.Context, o Options) (Observed, error) {
	snap, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: o.Netns, Root: o.Root})
	if err != nil {
		return Observed{}, fmt.Errorf("migrate: read the node: %w", err)
	}
	obs := Observed{Snap: snap, Allocations: map[string][]string{}}
	if o.Kube != nil {
		n, err := o.Kube.NodeInfo(ctx, o.Node)
		if err != nil {
			return Observed{}, fmt.Errorf("migrate: %w", err)
		}
		obs.KubeNode = &n
	}
	if obs.Daemons, err = daemons(o.Netns); err != nil {
		return Observed{}, err
	}
	dir := filepath.Join(rootOr(o.Root), ipamDir)
	nets, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Observed{}, fmt.Errorf("migrate: read %s: %w", dir, err)
	}
	for _, n := range nets {
		if !n.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(dir, n.Name()))
		if err != nil {
			return Observed{}, fmt.Errorf("migrate: read %s: %w", filepath.Join(dir, n.Name()), err)
		}
		for _, e := range entries {
			if _, err := netip.ParseAddr(e.Name()); err == nil {
				obs.Allocations[n.Name()] = append(obs.Allocations[n.Name()], e.Name())
			}
		}
	}
	return obs, nil
}

// daemons lists flanneld and twill agent processes whose network
// namespace is the node's (a process in another pid namespace is not
// seen: run migrate with the host's pid namespace, or make sure the
// daemon's pod is gone).
func daemons(ns string) ([]Daemon, error) {
	want, err := netnsID(ns)
	if err != nil {
		return nil, err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("migrate: list processes: %w", err)
	}
	var out []Daemon
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmd) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		name := ""
		switch base := filepath.Base(argv[0]); {
		case base == "flanneld":
			name = DaemonFlanneld
		case base == "twill" && slices.Contains(argv[1:], "agent"):
			name = DaemonTwill
		default:
			continue
		}
		id, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || id != want {
			continue
		}
		out = append(out, Daemon{Name: name, PID: pid})
	}
	return out, nil
}

// netnsID names the network namespace ns ("" the caller's) as
// /proc/<pid>/ns/net links read: "net:[<inode>]".
func netnsID(ns string) (string, error) {
	var id string
	err := nsrun.Do(ns, func() error {
		var err error
		id, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("migrate: network namespace %q: %w", ns, err)
	}
	return id, nil
}

func rootOr(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// Apply carries out p's steps on the node in order, stopping at the first
// failure, and returns one line per step done.
func Apply(ctx context.Context, o Options, p Plan) ([]string, error) {
	var done []string
	for i, s := range p.Steps {
		if err := apply(ctx, o, s); err != nil {
			return done, fmt.Errorf("step %d of %d (%s %s): %w", i+1, len(p.Steps), s.Action, s.Target, err)
		}
		done = append(done, fmt.Sprintf("%s %s", s.Action, s.Target))
	}
	return done, nil
}

func apply(ctx context.Context, o Options, s Step) error {
	switch s.Action {
	case ActionWriteFile:
		return subnetfile.WriteContent(s.Target, s.Content)
	case ActionRemoveFile:
		if err := os.Remove(s.Target); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	case ActionIptables:
		return nsrun.Do(o.Netns, func() error {
			cmd := exec.CommandContext(ctx, s.Backend+"-restore", "--noflush")
			cmd.Stdin = strings.NewReader(s.Content)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s-restore --noflush: %w: %s", s.Backend, err, strings.TrimSpace(stderr.String()))
			}
			return nil
		})
	case ActionNftDeleteTable:
		fam, name, _ := strings.Cut(s.Target, " ")
		return nsrun.Run(ctx, o.Netns, "nft", "delete", "table", fam, name)
	case ActionDeleteLink:
		h, err := nsrun.NetlinkHandle(o.Netns)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(s.Target)
		if err != nil {
			return nil // already gone
		}
		return h.LinkDel(l)
	case ActionKubeRemoveTwillSet:
		if o.Kube == nil {
			return errors.New("the Node's annotations are in the Kubernetes API: run migrate with --store kubernetes")
		}
		_, err := o.Kube.RemoveTwillSet(ctx, s.Target)
		return err
	case ActionRemoveTwill:
		_, err := agent.Uninstall(ctx, agent.UninstallOptions{Netns: o.Netns, Root: o.Root, Iface: o.Iface, KeepBridge: true, KeepHostGWRoutes: true})
		return err
	}
	return fmt.Errorf("unknown action %q", s.Action)
}
