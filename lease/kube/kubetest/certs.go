package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// files are the generated credentials of one API server, all in one dir.
type files struct {
	CA, Cert, Key string // serving CA, serving certificate and key
	SAKey         string // ServiceAccount token signing key (also its public key)
	Tokens        string // --token-auth-file
}

// writeFiles generates a CA and a serving certificate for 127.0.0.1 and
// localhost, a ServiceAccount signing key and the static token file.
func writeFiles(dir string, users []user) (files, error) {
	f := files{
		CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "apiserver.pem"), Key: filepath.Join(dir, "apiserver-key.pem"),
		SAKey: filepath.Join(dir, "sa-key.pem"), Tokens: filepath.Join(dir, "tokens.csv"),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	if err := writePEM(f.CA, "CERTIFICATE", caDER); err != nil {
		return f, err
	}
	if err := writePEM(f.Cert, "CERTIFICATE", der); err != nil {
		return f, err
	}
	if err := writeKey(f.Key, key); err != nil {
		return f, err
	}
	if err := writeKey(f.SAKey, saKey); err != nil {
		return f, err
	}
	var tokens []byte
	for _, u := range users {
		tokens = fmt.Appendf(tokens, "%s,%s,%s", u.token, u.name, "uid-"+u.name)
		if u.groups != "" {
			tokens = fmt.Appendf(tokens, ",%q", u.groups)
		}
		tokens = append(tokens, '\n')
	}
	return f, os.WriteFile(f.Tokens, tokens, 0o600)
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// randomToken returns a random bearer token.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return fmt.Sprintf("%x", b)
}
