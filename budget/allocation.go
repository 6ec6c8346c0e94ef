package budget

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Deposit is a dated allocation of money to an account.
type Deposit struct {
	Amount         decimal.Decimal
	Currency       string // optional; must match the account's
	StartsAt       time.Time
	ExpiresAt      *time.Time
	Note           string
	Actor          string
	IdempotencyKey string
	ScheduleID     *int64
	Installment    *int
}

// Allocation is a deposit as stored.
type Allocation struct {
	ID          int64           `json:"id"`
	AccountID   int64           `json:"account_id"`
	Account     string          `json:"account"`
	Amount      decimal.Decimal `json:"amount"`
	StartsAt    time.Time       `json:"start_date"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
	Status      string          `json:"status"`
	Forfeited   decimal.Decimal `json:"forfeited"`
	ScheduleID  *int64          `json:"schedule_id,omitempty"`
	Installment *int            `json:"installment,omitempty"`
	Note        string          `json:"note"`
	Actor       string          `json:"actor"`
	CreatedAt   time.Time       `json:"created_at"`
	Duplicate   bool            `json:"-"`
}

// AddDeposit records an allocation. Idempotent on d.IdempotencyKey.
func (l *Ledger) AddDeposit(ctx context.Context, cluster, account string, d Deposit) (Allocation, error) {
	a, err := l.resolve(ctx, l.pool, cluster, account)
	if err != nil {
		return Allocation{}, err
	}
	if d.Currency != "" && d.Currency != a.Currency {
		return Allocation{}, fmt.Errorf("%w: currency mismatch: account %s is in %s, deposit is in %s", ErrInvalid, account, a.Currency, d.Currency)
	}
	if a.Status == "closed" {
		return Allocation{}, fmt.Errorf("%w: account %s is closed", ErrConflict, account)
	}
	return l.depositTx(ctx, l.pool, a.ID, d)
}

func (l *Ledger) depositTx(ctx context.Context, q DBTX, accountID int64, d Deposit) (Allocation, error) {
	if err := CheckAmount(d.Amount); err != nil {
		return Allocation{}, fmt.Errorf("deposit: %w", err)
	}
	// No start means "now" in the database's clock: a Go timestamp could be
	// a little ahead of the transaction's now() and leave the deposit pending.
	var starts *time.Time
	if !d.StartsAt.IsZero() {
		starts = &d.StartsAt
	}
	if d.ExpiresAt != nil && (!d.ExpiresAt.After(d.StartsAt) || !d.ExpiresAt.After(l.now())) {
		return Allocation{}, fmt.Errorf("%w: expiry must be after the start and in the future", ErrInvalid)
	}
	if len(d.Note) > 1000 {
		return Allocation{}, fmt.Errorf("%w: note too long", ErrInvalid)
	}
	var outcome string
	var id *int64
	err := q.QueryRow(ctx, `SELECT outcome, allocation_id FROM asbb_deposit($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		accountID, d.Amount, starts, d.ExpiresAt, d.Note, d.Actor, nullable(d.IdempotencyKey), d.ScheduleID, d.Installment).
		Scan(&outcome, &id)
	if err != nil {
		return Allocation{}, dbErr("deposit", err)
	}
	if outcome == "account_not_found" {
		return Allocation{}, ErrAccountNotFound
	}
	al, err := l.getAllocation(ctx, q, *id)
	al.Duplicate = outcome == "duplicate"
	if err == nil && !al.Duplicate {
		l.log.Info("deposit", "account", al.Account, "amount", al.Amount.String(), "allocation_id", al.ID, "actor", d.Actor)
	}
	return al, err
}

const allocationCols = `al.id, al.account_id, a.slurm_account, al.amount, al.starts_at, al.expires_at, al.status, al.forfeited,
	al.schedule_id, al.installment, al.note, al.actor, al.created_at`

func (l *Ledger) getAllocation(ctx context.Context, q DBTX, id int64) (Allocation, error) {
	var al Allocation
	err := q.QueryRow(ctx, `SELECT `+allocationCols+` FROM allocations al JOIN accounts a ON a.id = al.account_id WHERE al.id = $1`, id).
		Scan(&al.ID, &al.AccountID, &al.Account, &al.Amount, &al.StartsAt, &al.ExpiresAt, &al.Status, &al.Forfeited,
			&al.ScheduleID, &al.Installment, &al.Note, &al.Actor, &al.CreatedAt)
	return al, dbErr("read allocation", err)
}

// GetAllocation reads one allocation.
func (l *Ledger) GetAllocation(ctx context.Context, id int64) (Allocation, error) {
	al, err := l.getAllocation(ctx, l.pool, id)
	if err != nil && isNoRows(err) {
		return al, fmt.Errorf("%w: allocation %d", ErrNotFound, id)
	}
	return al, err
}

