package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// ConfigKey returns the key of the network config under prefix.
func ConfigKey(prefix string) string { return prefix + "/config" }

// Config reads <prefix>/config and parses it as net-conf.json. The error is
// lease.ErrNoConfig (wrapped) when the key is absent, a
// *lease.FlannelConfigError when Flannel's config key exists instead; parse
// errors name the key.
func (s *Store) Config(ctx context.Context) (netconf.Config, error) {
	key := ConfigKey(s.prefix)
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return netconf.Config{}, fmt.Errorf("etcd: read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		if fk := ConfigKey(lease.FlannelPrefix); s.prefix != lease.FlannelPrefix {
			if fr, err := s.c.Get(ctx, fk, clientv3.WithCountOnly()); err == nil && fr.Count > 0 {
				return netconf.Config{}, &lease.FlannelConfigError{Key: key, FlannelKey: fk, FlannelPrefix: lease.FlannelPrefix}
			}
		}
		return netconf.Config{}, fmt.Errorf("%w: etcd key %s is absent: write the cluster's net-conf.json there (e.g. etcdctl put %s '{\"Network\": \"10.244.0.0/16\"}') or pass the config file to the agent", lease.ErrNoConfig, key, key)
	}
	return netconf.Parse("etcd key "+key, resp.Kvs[0].Value)
}

// PutConfig validates cfg (defaults applied as netconf.Parse does) and
// writes it to <prefix>/config, for the lab and tests.
func (s *Store) PutConfig(ctx context.Context, cfg netconf.Config) error {
	key := ConfigKey(s.prefix)
	norm, err := netconf.Parse("config for "+key, cfg.JSON())
	if err != nil {
		return err
	}
	if _, err := s.c.Put(ctx, key, string(norm.JSON())); err != nil {
		return fmt.Errorf("etcd: write %s: %w", key, err)
	}
	return nil
}
