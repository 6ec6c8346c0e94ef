package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

func (s *Server) routesBudget() {
	s.handle("POST /api/v1/budget/check", RoleReconcile, s.budgetCheck)
	s.handle("POST /api/v1/budget/reconcile", RoleReconcile, s.budgetReconcile)
}

// CheckRequest is the original's BudgetCheckRequest plus ASBB's optional
// extensions. cpus is the job's total CPU count (what the C draft sent as
// min_cpus); send cpus_per_node instead to mean per node. memory is per
// node, like sbatch --mem. gpus is the job's total.
type CheckRequest struct {
	Account    string            `json:"account"`
	Partition  string            `json:"partition"`
	Nodes      *int64            `json:"nodes"`
	CPUs       *int64            `json:"cpus"`
	GPUs       *int64            `json:"gpus"`
	Memory     string            `json:"memory"`
	WallTime   string            `json:"wall_time"`
	JobScript  string            `json:"job_script"`
	UserID     string            `json:"user_id"`
	JobDetails map[string]string `json:"job_details"`

	CPUsPerNode    *int64 `json:"cpus_per_node"`
	User           string `json:"user"`
	Cluster        string `json:"cluster"`
	JobID          string `json:"job_id"`
	Array          string `json:"array"`
	IdempotencyKey string `json:"idempotency_key"`
}

// CheckResponse is the original's BudgetCheckResponse (HTTP 200 whether
// approved or denied) plus exact string twins and ASBB's decision.
type CheckResponse struct {
	Available       bool         `json:"available"`
	EstimatedCost   num          `json:"estimated_cost"`
	HoldAmount      num          `json:"hold_amount"`
	TransactionID   string       `json:"transaction_id,omitempty"`
	Message         string       `json:"message"`
	BudgetRemaining num          `json:"budget_remaining"`
	Recommendation  string       `json:"recommendation,omitempty"`
	Details         CheckDetails `json:"details"`

	Decision           string `json:"decision"`
	HoldID             int64  `json:"hold_id,omitempty"`
	Currency           string `json:"currency"`
	Explanation        string `json:"explanation,omitempty"`
	DenialCode         string `json:"denial_code,omitempty"`
	Duplicate          bool   `json:"duplicate,omitempty"`
	EstimatedCostStr   string `json:"estimated_cost_str"`
	HoldAmountStr      string `json:"hold_amount_str"`
	BudgetRemainingStr string `json:"budget_remaining_str"`
}

// CheckDetails is the original's details object.
type CheckDetails struct {
	AccountBalance    num  `json:"account_balance"`
	CurrentHold       num  `json:"current_hold"`
	PartitionUsed     *num `json:"partition_used,omitempty"`
	PartitionLimit    *num `json:"partition_limit,omitempty"`
	HoldPercentage    num  `json:"hold_percentage"`
	AdvisorConfidence *num `json:"advisor_confidence,omitempty"`
}

