package budget

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Account is a budget mapped to a Slurm account.
type Account struct {
	ID           int64            `json:"id"`
	Cluster      string           `json:"cluster"`
	SlurmAccount string           `json:"slurm_account"`
	Name         string           `json:"name"`
	Description  string           `json:"description"`
	Currency     string           `json:"currency"`
	Status       string           `json:"status"`
	StartsAt     *time.Time       `json:"start_date,omitempty"`
	EndsAt       *time.Time       `json:"end_date,omitempty"`
	CreditLimit  decimal.Decimal  `json:"credit_limit"`
	MaxJobCost   *decimal.Decimal `json:"max_job_cost,omitempty"`
	ParentID     *int64           `json:"parent_id,omitempty"`
	Parent       string           `json:"parent,omitempty"`
	Deposited    decimal.Decimal  `json:"deposited"`
	Spent        decimal.Decimal  `json:"spent"`
	Held         decimal.Decimal  `json:"held"`
	Available    decimal.Decimal  `json:"available"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
	Limits       []PartitionLimit `json:"partition_limits,omitempty"`
}

// PartitionLimit caps what an account may spend on one partition.
type PartitionLimit struct {
	Partition   string           `json:"partition"`
	MaxJobCost  *decimal.Decimal `json:"max_job_cost,omitempty"`
	MaxPerMonth *decimal.Decimal `json:"max_per_month,omitempty"`
	UsedMonth   decimal.Decimal  `json:"used_this_month"`
}

// AccountSpec describes a new account.
type AccountSpec struct {
	Cluster      string
	SlurmAccount string
	Name         string
	Description  string
	Currency     string
	StartsAt     *time.Time
	EndsAt       *time.Time
	CreditLimit  decimal.Decimal
	MaxJobCost   *decimal.Decimal
	Parent       string
	// Budget, when positive, is deposited as the first allocation.
	Budget decimal.Decimal
	Actor  string
}

var slurmAccountRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ValidateAccountName checks a Slurm account name (no quotes, spaces or SQL).
func ValidateAccountName(name string) error {
	if !slurmAccountRE.MatchString(name) {
		return fmt.Errorf("%w: account name %q must be 1-64 letters, digits, '_', '.', '@' or '-'", ErrInvalid, name)
	}
	return nil
}

func (l *Ledger) cluster(c string) string {
	if c != "" {
		return c
	}
	return l.cfg.Cluster.Name
}

const accountCols = `a.id, a.cluster, a.slurm_account, a.name, a.description, a.currency, a.status, a.starts_at, a.ends_at,
	a.credit_limit, a.max_job_cost, a.parent_id, coalesce(p.slurm_account, ''), a.deposited, a.spent, a.held,
	a.created_at, a.updated_at`

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.Cluster, &a.SlurmAccount, &a.Name, &a.Description, &a.Currency, &a.Status,
		&a.StartsAt, &a.EndsAt, &a.CreditLimit, &a.MaxJobCost, &a.ParentID, &a.Parent, &a.Deposited, &a.Spent,
		&a.Held, &a.CreatedAt, &a.UpdatedAt)
	a.Available = a.Deposited.Sub(a.Spent).Sub(a.Held).Add(a.CreditLimit)
	return a, err
}

// CreateAccount creates an account and, if spec.Budget is positive,
// deposits it, in one transaction.
func (l *Ledger) CreateAccount(ctx context.Context, spec AccountSpec) (Account, error) {
	if err := ValidateAccountName(spec.SlurmAccount); err != nil {
		return Account{}, err
	}
	spec.Cluster = l.cluster(spec.Cluster)
	if spec.Cluster != "*" {
		if err := ValidateAccountName(spec.Cluster); err != nil {
			return Account{}, fmt.Errorf("cluster: %w", err)
		}
	}
	if spec.Name == "" {
		spec.Name = spec.SlurmAccount
	}
	if len(spec.Name) > 200 || len(spec.Description) > 2000 {
		return Account{}, fmt.Errorf("%w: name or description too long", ErrInvalid)
	}
	if spec.Currency == "" {
		spec.Currency = l.cfg.Pricing.Currency
	}
	spec.Currency = strings.ToUpper(spec.Currency)
	if !regexp.MustCompile(`^[A-Z]{3}$`).MatchString(spec.Currency) {
		return Account{}, fmt.Errorf("%w: currency %q is not an ISO 4217 code", ErrInvalid, spec.Currency)
	}
	if spec.CreditLimit.IsNegative() {
		return Account{}, fmt.Errorf("%w: credit limit must not be negative", ErrInvalid)
	}
	if err := checkRange(spec.CreditLimit); err != nil {
		return Account{}, fmt.Errorf("credit limit: %w", err)
	}
	if spec.MaxJobCost != nil {
		if err := CheckAmount(*spec.MaxJobCost); err != nil {
			return Account{}, fmt.Errorf("max job cost: %w", err)
		}
	}
	if spec.Budget.IsNegative() {
		return Account{}, fmt.Errorf("%w: budget must not be negative", ErrInvalid)
	}
	if spec.Budget.IsPositive() {
		if err := CheckAmount(spec.Budget); err != nil {
			return Account{}, fmt.Errorf("budget: %w", err)
		}
	}
	if spec.StartsAt != nil && spec.EndsAt != nil && !spec.EndsAt.After(*spec.StartsAt) {
		return Account{}, fmt.Errorf("%w: end date must be after start date", ErrInvalid)
	}
	var out Account
	err := l.InTx(ctx, func(tx pgx.Tx) error {
		var parentID *int64
		if spec.Parent != "" {
			p, err := l.resolve(ctx, tx, spec.Cluster, spec.Parent)
			if err != nil {
				return fmt.Errorf("parent: %w", err)
			}
			if p.Currency != spec.Currency {
				return fmt.Errorf("%w: currency mismatch: parent %s uses %s, not %s", ErrInvalid, p.SlurmAccount, p.Currency, spec.Currency)
			}
			parentID = &p.ID
		}
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO accounts (cluster, slurm_account, name, description, currency, starts_at, ends_at,
				credit_limit, max_job_cost, parent_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			spec.Cluster, spec.SlurmAccount, spec.Name, spec.Description, spec.Currency, spec.StartsAt, spec.EndsAt,
			spec.CreditLimit, spec.MaxJobCost, parentID).Scan(&id)
		if err != nil {
			err = dbErr("create account "+spec.SlurmAccount, err)
			if errors.Is(err, ErrConflict) {
				return fmt.Errorf("%w: %s", ErrAccountExists, spec.SlurmAccount)
			}
			return err
		}
		if spec.Budget.IsPositive() {
			var start time.Time // zero: now, in the database's clock
			if spec.StartsAt != nil && spec.StartsAt.After(l.now()) {
				start = *spec.StartsAt
			}
			if _, err := l.depositTx(ctx, tx, id, Deposit{Amount: spec.Budget, StartsAt: start, Note: "initial budget", Actor: spec.Actor}); err != nil {
				return err
			}
		}
		out, err = scanAccount(tx.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id WHERE a.id = $1`, id))
		return dbErr("read account", err)
	})
	if err == nil {
		l.log.Info("account created", "account", out.SlurmAccount, "cluster", out.Cluster, "budget", spec.Budget.String(), "actor", spec.Actor)
	}
	return out, err
}

