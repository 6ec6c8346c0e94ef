package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

func (s *Server) routesAccounts() {
	s.handle("GET /api/v1/accounts", RoleRead, s.listAccounts)
	s.handle("POST /api/v1/accounts", RoleAdmin, s.createAccount)
	s.handle("GET /api/v1/accounts/{account}", RoleRead, s.showAccount)
	s.handle("PUT /api/v1/accounts/{account}", RoleAdmin, s.updateAccount)
	s.handle("DELETE /api/v1/accounts/{account}", RoleAdmin, s.deleteAccount)
}

// AccountJSON is the original's BudgetAccount (budget_limit = deposited,
// budget_used = spent, budget_held = held, as JSON numbers) plus ASBB's
// exact decimal strings and fields.
type AccountJSON struct {
	ID                   int64      `json:"id"`
	SlurmAccount         string     `json:"slurm_account"`
	Name                 string     `json:"name"`
	Description          string     `json:"description"`
	BudgetLimit          num        `json:"budget_limit"`
	BudgetUsed           num        `json:"budget_used"`
	BudgetHeld           num        `json:"budget_held"`
	BudgetAvailable      num        `json:"budget_available"`
	HasIncrementalBudget bool       `json:"has_incremental_budget"`
	NextAllocationDate   *time.Time `json:"next_allocation_date,omitempty"`
	TotalAllocated       num        `json:"total_allocated"`
	StartDate            *time.Time `json:"start_date"`
	EndDate              *time.Time `json:"end_date"`
	Status               string     `json:"status"`
	CreatedAt            time.Time  `json:"created_at"`
	UpdatedAt            time.Time  `json:"updated_at"`

	Cluster         string                  `json:"cluster"`
	Currency        string                  `json:"currency"`
	Parent          string                  `json:"parent,omitempty"`
	Deposited       string                  `json:"deposited"`
	Spent           string                  `json:"spent"`
	Held            string                  `json:"held"`
	Available       string                  `json:"available"`
	CreditLimit     string                  `json:"credit_limit"`
	MaxJobCost      *string                 `json:"max_job_cost,omitempty"`
	PartitionLimits []budget.PartitionLimit `json:"partition_limits,omitempty"`
}

// allocSummary is what the account's allocations add to its JSON.
type allocSummary struct {
	total       decimal.Decimal
	incremental bool
	next        *time.Time
}

func accountJSON(a budget.Account, sum allocSummary) AccountJSON {
	out := AccountJSON{
		ID: a.ID, SlurmAccount: a.SlurmAccount, Name: a.Name, Description: a.Description,
		BudgetLimit: numOf(a.Deposited), BudgetUsed: numOf(a.Spent), BudgetHeld: numOf(a.Held),
		BudgetAvailable: numOf(a.Available), HasIncrementalBudget: sum.incremental, NextAllocationDate: sum.next,
		TotalAllocated: numOf(sum.total), StartDate: a.StartsAt, EndDate: a.EndsAt, Status: a.Status,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, Cluster: a.Cluster, Currency: a.Currency, Parent: a.Parent,
		Deposited: a.Deposited.String(), Spent: a.Spent.String(), Held: a.Held.String(), Available: a.Available.String(),
		CreditLimit: a.CreditLimit.String(), PartitionLimits: a.Limits,
	}
	if a.MaxJobCost != nil {
		m := a.MaxJobCost.String()
		out.MaxJobCost = &m
	}
	return out
}

