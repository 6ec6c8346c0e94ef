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

// A grant funds one or more accounts (and their sub-accounts) for a span of
// dates split into budget periods. Money on the accounts still comes from
// deposits; the grant adds a second limit: a hold must also fit the current
// period's remaining budget, counted with indirect (F&A) costs, and every
// hold and charge is followed into the period in the grant's own ledger
// (grant_entries). See docs/grants.md.

// GrantSpec describes a new grant.
type GrantSpec struct {
	Number       string
	Agency       string
	Program      string
	PI           string
	CoPIs        []string
	Institution  string
	Department   string
	Amount       decimal.Decimal
	Start, End   time.Time // calendar dates; End is the last day of the grant
	PeriodMonths int       // budget-period length: 12 = annual periods
	IndirectRate decimal.Decimal
	FederalID    string // assistance listing, e.g. 47.070
	Status       string // default active
	CarryForward *bool  // default true
	Actor        string
}

// Grant is a grant as stored.
type Grant struct {
	ID           int64           `json:"id"`
	Number       string          `json:"grant_number"`
	Agency       string          `json:"agency"`
	Program      string          `json:"program"`
	PI           string          `json:"principal_investigator"`
	CoPIs        []string        `json:"co_investigators"`
	Institution  string          `json:"institution"`
	Department   string          `json:"department"`
	Amount       decimal.Decimal `json:"award_amount"`
	Currency     string          `json:"currency"`
	StartDate    string          `json:"start_date"`
	EndDate      string          `json:"end_date"`
	PeriodMonths int             `json:"budget_period_months"`
	IndirectRate decimal.Decimal `json:"indirect_rate"`
	FederalID    string          `json:"federal_award_id"`
	Status       string          `json:"status"`
	CarryForward bool            `json:"carry_forward"`
	Timezone     string          `json:"timezone"`
	Periods      int             `json:"budget_periods"`
	Accounts     []string        `json:"accounts"`
	Spent        decimal.Decimal `json:"spent"` // total cost (direct × (1 + indirect)) over all periods
	Held         decimal.Decimal `json:"held"`
	Actor        string          `json:"actor"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
}

// GrantPeriod is one budget period with its bookkeeping. Held and Spent are
// total costs (direct × (1 + indirect)); Adjusted is what carry-forward
// brought in (+) or what was carried out or lapsed at its close (−).
type GrantPeriod struct {
	Grant     string          `json:"grant_number"`
	Period    int             `json:"period"`
	StartDate string          `json:"start_date"`
	EndDate   string          `json:"end_date"`
	Budget    decimal.Decimal `json:"budget"`
	Adjusted  decimal.Decimal `json:"adjusted"`
	Held      decimal.Decimal `json:"held"`
	Spent     decimal.Decimal `json:"spent"`
	Remaining decimal.Decimal `json:"remaining"`
	Status    string          `json:"status"`
	ClosedAt  *time.Time      `json:"closed_at,omitempty"`
}

// Name is how refusals and reports name a period.
func (p GrantPeriod) Name() string {
	return fmt.Sprintf("%s period %d (%s..%s)", p.Grant, p.Period, p.StartDate, p.EndDate)
}

// GrantEntry is one row of a grant's ledger.
type GrantEntry struct {
	ID        int64           `json:"id"`
	Period    int             `json:"period"`
	Type      string          `json:"type"`
	Account   *string         `json:"account,omitempty"`
	LedgerID  *int64          `json:"ledger_id,omitempty"`
	HoldID    *int64          `json:"hold_id,omitempty"`
	ChargeID  *int64          `json:"charge_id,omitempty"`
	Direct    decimal.Decimal `json:"direct"`
	Factor    decimal.Decimal `json:"factor"`
	DHeld     decimal.Decimal `json:"d_held"`
	DSpent    decimal.Decimal `json:"d_spent"`
	DBudget   decimal.Decimal `json:"d_budget"`
	Actor     string          `json:"actor"`
	Reason    string          `json:"reason"`
	CreatedAt time.Time       `json:"created_at"`
}

// PeriodClose is the outcome of closing one period.
type PeriodClose struct {
	Grant   string          `json:"grant_number"`
	Period  int             `json:"period"`
	Outcome string          `json:"outcome"` // closed, active_holds
	Unspent decimal.Decimal `json:"unspent"`
	Carried decimal.Decimal `json:"carried_forward"`
	Lapsed  decimal.Decimal `json:"lapsed"`
}

var (
	grantNumberRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
	federalIDRE   = regexp.MustCompile(`^[0-9]{2}\.[0-9A-Za-z]{3,4}$`)
	maxIndirect   = decimal.RequireFromString("1.5")
	grantStatuses = []string{"pending", "active", "suspended", "closed"}
)

// ValidateGrantNumber checks a grant number (it appears in URLs: no '/').
func ValidateGrantNumber(n string) error {
	if !grantNumberRE.MatchString(n) {
		return fmt.Errorf("%w: grant number %q must be 1-64 letters, digits, '_', '.', ':' or '-'", ErrInvalid, n)
	}
	return nil
}

func checkIndirect(r decimal.Decimal) error {
	if r.IsNegative() || r.GreaterThan(maxIndirect) {
		return fmt.Errorf("%w: indirect rate %s is outside [0, 1.5] (0.30 means 30%%)", ErrInvalid, r)
	}
	if !r.Equal(r.Truncate(Scale)) {
		return fmt.Errorf("%w: indirect rate %s has more than %d decimal places", ErrInvalid, r, Scale)
	}
	return nil
}

func checkText(field, v string, required bool, max int) error {
	if required && strings.TrimSpace(v) == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	if len(v) > max {
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, field, max)
	}
	if strings.ContainsAny(v, "\x00\n\r") {
		return fmt.Errorf("%w: %s contains control characters", ErrInvalid, field)
	}
	return nil
}

func validStatus(s string) bool {
	for _, x := range grantStatuses {
		if s == x {
			return true
		}
	}
	return false
}

// Date truncates t to its calendar date (as a UTC midnight).
func Date(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// periodPlan is one generated budget period.
type periodPlan struct {
	start, end time.Time
	budget     decimal.Decimal
}

// planPeriods splits [start, end] into periods of months calendar months
// (the last one shortened to the end date) and the amount evenly, to the
// cent, the remainder going to the last period.
func planPeriods(start, end time.Time, months int, amount decimal.Decimal) []periodPlan {
	start, end = Date(start), Date(end)
	var out []periodPlan
	for i := 0; ; i++ {
		s := addMonths(start, i*months, time.UTC)
		if s.After(end) {
			break
		}
		e := addMonths(start, (i+1)*months, time.UTC).AddDate(0, 0, -1)
		if e.After(end) {
			e = end
		}
		out = append(out, periodPlan{start: s, end: e})
	}
	n := int64(len(out))
	share := amount.Div(decimal.NewFromInt(n)).Truncate(2)
	for i := range out {
		out[i].budget = share
	}
	out[n-1].budget = amount.Sub(share.Mul(decimal.NewFromInt(n - 1)))
	return out
}

func (s *GrantSpec) validate() error {
	if err := ValidateGrantNumber(s.Number); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"agency", s.Agency, true}, {"program", s.Program, false}, {"PI", s.PI, true},
		{"institution", s.Institution, false}, {"department", s.Department, false}} {
		if err := checkText(f.name, f.v, f.required, 200); err != nil {
			return err
		}
	}
	if len(s.CoPIs) > 50 {
		return fmt.Errorf("%w: at most 50 co-PIs", ErrInvalid)
	}
	for _, c := range s.CoPIs {
		if err := checkText("co-PI", c, true, 200); err != nil {
			return err
		}
	}
	if err := CheckAmount(s.Amount); err != nil {
		return fmt.Errorf("award amount: %w", err)
	}
	if err := checkCents("award amount", s.Amount); err != nil {
		return err
	}
	if s.Start.IsZero() || s.End.IsZero() {
		return fmt.Errorf("%w: a grant needs a start and an end date", ErrInvalid)
	}
	if Date(s.End).Before(Date(s.Start)) {
		return fmt.Errorf("%w: end date %s is before start date %s", ErrInvalid, s.End.Format(time.DateOnly), s.Start.Format(time.DateOnly))
	}
	if Date(s.End).Sub(Date(s.Start)) > 50*366*24*time.Hour {
		return fmt.Errorf("%w: a grant may last at most 50 years", ErrInvalid)
	}
	if s.PeriodMonths < 1 || s.PeriodMonths > 120 {
		return fmt.Errorf("%w: budget-period length %d must be 1-120 months (12 = annual periods)", ErrInvalid, s.PeriodMonths)
	}
	if err := checkIndirect(s.IndirectRate); err != nil {
		return err
	}
	if s.FederalID != "" && !federalIDRE.MatchString(s.FederalID) {
		return fmt.Errorf("%w: federal assistance listing %q must look like 47.070", ErrInvalid, s.FederalID)
	}
	if s.Status == "" {
		s.Status = "active"
	}
	if !validStatus(s.Status) {
		return fmt.Errorf("%w: status %q must be one of %s", ErrInvalid, s.Status, strings.Join(grantStatuses, ", "))
	}
	return nil
}

// grantLock is the advisory-lock class of grants ('ASBG'); the SQL
// functions use the same.
const grantLock = 1095975495

// CreateGrant records a grant and generates its budget periods.
func (l *Ledger) CreateGrant(ctx context.Context, spec GrantSpec) (Grant, error) {
	if err := spec.validate(); err != nil {
		return Grant{}, err
	}
	carry := true
	if spec.CarryForward != nil {
		carry = *spec.CarryForward
	}
	if spec.CoPIs == nil {
		spec.CoPIs = []string{}
	}
	periods := planPeriods(spec.Start, spec.End, spec.PeriodMonths, spec.Amount)
	err := l.InTx(ctx, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO grants (number, agency, program, pi, co_pis, institution, department, amount,
				currency, starts_on, ends_on, period_months, indirect_rate, federal_id, status, carry_forward, timezone, actor)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id`,
			spec.Number, spec.Agency, spec.Program, spec.PI, spec.CoPIs, spec.Institution, spec.Department, spec.Amount,
			l.cfg.Pricing.Currency, Date(spec.Start), Date(spec.End), spec.PeriodMonths, spec.IndirectRate, spec.FederalID,
			spec.Status, carry, l.cfg.AllocationTimezone(), spec.Actor).Scan(&id)
		if err != nil {
			err = dbErr("create grant "+spec.Number, err)
			if errors.Is(err, ErrConflict) {
				return fmt.Errorf("%w: grant %s already exists", ErrConflict, spec.Number)
			}
			return err
		}
		for i, p := range periods {
			if _, err := tx.Exec(ctx, `INSERT INTO grant_periods (grant_id, period, starts_on, ends_on) VALUES ($1, $2, $3, $4)`,
				id, i+1, p.start, p.end); err != nil {
				return dbErr("create grant periods", err)
			}
			if _, err := tx.Exec(ctx, `SELECT asbb_grant_entry($1, $2, 'budget', NULL, NULL, NULL, NULL, 0, 1, 0, 0, $3, $4, $5)`,
				id, i+1, p.budget, spec.Actor, "initial budget (even split of the award)"); err != nil {
				return dbErr("budget grant periods", err)
			}
		}
		return nil
	})
	if err != nil {
		return Grant{}, err
	}
	l.log.Info("grant created", "grant", spec.Number, "amount", spec.Amount.String(), "periods", len(periods), "actor", spec.Actor)
	return l.GetGrant(ctx, spec.Number)
}

