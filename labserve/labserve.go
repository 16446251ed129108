// Package labserve is the lab's pod server: the line server every lab pod
// runs (`twill lab serve` in the namespace labs, the twill-testserver image on
// real nodes). It has no dependencies beyond the standard library, so the
// test-server image stays a few megabytes.
package labserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Serve is the lab's pod server (`twill lab serve`, the test-server image): on TCP port it answers every
// connection with one line "<name> <remote ip:port as seen here>\n" and
// closes it; on UDP port it answers every datagram with the same line. The
// remote address is the point: it shows whether the client was NATed. Serve
// returns when ctx is done.
func Serve(ctx context.Context, name string, port int) error {
	return ServeEcho(ctx, name, port, 0)
}

// ServeEcho is Serve plus, when echoPort is not 0, a TCP echo service on
// echoPort: it greets with the same line, then writes back every line it
// reads until the client closes. Stream uses it to keep one connection busy.
func ServeEcho(ctx context.Context, name string, port, echoPort int) error {
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
	var echo net.Listener
	if echoPort != 0 {
		if echo, err = net.Listen("tcp", ":"+strconv.Itoa(echoPort)); err != nil {
			return fmt.Errorf("serve %s: echo: %w", name, err)
		}
		defer echo.Close()
	}
	slog.Info("lab server listening", "pod", name, "tcp", addr, "udp", addr, "echo", echoPort)
	go func() {
		<-ctx.Done()
		ln.Close()
		pc.Close()
		if echo != nil {
			echo.Close()
		}
	}()
	go serveUDP(name, pc)
	if echo != nil {
		go accept(ctx, echo, func(c net.Conn) { serveEchoConn(name, c) })
	}
	accept(ctx, ln, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
	})
	return nil
}

// accept runs handle for every connection (and closes it afterwards) until
// the listener is closed.
func accept(ctx context.Context, ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			slog.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// serveEchoConn greets, then echoes lines until the client closes or stays
// silent for a minute.
func serveEchoConn(name string, c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr()); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(line)); err != nil {
			return
		}
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
