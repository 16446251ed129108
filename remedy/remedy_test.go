package remedy

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/nsrun"
)

func TestApplyIsIdempotentAndStaysInItsNamespace(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.Netns(t, "remedy")
	ctx := context.Background()
	run := func(argv ...string) string {
		out, err := nsrun.Output(ctx, ns, argv...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	run("iptables-nft", "-N", "DOCKER-USER")
	run("iptables-nft", "-P", "FORWARD", "DROP")
	run("nft", "add table inet fw")
	run("nft", "add chain inet fw forward { type filter hook forward priority 0; policy drop; }")
	network := netip.MustParsePrefix("10.244.0.0/16")
	actions := []doctor.Action{
		{Kind: doctor.ActSysctl, Name: "net.ipv4.ip_forward", Value: "1"},
		{Kind: doctor.ActForwardAccept, Network: network, Placement: &firewall.Placement{Backend: firewall.BackendIptablesNft, Table: "filter", Chain: "DOCKER-USER"}},
		{Kind: doctor.ActForwardAccept, Network: network, Placement: &firewall.Placement{Backend: firewall.BackendNft, Family: "inet", Table: "fw", Chain: "forward"}},
	}
	for range 2 {
		if err := Apply(ctx, ns, actions); err != nil {
			t.Fatal(err)
		}
	}
	if v := strings.TrimSpace(run("cat", "/proc/sys/net/ipv4/ip_forward")); v != "1" {
		t.Errorf("ip_forward in the namespace = %s, want 1", v)
	}
	for _, want := range []string{"-A DOCKER-USER -s 10.244.0.0/16", "-A DOCKER-USER -d 10.244.0.0/16"} {
		if n := strings.Count(run("iptables-nft-save", "-t", "filter"), want); n != 1 {
			t.Errorf("DOCKER-USER holds %q %d times, want once", want, n)
		}
	}
	for _, want := range []string{"ip saddr 10.244.0.0/16 accept", "ip daddr 10.244.0.0/16 accept"} {
		if n := strings.Count(run("nft", "list", "chain", "inet", "fw", "forward"), want); n != 1 {
			t.Errorf("nft forward chain holds %q %d times, want once", want, n)
		}
	}
	// The legacy backend was not touched: fixes go only where the drop is.
	if out := run("iptables-legacy-save"); strings.Contains(out, "10.244.0.0/16") {
		t.Errorf("legacy backend changed:\n%s", out)
	}
}

func TestApplyStopsAtTheFirstFailureAndSaysWhich(t *testing.T) {
	testbed.RequireRoot(t)
	ns := testbed.Netns(t, "remedy")
	err := Apply(context.Background(), ns, []doctor.Action{
		{Kind: doctor.ActForwardAccept, Network: netip.MustParsePrefix("10.244.0.0/16"), Placement: &firewall.Placement{Backend: firewall.BackendIptablesNft, Table: "filter", Chain: "NO-SUCH-CHAIN"}},
		{Kind: doctor.ActSysctl, Name: "net.ipv4.ip_forward", Value: "1"},
	})
	if err == nil || !strings.Contains(err.Error(), "NO-SUCH-CHAIN") {
		t.Fatalf("got %v, want an error naming the chain", err)
	}
	out, _ := nsrun.Output(context.Background(), ns, "cat", "/proc/sys/net/ipv4/ip_forward")
	if strings.TrimSpace(string(out)) != "0" {
		t.Errorf("the sysctl after the failed action was applied anyway")
	}
}