const grantCols = `g.id, g.number, g.agency, g.program, g.pi, g.co_pis, g.institution, g.department, g.amount, g.currency,
	g.starts_on, g.ends_on, g.period_months, g.indirect_rate, g.federal_id, g.status, g.carry_forward, g.timezone,
	g.actor, g.created_at, g.updated_at,
	(SELECT count(*) FROM grant_periods p WHERE p.grant_id = g.id),
	(SELECT coalesce(sum(p.spent), 0) FROM grant_periods p WHERE p.grant_id = g.id),
	(SELECT coalesce(sum(p.held), 0) FROM grant_periods p WHERE p.grant_id = g.id),
	coalesce((SELECT array_agg(a.slurm_account ORDER BY a.slurm_account) FROM grant_accounts ga
	          JOIN accounts a ON a.id = ga.account_id WHERE ga.grant_id = g.id), '{}')`

func scanGrant(row pgx.Row) (Grant, error) {
	var g Grant
	var start, end time.Time
	err := row.Scan(&g.ID, &g.Number, &g.Agency, &g.Program, &g.PI, &g.CoPIs, &g.Institution, &g.Department, &g.Amount,
		&g.Currency, &start, &end, &g.PeriodMonths, &g.IndirectRate, &g.FederalID, &g.Status, &g.CarryForward,
		&g.Timezone, &g.Actor, &g.CreatedAt, &g.UpdatedAt, &g.Periods, &g.Spent, &g.Held, &g.Accounts)
	g.StartDate, g.EndDate = start.Format(time.DateOnly), end.Format(time.DateOnly)
	return g, err
}

