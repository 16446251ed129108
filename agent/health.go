package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// health holds what /healthz and /readyz report.
type health struct {
	mu       sync.Mutex
	ready    bool
	notReady string // why not ready, for /readyz
	lastOK   time.Time
	lastErr  string
	interval time.Duration
}

func (h *health) setReady(ok bool, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready, h.notReady = ok, why
}

func (h *health) reconciled(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.lastOK, h.lastErr = time.Now(), ""
	} else {
		h.lastErr = err.Error()
	}
}

// serveHealth serves /healthz, /readyz and /metrics on addr until ctx ends.
// /healthz fails when no reconcile has succeeded for 6 intervals (the loop
// is stuck); /readyz fails until the node's networking is in place.
func serveHealth(ctx context.Context, addr string, h *health, m *metrics) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.lastOK.IsZero() && time.Since(h.lastOK) > 6*h.interval {
			http.Error(w, fmt.Sprintf("no successful reconcile for %s: %s", time.Since(h.lastOK).Round(time.Second), h.lastErr), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.ready {
			http.Error(w, "not ready: "+h.notReady, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health server on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.reconciled(fmt.Errorf("health server: %w", err))
		}
	}()
	return ln.Addr(), nil
}
