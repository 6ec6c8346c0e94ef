package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// ASBX (aws-slurm-burst) reports the real AWS cost of a job after it ran.
// That cost trues up the job's computed charge with one correction entry
// (budget.Ledger.Correct), never a second charge. A report that arrives
// before the job was charged waits (status pending) and the asbx_pending
// worker retries it; a hold released without any charge (the job vanished)
// is charged the reported cost instead.

func (s *Server) routesASBX() {
	s.handle("POST /api/v1/asbx/reconcile", RoleReconcile, s.asbxReconcile)
	s.handle("POST /api/v1/asbx/epilog", RoleReconcile, s.asbxEpilog)
	s.handle("GET /api/v1/asbx/status", RoleRead, s.asbxStatus)
}

// ASBXJobCostData is ASBX's ASBXJobCostData, field for field.
type ASBXJobCostData struct {
	JobID                string            `json:"job_id"`
	SlurmJobID           string            `json:"slurm_job_id"`
	Account              string            `json:"account"`
	Partition            string            `json:"partition"`
	UserID               string            `json:"user_id"`
	SubmittedAt          Date              `json:"submitted_at"`
	StartedAt            Date              `json:"started_at"`
	CompletedAt          Date              `json:"completed_at"`
	JobState             string            `json:"job_state"`
	ExitCode             lenientInt        `json:"exit_code"`
	RequestedNodes       lenientInt        `json:"requested_nodes"`
	UsedNodes            lenientInt        `json:"used_nodes"`
	RequestedCPUs        lenientInt        `json:"requested_cpus"`
	UsedCPUs             lenientInt        `json:"used_cpus"`
	RequestedGPUs        lenientInt        `json:"requested_gpus"`
	UsedGPUs             lenientInt        `json:"used_gpus"`
	RequestedMemory      string            `json:"requested_memory"`
	UsedMemory           string            `json:"used_memory"`
	WallTimeLimit        string            `json:"wall_time_limit"`
	ActualWallTime       string            `json:"actual_wall_time"`
	EstimatedCost        Amount            `json:"estimated_cost"`
	ActualCost           Amount            `json:"actual_cost"`
	LocalCost            Amount            `json:"local_cost"`
	AWSCost              Amount            `json:"aws_cost"`
	CostBreakdown        map[string]Amount `json:"cost_breakdown"`
	CPUEfficiency        *json.Number      `json:"cpu_efficiency"`
	MemoryEfficiency     *json.Number      `json:"memory_efficiency"`
	IOMetrics            json.RawMessage   `json:"io_metrics"`
	NetworkMetrics       json.RawMessage   `json:"network_metrics"`
	BurstDecision        string            `json:"burst_decision"`
	BurstReason          string            `json:"burst_reason"`
	InstanceTypes        []string          `json:"instance_types"`
	AvailabilityZone     string            `json:"availability_zone"`
	JobMetadata          json.RawMessage   `json:"job_metadata"`
	PerformanceProfile   json.RawMessage   `json:"performance_profile"`
	ResearchDomain       string            `json:"research_domain"`
	BudgetTransactionID  string            `json:"budget_transaction_id"`
	ReconciliationStatus string            `json:"reconciliation_status"`
}

// ASBXReconcileRequest is ASBX's ASBXCostReconciliationRequest.
type ASBXReconcileRequest struct {
	JobCostData        *ASBXJobCostData `json:"job_cost_data"`
	AutoReconcile      bool             `json:"auto_reconcile"`
	UpdateCostModel    bool             `json:"update_cost_model"`
	GenerateReport     bool             `json:"generate_report"`
	NotifyStakeholders bool             `json:"notify_stakeholders"`
}

// ASBXReconcileResponse is ASBX's ASBXCostReconciliationResponse, filled
// from the ledger: estimated_cost is the charge ASBB computed for the job,
// actual_cost what ASBX reported, and additional_charge / refund_amount the
// correction's direction.
type ASBXReconcileResponse struct {
	Success                   bool     `json:"success"`
	ReconciliationID          string   `json:"reconciliation_id"`
	OriginalTransaction       string   `json:"original_transaction"`
	EstimatedCost             num      `json:"estimated_cost"`
	ActualCost                num      `json:"actual_cost"`
	CostVariance              num      `json:"cost_variance"`
	CostVariancePct           num      `json:"cost_variance_pct"`
	RefundAmount              num      `json:"refund_amount"`
	AdditionalCharge          num      `json:"additional_charge"`
	EstimationAccuracy        num      `json:"estimation_accuracy"`
	ModelUpdateApplied        bool     `json:"model_update_applied"`
	ComplianceReportGenerated *bool    `json:"compliance_report_generated,omitempty"`
	ReportPath                string   `json:"report_path,omitempty"`
	Message                   string   `json:"message"`
	Warnings                  []string `json:"warnings,omitempty"`
	Recommendations           []string `json:"recommendations,omitempty"`

	Status         string `json:"reconciliation_status"`
	JobID          string `json:"job_id,omitempty"`
	ChargeID       int64  `json:"charge_id,omitempty"`
	LedgerID       int64  `json:"ledger_id,omitempty"`
	Duplicate      bool   `json:"duplicate"`
	ActualCostStr  string `json:"actual_cost_str"`
	PreviousStr    string `json:"previous_charge_str"`
	CorrectionStr  string `json:"correction_str"`
	CorrectionSign string `json:"-"`
}

