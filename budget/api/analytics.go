package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/asbb/asbb/budget"
)

// Analytics: burn rates, health scores, alerts and grant reports. The
// numbers are budget's (budget.Ledger.AccountBurnRate and friends); these
// handlers parse the query, call, and encode (exact decimal strings).
func (s *Server) routesAnalytics() {
	s.handle("GET /api/v1/burn-rate/{account}", RoleRead, s.accountBurnRate)
	s.handle("GET /api/v1/burn-rate/grant/{grant_number}", RoleRead, s.grantBurnRate)
	s.handle("GET /api/v1/analytics/health-score", RoleRead, s.healthScores)
	s.handle("GET /api/v1/alerts", RoleRead, s.listAlerts)
	s.handle("POST /api/v1/alerts/{id}/acknowledge", RoleAdmin, s.acknowledgeAlert)
	s.handle("POST /api/v1/grants/{grant_number}/reports", RoleRead, s.grantReport)
	// EvaluateAlerts takes its own advisory lock (a second instance skips
	// its turn) and the alerts table's unique index deduplicates anyway.
	s.AddWorker(Worker{Name: "alerts", Interval: s.cfg.Alerts.Interval.Duration, Fn: s.evaluateAlerts})
	c := &alertCollector{s: s}
	s.metrics.reg.MustRegister(c)
	s.metrics.collectors = append(s.metrics.collectors, c)
}

func (s *Server) evaluateAlerts(ctx context.Context) error {
	_, err := s.l.EvaluateAlerts(ctx)
	return err
}

// burnOptions reads ?period=30d or ?from=&to= (RFC 3339 or YYYY-MM-DD;
// a date "to" is inclusive) and ?series=false.
func (s *Server) burnOptions(r *http.Request) (budget.BurnOptions, error) {
	q := r.URL.Query()
	o := budget.BurnOptions{Series: q.Get("series") != "false"}
	period, from, to := q.Get("period"), q.Get("from"), q.Get("to")
	switch {
	case period != "" && (from != "" || to != ""):
		return o, invalid("period", "give period or from/to, not both")
	case period != "":
		w, err := budget.ParseWindow(period, time.Now(), s.cfg.Location())
		if err != nil {
			return o, fieldErr("period", err)
		}
		o.Window = w
	case from != "" || to != "":
		if from == "" {
			return o, invalid("from", "to needs from")
		}
		f, err := parseDate(from)
		if err != nil {
			return o, fieldErr("from", err)
		}
		t := time.Now()
		if to != "" {
			if t, err = parseDate(to); err != nil {
				return o, fieldErr("to", err)
			}
			if len(to) == len("2006-01-02") {
				t = t.AddDate(0, 0, 1)
			}
		}
		w, err := budget.WindowBetween(f, t)
		if err != nil {
			return o, fieldErr("from", err)
		}
		o.Window = w
	}
	return o, nil
}

func (s *Server) accountBurnRate(w http.ResponseWriter, r *http.Request) error {
	o, err := s.burnOptions(r)
	if err != nil {
		return err
	}
	b, err := s.l.AccountBurnRate(r.Context(), r.URL.Query().Get("cluster"), r.PathValue("account"), o)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, b)
}

func (s *Server) grantBurnRate(w http.ResponseWriter, r *http.Request) error {
	o, err := s.burnOptions(r)
	if err != nil {
		return err
	}
	b, err := s.l.GrantBurnRate(r.Context(), r.PathValue("grant_number"), o)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, b)
}

