// Package kubecreds writes the credentials a private kube-apiserver needs —
// a CA, a serving certificate, a ServiceAccount signing key, a static token
// file — and kubeconfigs for its token users. The lab's Kubernetes mode and
// the tests' API servers (lease/kube/kubetest) use it; nothing here is meant
// for production clusters.
package kubecreds

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
	"strings"
	"time"
)

// Files are the paths of one API server's credentials, all in Dir.
type Files struct {
	Dir           string
	CA, Cert, Key string // serving CA, serving certificate and its key
	SAKey         string // ServiceAccount token signing key (its public key too)
	Tokens        string // --token-auth-file
}

// Paths names the files in dir (nothing is written).
func Paths(dir string) Files {
	return Files{Dir: dir, CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "apiserver.pem"),
		Key: filepath.Join(dir, "apiserver-key.pem"), SAKey: filepath.Join(dir, "sa-key.pem"), Tokens: filepath.Join(dir, "tokens.csv")}
}

// User is one line of the static token file.
type User struct {
	Name, Token string
	// Group is a comma-separated group list, e.g. "system:masters"; may be empty.
	Group string
}

// DNSNames are the names the serving certificate always carries (the
// kubernetes Service's names, and localhost).
var DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}

// Write creates Dir and generates a CA (named caName), a serving
// certificate for ips and DNSNames valid for validFor, a ServiceAccount
// signing key, and the token file of users. Keys are ECDSA P-256; files
// are readable by root only.
func Write(f Files, caName string, ips []net.IP, validFor time.Duration, users []User) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: caName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validFor),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips, DNSNames: DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writePEM(f.CA, "CERTIFICATE", caDER); err != nil {
		return err
	}
	if err := writePEM(f.Cert, "CERTIFICATE", der); err != nil {
		return err
	}
	if err := writeKey(f.Key, key); err != nil {
		return err
	}
	if err := writeKey(f.SAKey, saKey); err != nil {
		return err
	}
	return os.WriteFile(f.Tokens, TokenFile(users), 0o600)
}

// TokenFile renders kube-apiserver's --token-auth-file:
// token,user,uid[,"group1,group2"].
func TokenFile(users []User) []byte {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,uid-%s", u.Token, u.Name, u.Name)
		if u.Group != "" {
			fmt.Fprintf(&b, ",%q", u.Group)
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Kubeconfig renders a kubeconfig for a token user of the API server at
// server whose CA is caFile; cluster names the cluster and context.
func Kubeconfig(cluster, server, caFile, user, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority: %[3]s
users:
- name: %[4]s
  user:
    token: %[5]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[4]s
current-context: %[1]s
`, cluster, server, caFile, user, token))
}

// RandomToken returns a random bearer token (32 hex digits).
func RandomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return fmt.Sprintf("%x", b)
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