// asbxReport is a cost report from either source, normalised.
type asbxReport struct {
	Source    string           `json:"source"` // http or file
	Actor     string           `json:"actor"`
	HoldID    int64            `json:"hold_id,omitempty"`
	JobID     string           `json:"job_id,omitempty"` // Slurm job id ("123" or "123_4")
	Cluster   string           `json:"cluster"`
	Account   string           `json:"account,omitempty"`
	Actual    decimal.Decimal  `json:"actual"`
	State     string           `json:"state,omitempty"`
	Burst     string           `json:"burst,omitempty"`
	CPUEff    *decimal.Decimal `json:"cpu_efficiency,omitempty"`
	MemEff    *decimal.Decimal `json:"memory_efficiency,omitempty"`
	Estimate  *decimal.Decimal `json:"asbx_estimate,omitempty"`
	File      string           `json:"file,omitempty"`
	Version   string           `json:"plugin_version,omitempty"`
	Generate  bool             `json:"generate_report,omitempty"`
	UpdateMod bool             `json:"update_cost_model,omitempty"`
}

// key identifies a report: what it matched and the cost it carried. A
// repeat (the same report again) finds the first answer under this key;
// a later report with a different cost trues the charge up again.
func (r asbxReport) key() string {
	ref := "job:" + r.Cluster + ":" + r.JobID
	if r.HoldID != 0 {
		ref = "hold:" + strconv.FormatInt(r.HoldID, 10)
		if r.JobID != "" {
			ref += ":" + r.JobID
		}
	}
	return "asbx:" + ref + ":" + r.Actual.String()
}

// splitJobID reads "123" or "123_4" (an array task).
func splitJobID(s string) (job string, task int, ok bool) {
	j, t, isTask := strings.Cut(s, "_")
	if _, err := strconv.ParseUint(j, 10, 32); err != nil {
		return "", 0, false
	}
	if !isTask {
		return j, -1, true
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		return "", 0, false
	}
	return j, int(n), true
}

func ratio(field string, n *json.Number) (*decimal.Decimal, error) {
	if n == nil {
		return nil, nil
	}
	d, err := decimal.NewFromString(n.String())
	if err != nil || d.IsNegative() || d.GreaterThan(decimal.NewFromInt(100)) {
		return nil, invalid(field, "%s must be a number between 0 and 100", field)
	}
	return &d, nil
}

// reportFromHTTP validates an ASBX reconciliation request.
func (s *Server) reportFromHTTP(r *http.Request, req ASBXReconcileRequest) (asbxReport, error) {
	c := req.JobCostData
	if c == nil {
		return asbxReport{}, invalid("job_cost_data", "job_cost_data is required")
	}
	rep := asbxReport{Source: "http", Actor: actorOf(r), Cluster: s.cfg.Cluster.Name, Account: c.Account,
		State: strings.ToUpper(c.JobState), Burst: strings.ToUpper(c.BurstDecision),
		Generate: req.GenerateReport, UpdateMod: req.UpdateCostModel}
	for _, d := range []struct {
		name string
		v    Date
	}{{"job_cost_data.submitted_at", c.SubmittedAt}, {"job_cost_data.started_at", c.StartedAt}, {"job_cost_data.completed_at", c.CompletedAt}} {
		if _, err := d.v.Get(d.name); err != nil {
			return rep, err
		}
	}
	for _, f := range []struct{ name, v string }{{"job_id", c.JobID}, {"slurm_job_id", c.SlurmJobID},
		{"budget_transaction_id", c.BudgetTransactionID}, {"account", c.Account}, {"job_state", c.JobState}} {
		if err := checkLen("job_cost_data."+f.name, f.v, 64); err != nil {
			return rep, err
		}
	}
	var err error
	switch {
	case c.ActualCost.Set():
		rep.Actual, err = c.ActualCost.NonNegative("job_cost_data.actual_cost")
	case c.AWSCost.Set():
		rep.Actual, err = c.AWSCost.NonNegative("job_cost_data.aws_cost")
	default:
		err = invalid("job_cost_data.actual_cost", "job_cost_data.actual_cost is required")
	}
	if err != nil {
		return rep, err
	}
	if c.EstimatedCost.Set() {
		e, err := c.EstimatedCost.NonNegative("job_cost_data.estimated_cost")
		if err != nil {
			return rep, err
		}
		rep.Estimate = &e
	}
	for _, a := range []struct {
		name string
		v    Amount
	}{{"local_cost", c.LocalCost}} {
		if a.v.Set() {
			if _, err := a.v.NonNegative("job_cost_data." + a.name); err != nil {
				return rep, err
			}
		}
	}
	for k, v := range c.CostBreakdown {
		if _, err := v.NonNegative("job_cost_data.cost_breakdown." + truncate(k, 40)); err != nil {
			return rep, err
		}
	}
	if rep.CPUEff, err = ratio("job_cost_data.cpu_efficiency", c.CPUEfficiency); err != nil {
		return rep, err
	}
	if rep.MemEff, err = ratio("job_cost_data.memory_efficiency", c.MemoryEfficiency); err != nil {
		return rep, err
	}
	jobID := c.SlurmJobID
	if jobID == "" {
		jobID = c.JobID
	}
	if jobID != "" {
		if _, _, ok := splitJobID(jobID); ok {
			rep.JobID = jobID
		} else if c.BudgetTransactionID == "" {
			return rep, invalid("job_cost_data.slurm_job_id", "slurm_job_id %q is not a Slurm job id (123 or 123_4)", truncate(jobID, 40))
		}
	}
	if c.BudgetTransactionID != "" {
		if rep.HoldID, err = parseHoldID("job_cost_data.budget_transaction_id", c.BudgetTransactionID); err != nil {
			return rep, err
		}
	}
	if rep.HoldID == 0 && rep.JobID == "" {
		return rep, invalid("job_cost_data.budget_transaction_id", "budget_transaction_id or slurm_job_id is required to match the report")
	}
	return rep, nil
}

func (s *Server) asbxReconcile(w http.ResponseWriter, r *http.Request) error {
	var req ASBXReconcileRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	rep, err := s.reportFromHTTP(r, req)
	if err != nil {
		return err
	}
	resp, err := s.reconcileASBX(r.Context(), rep)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if resp.Status == "pending" {
		status = http.StatusAccepted
	}
	return reply(w, status, resp)
}