// allocSummaries reads total allocated, schedule use and the next pending
// allocation for the given accounts (all when ids is nil).
func (s *Server) allocSummaries(ctx context.Context, ids []int64) (map[int64]allocSummary, error) {
	// An account has an incremental budget when it has an allocation
	// schedule; its next allocation is the earliest pending deposit or
	// running schedule's next installment.
	rows, err := s.l.Pool().Query(ctx, `SELECT account_id, sum(total), bool_or(incremental), min(next) FROM (
			SELECT account_id, amount AS total, false AS incremental, CASE WHEN status = 'pending' THEN starts_at END AS next
			FROM allocations
			UNION ALL
			SELECT account_id, 0, true, CASE WHEN NOT paused THEN next_due END FROM allocation_schedules
		) x WHERE $1::bigint[] IS NULL OR account_id = ANY($1) GROUP BY account_id`, ids)
	if err != nil {
		return nil, budget.DBErr("summarise allocations", err)
	}
	defer rows.Close()
	out := map[int64]allocSummary{}
	for rows.Next() {
		var id int64
		var sum allocSummary
		if err := rows.Scan(&id, &sum.total, &sum.incremental, &sum.next); err != nil {
			return nil, budget.DBErr("summarise allocations", err)
		}
		out[id] = sum
	}
	return out, budget.DBErr("summarise allocations", rows.Err())
}

func (s *Server) accountReply(ctx context.Context, w http.ResponseWriter, status int, a budget.Account) error {
	sums, err := s.allocSummaries(ctx, []int64{a.ID})
	if err != nil {
		return err
	}
	return reply(w, status, accountJSON(a, sums[a.ID]))
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	status := q.Get("status")
	switch status {
	case "", "active", "suspended", "closed":
	default:
		return invalid("status", "status must be active, suspended or closed")
	}
	parent := q.Get("parent")
	if parent != "" {
		if err := budget.ValidateAccountName(parent); err != nil {
			return fieldErr("parent", err)
		}
	}
	accts, err := s.l.ListAccounts(r.Context(), budget.AccountFilter{Status: status, Parent: parent})
	if err != nil {
		return err
	}
	sums, err := s.allocSummaries(r.Context(), nil)
	if err != nil {
		return err
	}
	out := make([]AccountJSON, 0, len(accts))
	for _, a := range accts {
		out = append(out, accountJSON(a, sums[a.ID]))
	}
	return reply(w, http.StatusOK, map[string]any{"accounts": out, "count": len(out)})
}

func (s *Server) showAccount(w http.ResponseWriter, r *http.Request) error {
	a, err := s.l.GetAccount(r.Context(), r.URL.Query().Get("cluster"), r.PathValue("account"))
	if err != nil {
		return err
	}
	return s.accountReply(r.Context(), w, http.StatusOK, a)
}

// AllocationSchedule is the original's incremental-budget schedule:
// allocation_amount every allocation_frequency (daily, weekly, monthly,
// quarterly, yearly) from start_date until total_budget is reached or
// end_date. The package file that owns schedules (grants.go) sets
// ScheduleHook to create it; without a hook a create carrying a schedule is
// refused.
type AllocationSchedule struct {
	TotalBudget         Amount `json:"total_budget"`
	AllocationAmount    Amount `json:"allocation_amount"`
	AllocationFrequency string `json:"allocation_frequency"`
	StartDate           Date   `json:"start_date"`
	EndDate             Date   `json:"end_date"`
	AutoAllocate        bool   `json:"auto_allocate"`
}

// ScheduleHook creates an account's allocation schedule after the account
// (set by grants.go).
var ScheduleHook func(ctx context.Context, l *budget.Ledger, account budget.Account, sched AllocationSchedule, actor string) error

// precheck validates a schedule before its account is created, so that a
// bad schedule changes nothing. Dates are read as UTC here; the hook reads
// them in the allocation zone and stays the authority.
func (a AllocationSchedule) precheck(cfg *budget.Config, account string) error {
	spec, err := a.spec(account, "", "")
	if err != nil {
		return err
	}
	if spec.Start.IsZero() {
		spec.Start = time.Now()
	}
	_, err = budget.PlanSchedule(spec, cfg.AllocationTimezone())
	return fieldErr("allocation_schedule", err)
}

func (a AllocationSchedule) spec(account, cluster, actor string) (budget.ScheduleSpec, error) {
	spec := budget.ScheduleSpec{Cluster: cluster, Account: account, Frequency: strings.ToLower(a.AllocationFrequency),
		Actor: actor, Note: "allocation_schedule over the API"}
	var err error
	if spec.Total, err = a.TotalBudget.Positive("allocation_schedule.total_budget"); err != nil {
		return spec, err
	}
	if spec.Amount, err = a.AllocationAmount.Positive("allocation_schedule.allocation_amount"); err != nil {
		return spec, err
	}
	start, err := a.StartDate.Get("allocation_schedule.start_date")
	if err != nil {
		return spec, err
	}
	if start != nil {
		spec.Start = *start
	}
	if spec.End, err = a.EndDate.Get("allocation_schedule.end_date"); err != nil {
		return spec, err
	}
	return spec, nil
}

