package budget

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Burn rate: how fast an account (or a grant) spends, against how fast it
// should, and where that leads. Everything here is computed in Go from the
// ledger's running totals (deposited_after, spent_after, held_after): the
// net spend between two instants is the difference of two snapshots, each
// found with one probe of the (account_id, created_at) index, so a window's
// cost does not grow with the number of entries in it. docs/analytics.md
// documents the formulas; computeBurn is the one place that applies them.

// Health statuses (bands of the health score) and burn-rate statuses (the
// sign of the variance beyond the configured tolerance).
const (
	HealthHealthy  = "HEALTHY"  // score 80-100
	HealthConcern  = "CONCERN"  // 60-79
	HealthWarning  = "WARNING"  // 40-59
	HealthCritical = "CRITICAL" // 0-39

	BurnOnTrack       = "ON_TRACK"
	BurnOverspending  = "OVERSPENDING"
	BurnUnderspending = "UNDERSPENDING"
	BurnNoBaseline    = "NO_BASELINE" // no expected rate to compare with
)

// Expected-rate sources, in order of preference.
const (
	ExpectedGrantPeriod    = "grant_period"    // the current budget period's budget over its days
	ExpectedSchedule       = "schedule"        // an allocation schedule's installments per day
	ExpectedRemainingFunds = "remaining_funds" // the funds left at the window start over the days to the end
	ExpectedNone           = "none"            // no end date and no schedule: nothing to compare with
)

// runwayHorizon is the runway that counts as fully healthy for an account
// with no end date (there is no "time remaining" to compare with).
const runwayHorizon = 90

// maxProjectionDays bounds an exhaustion date: beyond ten years the
// projection says "not within the horizon" rather than print a silly date.
const maxProjectionDays = 3660

// Window is the span of history a burn rate is computed over: [From, To).
type Window struct {
	Period string          `json:"period"` // "30d", "6m", ... or "custom"
	From   time.Time       `json:"from"`
	To     time.Time       `json:"to"`
	Days   decimal.Decimal `json:"days"` // calendar days in the window, at least 1
}

var periodRE = regexp.MustCompile(`^([1-9][0-9]{0,3})([dwmy])$`)

// ParseWindow turns "7d", "30d", "90d", "6m", "1y" (any count of days,
// weeks, months or years up to ten years) into the window that ends at now.
// Months and years are calendar months and years in loc.
func ParseWindow(period string, now time.Time, loc *time.Location) (Window, error) {
	m := periodRE.FindStringSubmatch(period)
	if m == nil {
		return Window{}, fmt.Errorf("%w: period %q is not like 7d, 30d, 90d, 6m or 1y", ErrInvalid, period)
	}
	n, _ := strconv.Atoi(m[1])
	t := now.In(loc)
	var from time.Time
	switch m[2] {
	case "d":
		from = t.AddDate(0, 0, -n)
	case "w":
		from = t.AddDate(0, 0, -7*n)
	case "m":
		from = t.AddDate(0, -n, 0)
	case "y":
		from = t.AddDate(-n, 0, 0)
	}
	if spanDays(from, t, loc).GreaterThan(decimal.NewFromInt(maxProjectionDays)) {
		return Window{}, fmt.Errorf("%w: period %q is longer than ten years", ErrInvalid, period)
	}
	return Window{Period: period, From: from, To: now}, nil
}

// WindowBetween is a custom window [from, to).
func WindowBetween(from, to time.Time) (Window, error) {
	if !to.After(from) {
		return Window{}, fmt.Errorf("%w: the end of the window must be after its start", ErrInvalid)
	}
	if to.Sub(from) > maxProjectionDays*24*time.Hour {
		return Window{}, fmt.Errorf("%w: a window may span at most ten years", ErrInvalid)
	}
	return Window{Period: "custom", From: from, To: to}, nil
}

// spanDays is the number of days from a to b in loc: whole calendar days
// plus the difference of the times of day, so that a window across a
// daylight-saving change still counts 7 days for "7d".
func spanDays(a, b time.Time, loc *time.Location) decimal.Decimal {
	a, b = a.In(loc), b.In(loc)
	days := civilDay(b) - civilDay(a)
	secs := secondsOfDay(b) - secondsOfDay(a)
	return decimal.NewFromInt(days).Add(decimal.NewFromInt(secs).DivRound(decimal.NewFromInt(86400), 6))
}

func civilDay(t time.Time) int64 {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400
}

func secondsOfDay(t time.Time) int64 {
	return int64(t.Hour()*3600 + t.Minute()*60 + t.Second())
}