// GetGrant reads a grant by number.
func (l *Ledger) GetGrant(ctx context.Context, number string) (Grant, error) {
	if err := ValidateGrantNumber(number); err != nil {
		return Grant{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	g, err := scanGrant(l.pool.QueryRow(ctx, `SELECT `+grantCols+` FROM grants g WHERE g.number = $1`, number))
	if isNoRows(err) {
		return g, fmt.Errorf("%w: grant %s", ErrNotFound, number)
	}
	return g, dbErr("read grant", err)
}

// GrantFilter narrows ListGrants.
type GrantFilter struct {
	// ActiveOn, when set, keeps grants with status active whose dates
	// include that day (in each grant's zone).
	ActiveOn *time.Time
	Status   string
}

// ListGrants lists grants by number.
func (l *Ledger) ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error) {
	if f.Status != "" && !validStatus(f.Status) {
		return nil, fmt.Errorf("%w: status %q must be one of %s", ErrInvalid, f.Status, strings.Join(grantStatuses, ", "))
	}
	rows, err := l.pool.Query(ctx, `SELECT `+grantCols+` FROM grants g
		WHERE ($1 = '' OR g.status = $1)
		  AND ($2::timestamptz IS NULL OR (g.status = 'active'
		       AND ($2 AT TIME ZONE g.timezone)::date BETWEEN g.starts_on AND g.ends_on))
		ORDER BY g.number`, f.Status, f.ActiveOn)
	if err != nil {
		return nil, dbErr("list grants", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, dbErr("list grants", err)
		}
		out = append(out, g)
	}
	return out, dbErr("list grants", rows.Err())
}

// GrantPatch changes a grant's descriptive fields, status, carry-forward
// rule or indirect rate (which applies to holds and charges from then on;
// existing holds keep the rate they were taken at). Dates, amount and
// period length are fixed once periods exist: edit period budgets instead.
type GrantPatch struct {
	Agency       *string
	Program      *string
	PI           *string
	CoPIs        *[]string
	Institution  *string
	Department   *string
	FederalID    *string
	Status       *string
	CarryForward *bool
	IndirectRate *decimal.Decimal
}

// UpdateGrant applies a patch.
func (l *Ledger) UpdateGrant(ctx context.Context, number string, p GrantPatch, actor string) (Grant, error) {
	for _, f := range []struct {
		name     string
		v        *string
		required bool
	}{{"agency", p.Agency, true}, {"program", p.Program, false}, {"PI", p.PI, true},
		{"institution", p.Institution, false}, {"department", p.Department, false}} {
		if f.v != nil {
			if err := checkText(f.name, *f.v, f.required, 200); err != nil {
				return Grant{}, err
			}
		}
	}
	if p.CoPIs != nil {
		if len(*p.CoPIs) > 50 {
			return Grant{}, fmt.Errorf("%w: at most 50 co-PIs", ErrInvalid)
		}
		for _, c := range *p.CoPIs {
			if err := checkText("co-PI", c, true, 200); err != nil {
				return Grant{}, err
			}
		}
	}
	if p.FederalID != nil && *p.FederalID != "" && !federalIDRE.MatchString(*p.FederalID) {
		return Grant{}, fmt.Errorf("%w: federal assistance listing %q must look like 47.070", ErrInvalid, *p.FederalID)
	}
	if p.Status != nil && !validStatus(*p.Status) {
		return Grant{}, fmt.Errorf("%w: status %q must be one of %s", ErrInvalid, *p.Status, strings.Join(grantStatuses, ", "))
	}
	if p.IndirectRate != nil {
		if err := checkIndirect(*p.IndirectRate); err != nil {
			return Grant{}, err
		}
	}
	if _, err := l.GetGrant(ctx, number); err != nil {
		return Grant{}, err
	}
	_, err := l.pool.Exec(ctx, `UPDATE grants SET agency = coalesce($2, agency), program = coalesce($3, program),
			pi = coalesce($4, pi), co_pis = coalesce($5, co_pis), institution = coalesce($6, institution),
			department = coalesce($7, department), federal_id = coalesce($8, federal_id), status = coalesce($9, status),
			carry_forward = coalesce($10, carry_forward), indirect_rate = coalesce($11, indirect_rate), updated_at = now()
		WHERE number = $1`, number, p.Agency, p.Program, p.PI, p.CoPIs, p.Institution, p.Department, p.FederalID,
		p.Status, p.CarryForward, p.IndirectRate)
	if err != nil {
		return Grant{}, dbErr("update grant "+number, err)
	}
	l.log.Info("grant updated", "grant", number, "actor", actor)
	return l.GetGrant(ctx, number)
}

const periodCols = `g.number, p.period, p.starts_on, p.ends_on, p.budget, p.adjusted, p.held, p.spent, p.status, p.closed_at`

func scanPeriod(row pgx.Row) (GrantPeriod, error) {
	var p GrantPeriod
	var s, e time.Time
	err := row.Scan(&p.Grant, &p.Period, &s, &e, &p.Budget, &p.Adjusted, &p.Held, &p.Spent, &p.Status, &p.ClosedAt)
	p.StartDate, p.EndDate = s.Format(time.DateOnly), e.Format(time.DateOnly)
	p.Remaining = p.Budget.Add(p.Adjusted).Sub(p.Held).Sub(p.Spent)
	return p, err
}

// GrantPeriods lists a grant's budget periods.
func (l *Ledger) GrantPeriods(ctx context.Context, number string) ([]GrantPeriod, error) {
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, `SELECT `+periodCols+` FROM grant_periods p JOIN grants g ON g.id = p.grant_id
		WHERE p.grant_id = $1 ORDER BY p.period`, g.ID)
	if err != nil {
		return nil, dbErr("list grant periods", err)
	}
	defer rows.Close()
	var out []GrantPeriod
	for rows.Next() {
		p, err := scanPeriod(rows)
		if err != nil {
			return nil, dbErr("list grant periods", err)
		}
		out = append(out, p)
	}
	return out, dbErr("list grant periods", rows.Err())
}

