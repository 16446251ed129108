package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/nsrun"
)

// storeFlags say how to reach the lease store (etcd v3). Defaults come from
// TWILL_ETCD_* environment variables, so a DaemonSet can set them.
type storeFlags struct {
	endpoints             []string
	prefix                string
	certFile, keyFile, ca string
	ttl                   time.Duration
}

func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.endpoints, "etcd-endpoints", splitList(os.Getenv("TWILL_ETCD_ENDPOINTS")), "etcd client URLs, comma separated (env TWILL_ETCD_ENDPOINTS)")
	fs.StringVar(&f.prefix, "etcd-prefix", envOr("TWILL_ETCD_PREFIX", lease.DefaultPrefix), "etcd key prefix: <prefix>/config holds net-conf.json, <prefix>/subnets/ the leases (env TWILL_ETCD_PREFIX)")
	fs.StringVar(&f.certFile, "etcd-certfile", os.Getenv("TWILL_ETCD_CERTFILE"), "PEM client certificate for etcd TLS (env TWILL_ETCD_CERTFILE)")
	fs.StringVar(&f.keyFile, "etcd-keyfile", os.Getenv("TWILL_ETCD_KEYFILE"), "PEM key of the client certificate (env TWILL_ETCD_KEYFILE)")
	fs.StringVar(&f.ca, "etcd-cafile", os.Getenv("TWILL_ETCD_CAFILE"), "PEM CA bundle that signed etcd's certificate (env TWILL_ETCD_CAFILE)")
	fs.DurationVar(&f.ttl, "etcd-ttl", etcd.DefaultTTL, "lease TTL: a node that stops renewing for this long loses its lease and its peers drop its routes")
}

// open connects to the store, dialling from inside netns when set.
func (f *storeFlags) open(ctx context.Context, netns string, log *slog.Logger) (*etcd.Store, error) {
	if len(f.endpoints) == 0 {
		return nil, fmt.Errorf("no etcd endpoints: pass --etcd-endpoints (or set TWILL_ETCD_ENDPOINTS)")
	}
	return etcd.New(ctx, etcd.Options{
		Endpoints: f.endpoints, Prefix: f.prefix,
		CertFile: f.certFile, KeyFile: f.keyFile, CAFile: f.ca,
		TTL: f.ttl, Dial: nsrun.Dialer(netns), Logger: log,
	})
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