// reconcileASBX matches a report to the ledger, trues up (or waits), and
// records it; a repeat returns the first recorded answer.
func (s *Server) reconcileASBX(ctx context.Context, rep asbxReport) (ASBXReconcileResponse, error) {
	start := time.Now()
	key := rep.key()
	var stored []byte
	var status string
	err := s.l.Pool().QueryRow(ctx, `SELECT status, response FROM asbx_reconciliations WHERE key = $1`, key).Scan(&status, &stored)
	switch {
	case err == nil && status != "pending":
		var resp ASBXReconcileResponse
		if err := json.Unmarshal(stored, &resp); err != nil {
			return resp, fmt.Errorf("decode stored reconciliation: %w", err)
		}
		resp.Duplicate = true
		s.metrics.asbx.WithLabelValues(rep.Source, "duplicate").Inc()
		return resp, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return ASBXReconcileResponse{}, budget.DBErr("find reconciliation", err)
	}
	resp, m, err := s.matchASBX(ctx, rep)
	if err != nil {
		if toAPIError(err).status == http.StatusNotFound {
			s.recordFailure(ctx, rep, err, time.Since(start))
		}
		s.metrics.asbx.WithLabelValues(rep.Source, "failed").Inc()
		return resp, err
	}
	out, err := s.recordASBX(ctx, s.l.Pool(), rep, key, resp, m, time.Since(start))
	if err == nil {
		s.metrics.asbx.WithLabelValues(rep.Source, out.Status).Inc()
	}
	return out, err
}

// asbxMatch is what a report matched in the ledger.
type asbxMatch struct {
	holdID, chargeID, ledgerID int64
	jobID                      string
	task                       int
	previous                   *decimal.Decimal
	accuracy                   *decimal.Decimal
}

// errNoMatch: nothing in the ledger is the report's job (yet).
var errNoMatch = errors.New("no match")

// matchASBX finds the report's charge and trues it up. It does not record
// the report.
func (s *Server) matchASBX(ctx context.Context, rep asbxReport) (ASBXReconcileResponse, asbxMatch, error) {
	var m asbxMatch
	m.task = -1
	if rep.JobID != "" {
		m.jobID, m.task, _ = splitJobID(rep.JobID)
	}
	var hold *budget.Hold
	if rep.HoldID != 0 {
		h, err := s.l.GetHold(ctx, rep.HoldID)
		if err != nil {
			return ASBXReconcileResponse{}, m, &apiError{status: http.StatusNotFound, code: "NOT_FOUND",
				field: "job_cost_data.budget_transaction_id", message: fmt.Sprintf("transaction %d not found", rep.HoldID)}
		}
		hold, m.holdID = &h, h.ID
	}
	chargeID, jobOfCharge, err := s.findCharge(ctx, rep, m)
	if err != nil {
		return ASBXReconcileResponse{}, m, err
	}
	if hold == nil && chargeID == 0 && m.jobID != "" {
		if h, err := s.l.HoldForJob(ctx, rep.Cluster, m.jobID); err == nil {
			hold, m.holdID = &h, h.ID
		} else if !errors.Is(err, budget.ErrHoldNotFound) {
			return ASBXReconcileResponse{}, m, err
		}
	}
	reason := "ASBX actual cost"
	if rep.File != "" {
		reason += " from " + rep.File
	}
	resp := ASBXReconcileResponse{Success: true, ReconciliationID: rep.key(), JobID: rep.JobID,
		ActualCost: numOf(rep.Actual), ActualCostStr: rep.Actual.String()}
	switch {
	case chargeID != 0:
		if m.jobID == "" {
			m.jobID = jobOfCharge
		}
		c, err := s.l.Correct(ctx, chargeID, rep.Actual, rep.Actor, reason, rep.key())
		if err != nil {
			return resp, m, err
		}
		m.chargeID, m.ledgerID = chargeID, c.LedgerID
		prev := c.Previous
		if c.Duplicate {
			// A crash between correcting and recording: the charge already
			// carries this cost; what it was before is in the entry.
			prev = rep.Actual.Sub(c.Delta)
		}
		m.previous = &prev
		resp.Status = "corrected"
		if c.Delta.IsZero() {
			resp.Status = "unchanged"
		}
		resp.Message = fmt.Sprintf("Charge %d of job %s trued up from %s to %s with one correction entry", chargeID,
			m.jobID, prev, rep.Actual)
		if resp.Status == "unchanged" {
			resp.Message = fmt.Sprintf("Charge %d of job %s already equals the reported cost %s", chargeID, m.jobID, rep.Actual)
		}
	case hold != nil && hold.Status == "active":
		resp.Status = "pending"
		resp.Message = fmt.Sprintf("Job %s has not been charged yet; its charge will be trued up to %s when it settles",
			strOr(rep.JobID, "of hold "+strconv.FormatInt(hold.ID, 10)), rep.Actual)
	case hold != nil:
		// The hold was released without a charge (the job vanished before
		// an epilog ran): the reported cost is the only charge there is.
		jobID := rep.JobID
		if jobID == "" && hold.JobID != nil {
			jobID = *hold.JobID
		}
		if jobID == "" {
			jobID = "hold-" + strconv.FormatInt(hold.ID, 10)
		}
		m.jobID, m.task = jobID, -1
		if j, t, ok := splitJobID(jobID); ok {
			m.jobID, m.task = j, t
		}
		st, err := s.l.Settle(ctx, budget.SettleRequest{HoldID: hold.ID, Cluster: rep.Cluster, JobID: m.jobID,
			ArrayTaskID: m.task, Actual: rep.Actual, Actor: rep.Actor, Reason: reason + " (hold had been released uncharged)"})
		if err != nil {
			return resp, m, err
		}
		zero := decimal.Zero
		m.chargeID, m.previous = st.ChargeID, &zero
		resp.Status = "charged"
		resp.Message = fmt.Sprintf("The hold of job %s had been released without a charge; charged the reported %s", jobID, rep.Actual)
	case rep.Source == "file":
		// Files carry no transaction id and often arrive before the job is
		// charged (or even bound to its hold): wait for it.
		resp.Status = "pending"
		resp.Message = fmt.Sprintf("No charge or hold for job %s yet; the report waits for it", rep.JobID)
	default:
		return resp, m, &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "job_cost_data.slurm_job_id",
			message: fmt.Sprintf("no hold or charge matches job %s; send budget_transaction_id", rep.JobID)}
	}
	if m.holdID != 0 {
		resp.OriginalTransaction = strconv.FormatInt(m.holdID, 10)
	}
	resp.ChargeID, resp.LedgerID = m.chargeID, m.ledgerID
	if m.previous != nil {
		s.fillVariance(&resp, rep, *m.previous)
		m.accuracy = &resp.EstimationAccuracy.Decimal
	}
	return resp, m, nil
}