// jobRequest translates a check request into the one JobRequest every
// entry point fills.
func (c CheckRequest) jobRequest() (budget.JobRequest, error) {
	j := budget.UnsetJob()
	if c.Account == "" {
		return j, invalid("account", "account is required")
	}
	if err := budget.ValidateAccountName(c.Account); err != nil {
		return j, fieldErr("account", err)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"partition", c.Partition, 64}, {"memory", c.Memory, 32}, {"wall_time", c.WallTime, 32},
		{"user_id", c.UserID, 64}, {"user", c.User, 64}, {"cluster", c.Cluster, 64}, {"job_id", c.JobID, 64},
		{"array", c.Array, 1024}, {"idempotency_key", c.IdempotencyKey, 200}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return j, err
		}
	}
	if strings.ContainsAny(c.Partition, " ;'\"\\") {
		return j, invalid("partition", "partition %q is not a partition name", c.Partition)
	}
	j.Account, j.Partition, j.Cluster, j.JobID, j.ArrayInx = c.Account, c.Partition, c.Cluster, c.JobID, c.Array
	j.IdempotencyKey = c.IdempotencyKey
	j.User = c.User
	if c.UserID != "" {
		if uid, err := strconv.ParseUint(c.UserID, 10, 32); err == nil {
			j.UserID = uint32(uid)
		} else if j.User == "" {
			j.User = c.UserID
		}
	}
	nodes := int64(1)
	if c.Nodes != nil {
		if *c.Nodes < 1 || *c.Nodes > 100000 {
			return j, invalid("nodes", "nodes must be between 1 and 100000")
		}
		nodes = *c.Nodes
		j.MinNodes = uint32(nodes)
	}
	if c.CPUs != nil && (*c.CPUs < 1 || *c.CPUs > 1<<24) {
		return j, invalid("cpus", "cpus must be between 1 and %d", 1<<24)
	}
	if c.CPUsPerNode != nil {
		if *c.CPUsPerNode < 1 || *c.CPUsPerNode > 1<<16 {
			return j, invalid("cpus_per_node", "cpus_per_node must be between 1 and %d", 1<<16)
		}
		total := *c.CPUsPerNode * nodes
		if c.CPUs != nil && *c.CPUs != total {
			return j, invalid("cpus", "cpus (%d, the job total) disagrees with cpus_per_node x nodes (%d)", *c.CPUs, total)
		}
		j.MinCPUs = uint32(total)
	} else if c.CPUs != nil {
		j.MinCPUs = uint32(*c.CPUs)
	}
	if c.GPUs != nil {
		if *c.GPUs < 0 || *c.GPUs > 1<<16 {
			return j, invalid("gpus", "gpus must be between 0 and %d", 1<<16)
		}
		if *c.GPUs > 0 {
			j.TresPerJob = "gres/gpu:" + strconv.FormatInt(*c.GPUs, 10)
		}
	}
	if c.Memory != "" {
		mb, err := parseMemoryMB(c.Memory)
		if err != nil {
			return j, invalid("memory", "%v", err)
		}
		if mb > 0 {
			j.PnMinMemory = mb
		}
	}
	if c.WallTime != "" {
		tl, err := budget.ParseTimeLimit(c.WallTime)
		if err != nil {
			return j, fieldErr("wall_time", err)
		}
		if tl.Unlimited {
			j.TimeLimit = budget.Infinite
		} else {
			j.TimeLimit = tl.Minutes
		}
	}
	return j, nil
}

// parseMemoryMB reads "64GB", "4096MB", "4096" (MB), "1T", "512K" into MB.
func parseMemoryMB(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := uint64(1)
	div := uint64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		t, div = strings.TrimSuffix(t, "K"), 1024
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		t, mult = strings.TrimSuffix(t, "G"), 1024
	case strings.HasSuffix(t, "T"):
		t, mult = strings.TrimSuffix(t, "T"), 1024*1024
	}
	n, err := strconv.ParseUint(strings.TrimSpace(t), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory %q is not a size such as 64GB or 4096MB", truncate(s, 32))
	}
	if n > 1<<40/mult {
		return 0, fmt.Errorf("memory %q is not plausible", truncate(s, 32))
	}
	return n * mult / div, nil
}

// budgetCheck prices the job and takes its hold through budget.Ledger.Admit,
// the same admission function job_submit calls.
func (s *Server) budgetCheck(w http.ResponseWriter, r *http.Request) error {
	var req CheckRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	job, err := req.jobRequest()
	if err != nil {
		return err
	}
	job.Actor = actorOf(r)
	start := time.Now()
	d, err := s.l.Admit(r.Context(), job)
	s.metrics.holdLatency.Observe(time.Since(start).Seconds())
	outcome := string(d.Kind)
	switch {
	case err == nil:
	case errors.Is(err, budget.ErrInvalid):
		outcome = "invalid"
	case errors.Is(err, budget.ErrUnavailable):
		outcome = "db_reject"
	default:
		outcome = "error"
	}
	s.metrics.holds.WithLabelValues(outcome).Inc()
	if err != nil {
		if errors.Is(err, budget.ErrInvalid) {
			return fieldErr(guessField(err), err)
		}
		return err
	}
	if d.Denial != nil {
		s.metrics.denials.WithLabelValues(d.Denial.Code).Inc()
		switch d.Denial.Code {
		case "account_not_found":
			return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "account",
				message: fmt.Sprintf("Budget account '%s' not found", job.Account)}
		case "account_inactive", "account_not_started", "account_expired":
			if d.Kind == budget.KindRefused {
				return d.Denial
			}
		case "no_time_limit":
			return invalid("wall_time", "%s", d.Message)
		case "no_partition", "unpriced_partition":
			return invalid("partition", "%s", d.Message)
		case "no_account":
			return invalid("account", "%s", d.Message)
		}
	}
	resp := s.checkResponse(r, job, d)
	return reply(w, http.StatusOK, resp)
}

