package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// HoldRequest asks for a hold of Amount (all tasks) on an account.
type HoldRequest struct {
	Cluster        string
	Account        string
	Partition      string
	User           string
	Amount         decimal.Decimal
	Tasks          uint32
	RateVersion    string
	Pricing        any // stored as JSON: the estimate the hold was priced with
	Request        any // stored as JSON: the job request
	IdempotencyKey string
	Actor          string
}

// HoldResult is a hold just taken.
type HoldResult struct {
	HoldID    int64
	Duplicate bool // the idempotency key had already taken this hold
	Account   Account
}

// Hold is the state of a hold.
type Hold struct {
	ID           int64           `json:"id"`
	AccountID    int64           `json:"account_id"`
	Account      string          `json:"account"`
	Cluster      string          `json:"cluster"`
	Partition    string          `json:"partition"`
	User         string          `json:"user"`
	JobID        *string         `json:"job_id,omitempty"`
	Tasks        int             `json:"tasks"`
	Amount       decimal.Decimal `json:"amount"`
	Remaining    decimal.Decimal `json:"remaining"`
	Charged      decimal.Decimal `json:"charged"`
	SettledTasks int             `json:"settled_tasks"`
	Status       string          `json:"status"`
	RateVersion  string          `json:"rate_version"`
	Pricing      json.RawMessage `json:"pricing,omitempty"`
	Request      json.RawMessage `json:"request,omitempty"`
	CloseReason  *string         `json:"close_reason,omitempty"`
	ReplacedBy   *int64          `json:"replaced_by,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	ClosedAt     *time.Time      `json:"closed_at,omitempty"`
}

// PlaceHold takes a hold in one round trip: the one-statement fast path
// when it applies, else the asbb_hold function, which finds the account by
// name and checks its chain, partition caps and grant periods under row
// locks (and explains a refusal, returned as a *Denial).
func (l *Ledger) PlaceHold(ctx context.Context, r HoldRequest) (HoldResult, error) {
	if err := CheckAmount(r.Amount); err != nil {
		return HoldResult{}, fmt.Errorf("hold: %w", err)
	}
	if err := ValidateAccountName(r.Account); err != nil {
		return HoldResult{}, fmt.Errorf("%w: %v", ErrAccountNotFound, err)
	}
	if r.Tasks == 0 {
		r.Tasks = 1
	}
	pricing, _ := json.Marshal(r.Pricing)
	request, _ := json.Marshal(r.Request)
	cluster := l.cluster(r.Cluster)
	month := l.month(l.now())
	// Past this moment the caller no longer waits (slurmctld has answered
	// the job), so the database must not take the hold: a call stuck on a
	// stalled server would otherwise commit when it wakes. The allowance
	// of one submit.timeout covers clock skew between the hosts.
	deadline := time.Now().Add(24 * time.Hour)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(l.cfg.Submit.Timeout.Duration)
	}
	if r.IdempotencyKey == "" {
		c := &fastCall{r: r, cluster: cluster, month: month, deadline: deadline, pricing: pricing, request: request}
		c.ctxDeadline, _ = ctx.Deadline()
		o := l.fastHoldGrouped(ctx, c)
		if o.err != nil || o.applied {
			return o.res, o.err
		}
	}
	return l.placeHoldChecked(ctx, r, cluster, month, deadline, pricing, request)
}

// placeHoldChecked is the general hold: asbb_hold checks everything.
func (l *Ledger) placeHoldChecked(ctx context.Context, r HoldRequest, cluster string, month, deadline time.Time, pricing, request []byte) (HoldResult, error) {
	var (
		outcome                  string
		holdID                   *int64
		refusal                  []byte
		accountID                *int64
		currency                 *string
		dep, spent, held, credit *decimal.Decimal
	)
	err := l.pool.QueryRow(ctx, `SELECT outcome, hold_id, refusal, account_id, currency, deposited, spent, held, credit_limit
		FROM asbb_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		r.Account, cluster, l.cfg.Pricing.Currency, r.Amount, int32(r.Tasks), r.Partition, r.User, month,
		r.RateVersion, pricing, request, nullable(r.IdempotencyKey), r.Actor, deadline).
		Scan(&outcome, &holdID, &refusal, &accountID, &currency, &dep, &spent, &held, &credit)
	if err != nil {
		return HoldResult{}, dbErr("hold on "+r.Account, err)
	}
	var acct Account
	if accountID != nil {
		acct = Account{ID: *accountID, SlurmAccount: r.Account, Cluster: cluster, Currency: *currency,
			Deposited: *dep, Spent: *spent, Held: *held, CreditLimit: *credit}
		acct.Available = acct.Deposited.Sub(acct.Spent).Sub(acct.Held).Add(acct.CreditLimit)
	}
	switch outcome {
	case "held", "duplicate":
		return HoldResult{HoldID: *holdID, Duplicate: outcome == "duplicate", Account: acct}, nil
	case "refused":
		if accountID == nil {
			return HoldResult{}, fmt.Errorf("%w: %s", ErrAccountNotFound, r.Account)
		}
		return HoldResult{Account: acct}, denialFrom(refusal, acct)
	case "expired":
		return HoldResult{}, fmt.Errorf("hold on %s: %w: the database answered after the caller's deadline", r.Account, ErrUnavailable)
	case "currency_mismatch":
		return HoldResult{}, fmt.Errorf("%w: currency mismatch: account %s is in %s, prices are in %s",
			ErrInvalid, r.Account, acct.Currency, l.cfg.Pricing.Currency)
	}
	return HoldResult{}, fmt.Errorf("hold on %s: unexpected outcome %q", r.Account, outcome)
}

