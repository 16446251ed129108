package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/twillnet/twill/nsrun"
)

// CallError is a failed call, with a short reason a person can act on
// ("timed out after 3s", "connection refused", "reset by peer", ...).
type CallError struct {
	From, To string
	Reason   string
	Err      error
}

func (e *CallError) Error() string { return fmt.Sprintf("%s -> %s: %s", e.From, e.To, e.Reason) }
func (e *CallError) Unwrap() error { return e.Err }

// Call connects from inside namespace ns to addr (host:port) over TCP (or
// sends one UDP datagram) and returns the server's line. The whole call is
// bounded by timeout.
func Call(ctx context.Context, ns, addr string, timeout time.Duration, udp bool) (string, error) {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	network := "tcp"
	if udp {
		network = "udp"
	}
	var conn net.Conn
	err := nsrun.Do(ns, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return "", &CallError{From: ns, To: addr, Reason: reason(err, timeout), Err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	if udp {
		if _, err := conn.Write([]byte("hello\n")); err != nil {
			return "", &CallError{From: ns, To: addr, Reason: reason(err, timeout), Err: err}
		}
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && line == "" {
		return "", &CallError{From: ns, To: addr, Reason: reason(err, timeout), Err: err}
	}
	return strings.TrimRight(line, "\n"), nil
}

// reason turns a network error into the words the lab prints.
func reason(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("timed out after %s", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset by peer"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timed out after %s", timeout)
	}
	return err.Error()
}