// ListAllocations lists an account's allocations ("" = every account).
func (l *Ledger) ListAllocations(ctx context.Context, account string, limit int) ([]Allocation, error) {
	if limit <= 0 || limit > 100000 {
		limit = 1000
	}
	rows, err := l.pool.Query(ctx, `SELECT `+allocationCols+` FROM allocations al JOIN accounts a ON a.id = al.account_id
		WHERE ($1 = '' OR a.slurm_account = $1) ORDER BY al.starts_at DESC, al.id DESC LIMIT $2`, account, limit)
	if err != nil {
		return nil, dbErr("list allocations", err)
	}
	defer rows.Close()
	var out []Allocation
	for rows.Next() {
		var al Allocation
		if err := rows.Scan(&al.ID, &al.AccountID, &al.Account, &al.Amount, &al.StartsAt, &al.ExpiresAt, &al.Status,
			&al.Forfeited, &al.ScheduleID, &al.Installment, &al.Note, &al.Actor, &al.CreatedAt); err != nil {
			return nil, dbErr("list allocations", err)
		}
		out = append(out, al)
	}
	return out, dbErr("list allocations", rows.Err())
}

// Withdraw takes unspent, unheld money out of an account.
func (l *Ledger) Withdraw(ctx context.Context, cluster, account string, amount decimal.Decimal, actor, reason, key string) error {
	if err := CheckAmount(amount); err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	a, err := l.resolve(ctx, l.pool, cluster, account)
	if err != nil {
		return err
	}
	var outcome string
	var id *int64
	var avail *decimal.Decimal
	if err := l.pool.QueryRow(ctx, `SELECT outcome, ledger_id, available FROM asbb_withdraw($1, $2, $3, $4, $5)`,
		a.ID, amount, actor, reason, nullable(key)).Scan(&outcome, &id, &avail); err != nil {
		return dbErr("withdraw", err)
	}
	if outcome == "insufficient_funds" {
		return &Denial{Code: "insufficient_funds", Account: account, Currency: a.Currency, Available: *avail, Amount: amount,
			Detail: "a withdrawal may take only unspent, unheld funds"}
	}
	return nil
}

// Refund gives back part or all of a charge.
func (l *Ledger) Refund(ctx context.Context, chargeID int64, amount decimal.Decimal, actor, reason, key string) error {
	if err := CheckAmount(amount); err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	var outcome string
	var id *int64
	var left *decimal.Decimal
	if err := l.pool.QueryRow(ctx, `SELECT outcome, ledger_id, refundable FROM asbb_refund($1, $2, $3, $4, $5)`,
		chargeID, amount, actor, reason, nullable(key)).Scan(&outcome, &id, &left); err != nil {
		return dbErr("refund", err)
	}
	switch outcome {
	case "not_found":
		return fmt.Errorf("%w: charge %d", ErrNotFound, chargeID)
	case "exceeds_charge":
		return fmt.Errorf("%w: refund %s exceeds the %s still charged", ErrInvalid, amount, left)
	}
	return nil
}

// Correction is the result of a true-up.
type Correction struct {
	LedgerID  int64           `json:"ledger_id,omitempty"`
	Delta     decimal.Decimal `json:"delta"`
	Previous  decimal.Decimal `json:"previous"`
	Duplicate bool            `json:"duplicate"`
}

// Correct trues up a charge to a more exact total with one correction entry.
// Idempotent on key.
func (l *Ledger) Correct(ctx context.Context, chargeID int64, total decimal.Decimal, actor, reason, key string) (Correction, error) {
	if total.IsNegative() {
		return Correction{}, fmt.Errorf("%w: corrected cost must not be negative", ErrInvalid)
	}
	if err := checkRange(total); err != nil {
		return Correction{}, err
	}
	var outcome string
	var c Correction
	var id *int64
	var delta, prev *decimal.Decimal
	if err := l.pool.QueryRow(ctx, `SELECT outcome, ledger_id, delta, previous FROM asbb_correct($1, $2, $3, $4, $5)`,
		chargeID, total, actor, reason, nullable(key)).Scan(&outcome, &id, &delta, &prev); err != nil {
		return c, dbErr("correct charge", err)
	}
	if outcome == "not_found" {
		return c, fmt.Errorf("%w: charge %d", ErrNotFound, chargeID)
	}
	if id != nil {
		c.LedgerID = *id
	}
	c.Delta, c.Previous, c.Duplicate = *delta, *prev, outcome == "duplicate"
	return c, nil
}

// ProcessEvents activates due allocations and expires lapsed ones on every
// account whose next event has come. It returns how many accounts it
// touched. Safe to run concurrently (each account is processed under its
// row lock).
func (l *Ledger) ProcessEvents(ctx context.Context) (int, error) {
	rows, err := l.pool.Query(ctx, `SELECT id FROM accounts WHERE next_event <= now() ORDER BY id`)
	if err != nil {
		return 0, dbErr("find due allocation events", err)
	}
	ids, err := collectInt64(rows)
	if err != nil {
		return 0, dbErr("find due allocation events", err)
	}
	for _, id := range ids {
		if _, err := l.pool.Exec(ctx, `SELECT asbb_lock_chain($1), asbb_process_events($1, now())`, id); err != nil {
			return 0, dbErr("process allocation events", err)
		}
	}
	return len(ids), nil
}
