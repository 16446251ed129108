package nsrun

import (
	"context"
	"net"
)

// Dialer returns a dial function whose TCP connections are opened inside
// the named network namespace ("" for the caller's own). A socket keeps the
// namespace it was created in, so the connection can then be used from any
// goroutine: this is how twill reaches an etcd that only the node's
// namespace can reach (gRPC: grpc.WithContextDialer).
func Dialer(ns string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}
