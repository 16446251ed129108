package kubeproxy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nsrun"
)

// iptables-save prints MARK targets in their --set-xmark form.
var (
	orMark  = regexp.MustCompile(`--or-mark (0x[0-9a-f]+)`)
	xorMark = regexp.MustCompile(`--xor-mark (0x[0-9a-f]+)`)
)

func saveForm(rule string) string {
	rule = orMark.ReplaceAllString(rule, "--set-xmark $1/$1")
	return xorMark.ReplaceAllString(rule, "--set-xmark $1/0x0")
}

// TestRenderLoadsIntoBothBackends loads the rendering with the real
// iptables-nft-restore and iptables-legacy-restore in a fresh namespace,
// reads it back with iptables-save and checks that every chain holds the
// same rules, so the service chains, DNAT targets and probabilities
// survived the kernel round trip.
func TestRenderLoadsIntoBothBackends(t *testing.T) {
	testbed.RequireRoot(t)
	svcs := append(sampleServices(), manyServices(200)...)
	want, err := netfilter.ParseIptablesSave("render", RenderIptables(sampleConfig, svcs))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(file, []byte(RenderIptables(sampleConfig, svcs)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"nft", "legacy"} {
		t.Run(backend, func(t *testing.T) {
			ns := testbed.Netns(t, "kp")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := nsrun.Run(ctx, ns, "iptables-"+backend+"-restore", file); err != nil {
				t.Fatalf("the kernel refused the rendering: %v", err)
			}
			// Twice: a full restore must replace, not duplicate.
			if err := nsrun.Run(ctx, ns, "iptables-"+backend+"-restore", file); err != nil {
				t.Fatalf("second restore: %v", err)
			}
			out, err := nsrun.Output(ctx, ns, "iptables-"+backend+"-save")
			if err != nil {
				t.Fatal(err)
			}
			got, err := netfilter.ParseIptablesSave("iptables-"+backend+"-save", string(out))
			if err != nil {
				t.Fatalf("parse the saved rules: %v", err)
			}
			for _, table := range []string{"filter", "nat"} {
				wt, gt := want.Table(table), got.Table(table)
				if gt == nil {
					t.Fatalf("table %s missing after restore", table)
				}
				if len(gt.Chains) != len(wt.Chains) {
					t.Errorf("table %s: %d chains after restore, rendered %d", table, len(gt.Chains), len(wt.Chains))
				}
				for _, wc := range wt.Chains {
					gc := gt.Chain(wc.Name)
					if gc == nil {
						t.Errorf("table %s: chain %s missing after restore", table, wc.Name)
						continue
					}
					if len(gc.Rules) != len(wc.Rules) {
						t.Errorf("%s %s: %d rules after restore, rendered %d", table, wc.Name, len(gc.Rules), len(wc.Rules))
						continue
					}
					for i := range wc.Rules {
						if w, g := saveForm(wc.Rules[i].Text), gc.Rules[i].Text; w != g {
							t.Errorf("%s %s rule %d changed in the kernel round trip:\nrendered %s\n   saved %s", table, wc.Name, i+1, w, g)
						}
						if gc.Rules[i].Unknown {
							t.Errorf("%s %s rule %d not understood by the parser: %s", table, wc.Name, i+1, gc.Rules[i].Text)
						}
					}
				}
			}
			// The facts the tracer relies on, checked on the saved form.
			nat := got.Table("nat")
			web := nat.Chain(ServiceChain("shop/web", "tcp"))
			if web == nil || len(web.Rules) != 4 {
				t.Fatalf("shop/web service chain not restored intact")
			}
			if p := web.Rules[1].Match("statistic").Option("--probability").Values[0]; !strings.HasPrefix(p, "0.3333333") {
				t.Errorf("first endpoint probability %s, want 1/3", p)
			}
			dnat := nat.Chain(web.Rules[3].Target).Rules[1]
			if dnat.Target != "DNAT" || dnat.TargetOptions[0].Values[0] != "10.244.2.7:8080" {
				t.Errorf("last endpoint: want DNAT to 10.244.2.7:8080, got %s", dnat.Text)
			}
		})
	}
}
