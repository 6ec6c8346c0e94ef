package budget

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// maxStatementEntries bounds one statement; a longer range is refused with
// a hint to narrow it (a statement is read by people, page by page).
const maxStatementEntries = 100000

// Balance is an account's totals after a given ledger entry.
type Balance struct {
	AfterEntry int64           `json:"after_entry"` // 0 = before the first entry
	Deposited  decimal.Decimal `json:"deposited"`
	Spent      decimal.Decimal `json:"spent"`
	Held       decimal.Decimal `json:"held"`
	Balance    decimal.Decimal `json:"balance"` // deposited − spent − held
}

func balanceOf(s snapshot) Balance {
	return Balance{AfterEntry: s.id, Deposited: s.deposited, Spent: s.spent, Held: s.held,
		Balance: s.deposited.Sub(s.spent).Sub(s.held)}
}

// StatementTotals sums a statement's entries.
type StatementTotals struct {
	Deposits    decimal.Decimal `json:"deposits"`    // deposit entries
	Withdrawals decimal.Decimal `json:"withdrawals"` // withdraw and expire entries (negative)
	Charges     decimal.Decimal `json:"charges"`
	Refunds     decimal.Decimal `json:"refunds"`     // negative
	Corrections decimal.Decimal `json:"corrections"` // either sign
	HeldChange  decimal.Decimal `json:"held_change"` // net change of holds
	NetSpent    decimal.Decimal `json:"net_spent"`   // charges + refunds + corrections
}

// Statement is an account's ledger over a date range: the balance at the
// start, every entry, the balance at the end. The entries are those posted
// after the last entry before From up to the last entry before To, in
// posting order, so Opening plus the entries is exactly Closing (the
// statement checks this before it is returned).
type Statement struct {
	Account  string          `json:"account"`
	Currency string          `json:"currency"`
	From     time.Time       `json:"from"`
	To       time.Time       `json:"to"`
	Opening  Balance         `json:"opening"`
	Entries  []Entry         `json:"entries"`
	Totals   StatementTotals `json:"totals"`
	Closing  Balance         `json:"closing"`
}

// AccountStatement builds the statement of an account for [from, to).
func (l *Ledger) AccountStatement(ctx context.Context, cluster, account string, from, to time.Time) (Statement, error) {
	if !to.After(from) {
		return Statement{}, fmt.Errorf("%w: the statement's end must be after its start", ErrInvalid)
	}
	// No transaction is needed for a consistent read: an account's entries
	// are written under its row lock, so once the entry at the end boundary
	// is visible, so is every earlier one (ids are taken in lock order).
	var st Statement
	err := func() error {
		tx := l.pool
		a, err := l.resolve(ctx, tx, cluster, account)
		if err != nil {
			return err
		}
		st = Statement{Account: a.SlurmAccount, Currency: a.Currency, From: from, To: to, Entries: []Entry{}}
		snaps, err := snapshotsAt(ctx, tx, a.ID, []time.Time{from, to})
		if err != nil {
			return err
		}
		st.Opening, st.Closing = balanceOf(snaps[0]), balanceOf(snaps[1])
		if snaps[1].id <= snaps[0].id {
			return nil
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ledger WHERE account_id = $1 AND id > $2 AND id <= $3`,
			a.ID, snaps[0].id, snaps[1].id).Scan(&n); err != nil {
			return dbErr("count statement entries", err)
		}
		if n > maxStatementEntries {
			return fmt.Errorf("%w: %d entries between %s and %s; ask for a shorter range (at most %d entries)",
				ErrInvalid, n, from.Format(time.RFC3339), to.Format(time.RFC3339), maxStatementEntries)
		}
		rows, err := tx.Query(ctx, `SELECT e.id, e.account_id, $4::text, e.type, e.amount, e.d_deposited, e.d_spent, e.d_held,
				e.deposited_after, e.spent_after, e.held_after, e.hold_id, e.charge_id, e.allocation_id, o.slurm_account,
				e.cluster, e.job_id, e.array_task_id, e.partition, e.user_name, e.actor, e.reason, e.created_at
			FROM ledger e LEFT JOIN accounts o ON o.id = e.origin_account_id
			WHERE e.account_id = $1 AND e.id > $2 AND e.id <= $3 ORDER BY e.id`, a.ID, snaps[0].id, snaps[1].id, a.SlurmAccount)
		if err != nil {
			return dbErr("read statement", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e Entry
			if err := rows.Scan(&e.ID, &e.AccountID, &e.Account, &e.Type, &e.Amount, &e.DDeposited, &e.DSpent, &e.DHeld,
				&e.DepositedAfter, &e.SpentAfter, &e.HeldAfter, &e.HoldID, &e.ChargeID, &e.AllocationID, &e.Origin,
				&e.Cluster, &e.JobID, &e.ArrayTaskID, &e.Partition, &e.User, &e.Actor, &e.Reason, &e.CreatedAt); err != nil {
				return dbErr("read statement", err)
			}
			st.Entries = append(st.Entries, e)
		}
		return dbErr("read statement", rows.Err())
	}()
	if err != nil {
		return Statement{}, err
	}
	return st, st.reconcile()
}

// reconcile sums the entries and proves Opening + entries = Closing, and
// that every entry's running totals follow from the one before.
func (st *Statement) reconcile() error {
	t := &st.Totals
	dep, spent, held := st.Opening.Deposited, st.Opening.Spent, st.Opening.Held
	for _, e := range st.Entries {
		dep, spent, held = dep.Add(e.DDeposited), spent.Add(e.DSpent), held.Add(e.DHeld)
		if !dep.Equal(e.DepositedAfter) || !spent.Equal(e.SpentAfter) || !held.Equal(e.HeldAfter) {
			return fmt.Errorf("statement of %s: entry %d does not follow from the one before (ledger inconsistent: run asbb-admin verify)",
				st.Account, e.ID)
		}
		switch e.Type {
		case "deposit":
			t.Deposits = t.Deposits.Add(e.DDeposited)
		case "withdraw", "expire":
			t.Withdrawals = t.Withdrawals.Add(e.DDeposited)
		case "charge":
			t.Charges = t.Charges.Add(e.DSpent)
		case "refund":
			t.Refunds = t.Refunds.Add(e.DSpent)
		case "correction":
			t.Corrections = t.Corrections.Add(e.DSpent)
		}
		t.HeldChange = t.HeldChange.Add(e.DHeld)
	}
	t.NetSpent = t.Charges.Add(t.Refunds).Add(t.Corrections)
	if !dep.Equal(st.Closing.Deposited) || !spent.Equal(st.Closing.Spent) || !held.Equal(st.Closing.Held) {
		return fmt.Errorf("statement of %s: opening balance plus entries does not equal the closing balance", st.Account)
	}
	return nil
}
