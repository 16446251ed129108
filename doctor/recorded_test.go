package doctor

import (
	"slices"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// The snapshots in testdata/lab-*.json were captured with `twill snapshot`
// from a real lab (`twill lab up`; node2 after `twill lab break F3 node2`).

func TestRecordedHealthyLabNode(t *testing.T) {
	s, err := nodestate.LoadFile("testdata/lab-node1.json")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(s, Config{})
	if r.Errors() != 0 || len(r.NotChecked) != 0 {
		t.Fatalf("healthy recorded node: errors %v, not checked %+v", r.IDs(), r.NotChecked)
	}
}

func TestRecordedDockerForwardDrop(t *testing.T) {
	s, err := nodestate.LoadFile("testdata/lab-node2-f3.json")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(s, Config{})
	var errs []string
	for _, f := range r.Findings {
		if f.Severity == Error {
			errs = append(errs, f.ID)
		}
	}
	if !slices.Equal(errs, []string{"TW010"}) {
		t.Fatalf("errors %v, want [TW010]", errs)
	}
	a := r.Findings[slices.IndexFunc(r.Findings, func(f Finding) bool { return f.ID == "TW010" })].Actions
	if len(a) != 1 || a[0].Placement == nil || a[0].Placement.Chain != "DOCKER-USER" || a[0].Placement.Backend != "iptables-nft" {
		t.Fatalf("fix actions %+v: want accepts in the nft backend's DOCKER-USER", a)
	}
}