// denialFrom turns the jsonb refusal of asbb_check_funds into a Denial.
func denialFrom(raw []byte, acct Account) error {
	var f struct {
		Code        string           `json:"code"`
		Account     string           `json:"account"`
		Partition   string           `json:"partition"`
		Period      string           `json:"period"`
		Available   *decimal.Decimal `json:"available"`
		Remaining   *decimal.Decimal `json:"remaining"`
		Amount      decimal.Decimal  `json:"amount"`
		MaxJobCost  *decimal.Decimal `json:"max_job_cost"`
		MaxPerMonth *decimal.Decimal `json:"max_per_month"`
		Limit       *decimal.Decimal `json:"limit"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("decode refusal %s: %w", raw, err)
	}
	d := &Denial{Code: f.Code, Account: f.Account, Partition: f.Partition, Period: f.Period,
		Currency: acct.Currency, Amount: f.Amount}
	if d.Account == "" {
		d.Account = acct.SlurmAccount
	}
	for _, p := range []*decimal.Decimal{f.Available, f.Remaining} {
		if p != nil {
			d.Available = *p
		}
	}
	for _, p := range []*decimal.Decimal{f.MaxJobCost, f.MaxPerMonth, f.Limit} {
		if p != nil {
			d.Limit = *p
		}
	}
	return d
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// AdjustHold re-prices an active, unsettled hold to a new total. An
// increase is checked and taken atomically; a decrease is released.
func (l *Ledger) AdjustHold(ctx context.Context, holdID int64, amount decimal.Decimal, tasks uint32, pricing, request any, actor, reason string) error {
	if err := CheckAmount(amount); err != nil {
		return fmt.Errorf("adjust hold: %w", err)
	}
	if tasks == 0 {
		tasks = 1
	}
	h, err := l.GetHold(ctx, holdID)
	if err != nil {
		return err
	}
	p, _ := json.Marshal(pricing)
	q, _ := json.Marshal(request)
	var outcome string
	var refusal []byte
	err = l.pool.QueryRow(ctx, `SELECT outcome, refusal FROM asbb_adjust_hold($1, $2, $3, $4, $5, $6, $7)`,
		holdID, amount, int32(tasks), p, q, actor, reason).Scan(&outcome, &refusal)
	if err != nil {
		return dbErr("adjust hold", err)
	}
	switch outcome {
	case "adjusted":
		return nil
	case "refused":
		acct, err := l.GetAccountByID(ctx, h.AccountID)
		if err != nil {
			return err
		}
		return denialFrom(refusal, acct)
	case "not_found":
		return fmt.Errorf("%w: %d", ErrHoldNotFound, holdID)
	case "not_adjustable":
		return fmt.Errorf("%w: hold %d is closed or partly settled", ErrConflict, holdID)
	}
	return fmt.Errorf("adjust hold %d: unexpected outcome %q", holdID, outcome)
}

// ReleaseHold gives back what a hold still holds. Releasing a closed hold
// is a no-op (released = 0).
func (l *Ledger) ReleaseHold(ctx context.Context, holdID int64, actor, reason string) (decimal.Decimal, error) {
	var outcome string
	var released *decimal.Decimal
	if err := l.pool.QueryRow(ctx, `SELECT outcome, released FROM asbb_release($1, $2, $3)`, holdID, actor, reason).
		Scan(&outcome, &released); err != nil {
		return decimal.Zero, dbErr("release hold", err)
	}
	if outcome == "not_found" {
		return decimal.Zero, fmt.Errorf("%w: %d", ErrHoldNotFound, holdID)
	}
	l.log.Info("hold released", "hold_id", holdID, "amount", released.String(), "reason", reason, "actor", actor)
	return *released, nil
}

const holdCols = `h.id, h.account_id, a.slurm_account, h.cluster, h.partition, h.user_name, h.job_id, h.tasks, h.amount,
	h.remaining, h.charged, h.settled_tasks, h.status, h.rate_version, h.pricing, h.request, h.close_reason,
	h.replaced_by, h.created_at, h.closed_at`

func scanHold(row pgx.Row) (Hold, error) {
	var h Hold
	err := row.Scan(&h.ID, &h.AccountID, &h.Account, &h.Cluster, &h.Partition, &h.User, &h.JobID, &h.Tasks, &h.Amount,
		&h.Remaining, &h.Charged, &h.SettledTasks, &h.Status, &h.RateVersion, &h.Pricing, &h.Request, &h.CloseReason,
		&h.ReplacedBy, &h.CreatedAt, &h.ClosedAt)
	return h, err
}

// GetHold reads a hold.
func (l *Ledger) GetHold(ctx context.Context, id int64) (Hold, error) {
	h, err := scanHold(l.pool.QueryRow(ctx, `SELECT `+holdCols+` FROM holds h JOIN accounts a ON a.id = h.account_id WHERE h.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("%w: %d", ErrHoldNotFound, id)
	}
	return h, dbErr("read hold", err)
}

