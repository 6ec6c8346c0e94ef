package budget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Alert rules. A rule family is what alerts.rules enables; each family
// fires alerts under one or more rule names.
const (
	RuleBudgetUsed = "budget_used" // budget_used_<N>: the highest threshold crossed by (spent + held) / budget
	RuleExhaustion = "exhaustion"  // projected_exhaustion: funds run out before the period or grant ends
	RuleVariance   = "variance"    // overspending / underspending beyond alerts.variance_percent
	RuleOverrun    = "overrun"     // overrun_charge: a job cost more than its hold (within overrun_lookback)
	RuleStuckHold  = "stuck_hold"  // stuck_hold: active past recovery.reconciliation_timeout
)

// AlertRules lists every rule family, in evaluation order.
var AlertRules = []string{RuleBudgetUsed, RuleExhaustion, RuleVariance, RuleOverrun, RuleStuckHold}

// Alert statuses and severities.
const (
	AlertOpen         = "open"
	AlertAcknowledged = "acknowledged"
	AlertResolved     = "resolved"

	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// alertsLockKey is the session advisory lock ("asbb-alr") one evaluator
// holds while it evaluates; a second service instance skips its turn.
const alertsLockKey int64 = 0x617362622d616c72

// Alert is one stored alert.
type Alert struct {
	ID             int64           `json:"id"`
	Rule           string          `json:"type"`
	TargetKind     string          `json:"target_kind"`
	Target         string          `json:"target"`
	Account        string          `json:"account,omitempty"`
	Grant          string          `json:"grant_number,omitempty"`
	Severity       string          `json:"severity"`
	Status         string          `json:"status"`
	Message        string          `json:"message"`
	Details        json.RawMessage `json:"details,omitempty"`
	FireCount      int             `json:"fire_count"`
	FirstSeen      time.Time       `json:"created_at"`
	LastSeen       time.Time       `json:"last_seen"`
	AcknowledgedAt *time.Time      `json:"acknowledged_at,omitempty"`
	AcknowledgedBy *string         `json:"acknowledged_by,omitempty"`
	AckNote        *string         `json:"ack_note,omitempty"`
	ResolvedAt     *time.Time      `json:"resolved_at,omitempty"`
}

// firing is a condition found true by an evaluation.
type firing struct {
	rule, kind, target string
	accountID, grantID *int64
	severity, message  string
	details            map[string]any
}

func (f firing) key() string { return f.rule + "\x00" + f.kind + "\x00" + f.target }

// AlertRun reports one evaluation.
type AlertRun struct {
	Skipped  bool `json:"skipped"` // another evaluator held the lock
	Firing   int  `json:"firing"`
	Opened   int  `json:"opened"`
	Resolved int  `json:"resolved"`
	Notified int  `json:"notified"`
}

func (c *AlertsConfig) ruleEnabled(family string) bool {
	if len(c.Rules) == 0 {
		return true
	}
	for _, r := range c.Rules {
		if r == family {
			return true
		}
	}
	return false
}

// validate checks the alerts section (called from Config.Validate).
func (c *AlertsConfig) validate() error {
	for _, r := range c.Rules {
		found := false
		for _, k := range AlertRules {
			found = found || k == r
		}
		if !found {
			return fmt.Errorf("alerts.rules: %q is not one of %s", r, strings.Join(AlertRules, ", "))
		}
	}
	for _, t := range c.Thresholds {
		if t < 1 || t > 1000 {
			return fmt.Errorf("alerts.thresholds: %d is outside 1..1000", t)
		}
	}
	if c.VariancePercent < 1 || c.VariancePercent > 10000 {
		return fmt.Errorf("alerts.variance_percent: %d is outside 1..10000", c.VariancePercent)
	}
	if c.Window != "" && !periodRE.MatchString(c.Window) {
		return fmt.Errorf("alerts.window: %q is not like 7d, 30d, 90d, 6m or 1y", c.Window)
	}
	if c.WebhookURL != "" && !strings.HasPrefix(c.WebhookURL, "http://") && !strings.HasPrefix(c.WebhookURL, "https://") {
		return fmt.Errorf("alerts.webhook_url: %q is not an http(s) URL", c.WebhookURL)
	}
	return nil
}

// EvaluateAlerts evaluates every enabled rule once: it opens (or refreshes)
// one alert per firing rule and target, resolves the unresolved alerts of
// the evaluated rules whose condition has cleared, and posts newly opened
// alerts to the webhook. Safe to run from several processes: one evaluates
// at a time (the others skip), and the unique index keeps one unresolved
// alert per rule and target even without the lock.
func (l *Ledger) EvaluateAlerts(ctx context.Context) (AlertRun, error) {
	var run AlertRun
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return run, dbErr("evaluate alerts", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, alertsLockKey).Scan(&got); err != nil {
		return run, dbErr("lock alert evaluation", err)
	}
	if !got {
		run.Skipped = true
		return run, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, alertsLockKey); err != nil {
			l.log.Warn("unlock alert evaluation", "error", err)
		}
	}()
	fs, families, err := l.alertConditions(ctx)
	if err != nil {
		return run, err
	}
	run.Firing = len(fs)
	run.Opened, err = l.recordFirings(ctx, fs)
	if err != nil {
		return run, err
	}
	run.Resolved, err = l.resolveCleared(ctx, fs, families)
	if err != nil {
		return run, err
	}
	if l.cfg.Alerts.WebhookURL != "" {
		run.Notified, err = l.NotifyAlerts(ctx)
		if err != nil {
			// A webhook outage must not stop evaluation: the alerts stay
			// unnotified and the next run tries again.
			l.log.Warn("alert webhook", "error", err)
		}
	}
	if run.Opened > 0 || run.Resolved > 0 {
		l.log.Info("alerts evaluated", "firing", run.Firing, "opened", run.Opened, "resolved", run.Resolved)
	}
	return run, nil
}