// startOfDay is local midnight of t's day in loc.
func startOfDay(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

// addDays adds a decimal number of days to t (a projection's date).
func addDays(t time.Time, days decimal.Decimal) time.Time {
	secs := days.Mul(decimal.NewFromInt(86400)).Round(0).IntPart()
	return t.Add(time.Duration(secs) * time.Second)
}

// Funds are an account's (or grant's) totals at one instant.
type Funds struct {
	Deposited decimal.Decimal `json:"deposited"`
	Spent     decimal.Decimal `json:"spent"`
	Held      decimal.Decimal `json:"held"`
	// Remaining is deposited − spent − held: own funds not yet spent or
	// committed to running jobs. The overdraft (credit limit) is left out:
	// projections say when the budget itself runs out.
	Remaining decimal.Decimal `json:"remaining"`
	// Available adds the credit limit: what admission checks a hold against.
	Available decimal.Decimal `json:"available"`
}

func fundsOf(dep, spent, held, credit decimal.Decimal) Funds {
	rem := dep.Sub(spent).Sub(held)
	return Funds{Deposited: dep, Spent: spent, Held: held, Remaining: rem, Available: rem.Add(credit)}
}

// BurnRate is the answer of AccountBurnRate and GrantBurnRate.
type BurnRate struct {
	Kind     string    `json:"kind"`   // "account" or "grant"
	Target   string    `json:"target"` // the Slurm account or the grant number
	Currency string    `json:"currency"`
	AsOf     time.Time `json:"as_of"`
	Window   Window    `json:"window"`
	Funds    Funds     `json:"funds"`
	// Budget is what PercentUsed is measured against: the account's
	// deposits, or the grant period's budget.
	Budget      decimal.Decimal  `json:"budget"`
	PercentUsed *decimal.Decimal `json:"percent_used,omitempty"` // (spent + held) / budget × 100

	SpentInWindow     decimal.Decimal  `json:"spent_in_window"`
	DailyRate         decimal.Decimal  `json:"daily_rate"`
	ExpectedDailyRate *decimal.Decimal `json:"expected_daily_rate,omitempty"`
	ExpectedSource    string           `json:"expected_source"`
	VariancePercent   *decimal.Decimal `json:"variance_percent,omitempty"`
	BurnStatus        string           `json:"burn_rate_status"`
	HealthScore       int              `json:"health_score"`
	HealthStatus      string           `json:"health_status"`
	Health            HealthBreakdown  `json:"health_breakdown"`

	// PeriodEnd is the end the spending is measured against: the grant
	// period's (or grant's) end, or the account's end date.
	PeriodEnd     *time.Time `json:"period_end,omitempty"`
	DaysRemaining *int       `json:"days_remaining,omitempty"`
	Projection    Projection `json:"projection"`
	Series        []DayPoint `json:"series,omitempty"`
}

// HealthBreakdown shows the three parts of the health score.
type HealthBreakdown struct {
	Runway     decimal.Decimal `json:"runway"`     // 0-50
	Pace       decimal.Decimal `json:"pace"`       // 0-40
	Commitment decimal.Decimal `json:"commitment"` // 0-10
}

// Projection extends the actual daily rate into the future. Active holds
// are already subtracted from Remaining: they count as committed spend.
type Projection struct {
	DailyRate decimal.Decimal `json:"daily_rate"`
	Committed decimal.Decimal `json:"committed"` // active holds
	// ExhaustionDate is when Remaining reaches zero at DailyRate (nil: the
	// rate is zero or the date is beyond ten years).
	ExhaustionDate   *time.Time       `json:"exhaustion_date,omitempty"`
	DaysToExhaustion *decimal.Decimal `json:"days_to_exhaustion,omitempty"`
	// Set when there is a period end to project to.
	ProjectedSpend    *decimal.Decimal `json:"projected_spend,omitempty"` // from now to the end
	EndBalance        *decimal.Decimal `json:"end_balance,omitempty"`     // Remaining − ProjectedSpend
	Overrun           *decimal.Decimal `json:"overrun,omitempty"`         // max(0, −EndBalance)
	ExhaustsBeforeEnd bool             `json:"exhausts_before_end"`
}

// DayPoint is one day of the series (local calendar day of the window).
type DayPoint struct {
	Date       string          `json:"date"`
	Spent      decimal.Decimal `json:"spent"`      // net spend that day
	Cumulative decimal.Decimal `json:"cumulative"` // since the window start
	Remaining  decimal.Decimal `json:"remaining"`  // deposited − spent − held at the end of the day
	// Expected is the cumulative expected spend at the end of the day.
	Expected *decimal.Decimal `json:"expected,omitempty"`
}

// burnInput is everything computeBurn needs; it is filled from the ledger
// (or by hand, in tests).
type burnInput struct {
	asOf      time.Time
	loc       *time.Location
	window    Window // From already clamped to the account's start
	spent     decimal.Decimal
	funds     Funds
	budget    decimal.Decimal
	end       *time.Time
	expected  *decimal.Decimal // given (grant period, schedule); nil = derive
	source    string
	tolerance decimal.Decimal // variance percent that counts as on track
}

var (
	hundred = decimal.NewFromInt(100)
	one     = decimal.NewFromInt(1)
)

// computeBurn applies the documented formulas (docs/analytics.md).
func computeBurn(in burnInput) BurnRate {
	b := BurnRate{AsOf: in.asOf, Window: in.window, Funds: in.funds, Budget: in.budget, SpentInWindow: in.spent,
		PeriodEnd: in.end}
	days := spanDays(in.window.From, in.window.To, in.loc)
	if days.LessThan(one) {
		// A window shorter than a day (an account opened this morning)
		// would extrapolate an hour's spend into a daily rate.
		days = one
	}
	b.Window.Days = days
	b.DailyRate = in.spent.DivRound(days, Scale)
	if in.budget.IsPositive() {
		p := in.funds.Spent.Add(in.funds.Held).Mul(hundred).DivRound(in.budget, 2)
		b.PercentUsed = &p
	}

	// Days from now to the end, when there is an end still ahead.
	var toEnd *decimal.Decimal
	if in.end != nil {
		d := spanDays(in.asOf, *in.end, in.loc)
		if d.IsNegative() {
			d = decimal.Zero
		}
		toEnd = &d
		n := int(d.Ceil().IntPart())
		b.DaysRemaining = &n
	}

	// Expected daily rate.
	b.ExpectedSource = ExpectedNone
	switch {
	case in.expected != nil:
		e := in.expected.Round(Scale)
		b.ExpectedDailyRate, b.ExpectedSource = &e, in.source
	case in.end != nil && in.end.After(in.window.From):
		// The funds there were for the rest of the period at the window
		// start (what is left now plus what the window spent), spread
		// evenly over the days from the window start to the end.
		span := spanDays(in.window.From, *in.end, in.loc)
		if span.LessThan(one) {
			span = one
		}
		e := in.funds.Remaining.Add(in.spent).DivRound(span, Scale)
		if e.IsNegative() {
			e = decimal.Zero
		}
		b.ExpectedDailyRate, b.ExpectedSource = &e, ExpectedRemainingFunds
	}
	b.BurnStatus = BurnNoBaseline
	if e := b.ExpectedDailyRate; e != nil {
		switch {
		case e.IsPositive():
			v := b.DailyRate.Sub(*e).Mul(hundred).DivRound(*e, 2)
			b.VariancePercent = &v
			switch {
			case v.GreaterThan(in.tolerance):
				b.BurnStatus = BurnOverspending
			case v.LessThan(in.tolerance.Neg()):
				b.BurnStatus = BurnUnderspending
			default:
				b.BurnStatus = BurnOnTrack
			}
		case b.DailyRate.IsPositive():
			// Nothing was expected to be spent and something was.
			b.BurnStatus = BurnOverspending
		default:
			b.BurnStatus = BurnOnTrack
		}
	}

	// Projection.
	p := Projection{DailyRate: b.DailyRate, Committed: in.funds.Held}
	rem := in.funds.Remaining
	switch {
	case !rem.IsPositive():
		t := in.asOf
		z := decimal.Zero
		p.ExhaustionDate, p.DaysToExhaustion = &t, &z
	case b.DailyRate.IsPositive():
		d := rem.DivRound(b.DailyRate, 2)
		if d.LessThanOrEqual(decimal.NewFromInt(maxProjectionDays)) {
			t := addDays(in.asOf, d)
			p.ExhaustionDate, p.DaysToExhaustion = &t, &d
		}
	}
	if toEnd != nil {
		spend := b.DailyRate.Mul(*toEnd).Round(Scale)
		end := rem.Sub(spend)
		over := decimal.Max(decimal.Zero, end.Neg())
		p.ProjectedSpend, p.EndBalance, p.Overrun = &spend, &end, &over
		p.ExhaustsBeforeEnd = p.ExhaustionDate != nil && p.ExhaustionDate.Before(*in.end)
	}
	b.Projection = p

	b.Health = healthOf(rem, in.funds.Held, b.DailyRate, toEnd, b.VariancePercent, b.ExpectedDailyRate)
	score := b.Health.Runway.Add(b.Health.Pace).Add(b.Health.Commitment).Round(0).IntPart()
	b.HealthScore = int(max(0, min(100, score)))
	b.HealthStatus = HealthStatusOf(b.HealthScore)
	return b
}

// healthOf is the health score formula (docs/analytics.md, "Health score"):
//
//	runway     (0-50) = 50 × min(1, runway days / days needed), where runway
//	             days = remaining / daily rate and days needed = days to the
//	             period end, or 90 without an end. Nothing left scores 0;
//	             nothing spent with money left scores 50.
//	pace       (0-40) = 40 × clamp(1 − max(0, d − 10) / 90), where d is the
//	             variance when overspending and half its size when
//	             underspending: within ±10% scores 40, +100% scores 0.
//	             Without an expected rate, pace = 40 × runway / 50.
//	commitment (0-10) = 10 × remaining / (remaining + held): money tied up
//	             in holds is money that cannot absorb a surprise.
func healthOf(remaining, held, rate decimal.Decimal, toEnd, variance, expected *decimal.Decimal) HealthBreakdown {
	fifty, forty, ten := decimal.NewFromInt(50), decimal.NewFromInt(40), decimal.NewFromInt(10)
	var h HealthBreakdown
	need := decimal.NewFromInt(runwayHorizon)
	if toEnd != nil {
		need = *toEnd
	}
	switch {
	case !remaining.IsPositive():
		h.Runway = decimal.Zero
	case !rate.IsPositive() || !need.IsPositive():
		h.Runway = fifty
	default:
		runway := remaining.DivRound(rate, 8)
		h.Runway = fifty.Mul(decimal.Min(one, runway.DivRound(need, 8)))
	}
	if variance != nil {
		d := *variance
		if d.IsNegative() {
			d = d.Neg().Div(decimal.NewFromInt(2))
		}
		excess := decimal.Max(decimal.Zero, d.Sub(ten))
		f := one.Sub(excess.DivRound(decimal.NewFromInt(90), 8))
		h.Pace = forty.Mul(decimal.Min(one, decimal.Max(decimal.Zero, f)))
	} else if expected != nil && rate.IsPositive() {
		// Expected zero, actual positive: as bad as it gets.
		h.Pace = decimal.Zero
	} else {
		h.Pace = forty.Mul(h.Runway).DivRound(fifty, 8)
	}
	if remaining.IsPositive() {
		h.Commitment = ten.Mul(remaining).DivRound(remaining.Add(held), 8)
	}
	h.Runway, h.Pace, h.Commitment = h.Runway.Round(2), h.Pace.Round(2), h.Commitment.Round(2)
	return h
}

// HealthStatusOf maps a score to its band.
func HealthStatusOf(score int) string {
	switch {
	case score >= 80:
		return HealthHealthy
	case score >= 60:
		return HealthConcern
	case score >= 40:
		return HealthWarning
	}
	return HealthCritical
}

// snapshot is an account's running totals after one ledger entry.
type snapshot struct {
	id                     int64
	deposited, spent, held decimal.Decimal
}

// snapshotsAt returns, for each instant, the running totals after the last
// entry of the account posted before it (zero before its first entry). Each
// is one backward probe of ledger_account_time; ties of created_at (rows of
// one transaction) are broken by id.
func snapshotsAt(ctx context.Context, q DBTX, accountID int64, at []time.Time) ([]snapshot, error) {
	rows, err := q.Query(ctx, `SELECT s.id, s.deposited_after, s.spent_after, s.held_after
		FROM unnest($2::timestamptz[]) WITH ORDINALITY AS b(t, i)
		LEFT JOIN LATERAL (SELECT id, deposited_after, spent_after, held_after FROM ledger
		                   WHERE account_id = $1 AND created_at < b.t
		                   ORDER BY created_at DESC, id DESC LIMIT 1) s ON true
		ORDER BY b.i`, accountID, at)
	if err != nil {
		return nil, dbErr("read ledger snapshots", err)
	}
	defer rows.Close()
	out := make([]snapshot, 0, len(at))
	for rows.Next() {
		var id *int64
		var d, s, h *decimal.Decimal
		if err := rows.Scan(&id, &d, &s, &h); err != nil {
			return nil, dbErr("read ledger snapshots", err)
		}
		var sn snapshot
		if id != nil {
			sn = snapshot{id: *id, deposited: *d, spent: *s, held: *h}
		}
		out = append(out, sn)
	}
	return out, dbErr("read ledger snapshots", rows.Err())
}

// BurnOptions selects what a burn-rate answer includes.
type BurnOptions struct {
	Window Window // zero: the last 30 days
	Series bool   // include the daily series
}

func (l *Ledger) defaultWindow(w Window) (Window, error) {
	if !w.From.IsZero() {
		return w, nil
	}
	period := l.cfg.Alerts.Window
	if period == "" {
		period = "30d"
	}
	return ParseWindow(period, l.now(), l.cfg.Location())
}

// AccountBurnRate computes the burn rate of one account over a window:
// its actual daily spend (charges net of refunds and corrections, on the
// account and its sub-accounts), the expected rate, variance, health and a
// projection that counts active holds as committed.
func (l *Ledger) AccountBurnRate(ctx context.Context, cluster, account string, o BurnOptions) (BurnRate, error) {
	a, err := l.resolve(ctx, l.pool, cluster, account)
	if err != nil {
		return BurnRate{}, err
	}
	return l.accountBurnRate(ctx, a, o)
}

func (l *Ledger) accountBurnRate(ctx context.Context, a Account, o BurnOptions) (BurnRate, error) {
	w, err := l.defaultWindow(o.Window)
	if err != nil {
		return BurnRate{}, err
	}
	loc := l.cfg.Location()
	now := l.now()
	if w.To.After(now) {
		w.To = now
	}
	// History cannot start before the account did.
	if opened := startOfDay(a.CreatedAt, loc); w.From.Before(opened) {
		w.From = opened
	}
	if !w.To.After(w.From) {
		w.From = w.To
	}
	exps, err := l.expectedRates(ctx, []Account{a}, now)
	if err != nil {
		return BurnRate{}, err
	}
	exp := exps[a.ID]
	var at []time.Time
	if o.Series {
		at = dayBoundaries(w, loc)
	} else {
		at = []time.Time{w.From, w.To}
	}
	snaps, err := snapshotsAt(ctx, l.pool, a.ID, at)
	if err != nil {
		return BurnRate{}, err
	}
	first, last := snaps[0], snaps[len(snaps)-1]
	in := burnInput{
		asOf: now, loc: loc, window: w,
		spent:     last.spent.Sub(first.spent),
		funds:     fundsOf(a.Deposited, a.Spent, a.Held, a.CreditLimit),
		budget:    a.Deposited,
		end:       a.EndsAt,
		tolerance: decimal.NewFromInt(int64(l.cfg.Alerts.VariancePercent)),
	}
	applyExpectation(&in, exp)
	// When the window ends in the past, the window's own end totals are
	// "now" for the funds.
	if w.To.Before(now.Add(-time.Minute)) {
		in.funds = fundsOf(last.deposited, last.spent, last.held, a.CreditLimit)
		in.asOf = w.To
	}
	b := computeBurn(in)
	b.Kind, b.Target, b.Currency = "account", a.SlurmAccount, a.Currency
	if o.Series {
		b.Series = seriesOf(at, snaps, b.ExpectedDailyRate, loc)
	}
	return b, nil
}

// dayBoundaries are the window's start, every local midnight inside it and
// its end: consecutive pairs are the days of the series.
func dayBoundaries(w Window, loc *time.Location) []time.Time {
	out := []time.Time{w.From}
	d := startOfDay(w.From, loc)
	for {
		t := d.In(loc)
		d = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		if !d.Before(w.To) {
			break
		}
		out = append(out, d)
	}
	return append(out, w.To)
}

func seriesOf(at []time.Time, snaps []snapshot, expected *decimal.Decimal, loc *time.Location) []DayPoint {
	out := make([]DayPoint, 0, len(at)-1)
	cum := decimal.Zero
	for i := 1; i < len(snaps); i++ {
		day := snaps[i].spent.Sub(snaps[i-1].spent)
		cum = cum.Add(day)
		p := DayPoint{Date: at[i-1].In(loc).Format("2006-01-02"), Spent: day, Cumulative: cum,
			Remaining: snaps[i].deposited.Sub(snaps[i].spent).Sub(snaps[i].held)}
		if expected != nil {
			e := expected.Mul(spanDays(at[0], at[i], loc)).Round(Scale)
			p.Expected = &e
		}
		out = append(out, p)
	}
	return out
}

// expectation is an expected rate from a plan (grant period, schedule)
// rather than from the remaining funds.
type expectation struct {
	rate   decimal.Decimal
	source string
	end    *time.Time // the period end the plan runs to
}

// expectedRates finds the plan each account spends against: the grant
// period it draws on, else an active allocation schedule. An account
// missing from the map has no plan, and computeBurn uses its remaining
// funds. Accounts are looked up in bulk, so that the health of ten
// thousand accounts costs a few queries, not ten thousand.
func (l *Ledger) expectedRates(ctx context.Context, accounts []Account, asOf time.Time) (map[int64]*expectation, error) {
	out := map[int64]*expectation{}
	for _, f := range expectationSources {
		todo := make([]Account, 0, len(accounts))
		for _, a := range accounts {
			if out[a.ID] == nil {
				todo = append(todo, a)
			}
		}
		if len(todo) == 0 {
			break
		}
		m, err := f(ctx, l, todo, asOf)
		if err != nil {
			return nil, err
		}
		for id, e := range m {
			out[id] = e
		}
	}
	return out, nil
}

// expectationSources are consulted in order (grant period, then schedule).
var expectationSources = []func(ctx context.Context, l *Ledger, accounts []Account, asOf time.Time) (map[int64]*expectation, error){
	grantExpectations, scheduleExpectations,
}

func accountIDs(accounts []Account) []int64 {
	ids := make([]int64, len(accounts))
	for i, a := range accounts {
		ids[i] = a.ID
	}
	return ids
}

// grantExpectations: an account that is the only account linked to an
// active grant spends against the grant's current period: the period's
// budget (with carry-forward) over its days, in direct cost (the budget
// counts indirect costs too, so it is divided by 1 + the indirect rate),
// until the period's end. When several accounts share a grant, no
// account's share of the period is known: they fall through to the next
// source, and the grant's own burn rate compares the grant with its plan.
func grantExpectations(ctx context.Context, l *Ledger, accounts []Account, asOf time.Time) (map[int64]*expectation, error) {
	rows, err := l.pool.Query(ctx, `SELECT ga.account_id, g.indirect_rate, g.timezone, p.starts_on, p.ends_on, p.budget + p.adjusted
		FROM grant_accounts ga
		JOIN grants g ON g.id = ga.grant_id AND g.status = 'active'
		JOIN grant_periods p ON p.grant_id = g.id
		     AND ($2::timestamptz AT TIME ZONE g.timezone)::date BETWEEN p.starts_on AND p.ends_on
		WHERE ga.account_id = ANY ($1) AND (SELECT count(*) FROM grant_accounts x WHERE x.grant_id = g.id) = 1`,
		accountIDs(accounts), asOf)
	if err != nil {
		return nil, dbErr("read grant periods of accounts", err)
	}
	defer rows.Close()
	out := map[int64]*expectation{}
	for rows.Next() {
		var id int64
		var rate, budget decimal.Decimal
		var tz string
		var start, end time.Time
		if err := rows.Scan(&id, &rate, &tz, &start, &end, &budget); err != nil {
			return nil, dbErr("read grant periods of accounts", err)
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			loc = time.UTC
		}
		days := decimal.NewFromInt(int64(end.Sub(start).Hours()/24) + 1)
		stop := time.Date(end.Year(), end.Month(), end.Day()+1, 0, 0, 0, 0, loc)
		out[id] = &expectation{rate: budget.Div(one.Add(rate)).DivRound(days, Scale), source: ExpectedGrantPeriod, end: &stop}
	}
	return out, dbErr("read grant periods of accounts", rows.Err())
}

// daysPerInstallment is the average length of a schedule's period, in days.
var daysPerInstallment = map[string]decimal.Decimal{
	"daily": decimal.NewFromInt(1), "weekly": decimal.NewFromInt(7),
	"monthly":   decimal.NewFromInt(365).Div(decimal.NewFromInt(12)),
	"quarterly": decimal.NewFromInt(365).Div(decimal.NewFromInt(4)), "yearly": decimal.NewFromInt(365),
}

// scheduleExpectations: an account with active (unpaused, unfinished)
// allocation schedules is expected to spend what they deposit: each
// schedule's installment over the average length of its period (a month
// is 365/12 days), summed. The end is the schedules' end when they all
// have one.
func scheduleExpectations(ctx context.Context, l *Ledger, accounts []Account, asOf time.Time) (map[int64]*expectation, error) {
	rows, err := l.pool.Query(ctx, `SELECT account_id, amount, frequency, ends_at FROM allocation_schedules
		WHERE account_id = ANY ($1) AND NOT paused AND next_due IS NOT NULL ORDER BY account_id, id`, accountIDs(accounts))
	if err != nil {
		return nil, dbErr("read allocation schedules", err)
	}
	defer rows.Close()
	out := map[int64]*expectation{}
	open := map[int64]bool{}
	for rows.Next() {
		var id int64
		var amount decimal.Decimal
		var freq string
		var end *time.Time
		if err := rows.Scan(&id, &amount, &freq, &end); err != nil {
			return nil, dbErr("read allocation schedules", err)
		}
		per, ok := daysPerInstallment[freq]
		if !ok {
			continue
		}
		e := out[id]
		if e == nil {
			e = &expectation{source: ExpectedSchedule}
			out[id] = e
		}
		e.rate = e.rate.Add(amount.DivRound(per, Scale+2))
		switch {
		case end == nil:
			open[id] = true
		case e.end == nil || end.After(*e.end):
			e.end = end
		}
	}
	for id, e := range out {
		e.rate = e.rate.Round(Scale)
		if open[id] {
			e.end = nil
		}
	}
	return out, dbErr("read allocation schedules", rows.Err())
}

// AccountHealth is one row of HealthScores.
type AccountHealth struct {
	Account         string           `json:"account"`
	Currency        string           `json:"currency"`
	HealthScore     int              `json:"health_score"`
	HealthStatus    string           `json:"health_status"`
	BurnStatus      string           `json:"burn_rate_status"`
	DailyRate       decimal.Decimal  `json:"daily_rate"`
	Expected        *decimal.Decimal `json:"expected_daily_rate,omitempty"`
	VariancePercent *decimal.Decimal `json:"variance_percent,omitempty"`
	Remaining       decimal.Decimal  `json:"remaining"`
	PercentUsed     *decimal.Decimal `json:"percent_used,omitempty"`
	ExhaustionDate  *time.Time       `json:"exhaustion_date,omitempty"`
}

// HealthScores computes the health of every account that is not closed
// (or of the named ones) over one window ("" = alerts.window).
func (l *Ledger) HealthScores(ctx context.Context, period string, accounts ...string) ([]AccountHealth, error) {
	burns, err := l.accountBurns(ctx, period, accounts...)
	if err != nil {
		return nil, err
	}
	out := make([]AccountHealth, 0, len(burns))
	for _, x := range burns {
		b := x.burn
		out = append(out, AccountHealth{Account: b.Target, Currency: b.Currency, HealthScore: b.HealthScore,
			HealthStatus: b.HealthStatus, BurnStatus: b.BurnStatus, DailyRate: b.DailyRate, Expected: b.ExpectedDailyRate,
			VariancePercent: b.VariancePercent, Remaining: b.Funds.Remaining, PercentUsed: b.PercentUsed,
			ExhaustionDate: b.Projection.ExhaustionDate})
	}
	return out, nil
}

type accountBurn struct {
	id   int64
	burn BurnRate
}

// accountBurns computes the burn rate (without series) of every account
// that is not closed, or of the named ones, with one query for the totals
// and the window-start snapshots (one index probe per account) and a few
// bulk queries for the expected rates.
func (l *Ledger) accountBurns(ctx context.Context, period string, accounts ...string) ([]accountBurn, error) {
	if period == "" {
		period = l.cfg.Alerts.Window
	}
	if period == "" {
		period = "30d"
	}
	for _, a := range accounts {
		if err := ValidateAccountName(a); err != nil {
			return nil, err
		}
	}
	if accounts == nil {
		accounts = []string{}
	}
	loc := l.cfg.Location()
	now := l.now()
	w, err := ParseWindow(period, now, loc)
	if err != nil {
		return nil, err
	}
	rows, err := l.pool.Query(ctx, `SELECT `+accountCols+`, coalesce(s.spent_after, 0)
		FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id
		LEFT JOIN LATERAL (SELECT spent_after FROM ledger
		                   WHERE account_id = a.id AND created_at < $1
		                   ORDER BY created_at DESC, id DESC LIMIT 1) s ON true
		WHERE a.status <> 'closed' AND (cardinality($2::text[]) = 0 OR a.slurm_account = ANY ($2))
		ORDER BY a.slurm_account, a.cluster`, w.From, accounts)
	if err != nil {
		return nil, dbErr("read account burn rates", err)
	}
	var all []Account
	var spentFrom []decimal.Decimal
	for rows.Next() {
		var a Account
		var sf decimal.Decimal
		err := rows.Scan(&a.ID, &a.Cluster, &a.SlurmAccount, &a.Name, &a.Description, &a.Currency,
			&a.Status, &a.StartsAt, &a.EndsAt, &a.CreditLimit, &a.MaxJobCost, &a.ParentID, &a.Parent,
			&a.Deposited, &a.Spent, &a.Held, &a.CreatedAt, &a.UpdatedAt, &sf)
		if err != nil {
			rows.Close()
			return nil, dbErr("read account burn rates", err)
		}
		all = append(all, a)
		spentFrom = append(spentFrom, sf)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbErr("read account burn rates", err)
	}
	exps, err := l.expectedRates(ctx, all, now)
	if err != nil {
		return nil, err
	}
	tol := decimal.NewFromInt(int64(l.cfg.Alerts.VariancePercent))
	out := make([]accountBurn, 0, len(all))
	for i, a := range all {
		aw := w
		if opened := startOfDay(a.CreatedAt, loc); aw.From.Before(opened) {
			aw.From = opened
		}
		in := burnInput{asOf: now, loc: loc, window: aw, spent: a.Spent.Sub(spentFrom[i]),
			funds: fundsOf(a.Deposited, a.Spent, a.Held, a.CreditLimit), budget: a.Deposited, end: a.EndsAt,
			tolerance: tol}
		applyExpectation(&in, exps[a.ID])
		b := computeBurn(in)
		b.Kind, b.Target, b.Currency = "account", a.SlurmAccount, a.Currency
		out = append(out, accountBurn{id: a.ID, burn: b})
	}
	return out, nil
}

func applyExpectation(in *burnInput, e *expectation) {
	if e == nil {
		return
	}
	in.expected, in.source = &e.rate, e.source
	if e.end != nil {
		in.end = e.end
	}
}

type grantBurn struct {
	id   int64
	burn BurnRate
}

// grantBurnsForAlerts computes the burn rate of every active grant.
func (l *Ledger) grantBurnsForAlerts(ctx context.Context) ([]grantBurn, error) {
	rows, err := l.pool.Query(ctx, `SELECT number FROM grants WHERE status = 'active' ORDER BY number`)
	if err != nil {
		return nil, dbErr("list active grants", err)
	}
	numbers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbErr("list active grants", err)
	}
	out := make([]grantBurn, 0, len(numbers))
	for _, n := range numbers {
		g, err := l.GetGrant(ctx, n)
		if err != nil {
			return nil, err
		}
		b, err := l.grantBurnRate(ctx, g, BurnOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, grantBurn{id: g.ID, burn: b})
	}
	return out, nil
}

