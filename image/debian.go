package image

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path"
	"strings"
)

// PackageFiles lists the files Debian package pkg installed (dpkg -L).
func PackageFiles(pkg string) ([]string, error) {
	out, err := exec.Command("dpkg-query", "-L", pkg).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("image: listing the files of Debian package %s: %s (apt-get install %s)", pkg, msg, pkg)
	}
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "/") {
			files = append(files, l)
		}
	}
	return files, nil
}

// Netfilter names the host programs (from Debian packages) the image ships.
type Netfilter struct {
	// Programs are the host paths of the ELF programs: nft,
	// xtables-nft-multi and xtables-legacy-multi.
	Programs []string
	// Modules are the iptables extension modules (libxt_*, libipt_*,
	// libip6t_*) the iptables programs dlopen; ebtables and arptables
	// modules are left out with those programs.
	Modules []string
	// Links maps the multi-call names in /usr/sbin (iptables-nft,
	// iptables-legacy-save, ...) to the program they run.
	Links map[string]string
}

// multiCall lists the names the image gives each multi-call iptables
// program; the program picks its mode from the name it is run as.
var multiCall = map[string][]string{
	"xtables-nft-multi": {"iptables-nft", "iptables-nft-save", "iptables-nft-restore",
		"ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore"},
	"xtables-legacy-multi": {"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
		"ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore"},
}

// FindNetfilter finds nft (package nftables) and the iptables programs and
// their extension modules (package iptables) among the installed Debian
// packages' files.
func FindNetfilter() (Netfilter, error) {
	nf := Netfilter{Links: map[string]string{}}
	nftFiles, err := PackageFiles("nftables")
	if err != nil {
		return nf, err
	}
	iptFiles, err := PackageFiles("iptables")
	if err != nil {
		return nf, err
	}
	want := map[string]bool{"nft": true, "xtables-nft-multi": true, "xtables-legacy-multi": true}
	for _, f := range append(nftFiles, iptFiles...) {
		base := path.Base(f)
		switch {
		case want[base] && strings.Contains(f, "/sbin/"):
			nf.Programs = append(nf.Programs, f)
			delete(want, base)
			for _, name := range multiCall[base] {
				nf.Links[path.Join(path.Dir(f), name)] = base
			}
		case path.Base(path.Dir(f)) == "xtables" && strings.HasSuffix(f, ".so") &&
			(strings.HasPrefix(base, "libxt_") || strings.HasPrefix(base, "libipt_") || strings.HasPrefix(base, "libip6t_")):
			nf.Modules = append(nf.Modules, f)
		}
	}
	if len(want) > 0 {
		var missing []string
		for w := range want {
			missing = append(missing, w)
		}
		return nf, fmt.Errorf("image: the Debian packages nftables and iptables list no %s (reinstall them)", strings.Join(missing, ", "))
	}
	if len(nf.Modules) == 0 {
		return nf, fmt.Errorf("image: the Debian package iptables lists no xtables modules (reinstall it)")
	}
	return nf, nil
}
