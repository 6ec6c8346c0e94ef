package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

// Allocation schedules and grants: thin handlers over budget's
// CreateSchedule/ProcessSchedules and CreateGrant/GrantPeriods/... (see
// docs/grants.md). Schedules live under /api/v1/allocations/schedules,
// next to the deposits of /api/v1/allocations.

func (s *Server) routesGrants() {
	s.handle("GET /api/v1/allocations/schedules", RoleRead, s.listSchedules)
	s.handle("POST /api/v1/allocations/schedules", RoleAdmin, s.createSchedule)
	s.handle("GET /api/v1/allocations/schedules/{id}", RoleRead, s.showSchedule)
	s.handle("PUT /api/v1/allocations/schedules/{id}", RoleAdmin, s.updateSchedule)
	s.handle("POST /api/v1/allocations/process", RoleAdmin, s.processAllocations)
	s.handle("GET /api/v1/grants", RoleRead, s.listGrants)
	s.handle("POST /api/v1/grants", RoleAdmin, s.createGrant)
	s.handle("GET /api/v1/grants/{grant_number}", RoleRead, s.showGrant)
	s.handle("PUT /api/v1/grants/{grant_number}", RoleAdmin, s.updateGrant)
	s.handle("GET /api/v1/grants/{grant_number}/periods", RoleRead, s.grantPeriods)
	s.handle("PUT /api/v1/grants/{grant_number}/periods/{period}", RoleAdmin, s.setPeriodBudget)
	s.handle("POST /api/v1/grants/{grant_number}/accounts", RoleAdmin, s.linkGrant)
	s.handle("GET /api/v1/grants/{grant_number}/ledger", RoleRead, s.grantLedger)
}

// The account create of the original API carries an allocation_schedule;
// this makes POST /api/v1/accounts honour it.
func init() { ScheduleHook = accountSchedule }

// processSchedules is the allocations worker (allocations.auto_process):
// safe on several instances at once (row locks and per-installment keys).
func (s *Server) processSchedules(ctx context.Context) error {
	_, err := s.l.ProcessSchedules(ctx, time.Now())
	return err
}

// localDate parses a schedule date: YYYY-MM-DD is local midnight in the
// allocation zone (an end date: the end of that day), RFC 3339 is exact.
func localDate(cfg *budget.Config, d Date, field string, end bool) (*time.Time, error) {
	if !d.set {
		return nil, nil
	}
	loc, err := time.LoadLocation(cfg.AllocationTimezone())
	if err != nil {
		return nil, err
	}
	if t, err := time.ParseInLocation(time.DateOnly, d.raw, loc); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return &t, nil
	}
	return d.Get(field)
}

