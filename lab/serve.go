package lab

import (
	"context"

	"github.com/twillnet/twill/labserve"
)

// Serve is the pod server (`twill lab serve`): see labserve.Serve.
func Serve(ctx context.Context, name string, port int) error {
	return labserve.Serve(ctx, name, port)
}

// ServeEcho is Serve plus a line echo on echoPort: see labserve.ServeEcho.
func ServeEcho(ctx context.Context, name string, port, echoPort int) error {
	return labserve.ServeEcho(ctx, name, port, echoPort)
}
