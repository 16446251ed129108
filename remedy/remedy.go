// Package remedy applies the safe fixes that doctor proposes (sysctls,
// FORWARD accepts) to a live node or a named network namespace. It is the
// thin adapter under `twill doctor --fix`: deciding what to change is
// doctor's job, pure and tested on snapshots; this package only does it.
package remedy

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nsrun"
)

// Apply carries out the actions in the named network namespace ("" for the
// current one), in order, and stops at the first failure. Every action is
// idempotent: an iptables rule that already exists is not added twice.
func Apply(ctx context.Context, netns string, actions []doctor.Action) error {
	for _, a := range actions {
		var err error
		switch a.Kind {
		case doctor.ActSysctl:
			err = writeSysctl(netns, a.Name, a.Value)
		case doctor.ActIptables:
			err = insertIptables(ctx, netns, a)
		case doctor.ActNft:
			err = insertNft(ctx, netns, a)
		default:
			err = fmt.Errorf("unknown action kind %q", a.Kind)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

func writeSysctl(netns, name, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	return nsrun.Do(netns, func() error {
		return os.WriteFile(path, []byte(value+"\n"), 0o644)
	})
}

func insertIptables(ctx context.Context, netns string, a doctor.Action) error {
	bin := "iptables-nft"
	if a.Backend == "legacy" {
		bin = "iptables-legacy"
	}
	check := append([]string{bin, "-w", "5", "-t", a.Table, "-C", a.Chain}, a.Rule...)
	if nsrun.Run(ctx, netns, check...) == nil {
		return nil // already there
	}
	ins := append([]string{bin, "-w", "5", "-t", a.Table, "-I", a.Chain, "1"}, a.Rule...)
	return nsrun.Run(ctx, netns, ins...)
}

func insertNft(ctx context.Context, netns string, a doctor.Action) error {
	out, err := nsrun.Output(ctx, netns, "nft", "list", "chain", a.Family, a.Table, a.Chain)
	if err != nil {
		return err
	}
	// nft prints the rule back without quotes around the comment.
	want := strings.ReplaceAll(strings.Join(a.Rule, " "), `"`, ``)
	if strings.Contains(strings.ReplaceAll(string(out), `"`, ``), want) {
		return nil
	}
	args := append([]string{"nft", "insert", "rule", a.Family, a.Table, a.Chain}, a.Rule...)
	return nsrun.Run(ctx, netns, args...)
}