// guessField names the request field a pricing error is about.
func guessField(err error) string {
	m := err.Error()
	switch {
	case strings.Contains(m, "node count"):
		return "nodes"
	case strings.Contains(m, "CPU count"):
		return "cpus"
	case strings.Contains(m, "GPU"):
		return "gpus"
	case strings.Contains(m, "memory"):
		return "memory"
	case strings.Contains(m, "array"):
		return "array"
	case strings.Contains(m, "estimate"):
		return "wall_time"
	}
	return ""
}

func (s *Server) checkResponse(r *http.Request, job budget.JobRequest, d budget.Decision) CheckResponse {
	cur := s.cfg.Pricing.Currency
	resp := CheckResponse{
		Decision: string(d.Kind), Message: d.Message, Currency: cur, Duplicate: d.Duplicate,
		Details: CheckDetails{HoldPercentage: numOf(s.cfg.Submit.HoldMultiplier.Decimal)},
	}
	estimate, hold := decimal.Zero, decimal.Zero
	if d.Estimate != nil {
		resp.Explanation = d.Estimate.Explanation
		tasks := decimal.NewFromInt(int64(max(d.Estimate.Resources.Tasks, 1)))
		estimate = d.Estimate.PerTaskCost.Mul(tasks).RoundUp(budget.Scale)
		hold = d.Estimate.Total
		if d.Estimate.Currency != "" {
			resp.Currency = d.Estimate.Currency
		}
	}
	before := d.Before
	if before == nil && job.Account != "" {
		if a, err := s.l.GetAccount(r.Context(), job.Cluster, job.Account); err == nil {
			before = &a
		}
	}
	avail, held := decimal.Zero, decimal.Zero
	if before != nil {
		avail, held = before.Available, before.Held
	}
	remaining := avail
	switch d.Kind {
	case budget.KindHeld:
		resp.Available = true
		resp.HoldID = d.HoldID
		resp.TransactionID = strconv.FormatInt(d.HoldID, 10)
		held = held.Add(hold)
		remaining = avail.Sub(hold)
		if resp.Message == "" {
			resp.Message = "Budget check passed"
		}
	case budget.KindFree:
		resp.Available = true
		resp.Message = strOr(resp.Message, "Budget check passed: partition "+d.Partition+" is not priced (no hold)")
	case budget.KindShadow, budget.KindDBAccept:
		resp.Available = true
		resp.Recommendation = "accepted without a hold: " + string(d.Kind)
	case budget.KindRefused:
		if d.Denial != nil {
			resp.DenialCode = d.Denial.Code
			if d.Denial.Code == "insufficient_funds" {
				avail = d.Denial.Available
				remaining = avail
			}
		}
		resp.Recommendation = "Insufficient budget: deposit funds, shorten the job or use a cheaper partition"
	}
	resp.EstimatedCost, resp.HoldAmount, resp.BudgetRemaining = numOf(estimate), numOf(hold), numOf(remaining)
	resp.EstimatedCostStr, resp.HoldAmountStr, resp.BudgetRemainingStr = estimate.String(), hold.String(), remaining.String()
	resp.Details.AccountBalance, resp.Details.CurrentHold = numOf(avail), numOf(held)
	return resp
}

// ReconcileRequest is the original's JobReconcileRequest plus ASBB's
// extensions. transaction_id (the hold id from /budget/check) may be
// omitted when job_id resolves to a hold bound to that Slurm job. Send
// job_end instead of actual_cost to have the service price the finished
// job at the hold's pinned rates (what asbb-epilog in service mode does).
type ReconcileRequest struct {
	JobID         string          `json:"job_id"`
	ActualCost    Amount          `json:"actual_cost"`
	TransactionID string          `json:"transaction_id"`
	JobMetadata   json.RawMessage `json:"job_metadata"`

	Cluster     string         `json:"cluster,omitempty"`
	ArrayTaskID *int           `json:"array_task_id,omitempty"`
	RunStart    *int64         `json:"run_start,omitempty"`
	Final       bool           `json:"final,omitempty"`
	JobEnd      *budget.JobEnd `json:"job_end,omitempty"`
}

