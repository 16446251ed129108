package netfilter

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nsrun"
)

// The tests in this file load rules into a fresh network namespace with
// the real nft and iptables binaries and parse what they list back.

func TestLiveNftJSON(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.Netns(t, "nf")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nsrun.Run(ctx, ns, "nft", "-f", filepath.Join("testdata", "native.nft")); err != nil {
		t.Fatal(err)
	}
	out, err := nsrun.Output(ctx, ns, "nft", "-j", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseNftJSON("nft -j list ruleset", out)
	if err != nil {
		t.Fatalf("parse live nft output: %v", err)
	}
	checkNative(t, rs)
}

// TestLiveIptablesSaveBothBackends restores the recorded Docker + kube-proxy
// + Flannel dump with each backend and parses the live iptables-save back:
// same chains, same rules, nothing unknown.
func TestLiveIptablesSaveBothBackends(t *testing.T) {
	testbed.RequireRoot(t)
	want := mustParse(t, "docker-kube-flannel.legacy-save.txt")
	for _, backend := range []string{"legacy", "nft"} {
		t.Run(backend, func(t *testing.T) {
			ns := testbed.Netns(t, "nf")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := nsrun.Run(ctx, ns, "iptables-"+backend+"-restore", filepath.Join("testdata", "docker-kube-flannel.legacy-save.txt")); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{nil, {"-c"}} {
				out, err := nsrun.Output(ctx, ns, append([]string{"iptables-" + backend + "-save"}, args...)...)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ParseIptablesSave("iptables-"+backend+"-save", string(out))
				if err != nil {
					t.Fatalf("parse live output %v: %v", args, err)
				}
				checkInvariants(t, got)
				for _, wt := range want.Tables {
					gt := got.Table(wt.Name)
					for _, wc := range wt.Chains {
						gc := gt.Chain(wc.Name)
						if gc == nil || gc.Policy != wc.Policy || len(gc.Rules) != len(wc.Rules) {
							t.Fatalf("%s %s differs after restore", wt.Name, wc.Name)
						}
						for i, r := range gc.Rules {
							if r.Text != wc.Rules[i].Text || r.Unknown || (len(args) > 0) != (r.Counters != nil) {
								t.Errorf("%s %s rule %d: %q (unknown %v, counters %v)", wt.Name, wc.Name, i+1, r.Text, r.Unknown, r.Counters)
							}
						}
					}
				}
			}
		})
	}
}