// AccountCreate is the body of POST /api/v1/accounts.
type AccountCreate struct {
	SlurmAccount         string              `json:"slurm_account"`
	Name                 string              `json:"name"`
	Description          string              `json:"description"`
	BudgetLimit          Amount              `json:"budget_limit"`
	StartDate            Date                `json:"start_date"`
	EndDate              Date                `json:"end_date"`
	HasIncrementalBudget bool                `json:"has_incremental_budget"`
	AllocationSchedule   *AllocationSchedule `json:"allocation_schedule"`

	Cluster     string `json:"cluster"`
	Currency    string `json:"currency"`
	Parent      string `json:"parent"`
	CreditLimit Amount `json:"credit_limit"`
	MaxJobCost  Amount `json:"max_job_cost"`
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) error {
	var req AccountCreate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.SlurmAccount == "" {
		return invalid("slurm_account", "slurm_account is required")
	}
	if err := budget.ValidateAccountName(req.SlurmAccount); err != nil {
		return fieldErr("slurm_account", err)
	}
	if req.Parent != "" {
		if err := budget.ValidateAccountName(req.Parent); err != nil {
			return fieldErr("parent", err)
		}
	}
	if err := checkLen("currency", req.Currency, 3); err != nil {
		return err
	}
	if err := checkLen("cluster", req.Cluster, 64); err != nil {
		return err
	}
	spec := budget.AccountSpec{Cluster: req.Cluster, SlurmAccount: req.SlurmAccount, Name: req.Name,
		Description: req.Description, Currency: req.Currency, Parent: req.Parent, Actor: actorOf(r)}
	var err error
	if req.BudgetLimit.Set() {
		if spec.Budget, err = req.BudgetLimit.NonNegative("budget_limit"); err != nil {
			return err
		}
	}
	if req.CreditLimit.Set() {
		if spec.CreditLimit, err = req.CreditLimit.NonNegative("credit_limit"); err != nil {
			return err
		}
	}
	if req.MaxJobCost.Set() {
		m, err := req.MaxJobCost.Positive("max_job_cost")
		if err != nil {
			return err
		}
		spec.MaxJobCost = &m
	}
	if spec.StartsAt, err = req.StartDate.Get("start_date"); err != nil {
		return err
	}
	if spec.EndsAt, err = req.EndDate.Get("end_date"); err != nil {
		return err
	}
	if req.AllocationSchedule != nil {
		if ScheduleHook == nil {
			return invalid("allocation_schedule", "allocation schedules are not available in this build")
		}
		if err := req.AllocationSchedule.precheck(s.cfg, req.SlurmAccount); err != nil {
			return err
		}
	}
	a, err := s.l.CreateAccount(r.Context(), spec)
	if err != nil {
		return fieldErr("slurm_account", err)
	}
	if req.AllocationSchedule != nil {
		if err := ScheduleHook(r.Context(), s.l, a, *req.AllocationSchedule, actorOf(r)); err != nil {
			return err
		}
		if a, err = s.l.GetAccount(r.Context(), a.Cluster, a.SlurmAccount); err != nil {
			return err
		}
	}
	return s.accountReply(r.Context(), w, http.StatusCreated, a)
}

