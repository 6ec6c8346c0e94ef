package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/asbb/asbb/budget"
)

func (s *Server) routesTransactions() {
	s.handle("GET /api/v1/transactions", RoleRead, s.listTransactions)
}

// TransactionJSON is a ledger entry in the original's transaction shape.
// Every ledger entry is final, so status is always "completed".
type TransactionJSON struct {
	ID            int64           `json:"id"`
	AccountID     int64           `json:"account_id"`
	Account       string          `json:"account"`
	JobID         *string         `json:"job_id,omitempty"`
	TransactionID string          `json:"transaction_id"`
	Type          string          `json:"type"`
	Amount        num             `json:"amount"`
	AmountStr     string          `json:"amount_str"`
	Description   string          `json:"description"`
	Metadata      TransactionMeta `json:"metadata"`
	Status        string          `json:"status"`
	CreatedAt     time.Time       `json:"created_at"`
	CompletedAt   time.Time       `json:"completed_at"`
}

// TransactionMeta carries the ledger entry's exact movements and context.
type TransactionMeta struct {
	Deposited      string  `json:"d_deposited"`
	Spent          string  `json:"d_spent"`
	Held           string  `json:"d_held"`
	DepositedAfter string  `json:"deposited_after"`
	SpentAfter     string  `json:"spent_after"`
	HeldAfter      string  `json:"held_after"`
	HoldID         *int64  `json:"hold_id,omitempty"`
	ChargeID       *int64  `json:"charge_id,omitempty"`
	AllocationID   *int64  `json:"allocation_id,omitempty"`
	OriginAccount  *string `json:"origin_account,omitempty"`
	Cluster        *string `json:"cluster,omitempty"`
	ArrayTaskID    *int    `json:"array_task_id,omitempty"`
	Partition      *string `json:"partition,omitempty"`
	User           *string `json:"user,omitempty"`
	Actor          string  `json:"actor"`
}

// typeAliases maps the original's transaction types onto ledger types.
var typeAliases = map[string]string{"allocation": "deposit", "adjustment": "correction", "release": "hold_release"}

func transactionJSON(e budget.Entry) TransactionJSON {
	tid := strconv.FormatInt(e.ID, 10)
	if e.HoldID != nil {
		tid = strconv.FormatInt(*e.HoldID, 10)
	}
	return TransactionJSON{
		ID: e.ID, AccountID: e.AccountID, Account: e.Account, JobID: e.JobID, TransactionID: tid, Type: e.Type,
		Amount: numOf(e.Amount), AmountStr: e.Amount.String(), Description: e.Reason, Status: "completed",
		CreatedAt: e.CreatedAt, CompletedAt: e.CreatedAt,
		Metadata: TransactionMeta{
			Deposited: e.DDeposited.String(), Spent: e.DSpent.String(), Held: e.DHeld.String(),
			DepositedAfter: e.DepositedAfter.String(), SpentAfter: e.SpentAfter.String(), HeldAfter: e.HeldAfter.String(),
			HoldID: e.HoldID, ChargeID: e.ChargeID, AllocationID: e.AllocationID, OriginAccount: e.Origin,
			Cluster: e.Cluster, ArrayTaskID: e.ArrayTaskID, Partition: e.Partition, User: e.User, Actor: e.Actor,
		},
	}
}

// listTransactions takes the original's filters (account, job_id, type,
// status, limit, offset, start_date, end_date) and a cursor: pass the
// previous page's next_cursor to get the next (older) page, which stays
// correct while new entries are appended.
func (s *Server) listTransactions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := budget.EntryFilter{Account: q.Get("account"), JobID: q.Get("job_id"), Type: q.Get("type")}
	if f.Account != "" {
		if err := budget.ValidateAccountName(f.Account); err != nil {
			return fieldErr("account", err)
		}
	}
	if err := checkLen("job_id", f.JobID, 64); err != nil {
		return err
	}
	if t, ok := typeAliases[f.Type]; ok {
		f.Type = t
	}
	switch q.Get("status") {
	case "", "completed":
	case "pending", "failed", "cancelled":
		// Ledger entries are final: nothing is pending or failed.
		return reply(w, http.StatusOK, map[string]any{"transactions": []TransactionJSON{}, "count": 0})
	default:
		return invalid("status", "status must be completed, pending, failed or cancelled")
	}
	var err error
	if f.Limit, err = queryInt(r, "limit", 100, 10000); err != nil {
		return err
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Offset, err = queryInt(r, "offset", 0, 1_000_000); err != nil {
		return err
	}
	if f.From, err = queryTime(r, "start_date"); err != nil {
		return err
	}
	if f.To, err = queryTime(r, "end_date"); err != nil {
		return err
	}
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(c, 10, 64)
		if err != nil || id <= 0 {
			return invalid("cursor", "cursor must be a next_cursor from an earlier page")
		}
		f.BeforeID = id
	}
	entries, err := s.l.ListEntries(r.Context(), f)
	if err != nil {
		return fieldErr("type", err)
	}
	out := make([]TransactionJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, transactionJSON(e))
	}
	resp := map[string]any{"transactions": out, "count": len(out), "limit": f.Limit, "offset": f.Offset}
	if len(entries) == f.Limit {
		resp["next_cursor"] = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	return reply(w, http.StatusOK, resp)
}
