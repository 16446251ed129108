package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// DefaultTTL is the lease TTL when Options.TTL is zero. A node that stops
// renewing (crashed, partitioned from etcd) loses its subnet to the pool,
// and its peers drop its routes, after this long. Flannel uses 24h, which
// keeps dead nodes' routes for a day; 60s lets the peers follow a departed
// node within a minute, while a restart of the agent (seconds) or an etcd
// outage shorter than the TTL loses nothing. Renewals go out every TTL/3.
const DefaultTTL = 60 * time.Second

// Options configures New.
type Options struct {
	// Endpoints are etcd's client URLs, e.g. "http://10.0.0.1:2379" or
	// "https://etcd.example:2379". Required.
	Endpoints []string
	// Prefix is the key prefix (default lease.DefaultPrefix).
	Prefix string
	// CertFile and KeyFile are a PEM client certificate and its key; CAFile
	// is the PEM CA bundle that signed etcd's server certificate. Any of them
	// makes the client use TLS, and then every endpoint must be https://.
	CertFile, KeyFile, CAFile string
	// TTL of the node's lease (default DefaultTTL, minimum 2s; whole seconds).
	TTL time.Duration
	// Dial, when set, opens the client's TCP connections, e.g. from inside a
	// network namespace (nsrun.Do) when etcd is only reachable there.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Logger receives renewal, re-acquire and resync messages (default slog.Default()).
	Logger *slog.Logger
}

// Store is the etcd v3 implementation of lease.Store. It holds at most one
// lease of its own: the one Acquire returned last.
type Store struct {
	c      *clientv3.Client
	prefix string
	ttl    time.Duration
	log    *slog.Logger

	mu  sync.Mutex
	own *owned // nil before Acquire and after Release
}

// owned is this node's lease and what is needed to renew or re-acquire it.
type owned struct {
	lease lease.Lease
	id    clientv3.LeaseID
	cfg   netconf.Config
	req   lease.Request
}

var _ lease.Store = (*Store)(nil)

// New checks the options and creates a client. It does not wait for etcd:
// an unreachable etcd shows up as errors of the calls, which retry.
func New(ctx context.Context, o Options) (*Store, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints: pass etcd's client URLs (e.g. http://10.0.0.1:2379)")
	}
	if o.Prefix == "" {
		o.Prefix = lease.DefaultPrefix
	}
	if !strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("etcd prefix %q: must start with /", o.Prefix)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < 2*time.Second {
		return nil, fmt.Errorf("etcd lease TTL %s: must be at least 2s", o.TTL)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cfg := clientv3.Config{
		Endpoints:            o.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		Context:              context.WithoutCancel(ctx),
	}
	tc, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	for _, ep := range o.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("etcd endpoint %q: want a URL like http://10.0.0.1:2379 or https://etcd:2379", ep)
		}
		if tc != nil && u.Scheme != "https" {
			return nil, fmt.Errorf("etcd endpoint %s: TLS files are given but the endpoint is %s://: use https://%s", ep, u.Scheme, u.Host)
		}
	}
	cfg.TLS = tc
	// gRPC's default reconnect backoff grows to 2 minutes: after an etcd
	// outage the lease would expire before the client even tried again.
	// Reconnect at least every 2s instead.
	cfg.DialOptions = []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 2 * time.Second,
	})}
	if o.Dial != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(o.Dial))
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return &Store{c: c, prefix: strings.TrimRight(o.Prefix, "/"), ttl: o.TTL.Truncate(time.Second), log: o.Logger}, nil
}

// tlsConfig loads the TLS files of o; nil when none is given.
func tlsConfig(o Options) (*tls.Config, error) {
	if o.CertFile == "" && o.KeyFile == "" && o.CAFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("etcd TLS: client certificate %q and key %q: give both or neither", o.CertFile, o.KeyFile)
	}
	if o.CertFile != "" {
		for _, f := range []struct{ what, path string }{{"client certificate", o.CertFile}, {"client key", o.KeyFile}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("etcd TLS %s: %w", f.what, err)
			}
		}
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS client certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("etcd TLS CA file %s: no PEM certificate in it", o.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Client is the underlying etcd client (for the lab and tests).
func (s *Store) Client() *clientv3.Client { return s.c }

// Prefix is the key prefix in use, without a trailing slash.
func (s *Store) Prefix() string { return s.prefix }

// TTL is the lease TTL in use.
func (s *Store) TTL() time.Duration { return s.ttl }

// Lease returns this node's current lease, if it holds one.
func (s *Store) Lease() (lease.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own == nil {
		return lease.Lease{}, false
	}
	return s.own.lease, true
}

// Close closes the client without releasing the lease: the key stays until
// its TTL runs out, so a restarting node finds it again.
func (s *Store) Close() error { return s.c.Close() }

// Ping reads the count of keys at the config key: one small round trip.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.c.Get(ctx, ConfigKey(s.prefix), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}
