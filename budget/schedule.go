package budget

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Frequencies of allocation schedules.
var Frequencies = []string{"daily", "weekly", "monthly", "quarterly", "yearly"}

// maxInstallments bounds a schedule (a century of daily installments fits).
const maxInstallments = 100000

// ScheduleSpec describes a new incremental allocation schedule: Total is
// deposited in installments of Amount (the last one takes the remainder),
// one per Frequency from Start, none at or after End.
type ScheduleSpec struct {
	Cluster   string
	Account   string
	Total     decimal.Decimal
	Amount    decimal.Decimal
	Frequency string
	Start     time.Time
	End       *time.Time // exclusive; nil = until Total is reached
	// ExpireAfter, when positive, makes each installment lapse that many
	// periods after it falls due ("use it or lose it": 1).
	ExpireAfter    int
	Paused         bool
	Note           string
	Actor          string
	IdempotencyKey string
}

// Schedule is an allocation schedule as stored, with its progress.
type Schedule struct {
	ID              int64           `json:"id"`
	AccountID       int64           `json:"account_id"`
	Account         string          `json:"account"`
	Total           decimal.Decimal `json:"total"`
	Amount          decimal.Decimal `json:"amount"`
	Frequency       string          `json:"frequency"`
	StartsAt        time.Time       `json:"start_date"`
	EndsAt          *time.Time      `json:"end_date,omitempty"`
	Timezone        string          `json:"timezone"`
	ExpireAfter     *int            `json:"expire_after_periods,omitempty"`
	Installments    int             `json:"installments"`
	Deposited       int             `json:"installments_deposited"`
	DepositedAmount decimal.Decimal `json:"deposited"`
	NextDue         *time.Time      `json:"next_due,omitempty"`
	NextAmount      decimal.Decimal `json:"next_amount"`
	Paused          bool            `json:"paused"`
	Status          string          `json:"status"` // active, paused, completed
	Note            string          `json:"note"`
	Actor           string          `json:"actor"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	CompletedAt     *time.Time      `json:"completed_at,omitempty"`
	Duplicate       bool            `json:"-"`
}

// plan is the calendar of one schedule: pure, so the processor and the
// tests can reason about it without a database.
type plan struct {
	start     time.Time // in loc
	loc       *time.Location
	frequency string
	total     decimal.Decimal
	amount    decimal.Decimal
}

// due is when installment k (1-based) falls due. Months are calendar
// months anchored on the start's day: Jan 31 → Feb 28/29 → Mar 31. Days
// are calendar days in the zone, so a daily installment stays at the same
// wall-clock time across daylight-saving changes.
func (p plan) due(k int) time.Time {
	s := p.start
	n := k - 1
	switch p.frequency {
	case "daily":
		return wallTime(s.Year(), s.Month(), s.Day()+n, s, p.loc)
	case "weekly":
		return wallTime(s.Year(), s.Month(), s.Day()+7*n, s, p.loc)
	}
	months := map[string]int{"monthly": 1, "quarterly": 3, "yearly": 12}[p.frequency] * n
	return addMonths(s, months, p.loc)
}

// addMonths adds calendar months, clamping the day to the target month's
// last day (the day is taken from t, never from a previous step).
func addMonths(t time.Time, months int, loc *time.Location) time.Time {
	m := int(t.Month()) - 1 + months
	y := t.Year() + m/12
	m %= 12
	if m < 0 {
		m += 12
		y--
	}
	day := min(t.Day(), daysIn(y, time.Month(m+1)))
	return wallTime(y, time.Month(m+1), day, t, loc)
}

// wallTime is the date y-m-d at the wall-clock time of clock, in loc. A
// wall time that does not exist that day (it falls in a spring-forward gap)
// is read with the offset in force before the gap, so it lands just after
// it (02:30 → 03:30), as iCalendar does; time.Date alone leaves the choice
// unspecified.
func wallTime(y int, m time.Month, d int, clock time.Time, loc *time.Location) time.Time {
	t := time.Date(y, m, d, clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), loc)
	if t.Hour() == clock.Hour() && t.Minute() == clock.Minute() {
		return t
	}
	_, before := t.Add(-12 * time.Hour).Zone()
	u := time.Date(y, m, d, clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), time.UTC)
	return u.Add(-time.Duration(before) * time.Second).In(loc)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// installmentAmount is Amount, except that the installment that reaches
// Total takes only the remainder; after that it is zero.
func (p plan) installmentAmount(k int) decimal.Decimal {
	left := p.total.Sub(p.amount.Mul(decimal.NewFromInt(int64(k - 1))))
	if left.LessThanOrEqual(decimal.Zero) {
		return decimal.Zero
	}
	return decimal.Min(p.amount, left)
}

// count is the number of installments: enough to reach Total, fewer if End
// comes first.
func (p plan) count(end *time.Time) (int, error) {
	need := p.total.Div(p.amount).Ceil()
	if need.GreaterThan(decimal.NewFromInt(maxInstallments)) {
		return 0, fmt.Errorf("%w: a total of %s in installments of %s makes %s installments (at most %d)",
			ErrInvalid, p.total, p.amount, need, maxInstallments)
	}
	n := int(need.IntPart())
	if end == nil {
		return n, nil
	}
	k := 0
	for k < n && p.due(k+1).Before(*end) {
		k++
	}
	return k, nil
}

func checkCents(what string, d decimal.Decimal) error {
	if !d.Equal(d.Round(2)) {
		return fmt.Errorf("%w: %s %s is not a whole number of cents", ErrInvalid, what, d)
	}
	return nil
}

func validFrequency(f string) bool {
	for _, x := range Frequencies {
		if f == x {
			return true
		}
	}
	return false
}

// PlanSchedule validates a schedule in the zone tz and returns how many
// installments it will have. CreateSchedule calls it; the CLI calls it
// before creating an account so that a bad schedule changes nothing.
func PlanSchedule(spec ScheduleSpec, tz string) (int, error) {
	if err := CheckAmount(spec.Total); err != nil {
		return 0, fmt.Errorf("total: %w", err)
	}
	if err := CheckAmount(spec.Amount); err != nil {
		return 0, fmt.Errorf("installment amount: %w", err)
	}
	if err := checkCents("total", spec.Total); err != nil {
		return 0, err
	}
	if err := checkCents("installment amount", spec.Amount); err != nil {
		return 0, err
	}
	if spec.Amount.GreaterThan(spec.Total) {
		return 0, fmt.Errorf("%w: installment amount %s is more than the total %s", ErrInvalid, spec.Amount, spec.Total)
	}
	if !validFrequency(spec.Frequency) {
		return 0, fmt.Errorf("%w: frequency %q must be one of %s", ErrInvalid, spec.Frequency, strings.Join(Frequencies, ", "))
	}
	if spec.Start.IsZero() {
		return 0, fmt.Errorf("%w: a schedule needs a start date", ErrInvalid)
	}
	if spec.End != nil && !spec.End.After(spec.Start) {
		return 0, fmt.Errorf("%w: end date must be after start date", ErrInvalid)
	}
	if spec.ExpireAfter < 0 || spec.ExpireAfter > 1000 {
		return 0, fmt.Errorf("%w: expiry must be 1-1000 periods (or 0 for none)", ErrInvalid)
	}
	if len(spec.Note) > 1000 {
		return 0, fmt.Errorf("%w: note too long", ErrInvalid)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return 0, fmt.Errorf("%w: time zone %q: %v", ErrInvalid, tz, err)
	}
	p := plan{start: spec.Start.In(loc), loc: loc, frequency: spec.Frequency, total: spec.Total, amount: spec.Amount}
	n, err := p.count(spec.End)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: no installment falls due between the start and the end", ErrInvalid)
	}
	if reach := decimal.Min(spec.Total, spec.Amount.Mul(decimal.NewFromInt(int64(n)))); reach.LessThan(spec.Total) {
		return 0, fmt.Errorf("%w: the schedule ends after %d %s installments of %s (%s), short of the total %s; raise the amount, move the end or lower the total",
			ErrInvalid, n, spec.Frequency, spec.Amount, reach, spec.Total)
	}
	return n, nil
}

// CreateSchedule records an incremental allocation schedule on an account.
// It deposits nothing itself: ProcessSchedules (or ProcessSchedule) does,
// including installments already due. Idempotent on spec.IdempotencyKey.
func (l *Ledger) CreateSchedule(ctx context.Context, spec ScheduleSpec) (Schedule, error) {
	tz := l.cfg.AllocationTimezone()
	n, err := PlanSchedule(spec, tz)
	if err != nil {
		return Schedule{}, err
	}
	a, err := l.resolve(ctx, l.pool, spec.Cluster, spec.Account)
	if err != nil {
		return Schedule{}, err
	}
	if a.Status == "closed" {
		return Schedule{}, fmt.Errorf("%w: account %s is closed", ErrConflict, a.SlurmAccount)
	}
	var expire *int
	if spec.ExpireAfter > 0 {
		expire = &spec.ExpireAfter
	}
	var id int64
	err = l.pool.QueryRow(ctx, `INSERT INTO allocation_schedules (account_id, total, amount, frequency, starts_at, ends_at,
			timezone, expire_after, installments, paused, next_due, note, actor, idempotency_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $5, $11, $12, $13)
		ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		a.ID, spec.Total, spec.Amount, spec.Frequency, spec.Start, spec.End, tz, expire, n, spec.Paused,
		spec.Note, spec.Actor, nullable(spec.IdempotencyKey)).Scan(&id)
	if isNoRows(err) {
		var s Schedule
		err = l.pool.QueryRow(ctx, `SELECT id FROM allocation_schedules WHERE idempotency_key = $1`, spec.IdempotencyKey).Scan(&id)
		if err == nil {
			s, err = l.GetSchedule(ctx, id)
			s.Duplicate = true
		}
		return s, dbErr("create schedule", err)
	}
	if err != nil {
		return Schedule{}, dbErr("create schedule", err)
	}
	l.log.Info("schedule created", "schedule_id", id, "account", a.SlurmAccount, "total", spec.Total.String(),
		"amount", spec.Amount.String(), "frequency", spec.Frequency, "installments", n, "actor", spec.Actor)
	return l.GetSchedule(ctx, id)
}