// healthScores answers every account's health (or ?account=a&account=b)
// over ?period (default alerts.window), with a count per status.
func (s *Server) healthScores(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	accts := q["account"]
	for _, a := range accts {
		if err := budget.ValidateAccountName(a); err != nil {
			return fieldErr("account", err)
		}
	}
	hs, err := s.l.HealthScores(r.Context(), q.Get("period"), accts...)
	if err != nil {
		return fieldErr("period", err)
	}
	if len(accts) > 0 && len(hs) == 0 {
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "account",
			message: "Budget account '" + strings.Join(accts, "', '") + "' not found"}
	}
	summary := map[string]int{budget.HealthHealthy: 0, budget.HealthConcern: 0, budget.HealthWarning: 0, budget.HealthCritical: 0}
	for _, h := range hs {
		summary[h.HealthStatus]++
	}
	if hs == nil {
		hs = []budget.AccountHealth{}
	}
	return reply(w, http.StatusOK, map[string]any{"accounts": hs, "count": len(hs), "summary": summary})
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := budget.AlertFilter{Status: q.Get("status"), Account: q.Get("account"), Grant: q.Get("grant"), Severity: q.Get("severity")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return invalid("limit", "limit must be 1-10000")
		}
		f.Limit = n
	}
	as, err := s.l.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	if as == nil {
		as = []budget.Alert{}
	}
	return reply(w, http.StatusOK, map[string]any{"alerts": as, "count": len(as)})
}

// AckRequest acknowledges an alert; the original's CLI took --user and
// --notes, so both spellings of the note are accepted.
type AckRequest struct {
	Note  string `json:"note"`
	Notes string `json:"notes"`
	User  string `json:"user"`
}

func (s *Server) acknowledgeAlert(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return invalid("id", "alert id must be a positive integer")
	}
	var req AckRequest
	if r.ContentLength != 0 {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return invalid("", "cannot read request body: %v", err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeBytes(body, &req); err != nil {
				return err
			}
		}
	}
	note := req.Note
	if note == "" {
		note = req.Notes
	}
	if err := checkLen("note", note, 2000); err != nil {
		return err
	}
	if err := checkLen("user", req.User, 200); err != nil {
		return err
	}
	who := actorOf(r)
	if req.User != "" {
		who += " for " + req.User
	}
	a, err := s.l.AcknowledgeAlert(r.Context(), id, who, note)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, a)
}

// ReportRequest asks for a grant's compliance report.
type ReportRequest struct {
	Period *int   `json:"period"` // default: the current period; 0 = the whole grant
	Format string `json:"format"` // json (default), csv, html
}

func (s *Server) grantReport(w http.ResponseWriter, r *http.Request) error {
	var req ReportRequest
	if r.ContentLength != 0 {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return invalid("", "cannot read request body: %v", err)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeBytes(body, &req); err != nil {
				return err
			}
		}
	}
	if f := r.URL.Query().Get("format"); f != "" && req.Format == "" {
		req.Format = f
	}
	period := -1
	if req.Period != nil {
		if *req.Period < 0 {
			return invalid("period", "period must be a period number (0 = the whole grant)")
		}
		period = *req.Period
	}
	var write func(budget.GrantReport, io.Writer) error
	var ctype string
	switch req.Format {
	case "", "json":
		write, ctype = budget.GrantReport.WriteJSON, "application/json"
	case "csv":
		write, ctype = budget.GrantReport.WriteCSV, "text/csv; charset=utf-8"
	case "html":
		write, ctype = budget.GrantReport.WriteHTML, "text/html; charset=utf-8"
	default:
		return invalid("format", "format must be json, csv or html")
	}
	rep, err := s.l.GrantReport(r.Context(), r.PathValue("grant_number"), period)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := write(rep, &buf); err != nil {
		return err
	}
	w.Header().Set("Content-Type", ctype)
	if req.Format == "csv" || req.Format == "html" {
		ext := req.Format
		w.Header().Set("Content-Disposition", `inline; filename="`+rep.Grant.Number+"-"+strings.ReplaceAll(rep.PeriodName, " ", "-")+"."+ext+`"`)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// alertCollector exports the unresolved alerts at scrape time, from the
// table (so every instance reports the same numbers).
type alertCollector struct{ s *Server }

var descAlerts = prometheus.NewDesc("asbb_alerts_open", "Unresolved alerts by rule, severity and status (open or acknowledged).",
	[]string{"rule", "severity", "status"}, nil)

func (c *alertCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descAlerts }

func (c *alertCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.s.l.AlertCounts(ctx)
	if err != nil {
		c.s.log.Warn("metrics: cannot count alerts", "error", err)
		return
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.GaugeValue, float64(n.Count), n.Rule, n.Severity, n.Status)
	}
}
