package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twillnet/twill/image"
)

// A real node's mount namespace, cgroups, containerd, kubelet and kube-proxy.

// cgroupFS is where the host's cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// labCgroup is lab name's cgroup directory below every hierarchy.
func labCgroup(name string) string { return "twill-lab-" + name }

// nodeCgroupRoot is node's kubelet cgroupRoot.
func nodeCgroupRoot(lab, node string) string { return "/" + labCgroup(lab) + "/" + node }

// kubeletSysctls are the kernel settings kubelet's container manager wants
// (and writes, host-wide, when they differ): inside a node's mount
// namespace files holding these values are bound over them.
var kubeletSysctls = []struct{ path, value string }{
	{"vm/overcommit_memory", "1"},
	{"vm/panic_on_oom", "0"},
	{"kernel/panic", "10"},
	{"kernel/panic_on_oops", "1"},
	{"kernel/keys/root_maxkeys", "1000000"},
	{"kernel/keys/root_maxbytes", "25000000"},
}

// nodeMountScript is the shell program the node's anchor runs inside a new
// mount namespace (unshare -m, private propagation) and the node's network
// namespace: it makes the node's file system and then sleeps, holding the
// namespace for containerd, kubelet and kube-proxy.
//
//   - the copies of the host's named network namespaces are dropped
//     (umount -R -l /run/netns), or they would keep others' namespaces alive;
//   - a fresh sysfs shows the node's network devices, with the cgroup tree
//     moved back under it;
//   - /etc, /opt and /var are overlays with their upper halves in the node's
//     directory, so the node may create what it wants there;
//   - /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet, /var/lib/cni and /run
//     are the node root's directories (the host sees them below the root,
//     as doctor and trace read them); /run/twill-lab stays reachable;
//   - kubelet's sysctls are files bound over /proc/sys.
func nodeMountScript(st *State, n *Node) string {
	d, root := n.Real.Dir, n.Root
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("set -eu")
	w("umount -R -l /run/netns 2>/dev/null || true")
	w("mkdir -p %s/mnt/cgroup", d)
	w("mount --rbind %s %s/mnt/cgroup", cgroupFS, d)
	w("mount -t sysfs sysfs /sys")
	w("mount --move %s/mnt/cgroup %s", d, cgroupFS)
	for _, dir := range []string{"etc", "opt", "var"} {
		w("mkdir -p %s/ovl/%s/upper %s/ovl/%s/work", d, dir, d, dir)
		w("mount -t overlay overlay -o lowerdir=/%s,upperdir=%s/ovl/%s/upper,workdir=%s/ovl/%s/work /%s", dir, d, dir, d, dir, dir)
	}
	for _, dir := range []string{"etc/cni/net.d", "opt/cni/bin", "var/lib/kubelet", "var/lib/cni"} {
		w("mkdir -p %s/%s /%s", root, dir, dir)
		w("mount --bind %s/%s /%s", root, dir, dir)
	}
	w("mkdir -p %s/run/twill-lab", root)
	w("mount --bind %s %s/run/twill-lab", StateRoot, root)
	w("mount --rbind %s/run /run", root)
	w("mkdir -p %s/sysctl", d)
	for _, s := range kubeletSysctls {
		f := filepath.Join(d, "sysctl", strings.ReplaceAll(s.path, "/", "."))
		w("echo %s > %s", s.value, f)
		w("mount --bind %s /proc/sys/%s", f, s.path)
	}
	w("touch %s", mountsReady(n))
	w("exec sleep infinity")
	return b.String()
}

// mountsReady is the file the anchor touches once the node's mounts are made.
func mountsReady(n *Node) string { return filepath.Join(n.Real.Dir, "mounts-ready") }

