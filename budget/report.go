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

// GrantReport is the compliance report of a grant for one budget period
// (or, with Period 0, the whole grant): direct, indirect and total cost by
// account, user, partition and month, the holds still outstanding, and the
// period's balances, reconciled to the cent with the grant's ledger and
// with the ledger of the accounts it funds.
type GrantReport struct {
	Grant        Grant           `json:"grant"`
	Period       int             `json:"period"` // 0 = the whole grant
	PeriodName   string          `json:"period_name"`
	StartDate    string          `json:"start_date"`
	EndDate      string          `json:"end_date"`
	Currency     string          `json:"currency"`
	IndirectRate decimal.Decimal `json:"indirect_rate"`
	GeneratedAt  time.Time       `json:"generated_at"`

	Balances       ReportBalances  `json:"balances"`
	Direct         decimal.Decimal `json:"direct_cost"`
	Indirect       decimal.Decimal `json:"indirect_cost"`
	Total          decimal.Decimal `json:"total_cost"`
	Jobs           int64           `json:"jobs"`
	ByAccount      []UsageRow      `json:"by_account"`
	ByUser         []UsageRow      `json:"by_user"`
	ByPartition    []UsageRow      `json:"by_partition"`
	ByMonth        []UsageRow      `json:"by_month"`
	Holds          []ReportHold    `json:"holds_outstanding"`
	HoldsDirect    decimal.Decimal `json:"holds_outstanding_direct"`
	HoldsTotal     decimal.Decimal `json:"holds_outstanding_total"`
	BurnDown       []DayPoint      `json:"burn_down"`
	Reconciled     bool            `json:"reconciled"`
	Reconciliation []string        `json:"reconciliation"`
}

// ReportBalances is the period's (or grant's) budget account: what it
// began with, what moved, what is left. Every figure is a sum of grant
// entries; Ending equals the stored period totals.
type ReportBalances struct {
	Budget     decimal.Decimal `json:"budget"`      // budget entries (the award's split, edits)
	CarriedIn  decimal.Decimal `json:"carried_in"`  // carry-forward from the period before
	Beginning  decimal.Decimal `json:"beginning"`   // budget + carried in
	Spent      decimal.Decimal `json:"spent"`       // total cost charged (net of refunds, corrections)
	Held       decimal.Decimal `json:"held"`        // total cost still held by running jobs
	CarriedOut decimal.Decimal `json:"carried_out"` // carried to the next period at the close (negative)
	Lapsed     decimal.Decimal `json:"lapsed"`      // lapsed at the close (negative)
	Ending     decimal.Decimal `json:"ending"`      // beginning − spent − held + carried out + lapsed
}

// ReportHold is an outstanding hold counted on the grant.
type ReportHold struct {
	HoldID    int64           `json:"hold_id"`
	Account   string          `json:"account"`
	User      string          `json:"user"`
	Partition string          `json:"partition"`
	JobID     *string         `json:"job_id,omitempty"`
	Direct    decimal.Decimal `json:"direct"`
	Total     decimal.Decimal `json:"total"`
	Since     time.Time       `json:"since"`
}