// resolve finds an account by Slurm name: the cluster's own first, then a
// cluster-wide ("*") one.
func (l *Ledger) resolve(ctx context.Context, q DBTX, cluster, name string) (Account, error) {
	if err := ValidateAccountName(name); err != nil {
		return Account{}, fmt.Errorf("%w: %s", ErrAccountNotFound, err)
	}
	a, err := scanAccount(q.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id
		WHERE a.slurm_account = $1 AND a.cluster IN ($2, '*') ORDER BY a.cluster = '*' LIMIT 1`, name, l.cluster(cluster)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: %s", ErrAccountNotFound, name)
	}
	return a, dbErr("find account "+name, err)
}

// GetAccount returns one account with its partition limits.
func (l *Ledger) GetAccount(ctx context.Context, cluster, name string) (Account, error) {
	a, err := l.resolve(ctx, l.pool, cluster, name)
	if err != nil {
		return a, err
	}
	a.Limits, err = l.partitionLimits(ctx, a.ID)
	return a, err
}

// GetAccountByID returns one account by its numeric id.
func (l *Ledger) GetAccountByID(ctx context.Context, id int64) (Account, error) {
	a, err := scanAccount(l.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id WHERE a.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: id %d", ErrAccountNotFound, id)
	}
	return a, dbErr("read account", err)
}

// AccountFilter narrows ListAccounts.
type AccountFilter struct {
	Status string
	Parent string
}

// ListAccounts lists accounts by Slurm name.
func (l *Ledger) ListAccounts(ctx context.Context, f AccountFilter) ([]Account, error) {
	q := `SELECT ` + accountCols + ` FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id
		WHERE ($1 = '' OR a.status = $1) AND ($2 = '' OR p.slurm_account = $2) ORDER BY a.slurm_account, a.cluster`
	rows, err := l.pool.Query(ctx, q, f.Status, f.Parent)
	if err != nil {
		return nil, dbErr("list accounts", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, dbErr("list accounts", err)
		}
		out = append(out, a)
	}
	return out, dbErr("list accounts", rows.Err())
}

// AccountPatch changes an account's descriptive fields and limits; nil
// leaves a field as it is.
type AccountPatch struct {
	Name        *string
	Description *string
	StartsAt    *time.Time
	EndsAt      *time.Time
	ClearEnd    bool
	CreditLimit *decimal.Decimal
	MaxJobCost  *decimal.Decimal
	ClearMaxJob bool
	Status      *string
}

// UpdateAccount applies a patch.
func (l *Ledger) UpdateAccount(ctx context.Context, cluster, name string, p AccountPatch) (Account, error) {
	if p.CreditLimit != nil {
		if p.CreditLimit.IsNegative() {
			return Account{}, fmt.Errorf("%w: credit limit must not be negative", ErrInvalid)
		}
		if err := checkRange(*p.CreditLimit); err != nil {
			return Account{}, err
		}
	}
	if p.MaxJobCost != nil {
		if err := CheckAmount(*p.MaxJobCost); err != nil {
			return Account{}, fmt.Errorf("max job cost: %w", err)
		}
	}
	if p.Status != nil && *p.Status != "active" && *p.Status != "suspended" {
		return Account{}, fmt.Errorf("%w: status %q must be active or suspended (use close to close)", ErrInvalid, *p.Status)
	}
	if p.Name != nil && (*p.Name == "" || len(*p.Name) > 200) {
		return Account{}, fmt.Errorf("%w: name must be 1-200 characters", ErrInvalid)
	}
	a, err := l.resolve(ctx, l.pool, cluster, name)
	if err != nil {
		return a, err
	}
	if a.Status == "closed" {
		return a, fmt.Errorf("%w: account %s is closed", ErrConflict, name)
	}
	_, err = l.pool.Exec(ctx, `UPDATE accounts SET
			name = coalesce($2, name), description = coalesce($3, description),
			starts_at = coalesce($4, starts_at),
			ends_at = CASE WHEN $5 THEN NULL ELSE coalesce($6, ends_at) END,
			credit_limit = coalesce($7, credit_limit),
			max_job_cost = CASE WHEN $8 THEN NULL ELSE coalesce($9, max_job_cost) END,
			status = coalesce($10, status), updated_at = now()
		WHERE id = $1`, a.ID, p.Name, p.Description, p.StartsAt, p.ClearEnd, p.EndsAt, p.CreditLimit,
		p.ClearMaxJob, p.MaxJobCost, p.Status)
	if err != nil {
		return a, dbErr("update account "+name, err)
	}
	return l.GetAccount(ctx, cluster, name)
}

// CloseAccount closes an account: no new holds; running jobs still settle.
func (l *Ledger) CloseAccount(ctx context.Context, cluster, name, actor string) (Account, error) {
	a, err := l.resolve(ctx, l.pool, cluster, name)
	if err != nil {
		return a, err
	}
	if _, err := l.pool.Exec(ctx, `UPDATE accounts SET status = 'closed', closed_at = now(), updated_at = now() WHERE id = $1`, a.ID); err != nil {
		return a, dbErr("close account "+name, err)
	}
	l.log.Info("account closed", "account", name, "actor", actor)
	return l.GetAccount(ctx, cluster, name)
}

// DeleteAccount deletes an account that has no history at all; an account
// with ledger entries must be closed instead (the ledger is forever).
func (l *Ledger) DeleteAccount(ctx context.Context, cluster, name string) error {
	return l.InTx(ctx, func(tx pgx.Tx) error {
		a, err := l.resolve(ctx, tx, cluster, name)
		if err != nil {
			return err
		}
		var history bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger WHERE account_id = $1)
			OR EXISTS (SELECT 1 FROM allocations WHERE account_id = $1)
			OR EXISTS (SELECT 1 FROM accounts WHERE parent_id = $1)`, a.ID).Scan(&history); err != nil {
			return dbErr("check account history", err)
		}
		if history {
			return fmt.Errorf("%w: account %s has history (or children); close it instead", ErrConflict, name)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM partition_limits WHERE account_id = $1`, a.ID); err != nil {
			return dbErr("delete account limits", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM partition_usage WHERE account_id = $1`, a.ID); err != nil {
			return dbErr("delete account usage", err)
		}
		_, err = tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, a.ID)
		return dbErr("delete account", err)
	})
}