const scheduleCols = `s.id, s.account_id, a.slurm_account, s.total, s.amount, s.frequency, s.starts_at, s.ends_at, s.timezone,
	s.expire_after, s.installments, s.next_installment, s.next_due, s.paused, s.note, s.actor, s.created_at, s.updated_at,
	s.completed_at,
	coalesce((SELECT sum(al.amount) FROM allocations al WHERE al.schedule_id = s.id), 0)`

func scanSchedule(row pgx.Row) (Schedule, error) {
	var s Schedule
	var next int
	err := row.Scan(&s.ID, &s.AccountID, &s.Account, &s.Total, &s.Amount, &s.Frequency, &s.StartsAt, &s.EndsAt,
		&s.Timezone, &s.ExpireAfter, &s.Installments, &next, &s.NextDue, &s.Paused, &s.Note, &s.Actor,
		&s.CreatedAt, &s.UpdatedAt, &s.CompletedAt, &s.DepositedAmount)
	if err != nil {
		return s, err
	}
	s.Deposited = next - 1
	switch {
	case s.NextDue == nil:
		s.Status = "completed"
	case s.Paused:
		s.Status = "paused"
	default:
		s.Status = "active"
	}
	if s.NextDue != nil {
		p := plan{total: s.Total, amount: s.Amount}
		s.NextAmount = p.installmentAmount(next)
	}
	return s, nil
}

