package kubecreds

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestWriteMakesAServingCertSignedByTheCA(t *testing.T) {
	f := Paths(t.TempDir() + "/creds")
	users := []User{{Name: "admin", Token: "t1", Group: "system:masters"}, {Name: "twill", Token: "t2"}}
	if err := Write(f, "test CA", []net.IP{net.IPv4(192, 168, 77, 1)}, time.Hour, users); err != nil {
		t.Fatal(err)
	}
	read := func(p string) *x509.Certificate {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, cert := read(f.CA), read(f.Cert)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Fatalf("serving cert does not verify for kubernetes.default.svc: %v", err)
	}
	if err := cert.VerifyHostname("192.168.77.1"); err != nil {
		t.Fatalf("serving cert lacks the IP SAN: %v", err)
	}
	tokens, _ := os.ReadFile(f.Tokens)
	if string(tokens) != "t1,admin,uid-admin,\"system:masters\"\nt2,twill,uid-twill\n" {
		t.Fatalf("token file:\n%s", tokens)
	}
	if fi, _ := os.Stat(f.SAKey); fi.Mode().Perm() != 0o600 {
		t.Fatalf("SA key mode %v", fi.Mode())
	}
}

func TestKubeconfigNamesServerUserAndToken(t *testing.T) {
	kc := string(Kubeconfig("lab", "https://192.168.77.1:6443", "/ca.pem", "twill-node1", "tok"))
	for _, want := range []string{"server: https://192.168.77.1:6443", "certificate-authority: /ca.pem", "token: tok", "current-context: lab", "user: twill-node1"} {
		if !strings.Contains(kc, want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, kc)
		}
	}
	if a, b := RandomToken(), RandomToken(); a == b || len(a) != 32 {
		t.Fatalf("tokens %q %q", a, b)
	}
}