// SetPartitionLimit sets (or with both caps nil, removes) an account's
// limits on one partition.
func (l *Ledger) SetPartitionLimit(ctx context.Context, cluster, name, partition string, maxJob, maxMonth *decimal.Decimal) error {
	if partition == "" || len(partition) > 64 || strings.ContainsAny(partition, " ,;'\"") {
		return fmt.Errorf("%w: partition name %q is not valid", ErrInvalid, partition)
	}
	if maxJob != nil {
		if err := CheckAmount(*maxJob); err != nil {
			return fmt.Errorf("max job cost: %w", err)
		}
	}
	if maxMonth != nil {
		if maxMonth.IsNegative() {
			return fmt.Errorf("%w: monthly cap must not be negative", ErrInvalid)
		}
		if err := checkRange(*maxMonth); err != nil {
			return err
		}
	}
	a, err := l.resolve(ctx, l.pool, cluster, name)
	if err != nil {
		return err
	}
	return l.InTx(ctx, func(tx pgx.Tx) error {
		// Under the account's lock no hold can slip between the limit and
		// the usage computed for it.
		if _, err := tx.Exec(ctx, `SELECT asbb_lock_chain($1)`, a.ID); err != nil {
			return dbErr("lock account", err)
		}
		if maxJob == nil && maxMonth == nil {
			if _, err := tx.Exec(ctx, `DELETE FROM partition_usage WHERE account_id = $1 AND partition = $2`, a.ID, partition); err != nil {
				return dbErr("remove partition usage", err)
			}
			_, err := tx.Exec(ctx, `DELETE FROM partition_limits WHERE account_id = $1 AND partition = $2`, a.ID, partition)
			return dbErr("remove partition limit", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO partition_limits (account_id, partition, max_job_cost, max_per_month)
			VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, partition) DO UPDATE
			SET max_job_cost = EXCLUDED.max_job_cost, max_per_month = EXCLUDED.max_per_month`, a.ID, partition, maxJob, maxMonth); err != nil {
			return dbErr("set partition limit", err)
		}
		// Usage is kept only while a limit exists: compute it from the
		// holds now, so money committed before the limit counts.
		_, err := tx.Exec(ctx, `INSERT INTO partition_usage (account_id, partition, month, committed)
			SELECT account_id, partition, month, sum(remaining + charged) FROM holds
			 WHERE account_id = $1 AND partition = $2 GROUP BY account_id, partition, month
			ON CONFLICT (account_id, partition, month) DO UPDATE SET committed = EXCLUDED.committed`, a.ID, partition)
		return dbErr("compute partition usage", err)
	})
}

func (l *Ledger) partitionLimits(ctx context.Context, id int64) ([]PartitionLimit, error) {
	rows, err := l.pool.Query(ctx, `SELECT pl.partition, pl.max_job_cost, pl.max_per_month, coalesce(u.committed, 0)
		FROM partition_limits pl LEFT JOIN partition_usage u
		  ON u.account_id = pl.account_id AND u.partition = pl.partition AND u.month = $2
		WHERE pl.account_id = $1 ORDER BY pl.partition`, id, l.month(l.now()))
	if err != nil {
		return nil, dbErr("read partition limits", err)
	}
	defer rows.Close()
	var out []PartitionLimit
	for rows.Next() {
		var p PartitionLimit
		if err := rows.Scan(&p.Partition, &p.MaxJobCost, &p.MaxPerMonth, &p.UsedMonth); err != nil {
			return nil, dbErr("read partition limits", err)
		}
		out = append(out, p)
	}
	return out, dbErr("read partition limits", rows.Err())
}

// month is the first day of t's calendar month in the configured zone.
func (l *Ledger) month(t time.Time) time.Time {
	t = t.In(l.cfg.Location())
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