// GetSchedule reads one schedule.
func (l *Ledger) GetSchedule(ctx context.Context, id int64) (Schedule, error) {
	s, err := scanSchedule(l.pool.QueryRow(ctx, `SELECT `+scheduleCols+`
		FROM allocation_schedules s JOIN accounts a ON a.id = s.account_id WHERE s.id = $1`, id))
	if isNoRows(err) {
		return s, fmt.Errorf("%w: allocation schedule %d", ErrNotFound, id)
	}
	return s, dbErr("read schedule", err)
}

// ListSchedules lists schedules, of one account or ("" ) all, by id.
func (l *Ledger) ListSchedules(ctx context.Context, account string) ([]Schedule, error) {
	if account != "" {
		if err := ValidateAccountName(account); err != nil {
			return nil, err
		}
	}
	rows, err := l.pool.Query(ctx, `SELECT `+scheduleCols+`
		FROM allocation_schedules s JOIN accounts a ON a.id = s.account_id
		WHERE ($1 = '' OR a.slurm_account = $1) ORDER BY s.id`, account)
	if err != nil {
		return nil, dbErr("list schedules", err)
	}
	defer rows.Close()
	var out []Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, dbErr("list schedules", err)
		}
		out = append(out, s)
	}
	return out, dbErr("list schedules", rows.Err())
}