// RunAlerts evaluates alerts every alerts.interval until ctx ends (the
// service's background worker).
func (l *Ledger) RunAlerts(ctx context.Context) {
	iv := l.cfg.Alerts.Interval.Duration
	if iv <= 0 {
		iv = 5 * time.Minute
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if _, err := l.EvaluateAlerts(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("evaluate alerts", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// alertConditions finds every firing condition of the enabled rules, and
// the rule-name prefixes it evaluated (for resolution).
func (l *Ledger) alertConditions(ctx context.Context) ([]firing, []string, error) {
	c := &l.cfg.Alerts
	var fs []firing
	var families []string
	now := l.now()
	if c.ruleEnabled(RuleBudgetUsed) || c.ruleEnabled(RuleExhaustion) || c.ruleEnabled(RuleVariance) {
		burns, err := l.accountBurns(ctx, "")
		if err != nil {
			return nil, nil, err
		}
		for _, b := range burns {
			fs = append(fs, l.burnFirings("account", b.burn.Target, &b.id, nil, b.burn)...)
		}
		grants, err := l.grantBurnsForAlerts(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, g := range grants {
			fs = append(fs, l.burnFirings("grant", g.burn.Target, nil, &g.id, g.burn)...)
		}
	}
	if c.ruleEnabled(RuleBudgetUsed) {
		families = append(families, "budget_used_")
	}
	if c.ruleEnabled(RuleExhaustion) {
		families = append(families, "projected_exhaustion")
	}
	if c.ruleEnabled(RuleVariance) {
		families = append(families, "overspending", "underspending")
	}
	if c.ruleEnabled(RuleOverrun) {
		families = append(families, "overrun_charge")
		rows, err := l.pool.Query(ctx, `SELECT c.id, c.account_id, a.slurm_account, a.currency, c.job_id, c.actual, c.overrun, c.created_at
			FROM charges c JOIN accounts a ON a.id = c.account_id
			WHERE c.overrun > 0 AND c.created_at >= $1 ORDER BY c.id`, now.Add(-c.OverrunLookback.Duration))
		if err != nil {
			return nil, nil, dbErr("find overrun charges", err)
		}
		for rows.Next() {
			var id, acct int64
			var name, cur, job string
			var actual, over decimal.Decimal
			var at time.Time
			if err := rows.Scan(&id, &acct, &name, &cur, &job, &actual, &over, &at); err != nil {
				rows.Close()
				return nil, nil, dbErr("find overrun charges", err)
			}
			fs = append(fs, firing{rule: "overrun_charge", kind: "charge", target: strconv.FormatInt(id, 10),
				accountID: &acct, severity: SeverityWarning,
				message: fmt.Sprintf("job %s on %s cost %s, %s more than its hold", job, name,
					FormatMoney(actual, cur), FormatMoney(over, cur)),
				details: map[string]any{"job_id": job, "actual": actual.String(), "overrun": over.String(), "charged_at": at}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, dbErr("find overrun charges", err)
		}
	}
	if c.ruleEnabled(RuleStuckHold) {
		families = append(families, "stuck_hold")
		timeout := l.cfg.Recovery.ReconciliationTimeout.Duration
		rows, err := l.pool.Query(ctx, `SELECT h.id, h.account_id, a.slurm_account, a.currency, h.job_id, h.remaining, h.created_at
			FROM holds h JOIN accounts a ON a.id = h.account_id
			WHERE h.status = 'active' AND h.created_at < $1 ORDER BY h.id`, now.Add(-timeout))
		if err != nil {
			return nil, nil, dbErr("find stuck holds", err)
		}
		for rows.Next() {
			var id, acct int64
			var name, cur string
			var job *string
			var rem decimal.Decimal
			var at time.Time
			if err := rows.Scan(&id, &acct, &name, &cur, &job, &rem, &at); err != nil {
				rows.Close()
				return nil, nil, dbErr("find stuck holds", err)
			}
			j := "(no job id)"
			if job != nil {
				j = "job " + *job
			}
			fs = append(fs, firing{rule: "stuck_hold", kind: "hold", target: strconv.FormatInt(id, 10), accountID: &acct,
				severity: SeverityWarning,
				message: fmt.Sprintf("hold %d (%s) on %s has held %s since %s, past the reconciliation timeout of %s",
					id, j, name, FormatMoney(rem, cur), at.UTC().Format(time.RFC3339), timeout),
				details: map[string]any{"hold_id": id, "remaining": rem.String(), "created_at": at}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, dbErr("find stuck holds", err)
		}
	}
	return fs, families, nil
}

// burnFirings applies the budget-used, exhaustion and variance rules to one
// burn rate.
func (l *Ledger) burnFirings(kind, target string, accountID, grantID *int64, b BurnRate) []firing {
	c := &l.cfg.Alerts
	m := func(d decimal.Decimal) string { return FormatMoney(d.Round(2), b.Currency) }
	var fs []firing
	mk := func(rule, sev, msg string, det map[string]any) {
		fs = append(fs, firing{rule: rule, kind: kind, target: target, accountID: accountID, grantID: grantID,
			severity: sev, message: msg, details: det})
	}
	if c.ruleEnabled(RuleBudgetUsed) && b.PercentUsed != nil {
		th := append([]int(nil), c.Thresholds...)
		sort.Sort(sort.Reverse(sort.IntSlice(th)))
		for _, t := range th {
			if b.PercentUsed.GreaterThanOrEqual(decimal.NewFromInt(int64(t))) {
				sev := SeverityInfo
				switch {
				case t >= 100:
					sev = SeverityCritical
				case t >= 90:
					sev = SeverityWarning
				}
				mk(fmt.Sprintf("budget_used_%d", t), sev,
					fmt.Sprintf("%s %s has used %s%% of its budget of %s (threshold %d%%)", kind, target,
						b.PercentUsed.StringFixed(1), m(b.Budget), t),
					map[string]any{"threshold": t, "percent_used": b.PercentUsed.String(), "budget": b.Budget.String()})
				break
			}
		}
	}
	if c.ruleEnabled(RuleExhaustion) && b.Projection.ExhaustsBeforeEnd && b.Funds.Deposited.IsPositive() {
		sev := SeverityWarning
		if d := b.Projection.DaysToExhaustion; d != nil && d.LessThanOrEqual(decimal.NewFromInt(7)) {
			sev = SeverityCritical
		}
		mk("projected_exhaustion", sev,
			fmt.Sprintf("%s %s is projected to run out on %s, before its period ends on %s (%s/day, %s left after holds)",
				kind, target, b.Projection.ExhaustionDate.Format("2006-01-02"), b.PeriodEnd.Format("2006-01-02"),
				m(b.DailyRate), m(b.Funds.Remaining)),
			map[string]any{"exhaustion_date": b.Projection.ExhaustionDate, "period_end": b.PeriodEnd,
				"daily_rate": b.DailyRate.String(), "remaining": b.Funds.Remaining.String()})
	}
	if c.ruleEnabled(RuleVariance) && b.VariancePercent != nil && b.ExpectedDailyRate != nil {
		det := map[string]any{"variance_percent": b.VariancePercent.String(), "daily_rate": b.DailyRate.String(),
			"expected_daily_rate": b.ExpectedDailyRate.String(), "window": b.Window.Period}
		switch b.BurnStatus {
		case BurnOverspending:
			sev := SeverityWarning
			if b.VariancePercent.GreaterThan(decimal.NewFromInt(int64(2 * c.VariancePercent))) {
				sev = SeverityCritical
			}
			mk("overspending", sev, fmt.Sprintf("%s %s is spending %s%% above its expected rate (%s/day against %s/day)",
				kind, target, b.VariancePercent.StringFixed(1), m(b.DailyRate), m(*b.ExpectedDailyRate)), det)
		case BurnUnderspending:
			mk("underspending", SeverityInfo, fmt.Sprintf("%s %s is spending %s%% below its expected rate (%s/day against %s/day)",
				kind, target, b.VariancePercent.Neg().StringFixed(1), m(b.DailyRate), m(*b.ExpectedDailyRate)), det)
		}
	}
	return fs
}

// recordFirings upserts the firings: a new row when no unresolved alert
// exists for the rule and target, else a refresh of the existing one (an
// acknowledged alert stays acknowledged). It returns how many it opened.
func (l *Ledger) recordFirings(ctx context.Context, fs []firing) (int, error) {
	if len(fs) == 0 {
		return 0, nil
	}
	batch := &pgx.Batch{}
	for _, f := range fs {
		det, err := json.Marshal(f.details)
		if err != nil {
			return 0, fmt.Errorf("encode alert details: %w", err)
		}
		batch.Queue(`INSERT INTO alerts (rule, target_kind, target, account_id, grant_id, severity, message, details)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (rule, target_kind, target) WHERE status <> 'resolved' DO UPDATE
			SET last_seen = now(), fire_count = alerts.fire_count + 1, severity = EXCLUDED.severity,
			    message = EXCLUDED.message, details = EXCLUDED.details
			RETURNING xmax = 0`, f.rule, f.kind, f.target, f.accountID, f.grantID, f.severity, f.message, det)
	}
	br := l.pool.SendBatch(ctx, batch)
	defer br.Close()
	opened := 0
	for range fs {
		var inserted bool
		if err := br.QueryRow().Scan(&inserted); err != nil {
			return opened, dbErr("record alert", err)
		}
		if inserted {
			opened++
		}
	}
	return opened, dbErr("record alerts", br.Close())
}

// resolveCleared resolves the unresolved alerts of the evaluated rule
// families that did not fire this time.
func (l *Ledger) resolveCleared(ctx context.Context, fs []firing, families []string) (int, error) {
	if len(families) == 0 {
		return 0, nil
	}
	rules, kinds, targets := make([]string, len(fs)), make([]string, len(fs)), make([]string, len(fs))
	for i, f := range fs {
		rules[i], kinds[i], targets[i] = f.rule, f.kind, f.target
	}
	patterns := make([]string, len(families))
	for i, f := range families {
		if strings.HasSuffix(f, "_") {
			patterns[i] = f + "%"
		} else {
			patterns[i] = f
		}
	}
	tag, err := l.pool.Exec(ctx, `UPDATE alerts SET status = 'resolved', resolved_at = now()
		WHERE status <> 'resolved' AND rule LIKE ANY ($4::text[])
		  AND (rule, target_kind, target) NOT IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`,
		rules, kinds, targets, patterns)
	if err != nil {
		return 0, dbErr("resolve cleared alerts", err)
	}
	return int(tag.RowsAffected()), nil
}

// AlertFilter narrows ListAlerts.
type AlertFilter struct {
	Status   string // open, acknowledged, resolved; "" = unresolved; "all"
	Account  string
	Grant    string
	Severity string
	Limit    int
}

const alertCols = `al.id, al.rule, al.target_kind, al.target, coalesce(a.slurm_account, ''), coalesce(g.number, ''),
	al.severity, al.status, al.message, al.details, al.fire_count, al.first_seen, al.last_seen,
	al.acknowledged_at, al.acknowledged_by, al.ack_note, al.resolved_at`

const alertFrom = ` FROM alerts al LEFT JOIN accounts a ON a.id = al.account_id LEFT JOIN grants g ON g.id = al.grant_id`

func scanAlert(row pgx.Row) (Alert, error) {
	var a Alert
	err := row.Scan(&a.ID, &a.Rule, &a.TargetKind, &a.Target, &a.Account, &a.Grant, &a.Severity, &a.Status, &a.Message,
		&a.Details, &a.FireCount, &a.FirstSeen, &a.LastSeen, &a.AcknowledgedAt, &a.AcknowledgedBy, &a.AckNote, &a.ResolvedAt)
	return a, err
}

// ListAlerts lists alerts, newest first.
func (l *Ledger) ListAlerts(ctx context.Context, f AlertFilter) ([]Alert, error) {
	switch f.Status {
	case "", "all", AlertOpen, AlertAcknowledged, AlertResolved:
	default:
		return nil, fmt.Errorf("%w: alert status %q is not open, acknowledged, resolved or all", ErrInvalid, f.Status)
	}
	switch f.Severity {
	case "", SeverityInfo, SeverityWarning, SeverityCritical:
	default:
		return nil, fmt.Errorf("%w: severity %q is not info, warning or critical", ErrInvalid, f.Severity)
	}
	if f.Account != "" {
		if err := ValidateAccountName(f.Account); err != nil {
			return nil, err
		}
	}
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	rows, err := l.pool.Query(ctx, `SELECT `+alertCols+alertFrom+`
		WHERE CASE $1 WHEN '' THEN al.status <> 'resolved' WHEN 'all' THEN true ELSE al.status = $1 END
		  AND ($2 = '' OR a.slurm_account = $2) AND ($3 = '' OR g.number = $3) AND ($4 = '' OR al.severity = $4)
		ORDER BY al.id DESC LIMIT $5`, f.Status, f.Account, f.Grant, f.Severity, f.Limit)
	if err != nil {
		return nil, dbErr("list alerts", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, dbErr("list alerts", err)
		}
		out = append(out, a)
	}
	return out, dbErr("list alerts", rows.Err())
}

// GetAlert reads one alert.
func (l *Ledger) GetAlert(ctx context.Context, id int64) (Alert, error) {
	a, err := scanAlert(l.pool.QueryRow(ctx, `SELECT `+alertCols+alertFrom+` WHERE al.id = $1`, id))
	if isNoRows(err) {
		return a, fmt.Errorf("%w: alert %d", ErrNotFound, id)
	}
	return a, dbErr("read alert", err)
}

// AcknowledgeAlert marks an open alert as seen by a person. It stays
// unresolved (and keeps deduplicating) until its condition clears.
// Acknowledging an acknowledged alert is a no-op; a resolved one conflicts.
func (l *Ledger) AcknowledgeAlert(ctx context.Context, id int64, actor, note string) (Alert, error) {
	if len(note) > 2000 || len(actor) > 200 {
		return Alert{}, fmt.Errorf("%w: note or actor too long", ErrInvalid)
	}
	tag, err := l.pool.Exec(ctx, `UPDATE alerts SET status = 'acknowledged', acknowledged_at = now(),
			acknowledged_by = $2, ack_note = $3
		WHERE id = $1 AND status = 'open'`, id, actor, note)
	if err != nil {
		return Alert{}, dbErr("acknowledge alert", err)
	}
	a, err := l.GetAlert(ctx, id)
	if err != nil {
		return a, err
	}
	if tag.RowsAffected() == 0 && a.Status == AlertResolved {
		return a, fmt.Errorf("%w: alert %d is already resolved", ErrConflict, id)
	}
	if tag.RowsAffected() > 0 {
		l.log.Info("alert acknowledged", "alert_id", id, "actor", actor)
	}
	return a, nil
}

// AlertCount is the number of unresolved alerts of one rule and severity
// (the service exports these as a gauge).
type AlertCount struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Status   string `json:"status"`
	Count    int64  `json:"count"`
}

// AlertCounts counts unresolved alerts by rule, severity and status.
func (l *Ledger) AlertCounts(ctx context.Context) ([]AlertCount, error) {
	rows, err := l.pool.Query(ctx, `SELECT rule, severity, status, count(*) FROM alerts
		WHERE status <> 'resolved' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, dbErr("count alerts", err)
	}
	defer rows.Close()
	var out []AlertCount
	for rows.Next() {
		var c AlertCount
		if err := rows.Scan(&c.Rule, &c.Severity, &c.Status, &c.Count); err != nil {
			return nil, dbErr("count alerts", err)
		}
		out = append(out, c)
	}
	return out, dbErr("count alerts", rows.Err())
}

// NotifyAlerts posts every open alert not yet delivered to
// alerts.webhook_url, as {"alerts":[...]} in one request, through
// go-retryablehttp with a bounded total time. An alert is claimed before
// the post (so two evaluators never post it twice) and unclaimed if the
// post fails (so the next run retries it).
func (l *Ledger) NotifyAlerts(ctx context.Context) (int, error) {
	url := l.cfg.Alerts.WebhookURL
	if url == "" {
		return 0, nil
	}
	rows, err := l.pool.Query(ctx, `WITH c AS (
			SELECT id FROM alerts WHERE notified_at IS NULL AND status = 'open' ORDER BY id LIMIT 500
			FOR UPDATE SKIP LOCKED)
		UPDATE alerts SET notified_at = now() FROM c WHERE alerts.id = c.id RETURNING alerts.id`)
	if err != nil {
		return 0, dbErr("claim alerts to notify", err)
	}
	ids, err := collectInt64(rows)
	if err != nil || len(ids) == 0 {
		return 0, dbErr("claim alerts to notify", err)
	}
	alerts := make([]Alert, 0, len(ids))
	for _, id := range ids {
		a, err := l.GetAlert(ctx, id)
		if err != nil {
			return 0, err
		}
		alerts = append(alerts, a)
	}
	if err := l.postWebhook(ctx, url, alerts); err != nil {
		if _, uerr := l.pool.Exec(context.WithoutCancel(ctx), `UPDATE alerts SET notified_at = NULL WHERE id = ANY ($1)`, ids); uerr != nil {
			err = errors.Join(err, dbErr("unclaim alerts", uerr))
		}
		return 0, err
	}
	return len(ids), nil
}

func (l *Ledger) postWebhook(ctx context.Context, url string, alerts []Alert) error {
	body, err := json.Marshal(map[string]any{"source": "asbb", "alerts": alerts})
	if err != nil {
		return fmt.Errorf("encode webhook body: %w", err)
	}
	timeout := l.cfg.Alerts.WebhookTimeout.Duration
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := retryablehttp.NewClient()
	c.RetryMax = 3
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.Logger = nil
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post alerts to webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post alerts to webhook: status %s", resp.Status)
	}
	return nil
}

// Condition is an alert condition as it stands now, with the stored
// alert that tracks it when the evaluator has recorded one.
type Condition struct {
	Rule       string `json:"type"`
	TargetKind string `json:"target_kind"`
	Target     string `json:"target"`
	Severity   string `json:"severity"`
	Message    string `json:"message"`
	AlertID    int64  `json:"alert_id,omitempty"`
	Status     string `json:"status,omitempty"` // of the stored alert
}

// AlertConditions evaluates the burn-rate rules on b now (whatever the
// evaluator last stored) and adds the unresolved stored alerts of the same
// account or grant (stuck holds, overrun charges), most severe first.
func (l *Ledger) AlertConditions(ctx context.Context, b BurnRate) ([]Condition, error) {
	f := AlertFilter{}
	if b.Kind == "grant" {
		f.Grant = b.Target
	} else {
		f.Account = b.Target
	}
	stored, err := l.ListAlerts(ctx, f)
	if err != nil {
		return nil, err
	}
	byKey := map[string]Alert{}
	for _, a := range stored {
		byKey[a.Rule+"\x00"+a.TargetKind+"\x00"+a.Target] = a
	}
	var out []Condition
	seen := map[string]bool{}
	for _, fi := range l.burnFirings(b.Kind, b.Target, nil, nil, b) {
		c := Condition{Rule: fi.rule, TargetKind: fi.kind, Target: fi.target, Severity: fi.severity, Message: fi.message}
		if a, ok := byKey[fi.key()]; ok {
			c.AlertID, c.Status = a.ID, a.Status
		}
		seen[fi.key()] = true
		out = append(out, c)
	}
	for _, a := range stored {
		k := a.Rule + "\x00" + a.TargetKind + "\x00" + a.Target
		if seen[k] || a.TargetKind == "account" || a.TargetKind == "grant" {
			// A stored burn-rate alert that no longer holds is resolved
			// by the evaluator's next run; now it is not a condition.
			continue
		}
		out = append(out, Condition{Rule: a.Rule, TargetKind: a.TargetKind, Target: a.Target, Severity: a.Severity,
			Message: a.Message, AlertID: a.ID, Status: a.Status})
	}
	rank := map[string]int{SeverityCritical: 0, SeverityWarning: 1, SeverityInfo: 2}
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Severity] < rank[out[j].Severity] })
	return out, nil
}
