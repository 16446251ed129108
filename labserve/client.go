package labserve

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
)

// Answer is what CallName found: the addresses the name resolved to and
// the server's line from the first of them that answered.
type Answer struct {
	// Name is the host part of the address called, as given.
	Name string
	// Addrs are the addresses the resolver returned for Name, in its order.
	Addrs []string
	// Line is the server's line ("<pod name> <client ip:port>"), without
	// its newline.
	Line string
}

// String is the answer as the test server prints it:
// "<name> -> <addr>[,<addr>...]: <line>".
func (a Answer) String() string {
	return fmt.Sprintf("%s -> %s: %s", a.Name, strings.Join(a.Addrs, ","), a.Line)
}

// CallName resolves the host of hostport with the system's resolver (in a
// pod: the nameserver, search path and ndots kubelet wrote into its
// /etc/resolv.conf, so a Service's short name works) and reads one line
// from the lab server at the first address that accepts a TCP connection.
// ctx bounds the lookup and the call.
func CallName(ctx context.Context, hostport string) (Answer, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Answer{}, fmt.Errorf("call %q: want host:port (e.g. web:80): %w", hostport, err)
	}
	a := Answer{Name: host}
	if a.Addrs, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
		return a, fmt.Errorf("call %s: resolve: %w", hostport, err)
	}
	var lastErr error
	for _, ip := range a.Addrs {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
		if err != nil {
			lastErr = err
			continue
		}
		defer c.Close()
		if d, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(d)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && line == "" {
			return a, fmt.Errorf("call %s (%s): read: %w", hostport, ip, err)
		}
		a.Line = strings.TrimRight(line, "\n")
		return a, nil
	}
	return a, fmt.Errorf("call %s: resolved to %s, none answered: %w", hostport, strings.Join(a.Addrs, ", "), lastErr)
}