// ScheduleJSON is an allocation schedule with its progress. end_date is
// exclusive: no installment falls due at or after it.
type ScheduleJSON struct {
	ID                    int64      `json:"id"`
	AccountID             int64      `json:"account_id"`
	Account               string     `json:"account"`
	TotalBudget           num        `json:"total_budget"`
	TotalBudgetStr        string     `json:"total_budget_str"`
	AllocationAmount      num        `json:"allocation_amount"`
	AllocationAmountStr   string     `json:"allocation_amount_str"`
	AllocationFrequency   string     `json:"allocation_frequency"`
	StartDate             time.Time  `json:"start_date"`
	EndDate               *time.Time `json:"end_date,omitempty"`
	Timezone              string     `json:"timezone"`
	ExpireAfterPeriods    *int       `json:"expire_after_periods,omitempty"`
	Installments          int        `json:"installments"`
	InstallmentsDeposited int        `json:"installments_deposited"`
	Deposited             num        `json:"deposited"`
	DepositedStr          string     `json:"deposited_str"`
	NextAllocationDate    *time.Time `json:"next_allocation_date,omitempty"`
	NextAmount            string     `json:"next_amount,omitempty"`
	Paused                bool       `json:"paused"`
	Status                string     `json:"status"`
	Note                  string     `json:"note"`
	Actor                 string     `json:"actor"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
	CompletedAt           *time.Time `json:"completed_at,omitempty"`
	Duplicate             bool       `json:"duplicate,omitempty"`
}

func scheduleJSON(sc budget.Schedule) ScheduleJSON {
	out := ScheduleJSON{ID: sc.ID, AccountID: sc.AccountID, Account: sc.Account, TotalBudget: numOf(sc.Total),
		TotalBudgetStr: sc.Total.String(), AllocationAmount: numOf(sc.Amount), AllocationAmountStr: sc.Amount.String(),
		AllocationFrequency: sc.Frequency, StartDate: sc.StartsAt, EndDate: sc.EndsAt, Timezone: sc.Timezone,
		ExpireAfterPeriods: sc.ExpireAfter, Installments: sc.Installments, InstallmentsDeposited: sc.Deposited,
		Deposited: numOf(sc.DepositedAmount), DepositedStr: sc.DepositedAmount.String(), NextAllocationDate: sc.NextDue,
		Paused: sc.Paused, Status: sc.Status, Note: sc.Note, Actor: sc.Actor, CreatedAt: sc.CreatedAt,
		UpdatedAt: sc.UpdatedAt, CompletedAt: sc.CompletedAt, Duplicate: sc.Duplicate}
	if sc.NextDue != nil {
		out.NextAmount = sc.NextAmount.String()
	}
	return out
}

// ScheduleCreate is the body of POST /api/v1/allocations/schedules. Dates
// given as YYYY-MM-DD are local days in the allocation zone, end_date
// inclusive; installments already due are deposited before the reply.
type ScheduleCreate struct {
	Account             string `json:"account"`
	Cluster             string `json:"cluster"`
	TotalBudget         Amount `json:"total_budget"`
	AllocationAmount    Amount `json:"allocation_amount"`
	AllocationFrequency string `json:"allocation_frequency"`
	StartDate           Date   `json:"start_date"`
	EndDate             Date   `json:"end_date"`
	ExpireAfterPeriods  int    `json:"expire_after_periods"`
	Paused              bool   `json:"paused"`
	Note                string `json:"note"`
	IdempotencyKey      string `json:"idempotency_key"`
}

// scheduleSpec reads the schedule fields; Start stays zero when start_date
// is absent (the caller decides the default).
func scheduleSpec(cfg *budget.Config, actor string, total, amount Amount, freq string, start, end Date) (budget.ScheduleSpec, error) {
	var spec budget.ScheduleSpec
	var err error
	if spec.Total, err = total.Positive("total_budget"); err != nil {
		return spec, err
	}
	if spec.Amount, err = amount.Positive("allocation_amount"); err != nil {
		return spec, err
	}
	if freq == "" {
		return spec, invalid("allocation_frequency", "allocation_frequency is required (daily, weekly, monthly, quarterly or yearly)")
	}
	spec.Frequency = freq
	st, err := localDate(cfg, start, "start_date", false)
	if err != nil {
		return spec, err
	}
	if st != nil {
		spec.Start = *st
	}
	if spec.End, err = localDate(cfg, end, "end_date", true); err != nil {
		return spec, err
	}
	spec.Actor = actor
	return spec, nil
}

// createAndDeposit creates a schedule and deposits what is already due.
func (s *Server) createAndDeposit(ctx context.Context, spec budget.ScheduleSpec) (budget.Schedule, error) {
	sc, err := s.l.CreateSchedule(ctx, spec)
	if err != nil {
		return sc, err
	}
	if _, err := s.l.ProcessSchedule(ctx, sc.ID, time.Now()); err != nil {
		// The schedule stands; the processor deposits on its next run.
		s.log.Warn("depositing a new schedule's due installments failed", "schedule_id", sc.ID, "error", err)
	}
	dup := sc.Duplicate
	sc, err = s.l.GetSchedule(ctx, sc.ID)
	sc.Duplicate = dup
	return sc, err
}

// accountSchedule honours the allocation_schedule of POST /api/v1/accounts:
// it starts on its start_date, else the account's, else today; auto_allocate
// is accepted and ignored (the processor always deposits).
func accountSchedule(ctx context.Context, l *budget.Ledger, a budget.Account, as AllocationSchedule, actor string) error {
	spec, err := scheduleSpec(l.Config(), actor, as.TotalBudget, as.AllocationAmount, as.AllocationFrequency, as.StartDate, as.EndDate)
	if err != nil {
		return err
	}
	if spec.Start.IsZero() {
		if a.StartsAt != nil {
			spec.Start = *a.StartsAt
		} else {
			loc, err := time.LoadLocation(l.Config().AllocationTimezone())
			if err != nil {
				return err
			}
			now := time.Now().In(loc)
			spec.Start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
		}
	}
	spec.Cluster, spec.Account = a.Cluster, a.SlurmAccount
	sc, err := l.CreateSchedule(ctx, spec)
	if err != nil {
		return fieldErr("allocation_schedule", err)
	}
	_, err = l.ProcessSchedule(ctx, sc.ID, time.Now())
	return err
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) error {
	var req ScheduleCreate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Account == "" {
		return invalid("account", "account is required")
	}
	if err := budget.ValidateAccountName(req.Account); err != nil {
		return fieldErr("account", err)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"cluster", req.Cluster, 64}, {"allocation_frequency", req.AllocationFrequency, 20}, {"note", req.Note, 1000},
		{"idempotency_key", req.IdempotencyKey, 200}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	spec, err := scheduleSpec(s.cfg, actorOf(r), req.TotalBudget, req.AllocationAmount, req.AllocationFrequency, req.StartDate, req.EndDate)
	if err != nil {
		return err
	}
	if spec.Start.IsZero() {
		return invalid("start_date", "start_date is required")
	}
	spec.Cluster, spec.Account, spec.ExpireAfter, spec.Paused = req.Cluster, req.Account, req.ExpireAfterPeriods, req.Paused
	spec.Note, spec.IdempotencyKey = req.Note, req.IdempotencyKey
	sc, err := s.createAndDeposit(r.Context(), spec)
	if err != nil {
		return fieldErr("", err)
	}
	status := http.StatusCreated
	if sc.Duplicate {
		status = http.StatusOK
	}
	return reply(w, status, scheduleJSON(sc))
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	account := r.URL.Query().Get("account")
	if account != "" {
		if err := budget.ValidateAccountName(account); err != nil {
			return fieldErr("account", err)
		}
	}
	ss, err := s.l.ListSchedules(r.Context(), account)
	if err != nil {
		return err
	}
	out := make([]ScheduleJSON, 0, len(ss))
	for _, sc := range ss {
		out = append(out, scheduleJSON(sc))
	}
	return reply(w, http.StatusOK, map[string]any{"schedules": out, "count": len(out)})
}

func pathID(r *http.Request, name, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: name, message: what + " ids are positive integers"}
	}
	return id, nil
}

func (s *Server) showSchedule(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "schedule")
	if err != nil {
		return err
	}
	sc, err := s.l.GetSchedule(r.Context(), id)
	if err != nil {
		return err
	}
	als, err := s.l.ScheduleInstallments(r.Context(), id)
	if err != nil {
		return err
	}
	deps := make([]AllocationJSON, 0, len(als))
	for _, a := range als {
		deps = append(deps, allocationJSON(a))
	}
	return reply(w, http.StatusOK, struct {
		ScheduleJSON
		Deposits []AllocationJSON `json:"deposits"`
	}{scheduleJSON(sc), deps})
}

// ScheduleUpdate is the body of PUT /api/v1/allocations/schedules/{id}:
// pause or resume (a resumed schedule catches up on its next run), or
// change the note.
type ScheduleUpdate struct {
	Paused *bool   `json:"paused"`
	Note   *string `json:"note"`
}

func (s *Server) updateSchedule(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "schedule")
	if err != nil {
		return err
	}
	var req ScheduleUpdate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Note != nil {
		if err := checkLen("note", *req.Note, 1000); err != nil {
			return err
		}
	}
	sc, err := s.l.UpdateSchedule(r.Context(), id, budget.SchedulePatch{Paused: req.Paused, Note: req.Note}, actorOf(r))
	if err != nil {
		return fieldErr("", err)
	}
	return reply(w, http.StatusOK, scheduleJSON(sc))
}

// ProcessRequest is the optional body of POST /api/v1/allocations/process.
type ProcessRequest struct {
	// AsOf processes as of another time (default now).
	AsOf Date `json:"as_of"`
}

// PeriodCloseJSON is one closed (or waiting) grant period.
type PeriodCloseJSON struct {
	GrantNumber    string `json:"grant_number"`
	Period         int    `json:"period"`
	Outcome        string `json:"outcome"`
	Unspent        num    `json:"unspent"`
	CarriedForward num    `json:"carried_forward"`
	Lapsed         num    `json:"lapsed"`
}

func (s *Server) processAllocations(w http.ResponseWriter, r *http.Request) error {
	var req ProcessRequest
	body, err := readOptionalBody(r)
	if err != nil {
		return err
	}
	if body != nil {
		if err := decodeBytes(body, &req); err != nil {
			return err
		}
	}
	now := time.Now()
	if t, err := req.AsOf.Get("as_of"); err != nil {
		return err
	} else if t != nil {
		now = *t
	}
	rep, err := s.l.ProcessSchedules(r.Context(), now)
	if err != nil {
		return err
	}
	periods := make([]PeriodCloseJSON, 0, len(rep.Periods))
	for _, p := range rep.Periods {
		periods = append(periods, PeriodCloseJSON{GrantNumber: p.Grant, Period: p.Period, Outcome: p.Outcome,
			Unspent: numOf(p.Unspent), CarriedForward: numOf(p.Carried), Lapsed: numOf(p.Lapsed)})
	}
	return reply(w, http.StatusOK, map[string]any{
		"as_of": rep.Now, "schedules": rep.Schedules, "installments": rep.Installments, "duplicates": rep.Duplicates,
		"amount": numOf(rep.Amount), "amount_str": rep.Amount.String(), "completed": rep.Completed,
		"periods_closed": periods,
	})
}

// readOptionalBody returns nil for an empty (or blank) body.
func readOptionalBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, invalid("", "cannot read request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	return body, nil
}

// GrantJSON is a grant with exact money twins.
type GrantJSON struct {
	ID                 int64     `json:"id"`
	GrantNumber        string    `json:"grant_number"`
	Agency             string    `json:"agency"`
	Program            string    `json:"program"`
	PI                 string    `json:"principal_investigator"`
	CoPIs              []string  `json:"co_investigators"`
	Institution        string    `json:"institution"`
	Department         string    `json:"department"`
	AwardAmount        num       `json:"award_amount"`
	AwardAmountStr     string    `json:"award_amount_str"`
	Currency           string    `json:"currency"`
	StartDate          string    `json:"start_date"`
	EndDate            string    `json:"end_date"`
	BudgetPeriodMonths int       `json:"budget_period_months"`
	BudgetPeriods      int       `json:"budget_periods"`
	IndirectRate       num       `json:"indirect_rate"`
	FederalAwardID     string    `json:"federal_award_id"`
	Status             string    `json:"status"`
	CarryForward       bool      `json:"carry_forward"`
	Timezone           string    `json:"timezone"`
	Accounts           []string  `json:"accounts"`
	Spent              num       `json:"spent"`
	SpentStr           string    `json:"spent_str"`
	Held               num       `json:"held"`
	HeldStr            string    `json:"held_str"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

func grantJSON(g budget.Grant) GrantJSON {
	if g.CoPIs == nil {
		g.CoPIs = []string{}
	}
	if g.Accounts == nil {
		g.Accounts = []string{}
	}
	return GrantJSON{ID: g.ID, GrantNumber: g.Number, Agency: g.Agency, Program: g.Program, PI: g.PI, CoPIs: g.CoPIs,
		Institution: g.Institution, Department: g.Department, AwardAmount: numOf(g.Amount), AwardAmountStr: g.Amount.String(),
		Currency: g.Currency, StartDate: g.StartDate, EndDate: g.EndDate, BudgetPeriodMonths: g.PeriodMonths,
		BudgetPeriods: g.Periods, IndirectRate: numOf(g.IndirectRate), FederalAwardID: g.FederalID, Status: g.Status,
		CarryForward: g.CarryForward, Timezone: g.Timezone, Accounts: g.Accounts, Spent: numOf(g.Spent),
		SpentStr: g.Spent.String(), Held: numOf(g.Held), HeldStr: g.Held.String(), CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

// PeriodJSON is one budget period. held, spent and remaining count
// indirect costs; adjusted is carry-forward in (+) or out/lapsed (−).
type PeriodJSON struct {
	GrantNumber  string     `json:"grant_number"`
	Period       int        `json:"period"`
	Name         string     `json:"name"`
	StartDate    string     `json:"start_date"`
	EndDate      string     `json:"end_date"`
	Budget       num        `json:"budget"`
	BudgetStr    string     `json:"budget_str"`
	Adjusted     num        `json:"adjusted"`
	Held         num        `json:"held"`
	Spent        num        `json:"spent"`
	Remaining    num        `json:"remaining"`
	RemainingStr string     `json:"remaining_str"`
	Status       string     `json:"status"`
	ClosedAt     *time.Time `json:"closed_at,omitempty"`
}

func periodJSON(p budget.GrantPeriod) PeriodJSON {
	return PeriodJSON{GrantNumber: p.Grant, Period: p.Period, Name: p.Name(), StartDate: p.StartDate, EndDate: p.EndDate,
		Budget: numOf(p.Budget), BudgetStr: p.Budget.String(), Adjusted: numOf(p.Adjusted), Held: numOf(p.Held),
		Spent: numOf(p.Spent), Remaining: numOf(p.Remaining), RemainingStr: p.Remaining.String(), Status: p.Status,
		ClosedAt: p.ClosedAt}
}

// GrantCreate is the body of POST /api/v1/grants. Dates are calendar days
// (end_date inclusive); budget_period_months 12 means annual periods.
type GrantCreate struct {
	GrantNumber        string   `json:"grant_number"`
	Agency             string   `json:"agency"`
	Program            string   `json:"program"`
	PI                 string   `json:"principal_investigator"`
	CoPIs              []string `json:"co_investigators"`
	Institution        string   `json:"institution"`
	Department         string   `json:"department"`
	AwardAmount        Amount   `json:"award_amount"`
	StartDate          string   `json:"start_date"`
	EndDate            string   `json:"end_date"`
	BudgetPeriodMonths *int     `json:"budget_period_months"`
	IndirectRate       Amount   `json:"indirect_rate"`
	FederalAwardID     string   `json:"federal_award_id"`
	Status             string   `json:"status"`
	CarryForward       *bool    `json:"carry_forward"`
}

func dayField(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, invalid(field, "%s is required (YYYY-MM-DD)", field)
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return t, invalid(field, "%s: %q is not a date (YYYY-MM-DD)", field, truncate(v, 40))
	}
	return t, nil
}

// rate reads an indirect rate (a number or decimal string, 0..1.5).
func rate(a Amount) (decimal.Decimal, error) {
	d, err := a.NonNegative("indirect_rate")
	if err != nil {
		return d, err
	}
	if d.GreaterThan(decimal.RequireFromString("1.5")) {
		return d, invalid("indirect_rate", "indirect_rate %s is outside [0, 1.5] (0.30 means 30%%)", d)
	}
	return d, nil
}

// grantFieldErr names the request field a grant validation error is about.
func grantFieldErr(err error) error {
	if err == nil {
		return nil
	}
	msg := cleanMessage(err)
	for _, f := range []struct{ prefix, field string }{
		{"grant number", "grant_number"}, {"agency", "agency"}, {"PI", "principal_investigator"},
		{"co-PI", "co_investigators"}, {"award amount", "award_amount"}, {"end date", "end_date"},
		{"budget-period length", "budget_period_months"}, {"indirect rate", "indirect_rate"},
		{"federal assistance", "federal_award_id"}, {"status", "status"}, {"program", "program"},
		{"institution", "institution"}, {"department", "department"},
	} {
		if len(msg) >= len(f.prefix) && msg[:len(f.prefix)] == f.prefix {
			return fieldErr(f.field, err)
		}
	}
	if ae := toAPIError(err); ae.code == "CONFLICT" {
		ae.field = "grant_number"
		return ae
	}
	return fieldErr("", err)
}

func (s *Server) createGrant(w http.ResponseWriter, r *http.Request) error {
	var req GrantCreate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	spec := budget.GrantSpec{Number: req.GrantNumber, Agency: req.Agency, Program: req.Program, PI: req.PI,
		CoPIs: req.CoPIs, Institution: req.Institution, Department: req.Department, FederalID: req.FederalAwardID,
		Status: req.Status, CarryForward: req.CarryForward, Actor: actorOf(r), PeriodMonths: 12}
	if req.GrantNumber == "" {
		return invalid("grant_number", "grant_number is required")
	}
	var err error
	if spec.Amount, err = req.AwardAmount.Positive("award_amount"); err != nil {
		return err
	}
	if spec.Start, err = dayField("start_date", req.StartDate); err != nil {
		return err
	}
	if spec.End, err = dayField("end_date", req.EndDate); err != nil {
		return err
	}
	if req.BudgetPeriodMonths != nil {
		spec.PeriodMonths = *req.BudgetPeriodMonths
	}
	if req.IndirectRate.Set() {
		if spec.IndirectRate, err = rate(req.IndirectRate); err != nil {
			return err
		}
	}
	g, err := s.l.CreateGrant(r.Context(), spec)
	if err != nil {
		return grantFieldErr(err)
	}
	return s.grantReply(r.Context(), w, http.StatusCreated, g)
}

// grantReply writes a grant with its periods.
func (s *Server) grantReply(ctx context.Context, w http.ResponseWriter, status int, g budget.Grant) error {
	ps, err := s.l.GrantPeriods(ctx, g.Number)
	if err != nil {
		return err
	}
	out := make([]PeriodJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, periodJSON(p))
	}
	return reply(w, status, struct {
		GrantJSON
		Periods []PeriodJSON `json:"periods"`
	}{grantJSON(g), out})
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) error {
	f := budget.GrantFilter{Status: r.URL.Query().Get("status")}
	switch r.URL.Query().Get("active") {
	case "", "false", "0":
	case "true", "1":
		now := time.Now()
		f.ActiveOn = &now
	default:
		return invalid("active", "active must be true or false")
	}
	gs, err := s.l.ListGrants(r.Context(), f)
	if err != nil {
		return fieldErr("status", err)
	}
	out := make([]GrantJSON, 0, len(gs))
	for _, g := range gs {
		out = append(out, grantJSON(g))
	}
	return reply(w, http.StatusOK, map[string]any{"grants": out, "count": len(out)})
}

func (s *Server) showGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := s.l.GetGrant(r.Context(), r.PathValue("grant_number"))
	if err != nil {
		return err
	}
	return s.grantReply(r.Context(), w, http.StatusOK, g)
}