// BurnRateOf is the burn rate of an account or, when no account has that
// name, of the grant with that number.
func (l *Ledger) BurnRateOf(ctx context.Context, cluster, target string, o BurnOptions) (BurnRate, error) {
	b, err := l.AccountBurnRate(ctx, cluster, target, o)
	if !errors.Is(err, ErrAccountNotFound) {
		return b, err
	}
	if ValidateGrantNumber(target) != nil {
		return b, err
	}
	gb, gerr := l.GrantBurnRate(ctx, target, o)
	if errors.Is(gerr, ErrNotFound) {
		return b, fmt.Errorf("%w: no account or grant named %s", ErrAccountNotFound, target)
	}
	return gb, gerr
}

// GrantBurnRate computes the burn rate of a grant: its total cost (direct
// plus indirect) per day over the window against its current budget
// period's plan (the period's budget, with carry-forward, over its days).
// Funds, percent used and the projection are those of the current period;
// the series' remaining is the grant's: its budget entries less what was
// held and spent, to date.
func (l *Ledger) GrantBurnRate(ctx context.Context, number string, o BurnOptions) (BurnRate, error) {
	g, err := l.GetGrant(ctx, number)
	if err != nil {
		return BurnRate{}, err
	}
	return l.grantBurnRate(ctx, g, o)
}

