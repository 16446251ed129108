package labserve

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort is a TCP and UDP port free on localhost now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestCallNameResolvesAndReadsTheLine(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "pod-x", port) }()
	var a Answer
	var err error
	for i := 0; i < 100; i++ { // until the server listens
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		a, err = CallName(cctx, "localhost:"+strconv.Itoa(port))
		ccancel()
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("CallName(localhost:%d): %v", port, err)
	}
	if a.Name != "localhost" || len(a.Addrs) == 0 || !strings.HasPrefix(a.Line, "pod-x ") {
		t.Fatalf("answer %+v: want localhost's addresses and the line of pod-x", a)
	}
	if s := a.String(); !strings.HasPrefix(s, "localhost -> ") || !strings.HasSuffix(s, ": "+a.Line) {
		t.Errorf("String() = %q", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestCallNameErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := CallName(ctx, "web"); err == nil || !strings.Contains(err.Error(), "want host:port") {
		t.Errorf("no port: %v, want an error asking for host:port", err)
	}
	if _, err := CallName(ctx, "no-such-name.invalid:80"); err == nil || !strings.Contains(err.Error(), "resolve") {
		t.Errorf("unknown name: %v, want a resolve error", err)
	}
	port := freePort(t) // nothing listens there
	_, err := CallName(ctx, "127.0.0.1:"+strconv.Itoa(port))
	if err == nil || !strings.Contains(err.Error(), "none answered") {
		t.Errorf("closed port: %v, want none answered", err)
	}
}
