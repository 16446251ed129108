package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/twillnet/twill/nsrun"
)

// StreamResult is what one long-lived connection went through.
type StreamResult struct {
	From, To string
	// Greeting is the server's first line ("<pod> <client address>").
	Greeting string
	// RoundTrips is how many lines came back intact.
	RoundTrips int
	// Longest is the slowest round trip (a stall shows here).
	Longest time.Duration
	// Took is how long the stream ran.
	Took time.Duration
	// Reset is true when the connection was reset or closed by the other
	// side (what a disturbed stream looks like).
	Reset bool
	// Err says why the stream stopped early ("" when it ran its course).
	Err string
}

// OK tells whether the stream ran its whole duration without an error.
func (r StreamResult) OK() bool { return r.Err == "" && !r.Reset && r.RoundTrips > 0 }

// String is the one-line report `lab stream` prints.
func (r StreamResult) String() string {
	s := fmt.Sprintf("%d round trips in %s over one connection (slowest %s), ", r.RoundTrips, r.Took.Round(10*time.Millisecond), r.Longest.Round(time.Millisecond))
	switch {
	case r.Reset:
		return s + "connection RESET: " + r.Err
	case r.Err != "":
		return s + "FAILED: " + r.Err
	}
	return s + "no reset"
}

// streamStall bounds one round trip: longer counts as a failed stream.
const streamStall = 5 * time.Second

// Stream opens one TCP connection from inside namespace ns to addr (a pod's
// echo port, EchoPort) and does a round trip every interval until d has
// passed or ctx ends: it proves a connection survives what happens
// meanwhile (an agent killed and restarted, etcd stopped). Connection
// failures are reported in the result, not as an error.
func Stream(ctx context.Context, ns, addr string, d, interval time.Duration) (r StreamResult) {
	return StreamWithin(ctx, ns, addr, d, interval, streamStall)
}

// StreamWithin is Stream with its own bound on one round trip (stall): a
// round trip that takes longer fails the stream. Use it where a known gap
// is longer than Stream's 5 s (a daemon that must start before traffic
// flows again); StreamResult.Longest tells how long the worst one took.
func StreamWithin(ctx context.Context, ns, addr string, d, interval, stall time.Duration) (r StreamResult) {
	if stall <= 0 {
		stall = streamStall
	}
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	r = StreamResult{From: ns, To: addr}
	start := time.Now()
	defer func() { r.Took = time.Since(start) }()
	var conn net.Conn
	err := nsrun.Do(ns, func() error {
		var err error
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err = (&net.Dialer{}).DialContext(dctx, "tcp", addr)
		return err
	})
	if err != nil {
		r.Err = "connect: " + reason(err, 3*time.Second)
		return r
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(stall))
	g, err := rd.ReadString('\n')
	if err != nil {
		r.fail(err, "greeting", stall)
		return r
	}
	r.Greeting = strings.TrimSpace(g)
	end := time.Now().Add(d)
	for i := 1; time.Now().Before(end); i++ {
		if ctx.Err() != nil {
			r.Err = "interrupted"
			return r
		}
		msg := fmt.Sprintf("round trip %d\n", i)
		t0 := time.Now()
		_ = conn.SetDeadline(t0.Add(stall))
		if _, err := io.WriteString(conn, msg); err != nil {
			r.fail(err, "write", stall)
			return r
		}
		got, err := rd.ReadString('\n')
		if err != nil {
			r.fail(err, "read", stall)
			return r
		}
		if got != msg {
			r.Err = fmt.Sprintf("round trip %d: got %q back (is %s an echo port? pods echo on :%d)", i, strings.TrimSpace(got), addr, EchoPort)
			return r
		}
		r.RoundTrips++
		r.Longest = max(r.Longest, time.Since(t0))
		time.Sleep(interval)
	}
	return r
}

// fail records why the stream stopped; a reset or close by the peer sets Reset.
func (r *StreamResult) fail(err error, what string, stall time.Duration) {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) {
		r.Reset = true
	}
	msg := reason(err, stall)
	if errors.Is(err, io.EOF) {
		msg = "closed by the server"
		if r.Greeting != "" && r.RoundTrips == 0 {
			msg += fmt.Sprintf(" (is %s an echo port? pods echo on :%d)", r.To, EchoPort)
		}
	}
	r.Err = what + ": " + msg
}
