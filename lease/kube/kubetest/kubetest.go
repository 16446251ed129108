// Package kubetest runs a real Kubernetes API server for tests: the
// bin/kube-apiserver that `make tools` builds from k8s.io/kubernetes, on
// 127.0.0.1 with a free port, backed by a real etcd (lease/etcd/etcdtest),
// with a generated serving certificate, ServiceAccount signing key and a
// static token file, and RBAC authorization. It changes no kernel state.
//
//	kubeconfig, stop := kubetest.Start(t) // admin (system:masters)
//	defer stop()
//
// StartServer gives more: token users, each with its own kubeconfig. Two
// users always exist: "admin" (group system:masters, allowed everything)
// and "twill", bound by a ClusterRoleBinding to exactly the ClusterRole
// twill ships (kube.ClusterRole). Options.Users adds users without any
// permission, for tests that grant a subset.
//
// The binary is $TWILL_KUBE_APISERVER_BIN, else bin/kube-apiserver in the
// module root. When it is missing the test fails (it does not skip),
// saying to run `make tools`.
package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/twillnet/twill/kubecreds"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/lease/kube"
)

// readyTimeout bounds how long a start waits for /readyz (the API server
// installs its bootstrap RBAC roles and priority levels first; on a busy
// 2-core machine that takes 10-30s).
const readyTimeout = 120 * time.Second

// The users every server has.
const (
	// Admin is in group system:masters: RBAC allows it everything.
	Admin = "admin"
	// Twill is bound to exactly kube.ClusterRole().
	Twill = "twill"
)

// Options configures StartServer.
type Options struct {
	// Users are extra token users with no permission at all; a test grants
	// them what it wants with the Admin client.
	Users []string
	// EtcdEndpoint is an etcd to use; empty starts one for the test.
	EtcdEndpoint string
	// EtcdPrefix is the API server's key prefix in etcd (default
	// "/registry-<random>", so servers can share an etcd).
	EtcdPrefix string
	// ServiceClusterIPRange is --service-cluster-ip-range (default
	// 10.96.0.0/16); "V4CIDR,V6CIDR" makes the cluster dual-stack for
	// Services.
	ServiceClusterIPRange string
}

// Server is one running kube-apiserver.
type Server struct {
	// URL is the API server's address, e.g. https://127.0.0.1:41234.
	URL string
	// CAFile is the PEM CA that signed the serving certificate.
	CAFile string
	// LogFile collects the API server's output.
	LogFile string
	// Dir holds the generated files and kubeconfigs.
	Dir string

	t      testing.TB
	tokens map[string]string // user -> bearer token
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   <-chan struct{}
}

// Start runs an API server (and an etcd for it) and returns the path of an
// admin kubeconfig and a stop function (safe to call more than once; also
// called at test cleanup).
func Start(t testing.TB) (kubeconfig string, stop func()) {
	t.Helper()
	s := StartServer(t, Options{})
	return s.Kubeconfig(Admin), s.Stop
}

// StartServer runs an API server, waits for /readyz, installs the shipped
// ClusterRole and binds it to user "twill". It is stopped at test cleanup.
func StartServer(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		t.Fatal(err)
	}
	if o.EtcdEndpoint == "" {
		o.EtcdEndpoint, _ = etcdtest.Start(t)
	}
	if o.EtcdPrefix == "" {
		o.EtcdPrefix = "/registry-" + kubecreds.RandomToken()[:8]
	}
	if o.ServiceClusterIPRange == "" {
		o.ServiceClusterIPRange = "10.96.0.0/16"
	}
	dir := t.TempDir()
	s := &Server{t: t, Dir: dir, LogFile: filepath.Join(dir, "kube-apiserver.log"), tokens: map[string]string{}}
	users := []kubecreds.User{{Name: Admin, Group: "system:masters"}, {Name: Twill}}
	for _, u := range o.Users {
		if u == Admin || u == Twill || u == "" || strings.ContainsAny(u, ",\"\n") {
			t.Fatalf("kubetest: user %q: pick another name (admin and twill exist; no commas or quotes)", u)
		}
		users = append(users, kubecreds.User{Name: u})
	}
	for i := range users {
		users[i].Token = kubecreds.RandomToken()
		s.tokens[users[i].Name] = users[i].Token
	}
	f := kubecreds.Paths(dir)
	if err := kubecreds.Write(f, "kubetest CA", []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)}, 7*24*time.Hour, users); err != nil {
		t.Fatalf("kubetest: generate certificates and tokens: %v", err)
	}
	s.CAFile = f.CA
	port := etcdtest.FreePort(t)
	s.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	argv := []string{bin,
		"--etcd-servers", o.EtcdEndpoint,
		"--etcd-prefix", o.EtcdPrefix,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(port),
		"--tls-cert-file", f.Cert,
		"--tls-private-key-file", f.Key,
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", f.Tokens,
		"--authorization-mode", "RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", f.SAKey,
		"--service-account-signing-key-file", f.SAKey,
		"--service-cluster-ip-range", o.ServiceClusterIPRange,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
	t.Cleanup(s.Stop)
	if err := s.start(argv); err != nil {
		t.Fatal(err)
	}
	s.grantTwill()
	return s
}