// findCharge finds the charge a report trues up: by hold (and job/task
// when given), else by cluster, job and task; the latest run wins.
func (s *Server) findCharge(ctx context.Context, rep asbxReport, m asbxMatch) (int64, string, error) {
	var id int64
	var job string
	var err error
	switch {
	case m.holdID != 0:
		err = s.l.Pool().QueryRow(ctx, `SELECT id, job_id FROM charges WHERE hold_id = $1
			AND ($2 = '' OR (job_id = $2 AND array_task_id = $3)) ORDER BY id DESC LIMIT 1`, m.holdID, m.jobID, m.task).Scan(&id, &job)
	case m.jobID != "":
		err = s.l.Pool().QueryRow(ctx, `SELECT id, job_id FROM charges WHERE job_id = $1 AND array_task_id = $2
			AND cluster IN ($3, '*') ORDER BY id DESC LIMIT 1`, m.jobID, m.task, rep.Cluster).Scan(&id, &job)
	default:
		return 0, "", nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	return id, job, budget.DBErr("find charge", err)
}

var (
	pct100   = decimal.NewFromInt(100)
	minDenom = decimal.RequireFromString("0.01")
)

// fillVariance computes variance, accuracy, warnings and recommendations
// with the thresholds of ASBX's intended logic (and additional_charge
// fixed: it is the positive variance).
func (s *Server) fillVariance(resp *ASBXReconcileResponse, rep asbxReport, prev decimal.Decimal) {
	variance := rep.Actual.Sub(prev)
	denom := decimal.Max(prev, minDenom)
	pct := variance.Div(denom).Mul(pct100).Round(2)
	acc := decimal.Max(decimal.Zero, decimal.NewFromInt(1).Sub(variance.Abs().Div(denom))).Round(4)
	resp.EstimatedCost, resp.CostVariance, resp.CostVariancePct, resp.EstimationAccuracy = numOf(prev), numOf(variance), numOf(pct), numOf(acc)
	resp.RefundAmount, resp.AdditionalCharge = numOf(decimal.Zero), numOf(decimal.Zero)
	if variance.IsNegative() {
		resp.RefundAmount = numOf(variance.Neg())
	} else {
		resp.AdditionalCharge = numOf(variance)
	}
	resp.PreviousStr, resp.CorrectionStr = prev.String(), variance.String()
	if pct.Abs().GreaterThan(decimal.NewFromInt(50)) {
		resp.Warnings = append(resp.Warnings, fmt.Sprintf("the actual cost differs from ASBB's charge by %s%%", pct))
	}
	if rep.State == "FAILED" || rep.State == "CANCELLED" {
		resp.Warnings = append(resp.Warnings, "the job ended "+rep.State)
	}
	if rep.UpdateMod {
		resp.Warnings = append(resp.Warnings, "update_cost_model: ASBB prices from its rate card; edit pricing.partitions to change it")
	}
	if rep.Generate {
		resp.Warnings = append(resp.Warnings, "generate_report: compliance reports come from asbb-admin, not from this call")
	}
	if pct.Abs().GreaterThan(decimal.NewFromInt(20)) {
		resp.Recommendations = append(resp.Recommendations, "review the partition's rate in pricing.partitions: estimates are off by more than 20%")
	}
	if rep.CPUEff != nil && rep.CPUEff.LessThan(decimal.RequireFromString("0.7")) {
		resp.Recommendations = append(resp.Recommendations, "CPU efficiency is below 70%: request fewer CPUs")
	}
	if rep.MemEff != nil && rep.MemEff.LessThan(decimal.RequireFromString("0.8")) {
		resp.Recommendations = append(resp.Recommendations, "memory efficiency is below 80%: request less memory")
	}
	if acc.LessThan(decimal.RequireFromString("0.8")) {
		resp.Recommendations = append(resp.Recommendations, "estimation accuracy is below 80%")
	}
	if rep.Burst == "AWS" && rep.Actual.GreaterThan(prev.Mul(decimal.RequireFromString("1.5"))) {
		resp.Recommendations = append(resp.Recommendations, "AWS cost was over 1.5x the estimate: consider running locally")
	}
}

// recordASBX stores a matched report under its key (a pending row may be
// completed); when another writer recorded it first, its answer is returned.
func (s *Server) recordASBX(ctx context.Context, q budget.DBTX, rep asbxReport, key string, resp ASBXReconcileResponse,
	m asbxMatch, took time.Duration) (ASBXReconcileResponse, error) {
	repJSON, _ := json.Marshal(rep)
	respJSON, err := json.Marshal(resp)
	if err != nil {
		return resp, fmt.Errorf("encode reconciliation: %w", err)
	}
	var ledgerID, chargeID, holdID *int64
	if m.ledgerID != 0 {
		ledgerID = &m.ledgerID
	}
	if m.chargeID != 0 {
		chargeID = &m.chargeID
	}
	if m.holdID != 0 {
		holdID = &m.holdID
	}
	var stored []byte
	err = q.QueryRow(ctx, `INSERT INTO asbx_reconciliations (key, source, job_id, array_task_id, cluster, hold_id, charge_id,
			ledger_id, status, actual, previous, accuracy, duration_us, report, response, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, hold_id = EXCLUDED.hold_id, charge_id = EXCLUDED.charge_id,
			ledger_id = EXCLUDED.ledger_id, previous = EXCLUDED.previous, accuracy = EXCLUDED.accuracy,
			duration_us = EXCLUDED.duration_us, response = EXCLUDED.response, attempts = asbx_reconciliations.attempts + 1,
			updated_at = now()
		WHERE asbx_reconciliations.status = 'pending'
		RETURNING response`,
		key, rep.Source, m.jobID, m.task, rep.Cluster, holdID, chargeID, ledgerID, resp.Status, rep.Actual, m.previous,
		m.accuracy, took.Microseconds(), repJSON, respJSON, rep.Actor).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		// Recorded (not pending) by a concurrent writer: the first answer wins.
		err = q.QueryRow(ctx, `SELECT response FROM asbx_reconciliations WHERE key = $1`, key).Scan(&stored)
		if err != nil {
			return resp, budget.DBErr("read reconciliation", err)
		}
		var first ASBXReconcileResponse
		if err := json.Unmarshal(stored, &first); err != nil {
			return resp, fmt.Errorf("decode stored reconciliation: %w", err)
		}
		first.Duplicate = true
		return first, nil
	}
	return resp, budget.DBErr("record reconciliation", err)
}