// HoldForJob finds the hold bound to a Slurm job id.
func (l *Ledger) HoldForJob(ctx context.Context, cluster, jobID string) (Hold, error) {
	h, err := scanHold(l.pool.QueryRow(ctx, `SELECT `+holdCols+` FROM holds h JOIN accounts a ON a.id = h.account_id
		WHERE h.job_id = $1 AND h.cluster IN ($2, '*') ORDER BY h.id DESC LIMIT 1`, jobID, l.cluster(cluster)))
	if errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("%w: no hold is bound to job %s", ErrHoldNotFound, jobID)
	}
	return h, dbErr("find hold of job", err)
}

// replaceHold releases a hold that a job no longer uses and links it to the
// hold that took its place, moving the job binding with it, in one
// transaction.
func (l *Ledger) replaceHold(ctx context.Context, old, repl int64, jobID, actor, reason string) error {
	return l.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT asbb_release($1, $2, $3)`, old, actor, reason); err != nil {
			return dbErr("release replaced hold", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE holds SET replaced_by = $2, job_id = NULL, updated_at = now() WHERE id = $1`, old, repl); err != nil {
			return dbErr("link replaced hold", err)
		}
		if jobID != "" {
			if _, err := tx.Exec(ctx, `UPDATE holds SET job_id = $2 WHERE id = $1 AND job_id IS NULL`, repl, jobID); err != nil {
				return dbErr("bind replacement hold", err)
			}
		}
		return nil
	})
}

