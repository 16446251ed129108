package trace

import (
	"net/netip"
	"os"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

func TestScratch(t *testing.T) {
	var snaps []*nodestate.Snapshot
	for _, f := range []string{"../doctor/testdata/lab-node1.json", "../doctor/testdata/lab-node2-f3.json"} {
		s, err := nodestate.LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
	}
	w, err := NewWorld(snaps, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range w.Hosts {
		t.Log(h.Name)
	}
	for _, to := range []string{"10.96.1.1:80", "10.244.2.10:8080", "10.96.0.10:80", "10.244.1.11:8080"} {
		ap := netip.MustParseAddrPort(to)
		res, err := w.Trace(Request{From: "10.244.1.10", To: ap.Addr(), Port: ap.Port()})
		if err != nil {
			t.Fatal(err)
		}
		res.WriteText(os.Stdout)
	}
}