// SetPeriodBudget changes the budget of an open period. The periods'
// budgets may not add up to more than the award; move money between
// periods by lowering one first. The change is a 'budget' grant entry.
func (l *Ledger) SetPeriodBudget(ctx context.Context, number string, period int, budget decimal.Decimal, actor string) (GrantPeriod, error) {
	if budget.IsNegative() {
		return GrantPeriod{}, fmt.Errorf("%w: a period budget must not be negative", ErrInvalid)
	}
	if err := checkRange(budget); err != nil {
		return GrantPeriod{}, err
	}
	if err := checkCents("period budget", budget); err != nil {
		return GrantPeriod{}, err
	}
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return GrantPeriod{}, err
	}
	err = l.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2::integer)`, grantLock, g.ID); err != nil {
			return dbErr("lock grant", err)
		}
		var cur, others decimal.Decimal
		var status string
		err := tx.QueryRow(ctx, `SELECT p.budget, p.status,
				(SELECT coalesce(sum(o.budget), 0) FROM grant_periods o WHERE o.grant_id = p.grant_id AND o.period <> p.period)
			FROM grant_periods p WHERE p.grant_id = $1 AND p.period = $2`, g.ID, period).Scan(&cur, &status, &others)
		if isNoRows(err) {
			return fmt.Errorf("%w: grant %s has no period %d", ErrNotFound, number, period)
		}
		if err != nil {
			return dbErr("read period", err)
		}
		if status != "open" {
			return fmt.Errorf("%w: period %d of grant %s is closed", ErrConflict, period, number)
		}
		if others.Add(budget).GreaterThan(g.Amount) {
			return fmt.Errorf("%w: period budgets would add up to %s, more than the award %s (lower another period first)",
				ErrInvalid, others.Add(budget), g.Amount)
		}
		if budget.Equal(cur) {
			return nil
		}
		_, err = tx.Exec(ctx, `SELECT asbb_grant_entry($1, $2, 'budget', NULL, NULL, NULL, NULL, 0, 1, 0, 0, $3, $4, $5)`,
			g.ID, period, budget.Sub(cur), actor, fmt.Sprintf("period budget %s -> %s", cur, budget))
		return dbErr("set period budget", err)
	})
	if err != nil {
		return GrantPeriod{}, err
	}
	ps, err := l.GrantPeriods(ctx, number)
	if err != nil {
		return GrantPeriod{}, err
	}
	return ps[period-1], nil
}

// LinkGrant makes an account (and its sub-accounts) draw on a grant. An
// account draws on at most one grant, and links never overlap on one
// branch of the hierarchy. Holds taken before the link do not count on the
// grant; charges from then on do. Linking again to the same grant is a
// no-op.
func (l *Ledger) LinkGrant(ctx context.Context, number, cluster, account, actor string) error {
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return err
	}
	return l.InTx(ctx, func(tx pgx.Tx) error {
		a, err := l.resolve(ctx, tx, cluster, account)
		if err != nil {
			return err
		}
		if a.Currency != g.Currency {
			return fmt.Errorf("%w: currency mismatch: account %s is in %s, grant %s in %s", ErrInvalid, account, a.Currency, number, g.Currency)
		}
		// Serialise links (and holds on the grant) while we look.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2::integer)`, grantLock, g.ID); err != nil {
			return dbErr("lock grant", err)
		}
		var other string
		var otherGrant int64
		err = tx.QueryRow(ctx, `SELECT o.slurm_account, ga.grant_id FROM grant_accounts ga JOIN accounts o ON o.id = ga.account_id
			JOIN accounts a ON a.id = $1
			WHERE ga.account_id = ANY (a.path) OR a.id = ANY (o.path) ORDER BY o.depth LIMIT 1`, a.ID).Scan(&other, &otherGrant)
		switch {
		case isNoRows(err):
		case err != nil:
			return dbErr("check grant links", err)
		case other == a.SlurmAccount && otherGrant == g.ID:
			return nil
		default:
			return fmt.Errorf("%w: account %s already draws on a grant through %s", ErrConflict, account, other)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO grant_accounts (account_id, grant_id, actor) VALUES ($1, $2, $3)`, a.ID, g.ID, actor); err != nil {
			return dbErr("link grant", err)
		}
		l.log.Info("grant linked", "grant", number, "account", account, "actor", actor)
		return nil
	})
}

// GrantEntries lists a grant's ledger, oldest first (period 0 = all).
func (l *Ledger) GrantEntries(ctx context.Context, number string, period, limit int) ([]GrantEntry, error) {
	if limit <= 0 || limit > 100000 {
		limit = 1000
	}
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, `SELECT e.id, e.period, e.type, a.slurm_account, e.ledger_id, e.hold_id, e.charge_id,
			e.direct, e.factor, e.d_held, e.d_spent, e.d_budget, e.actor, e.reason, e.created_at
		FROM grant_entries e LEFT JOIN accounts a ON a.id = e.account_id
		WHERE e.grant_id = $1 AND ($2 = 0 OR e.period = $2) ORDER BY e.id LIMIT $3`, g.ID, period, limit)
	if err != nil {
		return nil, dbErr("list grant entries", err)
	}
	defer rows.Close()
	var out []GrantEntry
	for rows.Next() {
		var e GrantEntry
		if err := rows.Scan(&e.ID, &e.Period, &e.Type, &e.Account, &e.LedgerID, &e.HoldID, &e.ChargeID, &e.Direct,
			&e.Factor, &e.DHeld, &e.DSpent, &e.DBudget, &e.Actor, &e.Reason, &e.CreatedAt); err != nil {
			return nil, dbErr("list grant entries", err)
		}
		out = append(out, e)
	}
	return out, dbErr("list grant entries", rows.Err())
}

// ClosePeriods closes every open period that ended before now's date (in
// each grant's zone), in order: active holds move to the next period and
// the unspent remainder is carried forward or lapses (see
// asbb_grant_close_period). The last period of a grant waits until its
// holds are gone (outcome active_holds).
func (l *Ledger) ClosePeriods(ctx context.Context, now time.Time, actor string) ([]PeriodClose, error) {
	rows, err := l.pool.Query(ctx, `SELECT g.id, g.number, p.period, ($1::timestamptz AT TIME ZONE g.timezone)::date
		FROM grant_periods p JOIN grants g ON g.id = p.grant_id
		WHERE p.status = 'open' AND p.ends_on < ($1::timestamptz AT TIME ZONE g.timezone)::date
		ORDER BY g.id, p.period`, now)
	if err != nil {
		return nil, dbErr("find ended grant periods", err)
	}
	type due struct {
		id     int64
		number string
		period int
		today  time.Time
	}
	var ds []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.number, &d.period, &d.today); err != nil {
			rows.Close()
			return nil, dbErr("find ended grant periods", err)
		}
		ds = append(ds, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbErr("find ended grant periods", err)
	}
	var out []PeriodClose
	blocked := map[int64]bool{}
	for _, d := range ds {
		if blocked[d.id] {
			continue
		}
		pc := PeriodClose{Grant: d.number, Period: d.period}
		var unspent, carried, lapsed *decimal.Decimal
		err := l.InTx(ctx, func(tx pgx.Tx) error {
			return dbErr("close grant period", tx.QueryRow(ctx, `SELECT outcome, unspent, carried, lapsed
				FROM asbb_grant_close_period($1, $2, $3, $4)`, d.id, d.period, d.today, actor).
				Scan(&pc.Outcome, &unspent, &carried, &lapsed))
		})
		if err != nil {
			return out, err
		}
		switch pc.Outcome {
		case "closed":
			pc.Unspent, pc.Carried, pc.Lapsed = *unspent, *carried, *lapsed
			l.log.Info("grant period closed", "grant", d.number, "period", d.period, "unspent", pc.Unspent.String(),
				"carried_forward", pc.Carried.String(), "lapsed", pc.Lapsed.String())
		case "already_closed", "not_ended":
			continue // a racing processor did it, or the day has not turned yet in the grant's zone
		default:
			blocked[d.id] = true
		}
		out = append(out, pc)
	}
	return out, nil
}

// verifyGrants checks, inside Verify's snapshot, that every grant period's
// sums equal its entries, that each counted ledger row is followed exactly
// (direct × factor) into the grant, that every counted hold holds in the
// grant what it holds on its account, and that schedules never deposited
// more than their total or an installment twice.
func verifyGrants(ctx context.Context, tx pgx.Tx, rep *VerifyReport) error {
	checks := []struct{ what, q string }{
		{"grant periods whose sums differ from their entries", `SELECT count(*) FROM grant_periods p
			LEFT JOIN (SELECT grant_id, period,
			                  sum(d_budget) FILTER (WHERE type = 'budget') AS b, sum(d_budget) FILTER (WHERE type <> 'budget') AS a,
			                  sum(d_held) AS h, sum(d_spent) AS s
			           FROM grant_entries GROUP BY grant_id, period) e USING (grant_id, period)
			WHERE p.budget <> coalesce(e.b, 0) OR p.adjusted <> coalesce(e.a, 0)
			   OR p.held <> coalesce(e.h, 0) OR p.spent <> coalesce(e.s, 0)`},
		{"grant entries that are not direct × factor", `SELECT count(*) FROM grant_entries
			WHERE d_held + d_spent <> direct * factor AND type NOT IN ('budget', 'carry_forward', 'lapse')`},
		{"ledger rows whose spending differs from their grant entries", `SELECT count(*) FROM ledger l
			JOIN (SELECT ledger_id, sum(direct) AS d FROM grant_entries WHERE ledger_id IS NOT NULL AND d_spent <> 0
			      GROUP BY ledger_id) e ON e.ledger_id = l.id
			WHERE l.d_spent <> e.d`},
		{"grant holds whose held differs from the hold", `SELECT count(*) FROM grant_holds gh JOIN holds h ON h.id = gh.hold_id
			LEFT JOIN (SELECT hold_id, sum(d_held) AS s FROM grant_entries WHERE hold_id IS NOT NULL GROUP BY hold_id) e
			  ON e.hold_id = gh.hold_id
			WHERE coalesce(e.s, 0) <> h.remaining * gh.factor`},
		{"closed grant periods that still hold money", `SELECT count(*) FROM grant_periods WHERE status = 'closed' AND held <> 0`},
		{"schedules that deposited more than their total or not as recorded", `SELECT count(*) FROM allocation_schedules s
			LEFT JOIN (SELECT schedule_id, sum(amount) AS t, count(*) AS n FROM allocations WHERE schedule_id IS NOT NULL
			           GROUP BY schedule_id) al ON al.schedule_id = s.id
			WHERE coalesce(al.t, 0) > s.total OR coalesce(al.n, 0) <> s.next_installment - 1`},
	}
	for _, c := range checks {
		var n int64
		if err := tx.QueryRow(ctx, c.q).Scan(&n); err != nil {
			return dbErr("verify grants", err)
		}
		if n > 0 {
			rep.Problems = append(rep.Problems, VerifyProblem{Problem: fmt.Sprintf("%d %s", n, c.what)})
		}
	}
	return nil
}