// makeNodeCgroups creates node's cgroupRoot in every cgroup v1 hierarchy
// (kubelet refuses a root missing in one), with cpuset's cpus and mems
// copied from the parent at every level.
func makeNodeCgroups(st *State, n *Node) error {
	ents, err := os.ReadDir(cgroupFS)
	if err != nil {
		return fmt.Errorf("node %s: cgroups: %w", n.Name, err)
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		parent := filepath.Join(cgroupFS, e.Name())
		for _, part := range []string{labCgroup(st.Name), n.Name} {
			dir := filepath.Join(parent, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("node %s: cgroup %s: %w", n.Name, dir, err)
			}
			if e.Name() == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(parent, f))
					if err != nil {
						return fmt.Errorf("node %s: %w", n.Name, err)
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("node %s: cgroup %s: %w", n.Name, f, err)
					}
				}
			}
			parent = dir
		}
	}
	return nil
}

// startNodeNamespace makes node n's cgroups and starts its anchor, waiting
// (bounded) until its mounts are made.
func startNodeNamespace(ctx context.Context, st *State, n *Node) error {
	if err := makeNodeCgroups(st, n); err != nil {
		return err
	}
	if err := os.MkdirAll(n.Real.Dir, 0o755); err != nil {
		return err
	}
	script := filepath.Join(n.Real.Dir, "mounts.sh")
	if err := os.WriteFile(script, []byte(nodeMountScript(st, n)), 0o755); err != nil {
		return err
	}
	p, err := startDaemon(n.Namespace, []string{"unshare", "-m", "--propagation", "private", "--", "/bin/sh", script},
		filepath.Join(StateDir(st.Name), "logs", n.Name+"-anchor.log"), nil)
	if err != nil {
		return err
	}
	n.Real.Anchor = p
	if err := st.save(); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(mountsReady(n)); err == nil {
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("node %s: making its mount namespace (%s) failed:\n%s", n.Name, script, tail(p.Log, 8))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("node %s: mount namespace not ready after 15s; see %s", n.Name, p.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inNode is argv run inside node n's mount namespace (its network
// namespace is entered by startDaemon or runIn).
func inNode(n *Node, argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(n.Real.Anchor.PID), "-m", "--"}, argv...)
}

// containerdSock is containerd's socket inside a node (its own /run).
const containerdSock = "/run/containerd/containerd.sock"

// containerdConfig is node n's containerd configuration for the lab's
// runtime (RealState.Containerd).
func containerdConfig(r *RealState, n *Node) string {
	if r.Containerd == Containerd2 {
		return containerdConfig2(n)
	}
	return containerdConfig16(n)
}

// containerdConfig16 is node n's containerd 1.6 configuration (version 2):
// its root in the node's directory, CRI with the imported pause image as
// sandbox (never pulled), runc without systemd cgroups, oom_score_adj
// restricted (root here lacks CAP_SYS_RESOURCE), CNI from the node's dirs.
func containerdConfig16(n *Node) string {
	return fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`, filepath.Join(n.Real.Dir, "containerd"), containerdSock, image.PauseRef)
}

// containerdConfig2 is node n's containerd 2.x configuration (version 3,
// where CRI is split into an images and a runtime plugin): the same
// choices as containerdConfig16, spelled the 2.x way: the pause image
// pinned as the sandbox image (pinned_images.sandbox: never pulled, never
// garbage-collected), CNI's bin_dirs a list, registry hosts read from
// config_path (an empty certs.d in the node's directory: the lab's images
// are imported, no registry is configured).
func containerdConfig2(n *Node) string {
	return fmt.Sprintf(`version = 3
root = %q
state = "/run/containerd"
[grpc]
  address = %q
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %q
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
`, filepath.Join(n.Real.Dir, "containerd"), containerdSock, image.PauseRef, filepath.Join(n.Real.Dir, "certs.d"))
}

// runtimeName is the nodes' runtime as `lab status` and `lab up` name it:
// "containerd 1.6.20~ds1", from its --version when known.
func (r *RealState) runtimeName() string {
	if v := containerdVersionNumber(r.ContainerdVersion); v != "" {
		return "containerd " + v
	}
	if r.Containerd == "" {
		return "containerd " + Containerd16 // a state written before --containerd
	}
	return "containerd " + r.Containerd
}

// containerdVersionNumber picks the version out of `containerd --version`
// ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1"
// or "containerd github.com/containerd/containerd/v2 v2.4.2 "); "" when
// the line does not look like that.
func containerdVersionNumber(out string) string {
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "containerd" {
		return ""
	}
	return strings.TrimPrefix(f[2], "v")
}

// startContainerd starts containerd in node n, waits (bounded) until it
// answers and imports the lab's images into its k8s.io namespace.
func startContainerd(ctx context.Context, st *State, n *Node) error {
	cfg := filepath.Join(n.Real.Dir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(containerdConfig(st.Real, n)), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(n.Real.Dir, "certs.d"), 0o755); err != nil {
		return err
	}
	var env []string
	if d := st.Real.ShimDir; d != "" {
		// containerd looks its shim up on $PATH before its own directory:
		// without this, 2.x would run Debian's 1.6 shim.
		env = append(env, "PATH="+d+":"+os.Getenv("PATH"))
	}
	p, err := startDaemon(n.Namespace, inNode(n, st.Real.ContainerdBin, "--config", cfg, "--log-level", "warn"),
		filepath.Join(StateDir(st.Name), "logs", n.Name+"-containerd.log"), env)
	if err != nil {
		return err
	}
	n.Real.Containerd = p
	if err := st.save(); err != nil {
		return err
	}
	ctr := func(args ...string) (string, error) { return nodeCtr(ctx, st, n, args...) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := ctr("version")
		if err == nil {
			break
		}
		if !p.Alive() {
			return fmt.Errorf("node %s: containerd (pid %d) exited:\n%s", n.Name, p.PID, tail(p.Log, 10))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("node %s: containerd not answering after 30s (%v); see %s", n.Name, err, p.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, f := range []string{pauseArchive, twillArchive, testServerArchive, corednsArchive} {
		if _, err := ctr("images", "import", filepath.Join(st.Real.ImageDir, f)); err != nil {
			return fmt.Errorf("node %s: import %s: %w", n.Name, f, err)
		}
	}
	return nil
}

// nodeCtr runs ctr against node n's containerd, in its k8s.io namespace
// (the one the CRI, so kubelet, uses), inside the node's namespaces.
func nodeCtr(ctx context.Context, st *State, n *Node, args ...string) (string, error) {
	return runIn(ctx, n.Namespace, "", inNode(n, append([]string{st.Real.CtrBin, "-a", containerdSock, "-n", "k8s.io"}, args...)...)...)
}

// ImportImages imports docker-archive or OCI tarballs (as `make image`
// writes them) into the containerd of every node of lab name, as `kind load
// image-archive` does: pods and DaemonSets can then use their tags with
// imagePullPolicy IfNotPresent or Never. It prints one line per node and
// archive, with the references ctr reports.
func ImportImages(ctx context.Context, name string, archives []string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	st, err := Load(name)
	if err != nil {
		return err
	}
	if !st.RealMode() {
		return fmt.Errorf("lab %s: image import needs a lab of real nodes (lab up --kubernetes); this lab runs no container runtime", st.Name)
	}
	if len(archives) == 0 {
		return fmt.Errorf("image import: no archive given (make image writes bin/image/twill.docker.tar)")
	}
	for i, a := range archives {
		abs, err := filepath.Abs(a)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return fmt.Errorf("image import: %w", err)
		}
		archives[i] = abs
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		for _, a := range archives {
			got, err := nodeCtr(ctx, st, n, "images", "import", a)
			if err != nil {
				return fmt.Errorf("node %s: import %s: %w", n.Name, a, err)
			}
			fmt.Fprintf(out, "%s: imported %s: %s\n", n.Name, filepath.Base(a), strings.Join(importedRefs(got), ", "))
		}
	}
	return nil
}

// importedRefs picks the image references out of `ctr images import`'s
// output ("unpacking <ref> (sha256:...)...done").
func importedRefs(out string) []string {
	var refs []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "unpacking" {
			refs = append(refs, f[1])
		}
	}
	if len(refs) == 0 {
		refs = []string{strings.TrimSpace(out)}
	}
	return refs
}