// GrantUpdate is the body of PUT /api/v1/grants/{grant_number}. The
// award amount, dates and period length are fixed once periods exist (edit
// a period's budget instead); sending them is refused by name. The other
// read-only keys of a grant are accepted and ignored, so a client may send
// back what it read.
type GrantUpdate struct {
	Agency         *string   `json:"agency"`
	Program        *string   `json:"program"`
	PI             *string   `json:"principal_investigator"`
	CoPIs          *[]string `json:"co_investigators"`
	Institution    *string   `json:"institution"`
	Department     *string   `json:"department"`
	FederalAwardID *string   `json:"federal_award_id"`
	Status         *string   `json:"status"`
	CarryForward   *bool     `json:"carry_forward"`
	IndirectRate   Amount    `json:"indirect_rate"`

	AwardAmount        json.RawMessage `json:"award_amount"`
	StartDate          json.RawMessage `json:"start_date"`
	EndDate            json.RawMessage `json:"end_date"`
	BudgetPeriodMonths json.RawMessage `json:"budget_period_months"`

	ID             json.RawMessage `json:"id"`
	GrantNumber    json.RawMessage `json:"grant_number"`
	AwardAmountStr json.RawMessage `json:"award_amount_str"`
	Currency       json.RawMessage `json:"currency"`
	BudgetPeriods  json.RawMessage `json:"budget_periods"`
	Timezone       json.RawMessage `json:"timezone"`
	Accounts       json.RawMessage `json:"accounts"`
	Spent          json.RawMessage `json:"spent"`
	SpentStr       json.RawMessage `json:"spent_str"`
	Held           json.RawMessage `json:"held"`
	HeldStr        json.RawMessage `json:"held_str"`
	Periods        json.RawMessage `json:"periods"`
	CreatedAt      json.RawMessage `json:"created_at"`
	UpdatedAt      json.RawMessage `json:"updated_at"`
}