// grantPeriodAt picks the period of a date (YYYY-MM-DD): the one containing
// it, else the first (before the grant) or the last (after it).
func grantPeriodAt(ps []GrantPeriod, date string) (GrantPeriod, bool) {
	if len(ps) == 0 {
		return GrantPeriod{}, false
	}
	for _, p := range ps {
		if p.StartDate <= date && date <= p.EndDate {
			return p, true
		}
	}
	if date < ps[0].StartDate {
		return ps[0], true
	}
	return ps[len(ps)-1], true
}

func (l *Ledger) grantBurnRate(ctx context.Context, g Grant, o BurnOptions) (BurnRate, error) {
	loc, err := time.LoadLocation(g.Timezone)
	if err != nil {
		loc = l.cfg.Location()
	}
	now := l.now()
	w := o.Window
	if w.From.IsZero() {
		period := l.cfg.Alerts.Window
		if period == "" {
			period = "30d"
		}
		if w, err = ParseWindow(period, now, loc); err != nil {
			return BurnRate{}, err
		}
	}
	if w.To.After(now) {
		w.To = now
	}
	start, err := time.ParseInLocation(time.DateOnly, g.StartDate, loc)
	if err != nil {
		return BurnRate{}, fmt.Errorf("grant %s start date: %w", g.Number, err)
	}
	if w.From.Before(start) {
		w.From = start
	}
	if !w.To.After(w.From) {
		w.From = w.To
	}
	ps, err := l.GrantPeriods(ctx, g.Number)
	if err != nil {
		return BurnRate{}, err
	}
	asOf := now
	if w.To.Before(now.Add(-time.Minute)) {
		asOf = w.To
	}
	p, ok := grantPeriodAt(ps, asOf.In(loc).Format(time.DateOnly))
	if !ok {
		return BurnRate{}, fmt.Errorf("grant %s has no budget periods", g.Number)
	}
	ps0, err := time.ParseInLocation(time.DateOnly, p.StartDate, loc)
	if err != nil {
		return BurnRate{}, err
	}
	pe, err := time.ParseInLocation(time.DateOnly, p.EndDate, loc)
	if err != nil {
		return BurnRate{}, err
	}
	end := time.Date(pe.Year(), pe.Month(), pe.Day()+1, 0, 0, 0, 0, loc)
	budget := p.Budget.Add(p.Adjusted)
	expected := budget.DivRound(spanDays(ps0, end, loc), Scale)

	// Daily sums of the grant's entries in the window, and everything
	// before it (for the burn-down's remaining).
	var prior decimal.Decimal
	if err := l.pool.QueryRow(ctx, `SELECT coalesce(sum(d_budget - d_held - d_spent), 0) FROM grant_entries
		WHERE grant_id = $1 AND created_at < $2`, g.ID, w.From).Scan(&prior); err != nil {
		return BurnRate{}, dbErr("read grant entries", err)
	}
	rows, err := l.pool.Query(ctx, `SELECT to_char(created_at AT TIME ZONE $4, 'YYYY-MM-DD'), sum(d_spent),
			sum(d_budget - d_held - d_spent)
		FROM grant_entries WHERE grant_id = $1 AND created_at >= $2 AND created_at < $3
		GROUP BY 1 ORDER BY 1`, g.ID, w.From, w.To, loc.String())
	if err != nil {
		return BurnRate{}, dbErr("read grant entries", err)
	}
	type daySum struct{ spent, left decimal.Decimal }
	days := map[string]daySum{}
	spent := decimal.Zero
	for rows.Next() {
		var d string
		var x daySum
		if err := rows.Scan(&d, &x.spent, &x.left); err != nil {
			rows.Close()
			return BurnRate{}, dbErr("read grant entries", err)
		}
		days[d] = x
		spent = spent.Add(x.spent)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return BurnRate{}, dbErr("read grant entries", err)
	}
	in := burnInput{asOf: asOf, loc: loc, window: w, spent: spent,
		funds:  fundsOf(budget, p.Spent, p.Held, decimal.Zero),
		budget: budget, end: &end, expected: &expected, source: ExpectedGrantPeriod,
		tolerance: decimal.NewFromInt(int64(l.cfg.Alerts.VariancePercent))}
	b := computeBurn(in)
	b.Kind, b.Target, b.Currency = "grant", g.Number, g.Currency
	if o.Series {
		at := dayBoundaries(w, loc)
		cum, left := decimal.Zero, prior
		for i := 1; i < len(at); i++ {
			date := at[i-1].In(loc).Format(time.DateOnly)
			x := days[date]
			cum = cum.Add(x.spent)
			left = left.Add(x.left)
			e := expected.Mul(spanDays(at[0], at[i], loc)).Round(Scale)
			b.Series = append(b.Series, DayPoint{Date: date, Spent: x.spent, Cumulative: cum, Remaining: left, Expected: &e})
		}
	}
	return b, nil
}