// ReconcileResponse is the original's JobReconcileResponse plus the
// settlement's exact figures. A repeat returns the first result.
type ReconcileResponse struct {
	Success       bool   `json:"success"`
	OriginalHold  num    `json:"original_hold"`
	ActualCharge  num    `json:"actual_charge"`
	RefundAmount  num    `json:"refund_amount"`
	TransactionID string `json:"transaction_id"`
	Message       string `json:"message"`

	JobID           string `json:"job_id"`
	ChargeID        int64  `json:"charge_id,omitempty"`
	HoldID          int64  `json:"hold_id,omitempty"`
	Released        string `json:"released"`
	Overrun         string `json:"overrun"`
	Duplicate       bool   `json:"duplicate"`
	ActualChargeStr string `json:"actual_charge_str"`
	RefundAmountStr string `json:"refund_amount_str"`
}

func parseHoldID(field, s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "asbb:")
	id, err := strconv.ParseInt(t, 10, 64)
	if err != nil || id <= 0 {
		return 0, &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: field,
			message: fmt.Sprintf("transaction %q not found (ASBB transaction ids are the hold ids /budget/check returns)", truncate(s, 40))}
	}
	return id, nil
}

// budgetReconcile settles a job: charges its actual cost and releases its
// hold, idempotently.
func (s *Server) budgetReconcile(w http.ResponseWriter, r *http.Request) error {
	var req ReconcileRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"job_id", req.JobID}, {"transaction_id", req.TransactionID}, {"cluster", req.Cluster}} {
		if err := checkLen(f.name, f.v, 64); err != nil {
			return err
		}
	}
	if len(req.JobMetadata) > 0 && !json.Valid(req.JobMetadata) {
		return invalid("job_metadata", "job_metadata is not valid JSON")
	}
	start := time.Now()
	resp, err := s.reconcile(r, req)
	s.metrics.settleLatency.Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		s.metrics.settlements.WithLabelValues(settleOutcome(err)).Inc()
		return err
	case resp.Duplicate:
		s.metrics.settlements.WithLabelValues("duplicate").Inc()
	default:
		s.metrics.settlements.WithLabelValues("charged").Inc()
	}
	return reply(w, http.StatusOK, resp)
}