// GrantReport builds the compliance report of a grant's budget period
// (period 0: the whole grant; period -1: the period of today).
func (l *Ledger) GrantReport(ctx context.Context, number string, period int) (GrantReport, error) {
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return GrantReport{}, err
	}
	loc, err := time.LoadLocation(g.Timezone)
	if err != nil {
		loc = l.cfg.Location()
	}
	ps, err := l.GrantPeriods(ctx, number)
	if err != nil {
		return GrantReport{}, err
	}
	now := l.now()
	if period < 0 {
		p, ok := grantPeriodAt(ps, now.In(loc).Format(time.DateOnly))
		if !ok {
			return GrantReport{}, fmt.Errorf("%w: grant %s has no budget periods", ErrNotFound, number)
		}
		period = p.Period
	}
	r := GrantReport{Grant: g, Period: period, Currency: g.Currency, IndirectRate: g.IndirectRate, GeneratedAt: now,
		StartDate: g.StartDate, EndDate: g.EndDate, PeriodName: "whole grant"}
	var stored decimal.Decimal // the period rows' remaining, to reconcile with
	found := period == 0
	for _, p := range ps {
		if period == 0 || p.Period == period {
			stored = stored.Add(p.Remaining)
		}
		if p.Period == period {
			r.StartDate, r.EndDate, r.PeriodName, found = p.StartDate, p.EndDate, fmt.Sprintf("period %d", p.Period), true
		}
	}
	if !found {
		return GrantReport{}, fmt.Errorf("%w: grant %s has no period %d (it has %d)", ErrNotFound, number, period, len(ps))
	}

	// The period's budget account, from its entries.
	if err := l.pool.QueryRow(ctx, `SELECT
			coalesce(sum(d_budget) FILTER (WHERE type = 'budget'), 0),
			coalesce(sum(d_budget) FILTER (WHERE type = 'carry_forward' AND d_budget > 0), 0),
			coalesce(sum(d_spent), 0), coalesce(sum(d_held), 0),
			coalesce(sum(d_budget) FILTER (WHERE type = 'carry_forward' AND d_budget < 0), 0),
			coalesce(sum(d_budget) FILTER (WHERE type = 'lapse'), 0)
		FROM grant_entries WHERE grant_id = $1 AND ($2 = 0 OR period = $2)`, g.ID, period).Scan(
		&r.Balances.Budget, &r.Balances.CarriedIn, &r.Balances.Spent, &r.Balances.Held, &r.Balances.CarriedOut,
		&r.Balances.Lapsed); err != nil {
		return GrantReport{}, dbErr("read grant balances", err)
	}
	if period == 0 {
		// Carry-forward moves money between the grant's own periods: for
		// the whole grant it nets out.
		r.Balances.CarriedIn, r.Balances.CarriedOut = decimal.Zero, decimal.Zero
	}
	b := &r.Balances
	b.Beginning = b.Budget.Add(b.CarriedIn)
	b.Ending = b.Beginning.Sub(b.Spent).Sub(b.Held).Add(b.CarriedOut).Add(b.Lapsed)

	// Costs by account, user, partition and month; users and partitions
	// come from the ledger rows the grant entries follow.
	rows, err := l.pool.Query(ctx, `SELECT coalesce(a.slurm_account, ''), coalesce(le.user_name, ''), coalesce(le.partition, ''),
			to_char(e.created_at AT TIME ZONE $3, 'YYYY-MM'), e.type, sum(e.direct), sum(e.d_spent - e.direct), count(*),
			coalesce(sum(le.d_spent), 0)
		FROM grant_entries e LEFT JOIN accounts a ON a.id = e.account_id LEFT JOIN ledger le ON le.id = e.ledger_id
		WHERE e.grant_id = $1 AND ($2 = 0 OR e.period = $2) AND e.d_spent <> 0
		GROUP BY 1, 2, 3, 4, 5`, g.ID, period, loc.String())
	if err != nil {
		return GrantReport{}, dbErr("read grant costs", err)
	}
	var cells []usageCell
	ledgerDirect := decimal.Zero
	for rows.Next() {
		var c usageCell
		var ld decimal.Decimal
		if err := rows.Scan(&c.account, &c.user, &c.partition, &c.month, &c.typ, &c.direct, &c.indirect, &c.n, &ld); err != nil {
			rows.Close()
			return GrantReport{}, dbErr("read grant costs", err)
		}
		cells = append(cells, c)
		ledgerDirect = ledgerDirect.Add(ld)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return GrantReport{}, dbErr("read grant costs", err)
	}
	for _, c := range cells {
		r.Direct = r.Direct.Add(c.direct)
		r.Indirect = r.Indirect.Add(c.indirect)
		if c.typ == "charge" {
			r.Jobs += c.n
		}
	}
	r.Total = r.Direct.Add(r.Indirect)
	r.ByAccount = usageRows(cells, func(c usageCell) string { return c.account }, false)
	r.ByUser = usageRows(cells, func(c usageCell) string { return c.user }, false)
	r.ByPartition = usageRows(cells, func(c usageCell) string { return c.partition }, false)
	r.ByMonth = usageRows(cells, func(c usageCell) string { return c.month }, true)

	// Holds outstanding on the period.
	hrows, err := l.pool.Query(ctx, `SELECT h.id, a.slurm_account, h.user_name, h.partition, h.job_id, h.remaining,
			h.remaining * gh.factor, h.created_at
		FROM grant_holds gh JOIN holds h ON h.id = gh.hold_id JOIN accounts a ON a.id = h.account_id
		WHERE gh.grant_id = $1 AND ($2 = 0 OR gh.period = $2) AND h.status = 'active' AND h.remaining > 0
		ORDER BY h.id`, g.ID, period)
	if err != nil {
		return GrantReport{}, dbErr("read grant holds", err)
	}
	for hrows.Next() {
		var h ReportHold
		if err := hrows.Scan(&h.HoldID, &h.Account, &h.User, &h.Partition, &h.JobID, &h.Direct, &h.Total, &h.Since); err != nil {
			hrows.Close()
			return GrantReport{}, dbErr("read grant holds", err)
		}
		r.Holds = append(r.Holds, h)
		r.HoldsDirect = r.HoldsDirect.Add(h.Direct)
		r.HoldsTotal = r.HoldsTotal.Add(h.Total)
	}
	hrows.Close()
	if err := hrows.Err(); err != nil {
		return GrantReport{}, dbErr("read grant holds", err)
	}
	if r.Holds == nil {
		r.Holds = []ReportHold{}
	}

	if err := l.grantBurnDown(ctx, &r, g.ID, loc); err != nil {
		return GrantReport{}, err
	}

	// Reconciliation, every line to the cent (exactly, in fact).
	check := func(ok bool, f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		if ok {
			line = "ok: " + line
		} else {
			line = "MISMATCH: " + line
		}
		r.Reconciliation = append(r.Reconciliation, line)
	}
	check(r.Total.Equal(b.Spent), "total cost by entry type %s = spent %s", r.Total, b.Spent)
	check(r.Direct.Equal(ledgerDirect), "direct cost %s = the accounts' ledger charges it follows %s", r.Direct, ledgerDirect)
	check(r.HoldsTotal.Equal(b.Held), "holds outstanding %s = held %s", r.HoldsTotal, b.Held)
	check(b.Ending.Equal(stored), "ending balance %s = the period's stored remaining %s", b.Ending, stored)
	for _, rs := range [][]UsageRow{r.ByAccount, r.ByUser, r.ByPartition, r.ByMonth} {
		sum := decimal.Zero
		for _, x := range rs {
			sum = sum.Add(x.Total)
		}
		if !sum.Equal(r.Total) {
			check(false, "a breakdown adds up to %s, not %s", sum, r.Total)
		}
	}
	r.Reconciled = true
	for _, line := range r.Reconciliation {
		if len(line) > 8 && line[:8] == "MISMATCH" {
			r.Reconciled = false
		}
	}
	return r, nil
}

