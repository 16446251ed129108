// Package remedy applies the safe fixes that doctor proposes (sysctls,
// FORWARD accepts) to a live node or a named network namespace. It is the
// thin adapter under `twill doctor --fix`: deciding what to change is
// doctor's job, pure and tested on snapshots; writing a forward accept is
// the firewall's (the same code the agent uses); this package only does it.
package remedy

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/nsrun"
)

// Apply carries out the actions in the named network namespace ("" for the
// current one), in order, and stops at the first failure. Every action is
// idempotent: an accept that already exists is not added twice.
func Apply(ctx context.Context, netns string, actions []doctor.Action) error {
	for _, a := range actions {
		var err error
		switch a.Kind {
		case doctor.ActSysctl:
			err = writeSysctl(netns, a.Name, a.Value)
		case doctor.ActForwardAccept:
			if a.Placement == nil {
				err = fmt.Errorf("no placement")
				break
			}
			spec := firewall.Spec{Network: a.Network, ForwardAccept: []firewall.Placement{*a.Placement}}
			if a.Placement.IPv6 {
				spec = firewall.Spec{IPv6Network: a.Network, ForwardAccept: []firewall.Placement{*a.Placement}}
			}
			_, err = firewall.EnsureForwardAccepts(ctx, netns, spec)
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