// ScheduleInstallments lists the deposits a schedule has made.
func (l *Ledger) ScheduleInstallments(ctx context.Context, id int64) ([]Allocation, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+allocationCols+` FROM allocations al JOIN accounts a ON a.id = al.account_id
		WHERE al.schedule_id = $1 ORDER BY al.installment`, id)
	if err != nil {
		return nil, dbErr("list installments", err)
	}
	defer rows.Close()
	var out []Allocation
	for rows.Next() {
		var al Allocation
		if err := rows.Scan(&al.ID, &al.AccountID, &al.Account, &al.Amount, &al.StartsAt, &al.ExpiresAt, &al.Status,
			&al.Forfeited, &al.ScheduleID, &al.Installment, &al.Note, &al.Actor, &al.CreatedAt); err != nil {
			return nil, dbErr("list installments", err)
		}
		out = append(out, al)
	}
	return out, dbErr("list installments", rows.Err())
}

// SchedulePatch changes a schedule; nil leaves a field as it is.
type SchedulePatch struct {
	Paused *bool
	Note   *string
}

// UpdateSchedule applies a patch. Resuming a paused schedule makes the
// processor catch up on the installments that fell due while it was paused.
func (l *Ledger) UpdateSchedule(ctx context.Context, id int64, p SchedulePatch, actor string) (Schedule, error) {
	if p.Note != nil && len(*p.Note) > 1000 {
		return Schedule{}, fmt.Errorf("%w: note too long", ErrInvalid)
	}
	tag, err := l.pool.Exec(ctx, `UPDATE allocation_schedules SET paused = coalesce($2, paused), note = coalesce($3, note),
		updated_at = now() WHERE id = $1`, id, p.Paused, p.Note)
	if err != nil {
		return Schedule{}, dbErr("update schedule", err)
	}
	if tag.RowsAffected() == 0 {
		return Schedule{}, fmt.Errorf("%w: allocation schedule %d", ErrNotFound, id)
	}
	if p.Paused != nil {
		l.log.Info("schedule paused", "schedule_id", id, "paused", *p.Paused, "actor", actor)
	}
	return l.GetSchedule(ctx, id)
}

// PauseSchedule stops a schedule's deposits until it is resumed.
func (l *Ledger) PauseSchedule(ctx context.Context, id int64, actor string) (Schedule, error) {
	t := true
	return l.UpdateSchedule(ctx, id, SchedulePatch{Paused: &t}, actor)
}

// ResumeSchedule restarts a paused schedule; the next run deposits what
// fell due meanwhile.
func (l *Ledger) ResumeSchedule(ctx context.Context, id int64, actor string) (Schedule, error) {
	f := false
	return l.UpdateSchedule(ctx, id, SchedulePatch{Paused: &f}, actor)
}

// ProcessReport says what one run of the processor did.
type ProcessReport struct {
	Now          time.Time       `json:"now"`
	Schedules    int             `json:"schedules"`    // schedules that had installments due
	Installments int             `json:"installments"` // deposited by this run
	Duplicates   int             `json:"duplicates"`   // already deposited (by a racing processor)
	Amount       decimal.Decimal `json:"amount"`       // deposited by this run
	Completed    int             `json:"completed"`    // schedules that reached their last installment
	Periods      []PeriodClose   `json:"periods_closed"`
}

// processBatch is how many schedules one transaction handles: large enough
// that commits (fsync) do not dominate, small enough to keep locks short.
const processBatch = 500