// recordFailure counts a report that matched nothing (for /asbx/status).
func (s *Server) recordFailure(ctx context.Context, rep asbxReport, cause error, took time.Duration) {
	repJSON, _ := json.Marshal(rep)
	task := -1
	job := rep.JobID
	if j, t, ok := splitJobID(rep.JobID); ok {
		job, task = j, t
	}
	_, err := s.l.Pool().Exec(ctx, `INSERT INTO asbx_reconciliations (source, job_id, array_task_id, cluster, status, actual,
			duration_us, report, error, actor) VALUES ($1, $2, $3, $4, 'failed', $5, $6, $7, $8, $9)`,
		rep.Source, job, task, rep.Cluster, rep.Actual, took.Microseconds(), repJSON, truncate(cause.Error(), 1000), rep.Actor)
	if err != nil {
		s.log.Warn("cannot record failed ASBX reconciliation", "error", err)
	}
}

// retryPendingASBX retries reports waiting for their job's charge. Two
// instances share the work through SKIP LOCKED; a report still unmatched
// after recovery.reconciliation_timeout is marked failed.
func (s *Server) retryPendingASBX(ctx context.Context) error {
	for {
		n, err := s.retryPendingBatch(ctx)
		if err != nil || n < 50 {
			s.updatePendingGauge(ctx)
			return err
		}
	}
}