// kubeletConfig is node n's KubeletConfiguration: pods ask kube-dns
// (ClusterDNSVIP) for names in ClusterDomain; pods with dnsPolicy Default
// (CoreDNS itself) get nodeResolvConf.
func kubeletConfig(st *State, n *Node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://%s
clusterDomain: %s
clusterDNS: [%s]
resolvConf: %s
rotateCertificates: false
serializeImagePulls: false
volumePluginDir: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
`, n.IP, nodeCgroupRoot(st.Name, n.Name), containerdSock, ClusterDomain, ClusterDNSVIP, nodeResolvConf(n), filepath.Join(n.Real.Dir, "volume-plugins"))
}

// startKubelet starts node n's kubelet inside its namespaces.
func startKubelet(st *State, n *Node) error {
	cfg := filepath.Join(n.Real.Dir, "kubelet.yaml")
	if err := writeNodeResolvConf(n); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte(kubeletConfig(st, n)), 0o644); err != nil {
		return err
	}
	p, err := startDaemon(n.Namespace, inNode(n, st.Real.KubeletBin,
		"--config", cfg,
		"--kubeconfig", filepath.Join(n.Real.Dir, "kubelet.kubeconfig"),
		"--hostname-override", n.Name,
		"--node-ip", n.IP,
		"--node-labels", "twill.io/lab="+st.Name,
		"--v", "1",
	), filepath.Join(StateDir(st.Name), "logs", n.Name+"-kubelet.log"), nil)
	if err != nil {
		return err
	}
	n.Real.Kubelet = p
	return st.save()
}

// startKubeProxy starts node n's kube-proxy in the lab's proxy mode. It
// leaves the host-wide conntrack limits alone.
func startKubeProxy(st *State, n *Node) error {
	p, err := startDaemon(n.Namespace, inNode(n, st.Real.KubeProxyBin,
		"--kubeconfig", filepath.Join(kubeDir(st.Name), "kube-proxy.kubeconfig"),
		"--proxy-mode", st.Real.ProxyMode,
		"--cluster-cidr", ClusterCIDR.String(),
		"--hostname-override", n.Name,
		"--conntrack-max-per-core", "0",
		"--conntrack-tcp-timeout-established", "0s",
		"--conntrack-tcp-timeout-close-wait", "0s",
		"--metrics-bind-address", "127.0.0.1:10249",
		"--healthz-bind-address", "127.0.0.1:10256",
		"--v", "1",
	), filepath.Join(StateDir(st.Name), "logs", n.Name+"-kube-proxy.log"), nil)
	if err != nil {
		return err
	}
	n.Real.KubeProxy = p
	return st.save()
}

// labCgroupDirs lists lab name's cgroup directories, one per hierarchy.
func labCgroupDirs(name string) []string {
	ents, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range ents {
		d := filepath.Join(cgroupFS, e.Name(), labCgroup(name))
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// cgroupTree lists the cgroup directories below (and including) roots,
// deepest first.
func cgroupTree(roots []string) []string {
	var dirs []string
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs
}

// pidsInCgroups lists the processes in any of the cgroup directories.
func pidsInCgroups(dirs []string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes lab name's cgroup directories, deepest first,
// retrying for a few seconds (the kernel frees a cgroup shortly after its
// last task exits).
func removeCgroups(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		dirs := cgroupTree(labCgroupDirs(name))
		var failed []string
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				failed = append(failed, d)
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups not removed: %s", strings.Join(failed, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