// Bin finds kube-apiserver: $TWILL_KUBE_APISERVER_BIN, else
// bin/kube-apiserver in the module root.
func Bin() (string, error) {
	return etcdtest.FindBin("kube-apiserver", "TWILL_KUBE_APISERVER_BIN")
}

// KubectlBin finds kubectl: $TWILL_KUBECTL_BIN, else bin/kubectl in the
// module root.
func KubectlBin() (string, error) {
	return etcdtest.FindBin("kubectl", "TWILL_KUBECTL_BIN")
}

// start runs the process and waits for /readyz.
func (s *Server) start(argv []string) error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("kubetest: log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// It dies with the test process, even one killed (etcdtest.StartChild).
	done, err := etcdtest.StartChild(cmd)
	logf.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("kubetest: start %s: %w", argv[0], err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	hc, err := s.httpClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("kubetest: kube-apiserver exited at start; log %s:\n%s", s.LogFile, s.tail(20))
		default:
		}
		if last = s.ready(hc); last == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: kube-apiserver at %s not ready after %s: %v; log:\n%s", s.URL, readyTimeout, last, s.tail(20))
}

func (s *Server) httpClient() (*http.Client, error) {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// ready asks /readyz once, as admin.
func (s *Server) ready(hc *http.Client) error {
	req, err := http.NewRequest(http.MethodGet, s.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.tokens[Admin])
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// grantTwill installs kube.ClusterRole() and binds it to user "twill".
func (s *Server) grantTwill() {
	s.t.Helper()
	c := s.Client(Admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, kube.ClusterRole(), metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("kubetest: create the shipped ClusterRole: %v", err)
	}
	s.Bind(Twill, kube.ClusterRoleName)
}

// Bind binds the ClusterRole named role to the token user (a
// ClusterRoleBinding named "<role>-<user>").
func (s *Server) Bind(userName, role string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-" + userName},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: userName}},
	}
	if _, err := s.Client(Admin).RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("kubetest: bind ClusterRole %s to user %s: %v", role, userName, err)
	}
}

// Token returns the user's bearer token.
func (s *Server) Token(userName string) string {
	s.t.Helper()
	tok, ok := s.tokens[userName]
	if !ok {
		s.t.Fatalf("kubetest: no user %q (add it to Options.Users)", userName)
	}
	return tok
}

// RESTConfig returns a client config for the token user.
func (s *Server) RESTConfig(userName string) *rest.Config {
	s.t.Helper()
	return &rest.Config{Host: s.URL, BearerToken: s.Token(userName), TLSClientConfig: rest.TLSClientConfig{CAFile: s.CAFile}, QPS: 100, Burst: 200}
}

// Client returns a clientset for the token user.
func (s *Server) Client(userName string) kubernetes.Interface {
	s.t.Helper()
	c, err := kubernetes.NewForConfig(s.RESTConfig(userName))
	if err != nil {
		s.t.Fatalf("kubetest: client for %s: %v", userName, err)
	}
	return c
}

// Kubeconfig writes a kubeconfig for the token user and returns its path.
func (s *Server) Kubeconfig(userName string) string {
	s.t.Helper()
	p := filepath.Join(s.Dir, "kubeconfig-"+userName)
	kc := kubecreds.Kubeconfig("kubetest", s.URL, s.CAFile, userName, s.Token(userName))
	if err := os.WriteFile(p, kc, 0o600); err != nil {
		s.t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return p
}

// Stop terminates the API server (SIGTERM, then SIGKILL after 10s) and
// waits for it. Safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// tail returns the last n lines of the log.
func (s *Server) tail(n int) string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