func (s *Server) updateGrant(w http.ResponseWriter, r *http.Request) error {
	number := r.PathValue("grant_number")
	var req GrantUpdate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	cur, err := s.l.GetGrant(r.Context(), number)
	if err != nil {
		return err
	}
	// Fixed fields may be sent back unchanged, never changed.
	fixed := []struct {
		name string
		raw  json.RawMessage
		now  string
	}{{"award_amount", req.AwardAmount, cur.Amount.String()}, {"start_date", req.StartDate, cur.StartDate},
		{"end_date", req.EndDate, cur.EndDate}, {"budget_period_months", req.BudgetPeriodMonths, strconv.Itoa(cur.PeriodMonths)}}
	for _, f := range fixed {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		var a Amount
		_ = a.UnmarshalJSON(f.raw)
		same := a.raw == f.now
		if d1, err1 := decimal.NewFromString(a.raw); err1 == nil {
			if d2, err2 := decimal.NewFromString(f.now); err2 == nil {
				same = d1.Equal(d2)
			}
		}
		if !same {
			return invalid(f.name, "%s cannot be changed once the grant's periods exist; edit a period's budget instead", f.name)
		}
	}
	p := budget.GrantPatch{Agency: req.Agency, Program: req.Program, PI: req.PI, CoPIs: req.CoPIs,
		Institution: req.Institution, Department: req.Department, FederalID: req.FederalAwardID, Status: req.Status,
		CarryForward: req.CarryForward}
	if req.IndirectRate.Set() {
		d, err := rate(req.IndirectRate)
		if err != nil {
			return err
		}
		p.IndirectRate = &d
	}
	g, err := s.l.UpdateGrant(r.Context(), number, p, actorOf(r))
	if err != nil {
		return grantFieldErr(err)
	}
	return s.grantReply(r.Context(), w, http.StatusOK, g)
}