func (s *Server) retryPendingBatch(ctx context.Context) (int, error) {
	var done int
	err := s.l.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, key, report, created_at FROM asbx_reconciliations
			WHERE status = 'pending' ORDER BY updated_at, id LIMIT 50 FOR UPDATE SKIP LOCKED`)
		if err != nil {
			return budget.DBErr("find pending reconciliations", err)
		}
		type pending struct {
			id      int64
			key     string
			report  []byte
			created time.Time
		}
		var ps []pending
		for rows.Next() {
			var p pending
			if err := rows.Scan(&p.id, &p.key, &p.report, &p.created); err != nil {
				rows.Close()
				return budget.DBErr("read pending reconciliations", err)
			}
			ps = append(ps, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return budget.DBErr("read pending reconciliations", err)
		}
		done = len(ps)
		for _, p := range ps {
			var rep asbxReport
			if err := json.Unmarshal(p.report, &rep); err != nil {
				return fmt.Errorf("decode pending report %d: %w", p.id, err)
			}
			start := time.Now()
			resp, m, err := s.matchASBX(ctx, rep)
			switch {
			case err != nil && toAPIError(err).status == http.StatusServiceUnavailable:
				return err
			case err != nil:
				if _, err := tx.Exec(ctx, `UPDATE asbx_reconciliations SET status = 'failed', error = $2, updated_at = now() WHERE id = $1`,
					p.id, truncate(err.Error(), 1000)); err != nil {
					return budget.DBErr("fail pending reconciliation", err)
				}
				s.metrics.asbx.WithLabelValues(rep.Source, "failed").Inc()
			case resp.Status == "pending":
				status := "pending"
				if time.Since(p.created) > s.cfg.Recovery.ReconciliationTimeout.Duration {
					status = "failed"
					s.metrics.asbx.WithLabelValues(rep.Source, "failed").Inc()
				}
				if _, err := tx.Exec(ctx, `UPDATE asbx_reconciliations SET status = $2, attempts = attempts + 1, updated_at = now(),
						error = CASE WHEN $2 = 'failed' THEN 'no charge appeared within recovery.reconciliation_timeout' ELSE error END
					WHERE id = $1`, p.id, status); err != nil {
					return budget.DBErr("retry pending reconciliation", err)
				}
			default:
				if _, err := s.recordASBX(ctx, tx, rep, p.key, resp, m, time.Since(start)); err != nil {
					return err
				}
				s.metrics.asbx.WithLabelValues(rep.Source, resp.Status).Inc()
			}
		}
		return nil
	})
	return done, err
}

func (s *Server) updatePendingGauge(ctx context.Context) {
	var n int64
	if err := s.l.Pool().QueryRow(ctx, `SELECT count(*) FROM asbx_reconciliations WHERE status = 'pending'`).Scan(&n); err == nil {
		s.metrics.spoolBacklog.WithLabelValues("asbx_pending").Set(float64(n))
	}
}

// ASBXStatusResponse is ASBX's status shape with the ledger's counters.
type ASBXStatusResponse struct {
	ASBXVersion               string     `json:"asbx_version"`
	IntegrationEnabled        bool       `json:"integration_enabled"`
	LastDataImport            *time.Time `json:"last_data_import"`
	TotalJobsReconciled       int64      `json:"total_jobs_reconciled"`
	SuccessfulReconciliations int64      `json:"successful_reconciliations"`
	FailedReconciliations     int64      `json:"failed_reconciliations"`
	AverageReconciliationTime string     `json:"average_reconciliation_time"`
	CostModelAccuracy         num        `json:"cost_model_accuracy"`
	LastHealthCheck           time.Time  `json:"last_health_check"`
	HealthStatus              string     `json:"health_status"`
	PendingReconciliations    int64      `json:"pending_reconciliations"`
	SpoolDir                  string     `json:"spool_dir"`
	SpoolBacklog              int        `json:"spool_backlog"`
	FilesIngested             int64      `json:"files_ingested"`
	FilesFailed               int64      `json:"files_failed"`
}

func (s *Server) asbxStatus(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var st ASBXStatusResponse
	var avgUS *decimal.Decimal
	var acc *decimal.Decimal
	err := s.l.Pool().QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE status IN ('corrected', 'unchanged', 'charged')),
			count(*) FILTER (WHERE status = 'failed'),
			count(*) FILTER (WHERE status = 'pending'),
			avg(duration_us) FILTER (WHERE status <> 'pending'),
			avg(accuracy) FILTER (WHERE status IN ('corrected', 'unchanged'))
		FROM asbx_reconciliations`).Scan(&st.SuccessfulReconciliations, &st.FailedReconciliations,
		&st.PendingReconciliations, &avgUS, &acc)
	if err != nil {
		return budget.DBErr("asbx status", err)
	}
	err = s.l.Pool().QueryRow(ctx, `SELECT max(processed_at), count(*) FILTER (WHERE status = 'done'),
			count(*) FILTER (WHERE status = 'failed') FROM asbx_files`).Scan(&st.LastDataImport, &st.FilesIngested, &st.FilesFailed)
	if err != nil {
		return budget.DBErr("asbx status", err)
	}
	var version *string
	err = s.l.Pool().QueryRow(ctx, `SELECT report->>'plugin_version' FROM asbx_reconciliations
		WHERE report ? 'plugin_version' ORDER BY id DESC LIMIT 1`).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return budget.DBErr("asbx status", err)
	}
	if version != nil {
		st.ASBXVersion = *version
	}
	st.TotalJobsReconciled = st.SuccessfulReconciliations + st.FailedReconciliations
	st.AverageReconciliationTime = "0s"
	if avgUS != nil {
		st.AverageReconciliationTime = (time.Duration(avgUS.IntPart()) * time.Microsecond).String()
	}
	st.CostModelAccuracy = numOf(decimal.Zero)
	if acc != nil {
		st.CostModelAccuracy = numOf(acc.Round(4))
	}
	st.IntegrationEnabled = true
	st.LastHealthCheck = time.Now().UTC()
	st.SpoolDir = s.cfg.Service.ASBXSpoolDir
	st.SpoolBacklog = len(s.asbxFiles())
	st.HealthStatus = "healthy"
	if h := s.workerHealth()["asbx_ingest"]; h == "stalled" || h == "stopped" || h == "error" {
		st.HealthStatus = "degraded"
	}
	return reply(w, http.StatusOK, st)
}

// ASBXEpilogRequest is ASBX's ASBXEpilogRequest; counts are lenient
// ("4(x2)" from SLURM_JOB_CPUS_PER_NODE reads as 8).
type ASBXEpilogRequest struct {
	JobID               string            `json:"job_id"`
	Account             string            `json:"account"`
	Partition           string            `json:"partition"`
	UserID              string            `json:"user_id"`
	JobState            string            `json:"job_state"`
	ExitCode            lenientInt        `json:"exit_code"`
	SubmitTime          lenientInt        `json:"submit_time"`
	StartTime           lenientInt        `json:"start_time"`
	EndTime             lenientInt        `json:"end_time"`
	AllocatedNodes      lenientInt        `json:"allocated_nodes"`
	AllocatedCPUs       lenientInt        `json:"allocated_cpus"`
	AllocatedGPUs       lenientInt        `json:"allocated_gpus"`
	RequestedMemory     string            `json:"requested_memory"`
	MaxRSS              string            `json:"max_rss"`
	MaxVMSize           string            `json:"max_vm_size"`
	ASBXDataPath        string            `json:"asbx_data_path"`
	ASBXJobReport       string            `json:"asbx_job_report"`
	SlurmAccountingData map[string]string `json:"slurm_accounting_data"`
}

// ASBXEpilogResponse is ASBX's epilog response.
type ASBXEpilogResponse struct {
	Success                 bool     `json:"success"`
	JobID                   string   `json:"job_id"`
	ReconciliationTriggered bool     `json:"reconciliation_triggered"`
	ReconciliationID        string   `json:"reconciliation_id,omitempty"`
	Message                 string   `json:"message"`
	NextSteps               []string `json:"next_steps"`
	DataImportStatus        string   `json:"data_import_status"`
	ErrorDetails            string   `json:"error_details,omitempty"`

	ChargeID     int64  `json:"charge_id,omitempty"`
	ActualCharge string `json:"actual_charge,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`
}

var jobStates = map[string]uint32{"COMPLETED": budget.JobComplete, "FAILED": budget.JobFailed, "CANCELLED": budget.JobCancelled,
	"TIMEOUT": budget.JobTimeout, "NODE_FAIL": budget.JobNodeFail, "PREEMPTED": budget.JobPreempted,
	"BOOT_FAIL": budget.JobBootFail, "DEADLINE": budget.JobDeadline, "OUT_OF_MEMORY": budget.JobOOM}

