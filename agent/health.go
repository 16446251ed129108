package agent

import (
	"context"
	"encoding/json"
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
	// storeDown and storeErr describe a store outage (the store field of
	// /readyz).
	storeDown bool
	storeErr  string
}

// setStore records whether the store answers and reports whether that
// changed (the first error of an outage, or its end).
func (h *health) setStore(ok bool, why string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.storeDown == ok
	h.storeDown, h.storeErr = !ok, why
	return changed
}

// readiness is the JSON body of /readyz.
type readiness struct {
	// Ready is true once the node's network is programmed; it stays true
	// during a store outage (the node keeps forwarding with what it has).
	Ready bool `json:"ready"`
	// Reason says why the node is not ready.
	Reason string `json:"reason,omitempty"`
	// Store is "ok", or "degraded" while the store does not answer (peers
	// that join or leave meanwhile are not seen).
	Store string `json:"store"`
	// StoreError is the last store error during an outage.
	StoreError string `json:"storeError,omitempty"`
}

// getOnly answers 405 to anything but GET and HEAD.
func getOnly(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
			return
		}
		f(w, r)
	}
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
// is stuck); /readyz fails until the node's networking is in place, and
// answers JSON (readiness) with a store field. Methods other than GET and
// HEAD get 405.
func serveHealth(ctx context.Context, addr string, h *health, m *metrics) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", getOnly(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.lastOK.IsZero() && time.Since(h.lastOK) > 6*h.interval {
			http.Error(w, fmt.Sprintf("no successful reconcile for %s: %s", time.Since(h.lastOK).Round(time.Second), h.lastErr), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	mux.HandleFunc("/readyz", getOnly(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		r := readiness{Ready: h.ready, Store: "ok"}
		if !h.ready {
			r.Reason = h.notReady
		}
		if h.storeDown {
			r.Store, r.StoreError = "degraded", h.storeErr
		}
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !r.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(r)
	}))
	mux.Handle("/metrics", getOnly(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP))
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