func settleOutcome(err error) string {
	ae := toAPIError(err)
	switch {
	case ae.status == http.StatusNotFound:
		return "not_found"
	case ae.status < 500:
		return "invalid"
	case ae.status == http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "error"
}

func (s *Server) reconcile(r *http.Request, req ReconcileRequest) (ReconcileResponse, error) {
	ctx := r.Context()
	actor := actorOf(r)
	if req.JobEnd != nil {
		if req.ActualCost.Set() || req.TransactionID != "" {
			return ReconcileResponse{}, invalid("job_end", "send either job_end or actual_cost/transaction_id, not both")
		}
		e := *req.JobEnd
		if e.JobID == 0 || e.JobID == budget.NoVal {
			return ReconcileResponse{}, invalid("job_end.job_id", "job_end.job_id is required")
		}
		for _, f := range []struct{ name, v string }{{"job_end.account", e.Account}, {"job_end.partition", e.Partition},
			{"job_end.user", e.User}, {"job_end.cluster", e.Cluster}} {
			if err := checkLen(f.name, f.v, 64); err != nil {
				return ReconcileResponse{}, err
			}
		}
		if err := checkLen("job_end.admin_comment", e.AdminComment, 4096); err != nil {
			return ReconcileResponse{}, err
		}
		if err := checkLen("job_end.untrusted_admin_comment", e.UntrustedComment, 4096); err != nil {
			return ReconcileResponse{}, err
		}
		if err := checkLen("job_end.tres_alloc", e.TresAlloc, 4096); err != nil {
			return ReconcileResponse{}, err
		}
		if e.StartTime < 0 || e.EndTime < 0 || e.EndTime > 1<<40 || e.StartTime > 1<<40 {
			return ReconcileResponse{}, invalid("job_end.start_time", "times are unix seconds")
		}
		e.Actor = actor
		st, err := s.l.SettleJob(ctx, e)
		if err != nil {
			return ReconcileResponse{}, err
		}
		jobID := strconv.FormatUint(uint64(e.JobID), 10)
		if st.ChargeID == 0 {
			return ReconcileResponse{Success: true, JobID: jobID, Released: "0", Overrun: "0", ActualChargeStr: "0", RefundAmountStr: "0",
				Message: "nothing to charge: the job ran on an unpriced partition without a hold"}, nil
		}
		return settlementResponse(jobID, st), nil
	}
	actual, err := req.ActualCost.NonNegative("actual_cost")
	if err != nil {
		return ReconcileResponse{}, err
	}
	var h budget.Hold
	switch {
	case req.TransactionID != "":
		id, err := parseHoldID("transaction_id", req.TransactionID)
		if err != nil {
			return ReconcileResponse{}, err
		}
		if h, err = s.l.GetHold(ctx, id); err != nil {
			return ReconcileResponse{}, err
		}
	case req.JobID != "":
		if h, err = s.l.HoldForJob(ctx, req.Cluster, req.JobID); err != nil {
			return ReconcileResponse{}, &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "job_id",
				message: fmt.Sprintf("no hold is bound to job %s; send transaction_id", req.JobID)}
		}
	default:
		return ReconcileResponse{}, invalid("transaction_id", "transaction_id (or a job_id bound to a hold) is required")
	}
	jobID := req.JobID
	if jobID == "" {
		if h.JobID != nil {
			jobID = *h.JobID
		} else {
			// Without a Slurm id the hold itself names the settlement, so a
			// repeat still charges once.
			jobID = "hold-" + strconv.FormatInt(h.ID, 10)
		}
	}
	task := -1
	if req.ArrayTaskID != nil {
		if *req.ArrayTaskID < 0 || *req.ArrayTaskID > 4_000_000 {
			return ReconcileResponse{}, invalid("array_task_id", "array_task_id must be between 0 and 4000000")
		}
		task = *req.ArrayTaskID
	}
	var runStart int64
	if req.RunStart != nil {
		if *req.RunStart < 0 || *req.RunStart > 1<<40 {
			return ReconcileResponse{}, invalid("run_start", "run_start is unix seconds")
		}
		runStart = *req.RunStart
	}
	// A single job already settled by Slurm's own hooks (jobcomp, the
	// epilog) under its real run start: this cost trues that charge up
	// rather than charging the job a second time under another key.
	if h.Tasks == 1 && h.SettledTasks > 0 && req.RunStart == nil && req.ArrayTaskID == nil {
		charges, err := s.l.ChargesOfHold(ctx, h.ID)
		if err != nil {
			return ReconcileResponse{}, err
		}
		if len(charges) == 1 && (charges[0].JobID != jobID || charges[0].RunStart != runStart) {
			c := charges[0]
			corr, err := s.l.Correct(ctx, c.ID, actual, actor, "reconciled over the API after Slurm settled the job",
				"api-reconcile:"+strconv.FormatInt(c.ID, 10))
			if err != nil {
				return ReconcileResponse{}, fieldErr("actual_cost", err)
			}
			resp := settlementResponse(c.JobID, budget.Settlement{ChargeID: c.ID, HoldID: h.ID, Actual: actual,
				Released: c.Released, Duplicate: corr.Duplicate})
			resp.Message = "the job was already settled by Slurm; its charge is trued up to this cost (a correction, not a second charge)"
			return resp, nil
		}
	}
	st, err := s.l.Settle(ctx, budget.SettleRequest{
		HoldID: h.ID, Cluster: req.Cluster, JobID: jobID, ArrayTaskID: task, RunStart: runStart,
		Actual: actual, Final: req.Final, Actor: actor, Reason: "reconciled over the API",
	})
	if err != nil {
		return ReconcileResponse{}, fieldErr("actual_cost", err)
	}
	return settlementResponse(jobID, st), nil
}

func settlementResponse(jobID string, st budget.Settlement) ReconcileResponse {
	refund := st.Released.Sub(st.Actual)
	if refund.IsNegative() {
		refund = decimal.Zero
	}
	msg := "Job reconciled: charged the actual cost and released the hold"
	if st.Duplicate {
		msg = "Job already reconciled: this is the first result"
	}
	resp := ReconcileResponse{
		Success: true, OriginalHold: numOf(st.Released), ActualCharge: numOf(st.Actual), RefundAmount: numOf(refund),
		Message: msg, JobID: jobID, ChargeID: st.ChargeID, HoldID: st.HoldID, Released: st.Released.String(),
		Overrun: st.Overrun.String(), Duplicate: st.Duplicate, ActualChargeStr: st.Actual.String(), RefundAmountStr: refund.String(),
	}
	if st.HoldID != 0 {
		resp.TransactionID = strconv.FormatInt(st.HoldID, 10)
	}
	return resp
}