// asbxEpilog settles a finished job from ASBX's epilog post (per-node
// epilogs post once per node: the settlement is idempotent, so the job is
// charged once) and imports the job's ASBX cost file when it names one in
// the spool directory.
func (s *Server) asbxEpilog(w http.ResponseWriter, r *http.Request) error {
	var req ASBXEpilogRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	job, err := strconv.ParseUint(strings.TrimSpace(req.JobID), 10, 32)
	if err != nil || job == 0 {
		return invalid("job_id", "job_id must be a Slurm job id")
	}
	for _, f := range []struct{ name, v string }{{"account", req.Account}, {"partition", req.Partition}, {"user_id", req.UserID},
		{"job_state", req.JobState}, {"asbx_data_path", req.ASBXDataPath}, {"asbx_job_report", req.ASBXJobReport}} {
		if err := checkLen(f.name, f.v, 4096); err != nil {
			return err
		}
	}
	resp := ASBXEpilogResponse{Success: true, JobID: req.JobID, DataImportStatus: "no_data", NextSteps: []string{}}
	state, known := jobStates[strings.ToUpper(strings.TrimSpace(req.JobState))]
	if !known {
		// ASBX's sample script derives job_state from the exit code.
		state = budget.JobComplete
		if req.ExitCode != 0 {
			state = budget.JobFailed
		}
	}
	if req.EndTime > 0 && req.StartTime > 0 && req.EndTime >= req.StartTime {
		e := budget.JobEnd{JobID: uint32(job), Account: req.Account, Partition: req.Partition, User: req.UserID,
			StartTime: int64(req.StartTime), EndTime: int64(req.EndTime), State: state,
			Nodes: uint32(max(req.AllocatedNodes, 0)), CPUs: uint32(max(req.AllocatedCPUs, 0)), Actor: actorOf(r)}
		if req.AllocatedGPUs > 0 {
			e.TresAlloc = fmt.Sprintf("gres/gpu=%d", req.AllocatedGPUs)
			if e.CPUs > 0 {
				e.TresAlloc += fmt.Sprintf(",cpu=%d", e.CPUs)
			}
			if e.Nodes > 0 {
				e.TresAlloc += fmt.Sprintf(",node=%d", e.Nodes)
			}
		}
		if e.Account != "" && budget.ValidateAccountName(e.Account) != nil {
			return invalid("account", "account %q is not an account name", truncate(e.Account, 64))
		}
		st, err := s.l.SettleJob(r.Context(), e)
		if err != nil {
			return err
		}
		if st.ChargeID != 0 {
			resp.ReconciliationTriggered = true
			resp.ReconciliationID = "charge-" + strconv.FormatInt(st.ChargeID, 10)
			resp.ChargeID, resp.ActualCharge, resp.Duplicate = st.ChargeID, st.Actual.String(), st.Duplicate
			resp.Message = "Job settled at the prices pinned on its hold"
			if st.Duplicate {
				resp.Message = "Job already settled (another node's epilog, or a retry): charged once"
			}
		} else {
			resp.Message = "Nothing to charge: no hold and an unpriced partition"
		}
	} else {
		resp.Message = "No start and end time: the job is settled by jobcomp or asbb-epilog"
		resp.NextSteps = append(resp.NextSteps, "send start_time and end_time (unix seconds) to settle from this call")
	}
	if name := filepath.Base(strings.TrimSpace(req.ASBXJobReport)); req.ASBXJobReport != "" {
		switch {
		case !asbxFileRE.MatchString(name):
			resp.DataImportStatus = "skipped"
			resp.ErrorDetails = "asbx_job_report must name a job-<id>-asbb-reconciliation.json file in the spool directory"
		default:
			st, err := s.ingestFile(r.Context(), s.cfg.Service.ASBXSpoolDir, name)
			resp.DataImportStatus = st
			if err != nil {
				resp.ErrorDetails = err.Error()
			}
		}
	} else {
		resp.NextSteps = append(resp.NextSteps, "ASBX cost files in "+s.cfg.Service.ASBXSpoolDir+" are imported automatically")
	}
	return reply(w, http.StatusOK, resp)
}

// ASBXFile is ASBX's "asbb-reconciliation" export, one flat file per job.
// Files are read leniently (ASBX may add fields); money is still parsed
// from its text.
type ASBXFile struct {
	JobID         string       `json:"job_id"`
	Account       string       `json:"account"`
	UserID        string       `json:"user_id"`
	Partition     string       `json:"partition"`
	ActualCost    Amount       `json:"actual_cost"`
	ComputeCost   Amount       `json:"compute_cost"`
	StorageCost   Amount       `json:"storage_cost"`
	NetworkCost   Amount       `json:"network_cost"`
	SpotSavings   Amount       `json:"spot_savings"`
	InstanceTypes []string     `json:"instance_types"`
	DurationHours *json.Number `json:"duration_hours"`
	Success       bool         `json:"success"`
	ExportTime    Date         `json:"export_time"`
	PluginVersion string       `json:"plugin_version"`
}

var asbxFileRE = regexp.MustCompile(`^job-([0-9]+(?:_[0-9]+)?)-asbb-reconciliation\.json$`)

// maxASBXFile bounds what is read from a spool file.
const maxASBXFile = 1 << 20

