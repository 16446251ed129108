package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dumpedSettings reads `containerd config dump`'s TOML into "section key"
// = value pairs (section as its header line says, without brackets): the
// configuration as that containerd understood it, defaults filled in.
func dumpedSettings(dump string) map[string]string {
	m := map[string]string{}
	section := ""
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		case strings.Contains(l, " = "):
			k, v, _ := strings.Cut(l, " = ")
			m[section+" "+k] = v
		}
	}
	return m
}

// TestContainerdConfigsAsTheRuntimesReadThem hands each runtime's config
// to that very containerd (`config dump`, which starts nothing) and checks
// the settings a real node depends on arrived where that version reads
// them: a misspelt key or a section of the other config version would
// leave the default in place (restrict_oom_score_adj false: every sandbox
// fails here; the sandbox image pulled from registry.k8s.io).
func TestContainerdConfigsAsTheRuntimesReadThem(t *testing.T) {
	st := plan(Config{Name: "rk", Nodes: 1, Pods: 1, Agent: true, Kubernetes: true}.withDefaults())
	n := &st.Nodes[0]
	dir := t.TempDir()
	for _, c := range []struct {
		runtime string
		want    map[string]string
	}{
		{Containerd16, map[string]string{
			" version":     "2",
			` root`:        `"/run/twill-lab/rk/nodes/node1/containerd"`,
			`grpc address`: `"/run/containerd/containerd.sock"`,
			`plugins."io.containerd.grpc.v1.cri" sandbox_image`:                                  `"registry.k8s.io/pause:3.10"`,
			`plugins."io.containerd.grpc.v1.cri" restrict_oom_score_adj`:                         "true",
			`plugins."io.containerd.grpc.v1.cri".cni bin_dir`:                                    `"/opt/cni/bin"`,
			`plugins."io.containerd.grpc.v1.cri".cni conf_dir`:                                   `"/etc/cni/net.d"`,
			`plugins."io.containerd.grpc.v1.cri".containerd snapshotter`:                         `"overlayfs"`,
			`plugins."io.containerd.grpc.v1.cri" disable_apparmor`:                               "true",
			`plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options SystemdCgroup`: "false",
		}},
		// 2.4 migrates version 3 to its own newest on load (the dump says
		// version 4, with [grpc] become a plugin).
		{Containerd2, map[string]string{
			` root`: `'/run/twill-lab/rk/nodes/node1/containerd'`,
			`plugins.'io.containerd.server.v1.grpc' address`:                                        `'/run/containerd/containerd.sock'`,
			`plugins.'io.containerd.cri.v1.images'.pinned_images sandbox`:                           `'registry.k8s.io/pause:3.10'`,
			`plugins.'io.containerd.cri.v1.images'.registry config_path`:                            `'/run/twill-lab/rk/nodes/node1/certs.d'`,
			`plugins.'io.containerd.cri.v1.images' snapshotter`:                                     `'overlayfs'`,
			`plugins.'io.containerd.cri.v1.runtime' restrict_oom_score_adj`:                         "true",
			`plugins.'io.containerd.cri.v1.runtime' disable_apparmor`:                               "true",
			`plugins.'io.containerd.cri.v1.runtime'.cni bin_dirs`:                                   `['/opt/cni/bin']`,
			`plugins.'io.containerd.cri.v1.runtime'.cni conf_dir`:                                   `'/etc/cni/net.d'`,
			`plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options SystemdCgroup`: "false",
		}},
	} {
		t.Run("containerd-"+c.runtime, func(t *testing.T) {
			if os.Getenv("TWILL_CONTAINERD2_DIR") == "" {
				t.Setenv("TWILL_CONTAINERD2_DIR", filepath.Join("..", "bin", "containerd2"))
			}
			r := RealState{Containerd: c.runtime}
			if err := findContainerd(&r); err != nil {
				t.Fatalf("%v (make tools-kube builds every runtime)", err)
			}
			want := map[string]string{Containerd16: "version = 2\n", Containerd2: "version = 3\n"}[c.runtime]
			if got := containerdConfig(&r, n); !strings.HasPrefix(got, want) {
				t.Errorf("containerd %s config does not start with %q:\n%s", c.runtime, want, got)
			}
			cfg := filepath.Join(dir, c.runtime+".toml")
			if err := os.WriteFile(cfg, []byte(containerdConfig(&r, n)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(r.ContainerdBin, "--config", cfg, "config", "dump").CombinedOutput()
			if err != nil {
				t.Fatalf("%s config dump: %v\n%s", r.ContainerdBin, err, out)
			}
			got := dumpedSettings(string(out))
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s (%s) reads [%s] = %q, want %q", r.ContainerdBin, r.ContainerdVersion, strings.Replace(k, " ", "] ", 1), got[k], v)
				}
			}
			if t.Failed() {
				t.Logf("config:\n%s\ndump:\n%s", containerdConfig(&r, n), out)
			}
		})
	}
}

func TestFindContainerd2NamesTheMakeTarget(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "containerd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := FindContainerd2(dir)
	if err == nil || !strings.Contains(err.Error(), "containerd-shim-runc-v2, ctr") || !strings.Contains(err.Error(), "make tools-kube") {
		t.Fatalf("FindContainerd2 of a dir with only containerd: %v, want the missing binaries and `make tools-kube`", err)
	}
	for _, b := range containerd2Bins {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := FindContainerd2(dir); err != nil || got != dir {
		t.Fatalf("FindContainerd2 of a complete dir: %q, %v", got, err)
	}
}

func TestRuntimeName(t *testing.T) {
	for _, c := range []struct {
		r    RealState
		want string
	}{
		{RealState{Containerd: Containerd16, ContainerdVersion: "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"}, "containerd 1.6.20~ds1"},
		{RealState{Containerd: Containerd2, ContainerdVersion: "containerd github.com/containerd/containerd/v2 v2.4.2 "}, "containerd 2.4.2"},
		{RealState{Containerd: Containerd2}, "containerd 2"},
		{RealState{}, "containerd 1.6"},
	} {
		if got := c.r.runtimeName(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}