func (s *Server) grantPeriods(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.l.GrantPeriods(r.Context(), r.PathValue("grant_number"))
	if err != nil {
		return err
	}
	out := make([]PeriodJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, periodJSON(p))
	}
	return reply(w, http.StatusOK, map[string]any{"grant_number": r.PathValue("grant_number"), "periods": out, "count": len(out)})
}

// PeriodUpdate is the body of PUT /api/v1/grants/{grant_number}/periods/{period}.
type PeriodUpdate struct {
	Budget Amount `json:"budget"`
}

func (s *Server) setPeriodBudget(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(r.PathValue("period"))
	if err != nil || n < 1 {
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "period", message: "periods are numbered from 1"}
	}
	var req PeriodUpdate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if !req.Budget.Set() {
		return invalid("budget", "budget is required")
	}
	amt, err := req.Budget.NonNegative("budget")
	if err != nil {
		return err
	}
	p, err := s.l.SetPeriodBudget(r.Context(), r.PathValue("grant_number"), n, amt, actorOf(r))
	if err != nil {
		return fieldErr("budget", err)
	}
	return reply(w, http.StatusOK, periodJSON(p))
}

// GrantLink is the body of POST /api/v1/grants/{grant_number}/accounts.
type GrantLink struct {
	Account string `json:"account"`
	Cluster string `json:"cluster"`
}

