//go:build linux

package nodestate

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/twillnet/twill/nsrun"
)

// Sysctl names captured for every namespace, beside the per-link rp_filter
// and route_localnet.
var captureSysctls = []string{
	"net.ipv4.ip_forward",
	"net.ipv6.conf.all.forwarding",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
	"net.bridge.bridge-nf-call-arptables",
	"net.ipv4.conf.all.rp_filter",
	"net.ipv4.conf.default.rp_filter",
	"net.ipv4.conf.all.route_localnet",
	"net.ipv4.conf.default.route_localnet",
	"net.netfilter.nf_conntrack_max",
	"net.netfilter.nf_conntrack_count",
}

// procIPVS is the IPVS table of the calling thread's namespace. (/proc/net
// follows the process's main thread; thread-self follows this thread.)
const procIPVS = "/proc/thread-self/net/ip_vs"

// captureProc reads the sysctls (and IPVS) from a thread inside the
// namespace: /proc/sys/net shows the namespace of the thread that opens it.
// A sysctl file that does not exist is left out of s.Sysctls (for example
// net.bridge.* when br_netfilter is not loaded); that absence is evidence.
func captureProc(s *Snapshot, ns string) {
	type entry struct{ key, path string }
	var want []entry
	for _, k := range captureSysctls {
		want = append(want, entry{k, "/proc/sys/" + strings.ReplaceAll(k, ".", "/")})
	}
	for _, l := range s.Links {
		want = append(want, entry{RPFilterKey(l.Name), "/proc/sys/net/ipv4/conf/" + l.Name + "/rp_filter"},
			entry{RouteLocalnetKey(l.Name), "/proc/sys/net/ipv4/conf/" + l.Name + "/route_localnet"})
	}
	s.Sysctls = map[string]string{}
	var ipvsText string
	var ipvsErr error
	err := nsrun.Do(ns, func() error {
		for _, e := range want {
			b, err := os.ReadFile(e.path)
			switch {
			case err == nil:
				s.Sysctls[e.key] = strings.TrimSpace(string(b))
			case errors.Is(err, fs.ErrNotExist):
			default:
				s.addErr("sysctl:"+e.key, err)
			}
		}
		b, err := os.ReadFile(procIPVS)
		if err == nil {
			ipvsText = string(b)
		} else if !errors.Is(err, fs.ErrNotExist) {
			ipvsErr = err
		}
		return nil
	})
	if err != nil {
		s.addErr("sysctls", err)
		return
	}
	if v, err := strconv.Atoi(s.Sysctls["net.netfilter.nf_conntrack_count"]); err == nil {
		s.Conntrack.Count = v
	}
	if v, err := strconv.Atoi(s.Sysctls["net.netfilter.nf_conntrack_max"]); err == nil {
		s.Conntrack.Max = v
	}
	if ipvsErr != nil {
		s.addErr("ipvs", ipvsErr)
	}
	if ipvsText != "" {
		ipvs, err := ParseProcIPVS(ipvsText)
		if err != nil {
			s.addErr("ipvs", err)
		}
		s.IPVS = ipvs
	}
}