// ProcessSchedules deposits every installment due at now (catching up on
// any missed while nothing ran) and then closes grant budget periods that
// have ended. It is safe to run in several processes at once: a batch
// claims its schedules with FOR UPDATE (a racing processor waits, then sees
// the advanced schedule and does only what is still due at its own now),
// and each installment's deposit carries the key
// "sched:<schedule>:<installment>", unique in the database, so an
// installment is deposited once whatever happens; a crash rolls back a
// whole batch, which the next run redoes.
func (l *Ledger) ProcessSchedules(ctx context.Context, now time.Time) (ProcessReport, error) {
	rep := ProcessReport{Now: now, Amount: decimal.Zero}
	// Accounts are visited in path order (root first, depth first): the
	// order in which asbb_lock_chain's locks are taken, so batches running
	// at once never wait on each other in a cycle.
	rows, err := l.pool.Query(ctx, `SELECT s.id FROM allocation_schedules s JOIN accounts a ON a.id = s.account_id
		WHERE s.next_due <= $1 AND NOT s.paused AND a.status <> 'closed' ORDER BY a.path, s.id`, now)
	if err != nil {
		return rep, dbErr("find due schedules", err)
	}
	ids, err := collectInt64(rows)
	if err != nil {
		return rep, dbErr("find due schedules", err)
	}
	// Batches run on a few connections at once (they lock disjoint
	// schedules, and accounts in one global order, so they cannot
	// deadlock); each is its own transaction.
	var batches [][]int64
	for i := 0; i < len(ids); i += processBatch {
		batches = append(batches, ids[i:min(i+processBatch, len(ids))])
	}
	workers := min(len(batches), max(1, int(l.pool.Config().MaxConns)/2), 4)
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= len(batches) || firstErr != nil {
					mu.Unlock()
					return
				}
				batch := batches[next]
				next++
				mu.Unlock()
				var br ProcessReport
				err := l.InTx(ctx, func(tx pgx.Tx) error {
					br = ProcessReport{Amount: decimal.Zero}
					return l.processBatch(ctx, tx, batch, now, &br)
				})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					rep.Schedules += br.Schedules
					rep.Installments += br.Installments
					rep.Duplicates += br.Duplicates
					rep.Completed += br.Completed
					rep.Amount = rep.Amount.Add(br.Amount)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return rep, firstErr
	}
	closed, err := l.ClosePeriods(ctx, now, "asbb")
	rep.Periods = closed
	if err != nil {
		return rep, err
	}
	if rep.Installments > 0 || rep.Duplicates > 0 || len(rep.Periods) > 0 {
		l.log.Info("allocations processed", "schedules", rep.Schedules, "installments", rep.Installments,
			"duplicates", rep.Duplicates, "amount", rep.Amount.String(), "completed", rep.Completed,
			"periods_closed", len(rep.Periods))
	}
	return rep, nil
}

// ProcessSchedule deposits what is due at now on one schedule (the CLI
// does this right after creating one); it leaves grant periods alone.
func (l *Ledger) ProcessSchedule(ctx context.Context, id int64, now time.Time) (ProcessReport, error) {
	rep := ProcessReport{Now: now, Amount: decimal.Zero}
	err := l.InTx(ctx, func(tx pgx.Tx) error {
		rep = ProcessReport{Now: now, Amount: decimal.Zero}
		return l.processBatch(ctx, tx, []int64{id}, now, &rep)
	})
	return rep, err
}

