package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Serve is the pod server (`twill lab serve`): on TCP port it answers every
// connection with one line "<name> <remote ip:port as seen here>\n" and
// closes it; on UDP port it answers every datagram with the same line. The
// remote address is the point: it shows whether the client was NATed. Serve
// returns when ctx is done.
func Serve(ctx context.Context, name string, port int) error {
	addr := ":" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	defer pc.Close()
	slog.Info("lab server listening", "pod", name, "tcp", addr, "udp", addr)
	go func() {
		<-ctx.Done()
		ln.Close()
		pc.Close()
	}()
	go serveUDP(name, pc)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			slog.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
		}()
	}
}

func serveUDP(name string, pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, from)), from)
	}
}
