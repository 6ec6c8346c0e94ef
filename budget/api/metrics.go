package api

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/shopspring/decimal"
)

// metrics are the service's Prometheus metrics, on a registry of its own
// (never the global one: tests build many servers in one process).
// Money gauges are floats because Prometheus has no other type; they are
// for dashboards only, and the ledger stays decimal.
type metrics struct {
	reg *prometheus.Registry

	holds            *prometheus.CounterVec
	denials          *prometheus.CounterVec
	settlements      *prometheus.CounterVec
	holdLatency      prometheus.Histogram
	settleLatency    prometheus.Histogram
	asbx             *prometheus.CounterVec
	spoolBacklog     *prometheus.GaugeVec
	recoveryReleases *prometheus.CounterVec
	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	workerRuns       *prometheus.CounterVec
	workerLast       *prometheus.GaugeVec
	collectors       []prometheus.Collector
}

// latencyBuckets span a durable hold's 0.5 ms to a contended second.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.holds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_holds_total",
		Help: "Admissions through /budget/check by outcome (held, free, refused, shadow, db_accept, db_reject, invalid, error)."}, []string{"outcome"})
	m.denials = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_denials_total",
		Help: "Budget refusals by reason code (insufficient_funds, partition_month_cap, ...)."}, []string{"code"})
	m.settlements = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_settlements_total",
		Help: "Settlements through /budget/reconcile and the spool by outcome (charged, duplicate, not_found, invalid, unavailable, error)."}, []string{"outcome"})
	m.holdLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "asbb_hold_duration_seconds",
		Help: "Time to price and hold a job (budget.Ledger.Admit) in /budget/check.", Buckets: latencyBuckets})
	m.settleLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "asbb_settle_duration_seconds",
		Help: "Time to settle a job in /budget/reconcile.", Buckets: latencyBuckets})
	m.asbx = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_asbx_reconciliations_total",
		Help: "ASBX cost reports by source (http, file) and outcome (corrected, unchanged, charged, pending, duplicate, failed)."}, []string{"source", "outcome"})
	m.spoolBacklog = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "asbb_spool_backlog",
		Help: "Files waiting in a spool (asbx: ASBX cost files; settle: spooled settlements; asbx_pending: reports waiting for their job's charge)."}, []string{"spool"})
	m.recoveryReleases = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_recovery_releases_total",
		Help: "Orphaned holds released by the recovery worker, by reason."}, []string{"reason"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_http_requests_total",
		Help: "HTTP requests by method, route pattern and status code."}, []string{"method", "route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "asbb_http_request_duration_seconds",
		Help: "HTTP request latency by route pattern.", Buckets: latencyBuckets}, []string{"route"})
	m.workerRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "asbb_worker_runs_total",
		Help: "Background worker runs by worker and result (ok, error, skipped: another instance held the lock)."}, []string{"worker", "result"})
	m.workerLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "asbb_worker_last_success_timestamp_seconds",
		Help: "Unix time of each worker's last successful run."}, []string{"worker"})
	m.collectors = []prometheus.Collector{m.holds, m.denials, m.settlements, m.holdLatency, m.settleLatency, m.asbx,
		m.spoolBacklog, m.recoveryReleases, m.httpRequests, m.httpDuration, m.workerRuns, m.workerLast,
		&ledgerCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	for _, c := range m.collectors {
		f(c)
	}
	return m
}

// describe sends the descriptions of every metric the service registers
// (the contrib test checks dashboards and alert rules against them).
func (m *metrics) describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// descName is a description's metric name (Desc has no accessor for it).
func descName(d *prometheus.Desc) string {
	s := d.String()
	_, rest, ok := strings.Cut(s, `fqName: "`)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, `"`)
	return name
}

func (m *metrics) observeHTTP(method, route string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// ledgerCollector reads every account's totals at scrape time, so the
// gauges are the ledger's own numbers (and agree across instances).
type ledgerCollector struct{ s *Server }

var (
	descDeposited = prometheus.NewDesc("asbb_account_deposited", "Money deposited into the account (budget_limit).", []string{"account", "cluster", "currency"}, nil)
	descSpent     = prometheus.NewDesc("asbb_account_spent", "Money charged to the account (budget_used).", []string{"account", "cluster", "currency"}, nil)
	descHeld      = prometheus.NewDesc("asbb_account_held", "Money held for running and pending jobs.", []string{"account", "cluster", "currency"}, nil)
	descAvailable = prometheus.NewDesc("asbb_account_available", "deposited - spent - held + credit_limit.", []string{"account", "cluster", "currency"}, nil)
	descAccounts  = prometheus.NewDesc("asbb_budget_accounts_total", "Accounts by status.", []string{"status"}, nil)
	descActive    = prometheus.NewDesc("asbb_active_holds", "Holds still open.", nil, nil)
	descDBUp      = prometheus.NewDesc("asbb_database_up", "1 if the last scrape could read the ledger.", nil, nil)
)

func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDeposited, descSpent, descHeld, descAvailable, descAccounts, descActive, descDBUp} {
		ch <- d
	}
}

func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up := 1.0
	if err := c.collect(ctx, ch); err != nil {
		c.s.log.Warn("metrics: cannot read the ledger", "error", err)
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descDBUp, prometheus.GaugeValue, up)
}

func (c *ledgerCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.s.l.Pool().Query(ctx, `SELECT slurm_account, cluster, currency, status, deposited, spent, held, credit_limit FROM accounts`)
	if err != nil {
		return err
	}
	defer rows.Close()
	byStatus := map[string]float64{"active": 0, "suspended": 0, "closed": 0}
	for rows.Next() {
		var name, cluster, cur, status string
		var dep, spent, held, credit decimal.Decimal
		if err := rows.Scan(&name, &cluster, &cur, &status, &dep, &spent, &held, &credit); err != nil {
			return err
		}
		byStatus[status]++
		g := func(d *prometheus.Desc, v decimal.Decimal) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v.InexactFloat64(), name, cluster, cur)
		}
		g(descDeposited, dep)
		g(descSpent, spent)
		g(descHeld, held)
		g(descAvailable, dep.Sub(spent).Sub(held).Add(credit))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for st, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(descAccounts, prometheus.GaugeValue, n, st)
	}
	var active int64
	if err := c.s.l.Pool().QueryRow(ctx, `SELECT count(*) FROM holds WHERE status = 'active'`).Scan(&active); err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(active))
	return nil
}