// grantBurnDown is the report's daily series over the period (to today):
// spending per day, cumulative, and what is left of the beginning balance
// (less what is held now, on the last day), with the even-spend line.
func (l *Ledger) grantBurnDown(ctx context.Context, r *GrantReport, grantID int64, loc *time.Location) error {
	start, err := time.ParseInLocation(time.DateOnly, r.StartDate, loc)
	if err != nil {
		return fmt.Errorf("report start: %w", err)
	}
	last, err := time.ParseInLocation(time.DateOnly, r.EndDate, loc)
	if err != nil {
		return fmt.Errorf("report end: %w", err)
	}
	end := time.Date(last.Year(), last.Month(), last.Day()+1, 0, 0, 0, 0, loc)
	to := end
	if now := l.now(); now.Before(to) {
		to = now
	}
	if !to.After(start) {
		r.BurnDown = []DayPoint{}
		return nil
	}
	rows, err := l.pool.Query(ctx, `SELECT to_char(created_at AT TIME ZONE $3, 'YYYY-MM-DD'), sum(d_spent)
		FROM grant_entries WHERE grant_id = $1 AND ($2 = 0 OR period = $2) AND d_spent <> 0
		GROUP BY 1`, grantID, r.Period, loc.String())
	if err != nil {
		return dbErr("read grant burn-down", err)
	}
	byDay := map[string]decimal.Decimal{}
	before := decimal.Zero // spending dated before the period (a late refund's period is its charge's)
	first := start.Format(time.DateOnly)
	for rows.Next() {
		var d string
		var s decimal.Decimal
		if err := rows.Scan(&d, &s); err != nil {
			rows.Close()
			return dbErr("read grant burn-down", err)
		}
		if d < first {
			before = before.Add(s)
		} else {
			byDay[d] = byDay[d].Add(s)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return dbErr("read grant burn-down", err)
	}
	total := spanDays(start, end, loc)
	cum := before
	w := Window{From: start, To: to}
	at := dayBoundaries(w, loc)
	for i := 1; i < len(at); i++ {
		d := at[i-1].In(loc).Format(time.DateOnly)
		cum = cum.Add(byDay[d])
		e := r.Balances.Beginning.Mul(spanDays(start, at[i], loc)).DivRound(total, Scale)
		r.BurnDown = append(r.BurnDown, DayPoint{Date: d, Spent: byDay[d], Cumulative: cum,
			Remaining: r.Balances.Beginning.Sub(cum), Expected: &e})
	}
	// Spending after the last day shown (entries dated after the period,
	// which count in it) joins the last day, so the line ends at the
	// report's spent.
	if n := len(r.BurnDown); n > 0 && !cum.Equal(r.Balances.Spent) {
		extra := r.Balances.Spent.Sub(cum)
		p := &r.BurnDown[n-1]
		p.Spent, p.Cumulative, p.Remaining = p.Spent.Add(extra), p.Cumulative.Add(extra), p.Remaining.Sub(extra)
	}
	return nil
}
