package budget

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"
)

// UsageRow is spending grouped under one key (an account, a user, a
// partition or a month). Direct is what the ledger charged; Indirect is the
// grant's F&A on it (zero outside grant reports); Total = Direct + Indirect.
type UsageRow struct {
	Key      string          `json:"key"`
	Direct   decimal.Decimal `json:"direct"`
	Indirect decimal.Decimal `json:"indirect"`
	Total    decimal.Decimal `json:"total"`
	Jobs     int64           `json:"jobs"` // charge entries
}

// Usage is an account's spending over a range, with its sub-accounts,
// broken down by account, user, partition and month.
type Usage struct {
	Account     string          `json:"account"`
	Currency    string          `json:"currency"`
	From        time.Time       `json:"from"`
	To          time.Time       `json:"to"`
	Charges     decimal.Decimal `json:"charges"`
	Refunds     decimal.Decimal `json:"refunds"`
	Corrections decimal.Decimal `json:"corrections"`
	Total       decimal.Decimal `json:"total"` // charges + refunds + corrections
	Jobs        int64           `json:"jobs"`
	ByAccount   []UsageRow      `json:"by_account"`
	ByUser      []UsageRow      `json:"by_user"`
	ByPartition []UsageRow      `json:"by_partition"`
	ByMonth     []UsageRow      `json:"by_month"`
}

// usageCell is one group of the usage query.
type usageCell struct {
	account, user, partition, month, typ string
	direct, indirect                     decimal.Decimal
	n                                    int64
}

// usageRows groups cells by one key, largest total first (months in order).
func usageRows(cells []usageCell, key func(usageCell) string, byKey bool) []UsageRow {
	m := map[string]*UsageRow{}
	for _, c := range cells {
		k := key(c)
		r := m[k]
		if r == nil {
			r = &UsageRow{Key: k}
			m[k] = r
		}
		r.Direct = r.Direct.Add(c.direct)
		r.Indirect = r.Indirect.Add(c.indirect)
		r.Total = r.Direct.Add(r.Indirect)
		if c.typ == "charge" {
			r.Jobs += c.n
		}
	}
	out := make([]UsageRow, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !byKey && !out[i].Total.Equal(out[j].Total) {
			return out[i].Total.GreaterThan(out[j].Total)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// AccountUsage sums what an account and its sub-accounts spent in
// [from, to): every charge, refund and correction posted on them (their own
// ledger rows, so a sub-account's charge counts once, not again on its
// parent), grouped by account, user, partition and calendar month.
func (l *Ledger) AccountUsage(ctx context.Context, cluster, account string, from, to time.Time) (Usage, error) {
	if !to.After(from) {
		return Usage{}, fmt.Errorf("%w: the end of the range must be after its start", ErrInvalid)
	}
	a, err := l.resolve(ctx, l.pool, cluster, account)
	if err != nil {
		return Usage{}, err
	}
	rows, err := l.pool.Query(ctx, `SELECT a.slurm_account, coalesce(e.user_name, ''), coalesce(e.partition, ''),
			to_char(e.created_at AT TIME ZONE $4, 'YYYY-MM'), e.type, sum(e.d_spent), count(*)
		FROM ledger e JOIN accounts a ON a.id = e.account_id
		WHERE e.account_id IN (SELECT id FROM accounts WHERE $1 = ANY (path))
		  AND e.created_at >= $2 AND e.created_at < $3 AND e.origin_account_id IS NULL AND e.d_spent <> 0
		GROUP BY 1, 2, 3, 4, 5`, a.ID, from, to, l.cfg.Location().String())
	if err != nil {
		return Usage{}, dbErr("read usage", err)
	}
	defer rows.Close()
	var cells []usageCell
	for rows.Next() {
		var c usageCell
		if err := rows.Scan(&c.account, &c.user, &c.partition, &c.month, &c.typ, &c.direct, &c.n); err != nil {
			return Usage{}, dbErr("read usage", err)
		}
		cells = append(cells, c)
	}
	if err := rows.Err(); err != nil {
		return Usage{}, dbErr("read usage", err)
	}
	u := Usage{Account: a.SlurmAccount, Currency: a.Currency, From: from, To: to}
	u.fill(cells)
	return u, nil
}

func (u *Usage) fill(cells []usageCell) {
	for _, c := range cells {
		switch c.typ {
		case "charge":
			u.Charges = u.Charges.Add(c.direct)
			u.Jobs += c.n
		case "refund":
			u.Refunds = u.Refunds.Add(c.direct)
		case "correction":
			u.Corrections = u.Corrections.Add(c.direct)
		}
	}
	u.Total = u.Charges.Add(u.Refunds).Add(u.Corrections)
	u.ByAccount = usageRows(cells, func(c usageCell) string { return c.account }, false)
	u.ByUser = usageRows(cells, func(c usageCell) string { return c.user }, false)
	u.ByPartition = usageRows(cells, func(c usageCell) string { return c.partition }, false)
	u.ByMonth = usageRows(cells, func(c usageCell) string { return c.month }, true)
}