func (s *Server) linkGrant(w http.ResponseWriter, r *http.Request) error {
	var req GrantLink
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Account == "" {
		return invalid("account", "account is required")
	}
	if err := budget.ValidateAccountName(req.Account); err != nil {
		return fieldErr("account", err)
	}
	if err := checkLen("cluster", req.Cluster, 64); err != nil {
		return err
	}
	number := r.PathValue("grant_number")
	if err := s.l.LinkGrant(r.Context(), number, req.Cluster, req.Account, actorOf(r)); err != nil {
		return fieldErr("account", err)
	}
	g, err := s.l.GetGrant(r.Context(), number)
	if err != nil {
		return err
	}
	return s.grantReply(r.Context(), w, http.StatusOK, g)
}

// GrantEntryJSON is one row of a grant's ledger.
type GrantEntryJSON struct {
	ID        int64     `json:"id"`
	Period    int       `json:"period"`
	Type      string    `json:"type"`
	Account   *string   `json:"account,omitempty"`
	LedgerID  *int64    `json:"ledger_id,omitempty"`
	HoldID    *int64    `json:"hold_id,omitempty"`
	ChargeID  *int64    `json:"charge_id,omitempty"`
	Direct    num       `json:"direct"`
	Factor    num       `json:"factor"`
	DHeld     num       `json:"d_held"`
	DSpent    num       `json:"d_spent"`
	DBudget   num       `json:"d_budget"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) grantLedger(w http.ResponseWriter, r *http.Request) error {
	period, err := queryInt(r, "period", 0, 10000)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 1000, 100000)
	if err != nil {
		return err
	}
	es, err := s.l.GrantEntries(r.Context(), r.PathValue("grant_number"), period, limit)
	if err != nil {
		return err
	}
	out := make([]GrantEntryJSON, 0, len(es))
	for _, e := range es {
		out = append(out, GrantEntryJSON{ID: e.ID, Period: e.Period, Type: e.Type, Account: e.Account, LedgerID: e.LedgerID,
			HoldID: e.HoldID, ChargeID: e.ChargeID, Direct: numOf(e.Direct), Factor: numOf(e.Factor), DHeld: numOf(e.DHeld),
			DSpent: numOf(e.DSpent), DBudget: numOf(e.DBudget), Actor: e.Actor, Reason: e.Reason, CreatedAt: e.CreatedAt})
	}
	return reply(w, http.StatusOK, map[string]any{"grant_number": r.PathValue("grant_number"), "entries": out, "count": len(out)})
}
