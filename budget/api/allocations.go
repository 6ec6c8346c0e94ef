package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/asbb/asbb/budget"
)

func (s *Server) routesAllocations() {
	s.handle("GET /api/v1/allocations", RoleRead, s.listAllocations)
	s.handle("POST /api/v1/allocations", RoleAdmin, s.createAllocation)
	s.handle("GET /api/v1/allocations/{id}", RoleRead, s.showAllocation)
}

// AllocationJSON is a deposit, with its amount as a number and exactly.
type AllocationJSON struct {
	ID          int64      `json:"id"`
	AccountID   int64      `json:"account_id"`
	Account     string     `json:"account"`
	Amount      num        `json:"amount"`
	AmountStr   string     `json:"amount_str"`
	StartDate   time.Time  `json:"start_date"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	Status      string     `json:"status"`
	Forfeited   string     `json:"forfeited"`
	ScheduleID  *int64     `json:"schedule_id,omitempty"`
	Installment *int       `json:"installment,omitempty"`
	Note        string     `json:"note"`
	Actor       string     `json:"actor"`
	CreatedAt   time.Time  `json:"created_at"`
	Duplicate   bool       `json:"duplicate,omitempty"`
}

func allocationJSON(a budget.Allocation) AllocationJSON {
	return AllocationJSON{ID: a.ID, AccountID: a.AccountID, Account: a.Account, Amount: numOf(a.Amount),
		AmountStr: a.Amount.String(), StartDate: a.StartsAt, ExpiresAt: a.ExpiresAt, Status: a.Status,
		Forfeited: a.Forfeited.String(), ScheduleID: a.ScheduleID, Installment: a.Installment, Note: a.Note,
		Actor: a.Actor, CreatedAt: a.CreatedAt, Duplicate: a.Duplicate}
}

func (s *Server) listAllocations(w http.ResponseWriter, r *http.Request) error {
	account := r.URL.Query().Get("account")
	if account != "" {
		if err := budget.ValidateAccountName(account); err != nil {
			return fieldErr("account", err)
		}
	}
	limit, err := queryInt(r, "limit", 1000, 100000)
	if err != nil {
		return err
	}
	als, err := s.l.ListAllocations(r.Context(), account, limit)
	if err != nil {
		return err
	}
	out := make([]AllocationJSON, 0, len(als))
	for _, a := range als {
		out = append(out, allocationJSON(a))
	}
	return reply(w, http.StatusOK, map[string]any{"allocations": out, "count": len(out)})
}

func (s *Server) showAllocation(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "id", message: "allocation ids are positive integers"}
	}
	a, err := s.l.GetAllocation(r.Context(), id)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, allocationJSON(a))
}

// AllocationCreate is the body of POST /api/v1/allocations: a deposit,
// now or from start_date, optionally expiring. idempotency_key makes a
// retried request deposit once.
type AllocationCreate struct {
	Account        string `json:"account"`
	Cluster        string `json:"cluster"`
	Amount         Amount `json:"amount"`
	Currency       string `json:"currency"`
	StartDate      Date   `json:"start_date"`
	ExpiresAt      Date   `json:"expires_at"`
	Note           string `json:"note"`
	IdempotencyKey string `json:"idempotency_key"`
}

func (s *Server) createAllocation(w http.ResponseWriter, r *http.Request) error {
	var req AllocationCreate
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
	}{{"cluster", req.Cluster, 64}, {"currency", req.Currency, 3}, {"note", req.Note, 1000}, {"idempotency_key", req.IdempotencyKey, 200}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	amt, err := req.Amount.Positive("amount")
	if err != nil {
		return err
	}
	d := budget.Deposit{Amount: amt, Currency: req.Currency, Note: req.Note, Actor: actorOf(r), IdempotencyKey: req.IdempotencyKey}
	start, err := req.StartDate.Get("start_date")
	if err != nil {
		return err
	}
	if start != nil {
		d.StartsAt = *start
	}
	if d.ExpiresAt, err = req.ExpiresAt.Get("expires_at"); err != nil {
		return err
	}
	a, err := s.l.AddDeposit(r.Context(), req.Cluster, req.Account, d)
	if err != nil {
		return fieldErr("", err)
	}
	status := http.StatusCreated
	if a.Duplicate {
		status = http.StatusOK
	}
	return reply(w, status, allocationJSON(a))
}
