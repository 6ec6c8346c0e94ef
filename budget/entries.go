package budget

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Entry is one ledger row.
type Entry struct {
	ID             int64           `json:"id"`
	AccountID      int64           `json:"account_id"`
	Account        string          `json:"account"`
	Type           string          `json:"type"`
	Amount         decimal.Decimal `json:"amount"`
	DDeposited     decimal.Decimal `json:"d_deposited"`
	DSpent         decimal.Decimal `json:"d_spent"`
	DHeld          decimal.Decimal `json:"d_held"`
	DepositedAfter decimal.Decimal `json:"deposited_after"`
	SpentAfter     decimal.Decimal `json:"spent_after"`
	HeldAfter      decimal.Decimal `json:"held_after"`
	HoldID         *int64          `json:"hold_id,omitempty"`
	ChargeID       *int64          `json:"charge_id,omitempty"`
	AllocationID   *int64          `json:"allocation_id,omitempty"`
	Origin         *string         `json:"origin_account,omitempty"`
	Cluster        *string         `json:"cluster,omitempty"`
	JobID          *string         `json:"job_id,omitempty"`
	ArrayTaskID    *int            `json:"array_task_id,omitempty"`
	Partition      *string         `json:"partition,omitempty"`
	User           *string         `json:"user,omitempty"`
	Actor          string          `json:"actor"`
	Reason         string          `json:"reason"`
	CreatedAt      time.Time       `json:"created_at"`
}

// EntryFilter narrows ListEntries. AfterID/BeforeID page by id (a cursor
// that stays correct while entries are appended); Offset is for clients of
// the original API.
type EntryFilter struct {
	Account  string
	JobID    string
	Type     string
	From, To *time.Time
	BeforeID int64
	AfterID  int64
	Limit    int
	Offset   int
	Asc      bool
}

var entryTypes = map[string]bool{"deposit": true, "withdraw": true, "expire": true, "hold": true, "hold_adjust": true,
	"hold_release": true, "charge": true, "refund": true, "correction": true}

// ListEntries lists ledger entries, newest first unless f.Asc.
func (l *Ledger) ListEntries(ctx context.Context, f EntryFilter) ([]Entry, error) {
	if f.Type != "" && !entryTypes[f.Type] {
		return nil, fmt.Errorf("%w: unknown entry type %q", ErrInvalid, f.Type)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 10000 {
		return nil, fmt.Errorf("%w: limit %d is above 10000", ErrInvalid, f.Limit)
	}
	if f.Offset < 0 {
		return nil, fmt.Errorf("%w: offset must not be negative", ErrInvalid)
	}
	order := "DESC"
	if f.Asc {
		order = "ASC"
	}
	rows, err := l.pool.Query(ctx, `SELECT e.id, e.account_id, a.slurm_account, e.type, e.amount, e.d_deposited, e.d_spent, e.d_held,
			e.deposited_after, e.spent_after, e.held_after, e.hold_id, e.charge_id, e.allocation_id, o.slurm_account,
			e.cluster, e.job_id, e.array_task_id, e.partition, e.user_name, e.actor, e.reason, e.created_at
		FROM ledger e JOIN accounts a ON a.id = e.account_id LEFT JOIN accounts o ON o.id = e.origin_account_id
		WHERE ($1 = '' OR a.slurm_account = $1) AND ($2 = '' OR e.job_id = $2) AND ($3 = '' OR e.type = $3)
		  AND ($4::timestamptz IS NULL OR e.created_at >= $4) AND ($5::timestamptz IS NULL OR e.created_at < $5)
		  AND ($6 = 0 OR e.id < $6) AND ($7 = 0 OR e.id > $7)
		ORDER BY e.id `+order+` LIMIT $8 OFFSET $9`,
		f.Account, f.JobID, f.Type, f.From, f.To, f.BeforeID, f.AfterID, f.Limit, f.Offset)
	if err != nil {
		return nil, dbErr("list ledger entries", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.ID, &e.AccountID, &e.Account, &e.Type, &e.Amount, &e.DDeposited, &e.DSpent, &e.DHeld,
			&e.DepositedAfter, &e.SpentAfter, &e.HeldAfter, &e.HoldID, &e.ChargeID, &e.AllocationID, &e.Origin,
			&e.Cluster, &e.JobID, &e.ArrayTaskID, &e.Partition, &e.User, &e.Actor, &e.Reason, &e.CreatedAt); err != nil {
			return nil, dbErr("list ledger entries", err)
		}
		out = append(out, e)
	}
	return out, dbErr("list ledger entries", rows.Err())
}
