package kernel

import (
	"context"
	"fmt"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/nodestate"
)

// Teardown removes every backend object twill owns in the namespace (see
// backend.Ownership; build it with backend.OwnershipFor when no lease is at
// hand): the vxlan device with everything on it, and the routes into the
// pod network via the underlay device. Nothing else is touched. It is what
// `twill uninstall` runs; running it twice is harmless.
func Teardown(ctx context.Context, ns string, own backend.Ownership) ([]backend.Repair, error) {
	have, err := Observe(ctx, ns)
	if err != nil {
		return nil, err
	}
	repairs, err := Apply(ctx, ns, backend.Diff(backend.Desired{Own: own}, have))
	if err != nil {
		return repairs, fmt.Errorf("teardown: %w", err)
	}
	return repairs, nil
}

// Observe captures the namespace's state for Diff (nodestate.Capture).
func Observe(ctx context.Context, ns string) (*nodestate.Snapshot, error) {
	s, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: ns})
	if err != nil {
		return nil, fmt.Errorf("observe netns %s: %w", nsName(ns), err)
	}
	for _, e := range s.Errors {
		switch e.Source {
		case "links", "addrs", "routes-v4", "neighbors-v4", "fdb":
			return nil, fmt.Errorf("observe netns %s: %s: %s", nsName(ns), e.Source, e.Err)
		}
	}
	return s, nil
}
