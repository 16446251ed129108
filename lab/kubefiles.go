package lab

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

// Kubernetes mode: the credentials and files of the lab's kube-apiserver.

// KubeAdmin is the lab's admin token user (group system:masters): the lab
// itself and `lab exec ... kubectl` act as it.
const KubeAdmin = "admin"

// KubeNodeUser is the token user of node i's agent, bound to exactly the
// ClusterRole twill ships (kube.ClusterRole).
func KubeNodeUser(node string) string { return "twill-" + node }

// kubeFiles are the generated credentials of the lab's API server, all in
// <state dir>/kube.
type kubeFiles struct {
	Dir           string
	CA, Cert, Key string // serving CA, serving certificate (SAN 192.168.77.1, 10.96.0.1) and key
	SAKey         string // ServiceAccount token signing key (its public key too)
	Tokens        string // --token-auth-file
}

// kubeDir is where lab name keeps its API server's files.
func kubeDir(name string) string { return filepath.Join(StateDir(name), "kube") }

// newKubeFiles names the files of lab name (nothing is written).
func newKubeFiles(name string) kubeFiles {
	d := kubeDir(name)
	return kubeFiles{Dir: d, CA: filepath.Join(d, "ca.pem"), Cert: filepath.Join(d, "apiserver.pem"),
		Key: filepath.Join(d, "apiserver-key.pem"), SAKey: filepath.Join(d, "sa-key.pem"), Tokens: filepath.Join(d, "tokens.csv")}
}

// kubeUser is one line of the static token file.
type kubeUser struct{ Name, Token, Group string }

// tokenFile renders kube-apiserver's --token-auth-file:
// token,user,uid[,"group1,group2"].
func tokenFile(users []kubeUser) []byte {
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

// kubeconfigYAML renders a kubeconfig for a token user of the lab's API server.
func kubeconfigYAML(server, caFile, user, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: twill-lab
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: twill-lab
  context:
    cluster: twill-lab
    user: %s
current-context: twill-lab
`, server, caFile, user, token, user))
}

// writeKubeFiles generates a CA, a serving certificate for the API server's
// lab address (and the kubernetes Service VIP and names), a ServiceAccount
// signing key and the token file of users.
func writeKubeFiles(f kubeFiles, users []kubeUser) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "twill lab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
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
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{UnderlayGateway.AsSlice(), KubernetesVIP.Addr().AsSlice(), net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
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
	if err := writeECKey(f.Key, key); err != nil {
		return err
	}
	if err := writeECKey(f.SAKey, saKey); err != nil {
		return err
	}
	return os.WriteFile(f.Tokens, tokenFile(users), 0o600)
}

func writeECKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// randomToken returns a random bearer token (32 hex digits).
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return fmt.Sprintf("%x", b)
}