func (l *Ledger) processBatch(ctx context.Context, tx pgx.Tx, ids []int64, now time.Time, rep *ProcessReport) error {
	rows, err := tx.Query(ctx, `SELECT s.id, s.account_id, s.total, s.amount, s.frequency, s.starts_at, s.timezone,
			s.expire_after, s.installments, s.next_installment, s.actor
		FROM allocation_schedules s JOIN accounts a ON a.id = s.account_id
		WHERE s.id = ANY ($1) AND s.next_due <= $2 AND NOT s.paused
		ORDER BY a.path, s.id
		FOR UPDATE OF s`, ids, now)
	if err != nil {
		return dbErr("claim schedules", err)
	}
	type claimed struct {
		id, account   int64
		p             plan
		expire        *int
		n, next       int
		actor, tzName string
	}
	var cs []claimed
	for rows.Next() {
		var c claimed
		var start time.Time
		if err := rows.Scan(&c.id, &c.account, &c.p.total, &c.p.amount, &c.p.frequency, &start, &c.tzName,
			&c.expire, &c.n, &c.next, &c.actor); err != nil {
			rows.Close()
			return dbErr("claim schedules", err)
		}
		cs = append(cs, c)
		cs[len(cs)-1].p.start = start
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return dbErr("claim schedules", err)
	}
	var (
		accounts, schedules []int64
		installments        []int32
		amounts             []decimal.Decimal
		starts              []time.Time
		expires             []*time.Time
		keys, notes         []string
		upIDs               []int64
		upNext              []int32
		upDue               []*time.Time
		actors              []string
		completedAt         []bool
	)
	for _, c := range cs {
		loc, err := time.LoadLocation(c.tzName)
		if err != nil {
			return fmt.Errorf("schedule %d: time zone %q: %w", c.id, c.tzName, err)
		}
		c.p.loc = loc
		c.p.start = c.p.start.In(loc)
		k := c.next
		for ; k <= c.n && !c.p.due(k).After(now); k++ {
			amt := c.p.installmentAmount(k)
			if !amt.IsPositive() {
				break
			}
			var exp *time.Time
			if c.expire != nil {
				e := c.p.due(k + *c.expire)
				exp = &e
			}
			accounts = append(accounts, c.account)
			schedules = append(schedules, c.id)
			installments = append(installments, int32(k))
			amounts = append(amounts, amt)
			starts = append(starts, c.p.due(k))
			expires = append(expires, exp)
			keys = append(keys, "sched:"+strconv.FormatInt(c.id, 10)+":"+strconv.Itoa(k))
			notes = append(notes, fmt.Sprintf("schedule %d installment %d of %d", c.id, k, c.n))
			actors = append(actors, c.actor)
		}
		if k == c.next {
			continue
		}
		rep.Schedules++
		var nextDue *time.Time
		if k <= c.n {
			d := c.p.due(k)
			nextDue = &d
		} else {
			rep.Completed++
		}
		upIDs = append(upIDs, c.id)
		upNext = append(upNext, int32(k))
		upDue = append(upDue, nextDue)
		completedAt = append(completedAt, nextDue == nil)
	}
	if len(keys) == 0 {
		return nil
	}
	// One statement for the whole batch; asbb_deposit runs once per
	// installment in array order, under each account's chain lock.
	drows, err := tx.Query(ctx, `SELECT x.amount, d.outcome
		FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::numeric[], $5::timestamptz[], $6::timestamptz[],
		            $7::text[], $8::text[], $9::text[]) WITH ORDINALITY AS x(account, schedule, installment, amount, starts, expires, key, note, actor, ord)
		CROSS JOIN LATERAL asbb_deposit(x.account, x.amount, x.starts, x.expires, x.note, x.actor, x.key, x.schedule, x.installment) d
		ORDER BY x.ord`, accounts, schedules, installments, amounts, starts, expires, keys, notes, actors)
	if err != nil {
		return dbErr("deposit installments", err)
	}
	for drows.Next() {
		var amt decimal.Decimal
		var outcome string
		if err := drows.Scan(&amt, &outcome); err != nil {
			drows.Close()
			return dbErr("deposit installments", err)
		}
		switch outcome {
		case "deposited":
			rep.Installments++
			rep.Amount = rep.Amount.Add(amt)
		case "duplicate":
			rep.Duplicates++
		default:
			drows.Close()
			return fmt.Errorf("deposit installment: unexpected outcome %q", outcome)
		}
	}
	drows.Close()
	if err := drows.Err(); err != nil {
		return dbErr("deposit installments", err)
	}
	// greatest(): progress never moves backwards, even if this row was
	// read before another processor advanced it.
	_, err = tx.Exec(ctx, `UPDATE allocation_schedules s
		SET next_installment = greatest(s.next_installment, u.next),
		    next_due = CASE WHEN u.next >= s.next_installment THEN u.due ELSE s.next_due END,
		    completed_at = CASE WHEN u.done THEN coalesce(s.completed_at, now()) ELSE s.completed_at END,
		    updated_at = now()
		FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::boolean[]) AS u(id, next, due, done)
		WHERE s.id = u.id`, upIDs, upNext, upDue, completedAt)
	return dbErr("advance schedules", err)
}
