package agent

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// exportedMetrics lists the metric names the agent serves on /metrics,
// taken from every collector of its metrics (so metrics added later count
// without touching this test), with the series names of histograms and
// summaries (_bucket, _sum, _count).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := newMetrics()
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() {
			f = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem()
		}
		c, ok := f.Interface().(prometheus.Collector)
		if !ok || f.Type() == reflect.TypeFor[*prometheus.Registry]() {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			sm := fqName.FindStringSubmatch(d.String())
			if sm == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[sm[1]] = true
			switch c.(type) {
			case prometheus.Histogram, *prometheus.HistogramVec, prometheus.Summary, *prometheus.SummaryVec:
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[sm[1]+s] = true
				}
			}
		}
	}
	// What the registry serves must be among them (a collector not in the
	// struct would be missed above).
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if !names[f.GetName()] {
			t.Fatalf("the registry serves %s, which the metrics struct does not hold", f.GetName())
		}
	}
	if len(names) < 5 {
		t.Fatalf("found only %v", names)
	}
	return names
}

// TestGrafanaDashboard validates deploy/grafana-dashboard.json: it parses,
// every panel has queries, and every query names only metrics the agent
// exports.
func TestGrafanaDashboard(t *testing.T) {
	exported := exportedMetrics(t)
	raw, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	metricRef := regexp.MustCompile(`\btwill_[a-z0-9_]+`)
	used := map[string]bool{}
	check := func(where, expr string) {
		refs := metricRef.FindAllString(expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: %q names no twill metric", where, expr)
		}
		for _, r := range refs {
			if !exported[r] {
				t.Errorf("%s: %s is not a metric the agent exports", where, r)
			}
			used[r] = true
		}
		if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
			t.Errorf("%s: unbalanced brackets in %q", where, expr)
		}
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			check("panel "+p.Title+" "+q.RefID, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			check("variable "+v.Name, v.Definition)
		}
	}
	// The issue asks for these on the dashboard.
	for _, want := range []string{"twill_reconcile_duration_seconds_bucket", "twill_repairs_total", "twill_peers", "twill_store_errors_total", "twill_ready", "twill_store_up", "twill_peers_rejected", "twill_lease_lost_total"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	var unused []string
	for n := range exported {
		if !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_count") && !used[n+"_bucket"] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	if len(unused) > 0 {
		t.Logf("metrics without a panel yet: %s", strings.Join(unused, ", "))
	}
}