// asbxFiles lists the spool's report files.
func (s *Server) asbxFiles() []string {
	dir := s.cfg.Service.ASBXSpoolDir
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && asbxFileRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// ingestASBX imports every report file in the spool directory.
func (s *Server) ingestASBX(ctx context.Context) error {
	files := s.asbxFiles()
	s.metrics.spoolBacklog.WithLabelValues("asbx").Set(float64(len(files)))
	var errs []error
	for _, name := range files {
		if ctx.Err() != nil {
			break
		}
		if _, err := s.ingestFile(ctx, s.cfg.Service.ASBXSpoolDir, name); err != nil {
			if toAPIError(err).status == http.StatusServiceUnavailable {
				return err // the database is down: try the rest next tick
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	s.metrics.spoolBacklog.WithLabelValues("asbx").Set(float64(len(s.asbxFiles())))
	if len(errs) > 0 {
		return fmt.Errorf("%d ASBX files failed (moved to failed/): %w", len(errs), errs[0])
	}
	return nil
}

// ingestFile imports one file exactly once, even with two service
// instances on one spool: the file is claimed under a transaction-scoped
// advisory lock on its name and digest, recorded in asbx_files in that
// transaction, and moved aside after the commit (to done/ or failed/). A
// crash between commit and move leaves a recorded file, which the next
// pass only moves; a crash before commit is redone, and the ledger side is
// idempotent (the report's key). It returns the data_import_status.
func (s *Server) ingestFile(ctx context.Context, dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "no_data", nil // another instance moved it
	}
	if err != nil {
		return "failed", fmt.Errorf("open ASBX file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxASBXFile+1))
	fi, _ := f.Stat()
	f.Close()
	if err != nil {
		return "failed", fmt.Errorf("read ASBX file: %w", err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	rep, perr := s.reportFromFile(name, data)
	if perr != nil && fi != nil && time.Since(fi.ModTime()) < 2*time.Second {
		// Perhaps still being written: look again next tick.
		return "skipped", nil
	}
	var status string
	var recID *int64
	var procErr error
	moved := ""
	err = s.l.InTx(ctx, func(tx pgx.Tx) error {
		status, recID, procErr, moved = "", nil, nil, ""
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey("asbx-file:"+name+":"+digest)).Scan(&got); err != nil {
			return budget.DBErr("lock ASBX file", err)
		}
		if !got {
			status = "skipped" // another instance is importing it now
			return nil
		}
		var prev string
		err := tx.QueryRow(ctx, `SELECT status FROM asbx_files WHERE name = $1 AND digest = $2`, name, digest).Scan(&prev)
		switch {
		case err == nil:
			status, moved = "completed", prev // imported before; only move it
			if prev == "failed" {
				status = "failed"
			}
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return budget.DBErr("check ASBX file", err)
		}
		fileStatus := "done"
		errText := ""
		if perr != nil {
			fileStatus, errText, procErr = "failed", perr.Error(), perr
		} else {
			resp, err := s.reconcileASBX(ctx, rep)
			switch {
			case err != nil && toAPIError(err).status == http.StatusServiceUnavailable:
				return err
			case err != nil:
				fileStatus, errText, procErr = "failed", err.Error(), err
			default:
				var id int64
				if err := tx.QueryRow(ctx, `SELECT id FROM asbx_reconciliations WHERE key = $1`, resp.ReconciliationID).Scan(&id); err == nil {
					recID = &id
				}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO asbx_files (name, digest, status, reconciliation_id, error, processed_by)
			VALUES ($1, $2, $3, $4, $5, $6)`, name, digest, fileStatus, recID, truncate(errText, 1000), s.instance); err != nil {
			return budget.DBErr("record ASBX file", err)
		}
		moved = fileStatus
		status = "completed"
		if fileStatus == "failed" {
			status = "failed"
		}
		return nil
	})
	if err != nil {
		return "failed", err
	}
	if moved != "" {
		s.moveAside(dir, name, moved, digest, procErr)
	}
	return status, procErr
}

// reportFromFile parses an ASBX export file.
func (s *Server) reportFromFile(name string, data []byte) (asbxReport, error) {
	m := asbxFileRE.FindStringSubmatch(name)
	if m == nil {
		return asbxReport{}, fmt.Errorf("%w: %s is not a job-<id>-asbb-reconciliation.json file", budget.ErrInvalid, name)
	}
	if len(data) > maxASBXFile {
		return asbxReport{}, fmt.Errorf("%w: file is larger than %d bytes", budget.ErrInvalid, maxASBXFile)
	}
	var f ASBXFile
	if err := json.Unmarshal(data, &f); err != nil {
		return asbxReport{}, fmt.Errorf("%w: %v", budget.ErrInvalid, err)
	}
	jobID := f.JobID
	if jobID == "" {
		jobID = m[1]
	}
	if _, _, ok := splitJobID(jobID); !ok {
		return asbxReport{}, fmt.Errorf("%w: job_id %q is not a Slurm job id", budget.ErrInvalid, truncate(jobID, 40))
	}
	actual, err := f.ActualCost.NonNegative("actual_cost")
	if err != nil {
		return asbxReport{}, err
	}
	return asbxReport{Source: "file", Actor: "asbx:file", JobID: jobID, Cluster: s.cfg.Cluster.Name, Account: f.Account,
		Actual: actual, File: name, Version: f.PluginVersion, Burst: "AWS"}, nil
}

// moveAside moves a processed file to done/ or failed/ (with a .error note
// for failures). Another instance may have moved it first: that is fine.
func (s *Server) moveAside(dir, name, status, digest string, cause error) {
	sub := filepath.Join(dir, status)
	if err := os.MkdirAll(sub, 0o750); err != nil {
		s.log.Warn("cannot create ASBX spool subdirectory", "dir", sub, "error", err)
		return
	}
	target := filepath.Join(sub, name)
	if _, err := os.Stat(target); err == nil {
		target += "." + digest[:12]
	}
	if err := os.Rename(filepath.Join(dir, name), target); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot move ASBX file aside", "file", name, "error", err)
		}
		return
	}
	if cause != nil {
		_ = os.WriteFile(target+".error", []byte(cause.Error()+"\n"), 0o640)
		s.log.Warn("ASBX file failed", "file", name, "error", cause)
	} else {
		s.log.Info("ASBX file imported", "file", name)
	}
}