// BindHold records the Slurm job id of a hold taken before Slurm assigned
// one. Binding again to the same job is a no-op.
func (l *Ledger) BindHold(ctx context.Context, holdID int64, jobID string) error {
	tag, err := l.pool.Exec(ctx, `UPDATE holds SET job_id = $2, updated_at = now()
		WHERE id = $1 AND (job_id IS NULL OR job_id = $2)`, holdID, jobID)
	if err != nil {
		return dbErr("bind hold to job", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: hold %d is missing or bound to another job", ErrConflict, holdID)
	}
	return nil
}

// HoldFilter narrows ListHolds.
type HoldFilter struct {
	Account   string
	Status    string // active, closed, "" = all
	OlderThan time.Duration
	Limit     int
}

// ListHolds lists holds, newest first.
func (l *Ledger) ListHolds(ctx context.Context, f HoldFilter) ([]Hold, error) {
	if f.Limit <= 0 || f.Limit > 100000 {
		f.Limit = 1000
	}
	var before *time.Time
	if f.OlderThan > 0 {
		t := l.now().Add(-f.OlderThan)
		before = &t
	}
	rows, err := l.pool.Query(ctx, `SELECT `+holdCols+` FROM holds h JOIN accounts a ON a.id = h.account_id
		WHERE ($1 = '' OR a.slurm_account = $1) AND ($2 = '' OR h.status = $2)
		  AND ($3::timestamptz IS NULL OR h.created_at < $3)
		ORDER BY h.id DESC LIMIT $4`, f.Account, f.Status, before, f.Limit)
	if err != nil {
		return nil, dbErr("list holds", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, dbErr("list holds", err)
		}
		out = append(out, h)
	}
	return out, dbErr("list holds", rows.Err())
}

// SettleRequest charges the actual cost of one job, array task or run.
type SettleRequest struct {
	HoldID      int64 // 0 = no hold (charge Account directly)
	Cluster     string
	Account     string // used only without a hold
	JobID       string
	ArrayTaskID int   // -1 when not an array task
	RunStart    int64 // unix seconds of the run's start; distinguishes requeued runs
	Actual      decimal.Decimal
	Final       bool // release whatever the hold still holds (array done, job gone)
	Partition   string
	User        string
	Actor       string
	Reason      string
}

// Settlement is the result of a settle; a replay returns the first one.
type Settlement struct {
	ChargeID      int64            `json:"charge_id"`
	HoldID        int64            `json:"hold_id,omitempty"`
	Actual        decimal.Decimal  `json:"actual"`
	Released      decimal.Decimal  `json:"released"`
	Overrun       decimal.Decimal  `json:"overrun"`
	HoldRemaining *decimal.Decimal `json:"hold_remaining,omitempty"`
	Duplicate     bool             `json:"duplicate"`
}

// Settle charges an actual cost and releases the job's share of its hold in
// one transaction. It never fails for lack of funds. It is idempotent on
// (cluster, job id, array task, run start).
func (l *Ledger) Settle(ctx context.Context, r SettleRequest) (Settlement, error) {
	if r.JobID == "" {
		return Settlement{}, fmt.Errorf("%w: settle needs a job id", ErrInvalid)
	}
	if len(r.JobID) > 64 {
		return Settlement{}, fmt.Errorf("%w: job id too long", ErrInvalid)
	}
	if r.Actual.IsNegative() {
		return Settlement{}, fmt.Errorf("%w: actual cost %s must not be negative", ErrInvalid, r.Actual)
	}
	if err := checkRange(r.Actual); err != nil {
		return Settlement{}, fmt.Errorf("actual cost: %w", err)
	}
	var holdID, accountID *int64
	if r.HoldID > 0 {
		holdID = &r.HoldID
	} else {
		a, err := l.resolve(ctx, l.pool, r.Cluster, r.Account)
		if err != nil {
			return Settlement{}, err
		}
		accountID = &a.ID
	}
	var s Settlement
	var outcome string
	var chargeID *int64
	var actual, released, overrun *decimal.Decimal
	err := l.pool.QueryRow(ctx, `SELECT outcome, charge_id, actual, released, overrun, hold_remaining
		FROM asbb_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		holdID, accountID, l.cluster(r.Cluster), r.JobID, int32(r.ArrayTaskID), r.RunStart, r.Actual, r.Final,
		r.Partition, r.User, r.Actor, r.Reason).Scan(&outcome, &chargeID, &actual, &released, &overrun, &s.HoldRemaining)
	if err != nil {
		return s, dbErr("settle job "+r.JobID, err)
	}
	switch outcome {
	case "charged", "duplicate":
	case "hold_not_found":
		return s, fmt.Errorf("%w: %d", ErrHoldNotFound, r.HoldID)
	case "account_not_found":
		return s, fmt.Errorf("%w: %s", ErrAccountNotFound, r.Account)
	default:
		return s, fmt.Errorf("settle job %s: unexpected outcome %q", r.JobID, outcome)
	}
	s.ChargeID, s.HoldID, s.Actual, s.Released, s.Overrun = *chargeID, r.HoldID, *actual, *released, *overrun
	s.Duplicate = outcome == "duplicate"
	if !s.Duplicate {
		l.log.Info("job settled", "job_id", r.JobID, "array_task_id", r.ArrayTaskID, "hold_id", r.HoldID,
			"amount", s.Actual.String(), "released", s.Released.String(), "overrun", s.Overrun.String())
	}
	return s, nil
}

// Charge is one settlement of a hold (or of a job without one).
type Charge struct {
	ID          int64           `json:"id"`
	HoldID      *int64          `json:"hold_id,omitempty"`
	JobID       string          `json:"job_id"`
	ArrayTaskID int             `json:"array_task_id"`
	RunStart    int64           `json:"run_start"`
	Actual      decimal.Decimal `json:"actual"`
	Released    decimal.Decimal `json:"released"`
}

// ChargesOfHold lists a hold's settlements, oldest first.
func (l *Ledger) ChargesOfHold(ctx context.Context, holdID int64) ([]Charge, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, hold_id, job_id, array_task_id, run_start, actual, released
		FROM charges WHERE hold_id = $1 ORDER BY id`, holdID)
	if err != nil {
		return nil, dbErr("list charges of hold", err)
	}
	defer rows.Close()
	var out []Charge
	for rows.Next() {
		var c Charge
		if err := rows.Scan(&c.ID, &c.HoldID, &c.JobID, &c.ArrayTaskID, &c.RunStart, &c.Actual, &c.Released); err != nil {
			return nil, dbErr("list charges of hold", err)
		}
		out = append(out, c)
	}
	return out, dbErr("list charges of hold", rows.Err())
}
