package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics, on their own registry so tests
// can run several agents in one process.
type metrics struct {
	reg             *prometheus.Registry
	lease           *prometheus.GaugeVec
	peers           prometheus.Gauge
	repairs         *prometheus.CounterVec
	reconcile       prometheus.Histogram
	reconcileErrors prometheus.Counter
	storeErrors     prometheus.Counter
	storeUp         prometheus.Gauge
	peersRejected   *prometheus.GaugeVec
	leaseLost       prometheus.Counter
	ready           prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		lease: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "twill_lease_info", Help: "The node's pod subnet lease (value 1), labelled with the subnet.",
		}, []string{"subnet"}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twill_peers", Help: "Number of peer nodes currently programmed.",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twill_repairs_total", Help: "Objects the agent had to (re)create or correct, by kind (route, neighbor, fdb, link, sysctl, masquerade, forward, guard, subnet-file, ...).",
		}, []string{"kind"}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "twill_reconcile_duration_seconds", Help: "Time of one full reconcile (capture, compare, repair).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twill_reconcile_errors_total", Help: "Reconciles that failed (they are retried at the next interval).",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twill_store_errors_total", Help: "Errors talking to the lease store (etcd or the Kubernetes API).",
		}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twill_store_up", Help: "Whether the lease store (etcd or the Kubernetes API) answers: 1, or 0 during an outage (the node keeps its programmed network).",
		}),
		peersRejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "twill_peers_rejected", Help: "Leases in the store left out of the peer set now, by reason (malformed, subnet, public-ip, vtep-mac, backend, conflict).",
		}, []string{"reason"}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twill_lease_lost_total", Help: "Times this node's own lease disappeared from the store (deleted, expired or taken over) and was acquired again.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twill_ready", Help: "1 when the lease, device, rules and subnet file are in place.",
		}),
	}
	m.reg.MustRegister(m.lease, m.peers, m.repairs, m.reconcile, m.reconcileErrors, m.storeErrors, m.storeUp, m.peersRejected, m.leaseLost, m.ready)
	return m
}