// AccountUpdate is the body of PUT /api/v1/accounts/{account}. Setting
// budget_limit deposits (or withdraws) the difference from what has been
// deposited. The read-only keys of a BudgetAccount are accepted and
// ignored, so a client may send back what it read.
type AccountUpdate struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	BudgetLimit Amount  `json:"budget_limit"`
	StartDate   Date    `json:"start_date"`
	EndDate     Date    `json:"end_date"`
	Status      *string `json:"status"`
	CreditLimit Amount  `json:"credit_limit"`
	MaxJobCost  Amount  `json:"max_job_cost"`

	ID                   json.RawMessage `json:"id"`
	SlurmAccount         json.RawMessage `json:"slurm_account"`
	BudgetUsed           json.RawMessage `json:"budget_used"`
	BudgetHeld           json.RawMessage `json:"budget_held"`
	HasIncrementalBudget json.RawMessage `json:"has_incremental_budget"`
	TotalAllocated       json.RawMessage `json:"total_allocated"`
	CreatedAt            json.RawMessage `json:"created_at"`
	UpdatedAt            json.RawMessage `json:"updated_at"`
}

func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request) error {
	var req AccountUpdate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	cluster, name := r.URL.Query().Get("cluster"), r.PathValue("account")
	cur, err := s.l.GetAccount(ctx, cluster, name)
	if err != nil {
		return err
	}
	var p budget.AccountPatch
	p.Name, p.Description = req.Name, req.Description
	if req.Description != nil {
		if err := checkLen("description", *req.Description, 2000); err != nil {
			return err
		}
	}
	if p.StartsAt, err = req.StartDate.Get("start_date"); err != nil {
		return err
	}
	if p.EndsAt, err = req.EndDate.Get("end_date"); err != nil {
		return err
	}
	if req.CreditLimit.Set() {
		c, err := req.CreditLimit.NonNegative("credit_limit")
		if err != nil {
			return err
		}
		p.CreditLimit = &c
	}
	if req.MaxJobCost.Set() {
		m, err := req.MaxJobCost.Positive("max_job_cost")
		if err != nil {
			return err
		}
		p.MaxJobCost = &m
	}
	closeIt := false
	if req.Status != nil {
		switch *req.Status {
		case "active", "suspended":
			p.Status = req.Status
		case "closed":
			closeIt = true
		default:
			return invalid("status", "status must be active, suspended or closed")
		}
	}
	var limit decimal.Decimal
	if req.BudgetLimit.Set() {
		if limit, err = req.BudgetLimit.NonNegative("budget_limit"); err != nil {
			return err
		}
	}
	actor := actorOf(r)
	a, err := s.l.UpdateAccount(ctx, cluster, name, p)
	if err != nil {
		return fieldErr("", err)
	}
	if req.BudgetLimit.Set() {
		switch delta := limit.Sub(cur.Deposited); {
		case delta.IsPositive():
			if _, err := s.l.AddDeposit(ctx, cluster, name, budget.Deposit{Amount: delta, Actor: actor,
				Note: "budget_limit set to " + limit.String() + " over the API"}); err != nil {
				return fieldErr("budget_limit", err)
			}
		case delta.IsNegative():
			err := s.l.Withdraw(ctx, cluster, name, delta.Neg(), actor, "budget_limit set to "+limit.String()+" over the API", "")
			var den *budget.Denial
			if errors.As(err, &den) {
				return &apiError{status: http.StatusPaymentRequired, code: "INSUFFICIENT_BUDGET", field: "budget_limit",
					message: fmt.Sprintf("budget_limit %s would withdraw %s, but only %s is unspent and unheld", limit, delta.Neg(), den.Available)}
			}
			if err != nil {
				return fieldErr("budget_limit", err)
			}
		}
	}
	if closeIt {
		if _, err := s.l.CloseAccount(ctx, cluster, name, actor); err != nil {
			return err
		}
	}
	s.log.Info("account updated", "account", name, "actor", actor, "request_id", requestIDOf(r))
	if a, err = s.l.GetAccount(ctx, cluster, name); err != nil {
		return err
	}
	return s.accountReply(ctx, w, http.StatusOK, a)
}

func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("account")
	if err := s.l.DeleteAccount(r.Context(), r.URL.Query().Get("cluster"), name); err != nil {
		return err
	}
	s.log.Info("account deleted", "account", name, "actor", actorOf(r), "request_id", requestIDOf(r))
	return reply(w, http.StatusOK, map[string]any{"success": true, "message": "account " + name + " deleted"})
}
