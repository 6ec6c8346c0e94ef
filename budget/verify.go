package budget

import (
	"context"
	"fmt"

	"github.com/shopspring/decimal"
)

// VerifyProblem is one inconsistency found by Verify.
type VerifyProblem struct {
	Account string `json:"account"`
	Problem string `json:"problem"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Accounts int             `json:"accounts"`
	Entries  int64           `json:"ledger_entries"`
	Holds    int64           `json:"holds"`
	Problems []VerifyProblem `json:"problems"`
}

// OK reports whether the ledger is consistent.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify proves that every account's totals equal the sums over its ledger,
// that every ledger row's totals-after equal the running sums up to it (in
// id order; so the last row's are the account's), that no hold or held
// total is negative, and that each account's held total equals what
// its (and its descendants') active holds still hold. It reads one
// consistent snapshot (REPEATABLE READ).
func (l *Ledger) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	tx, err := l.pool.BeginTx(ctx, txRepeatableRead)
	if err != nil {
		return rep, dbErr("verify", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	rows, err := tx.Query(ctx, `
		WITH sums AS (
			SELECT account_id, count(*) AS n, sum(d_deposited) AS dd, sum(d_spent) AS ds, sum(d_held) AS dh,
			       count(*) FILTER (WHERE bad) AS bad, min(id) FILTER (WHERE bad) AS first_bad
			FROM (SELECT account_id, id, d_deposited, d_spent, d_held,
			             sum(d_deposited) OVER w <> deposited_after OR sum(d_spent) OVER w <> spent_after
			             OR sum(d_held) OVER w <> held_after AS bad
			      FROM ledger WINDOW w AS (PARTITION BY account_id ORDER BY id)) r
			GROUP BY account_id
		), active AS (
			SELECT x AS account_id, sum(h.remaining) AS held
			FROM holds h JOIN accounts a ON a.id = h.account_id, unnest(a.path) AS x
			WHERE h.status = 'active' GROUP BY x
		)
		SELECT a.slurm_account, a.deposited, a.spent, a.held,
		       coalesce(s.n, 0), coalesce(s.dd, 0), coalesce(s.ds, 0), coalesce(s.dh, 0),
		       coalesce(ac.held, 0), coalesce(s.bad, 0), s.first_bad
		FROM accounts a
		LEFT JOIN sums s ON s.account_id = a.id
		LEFT JOIN active ac ON ac.account_id = a.id
		ORDER BY a.slurm_account`)
	if err != nil {
		return rep, dbErr("verify totals", err)
	}
	for rows.Next() {
		var name string
		var dep, spent, held, dd, ds, dh, activeHeld decimal.Decimal
		var n, runningBad int64
		var firstBad *int64
		if err := rows.Scan(&name, &dep, &spent, &held, &n, &dd, &ds, &dh, &activeHeld,
			&runningBad, &firstBad); err != nil {
			rows.Close()
			return rep, dbErr("verify totals", err)
		}
		rep.Accounts++
		rep.Entries += n
		bad := func(f string, a ...any) {
			rep.Problems = append(rep.Problems, VerifyProblem{Account: name, Problem: fmt.Sprintf(f, a...)})
		}
		if !dep.Equal(dd) {
			bad("deposited %s != ledger sum %s", dep, dd)
		}
		if !spent.Equal(ds) {
			bad("spent %s != ledger sum %s", spent, ds)
		}
		if !held.Equal(dh) {
			bad("held %s != ledger sum %s", held, dh)
		}
		if held.IsNegative() {
			bad("held %s is negative", held)
		}
		if !held.Equal(activeHeld) {
			bad("held %s != active holds' remaining %s", held, activeHeld)
		}
		if runningBad > 0 {
			bad("%d ledger rows' totals-after differ from the running sums (first: entry %d)", runningBad, *firstBad)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, dbErr("verify totals", err)
	}
	var negative int64
	if err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE remaining < 0 OR remaining > amount) FROM holds`).
		Scan(&rep.Holds, &negative); err != nil {
		return rep, dbErr("verify holds", err)
	}
	if negative > 0 {
		rep.Problems = append(rep.Problems, VerifyProblem{Problem: fmt.Sprintf("%d holds have a negative or excessive remaining amount", negative)})
	}
	// Partition usage (kept where a limit exists) counts, per hold month,
	// what each hold still holds plus what it has charged.
	var usageBad int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT u.* FROM partition_usage u
		                           JOIN partition_limits pl USING (account_id, partition)) u
		FULL JOIN (SELECT h.account_id, h.partition, h.month, sum(h.remaining + h.charged) AS c
		           FROM holds h JOIN partition_limits pl ON pl.account_id = h.account_id AND pl.partition = h.partition
		           GROUP BY h.account_id, h.partition, h.month) h
		  USING (account_id, partition, month)
		WHERE coalesce(u.committed, 0) <> coalesce(h.c, 0)`).Scan(&usageBad); err != nil {
		return rep, dbErr("verify partition usage", err)
	}
	if usageBad > 0 {
		rep.Problems = append(rep.Problems, VerifyProblem{Problem: fmt.Sprintf("%d partition-usage rows differ from their holds", usageBad)})
	}
	if err := verifyGrants(ctx, tx, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}
