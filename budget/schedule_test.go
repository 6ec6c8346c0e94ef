package budget_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

func day(t testing.TB, s string, loc *time.Location) time.Time {
	t.Helper()
	v, err := time.ParseInLocation(time.DateOnly, s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustProcess(t testing.TB, l *budget.Ledger, now time.Time) budget.ProcessReport {
	t.Helper()
	rep, err := l.ProcessSchedules(context.Background(), now)
	if err != nil {
		t.Fatalf("process schedules at %s: %v", now, err)
	}
	return rep
}

func scheduleState(t testing.TB, l *budget.Ledger, id int64) budget.Schedule {
	t.Helper()
	s, err := l.GetSchedule(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The README's first example: $600 in $100 monthly installments over the
// first half of 2025, processed long afterwards, catches up at once.
func TestScheduleCatchesUpAfterDowntime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "ml-proj-001"})
	end := day(t, "2025-07-01", time.UTC) // --end=2025-06-30 is inclusive
	s, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: "ml-proj-001", Total: dec("600"), Amount: dec("100"),
		Frequency: "monthly", Start: day(t, "2025-01-01", time.UTC), End: &end, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Installments != 6 || s.Status != "active" || !s.NextDue.Equal(day(t, "2025-01-01", time.UTC)) {
		t.Fatalf("schedule: %+v", s)
	}
	// Mid-March: January, February and March are due.
	rep := mustProcess(t, l, time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC))
	if rep.Installments != 3 || !rep.Amount.Equal(dec("300")) {
		t.Fatalf("first run: %+v", rep)
	}
	if rep := mustProcess(t, l, time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC)); rep.Installments != 0 {
		t.Fatalf("second run at the same time deposited again: %+v", rep)
	}
	rep = mustProcess(t, l, time.Now())
	if rep.Installments != 3 || rep.Completed != 1 {
		t.Fatalf("catch-up run: %+v", rep)
	}
	s = scheduleState(t, l, s.ID)
	if s.Status != "completed" || s.Deposited != 6 || !s.DepositedAmount.Equal(dec("600")) || s.NextDue != nil {
		t.Fatalf("after catch-up: %+v", s)
	}
	als, err := l.ScheduleInstallments(ctx, s.ID)
	if err != nil || len(als) != 6 {
		t.Fatalf("installments: %d %v", len(als), err)
	}
	for i, al := range als {
		want := time.Date(2025, time.Month(i+1), 1, 0, 0, 0, 0, time.UTC)
		if !al.StartsAt.Equal(want) || *al.Installment != i+1 || !al.Amount.Equal(dec("100")) {
			t.Fatalf("installment %d: %+v", i+1, al)
		}
	}
	if a := account(t, l, "ml-proj-001"); !a.Deposited.Equal(dec("600")) {
		t.Fatalf("deposited %s, want 600", a.Deposited)
	}
	mustVerify(t, l)
}

func TestPausedScheduleDepositsNothingUntilResumed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "p"})
	s, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: "p", Total: dec("1000"), Amount: dec("300"),
		Frequency: "weekly", Start: day(t, "2025-01-01", time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.PauseSchedule(ctx, s.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if rep := mustProcess(t, l, time.Now()); rep.Installments != 0 {
		t.Fatalf("paused schedule deposited: %+v", rep)
	}
	if st := scheduleState(t, l, s.ID); st.Status != "paused" || st.Deposited != 0 {
		t.Fatalf("paused: %+v", st)
	}
	if _, err := l.ResumeSchedule(ctx, s.ID, "test"); err != nil {
		t.Fatal(err)
	}
	rep := mustProcess(t, l, time.Now())
	// 300 + 300 + 300 + the remainder 100: never more than the total.
	if rep.Installments != 4 || !rep.Amount.Equal(dec("1000")) || rep.Completed != 1 {
		t.Fatalf("after resume: %+v", rep)
	}
	als, _ := l.ScheduleInstallments(ctx, s.ID)
	if !als[3].Amount.Equal(dec("100")) {
		t.Fatalf("last installment %s, want the remainder 100", als[3].Amount)
	}
	if _, err := l.PauseSchedule(ctx, 999999, "test"); !errors.Is(err, budget.ErrNotFound) {
		t.Fatalf("pause of a missing schedule: %v", err)
	}
	mustVerify(t, l)
}

// "Use it or lose it": each installment expires when the next falls due.
func TestInstallmentsExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "u"})
	start := time.Now().UTC().AddDate(0, -2, -1)
	if _, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: "u", Total: dec("1200"), Amount: dec("100"),
		Frequency: "monthly", Start: start, ExpireAfter: 1}); err != nil {
		t.Fatal(err)
	}
	if rep := mustProcess(t, l, time.Now()); rep.Installments != 3 {
		t.Fatalf("installments: %+v", rep)
	}
	// Two have lapsed unused; only the current one counts.
	if a := account(t, l, "u"); !a.Deposited.Equal(dec("100")) {
		t.Fatalf("deposited %s, want 100 after two lapsed", a.Deposited)
	}
	es, err := l.ListEntries(ctx, budget.EntryFilter{Account: "u", Type: "expire"})
	if err != nil || len(es) != 2 {
		t.Fatalf("expire entries: %d %v", len(es), err)
	}
	mustVerify(t, l)
}

// If a processor's view of a schedule is stale (its row says installment 1
// is next though 1..n were deposited) the unique installment key still
// stops every second deposit.
func TestInstallmentKeyStopsARepeatedDeposit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "k"})
	s, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: "k", Total: dec("500"), Amount: dec("100"),
		Frequency: "daily", Start: day(t, "2025-05-01", time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	mustProcess(t, l, day(t, "2025-05-03", time.UTC))
	if _, err := l.Pool().Exec(ctx, `UPDATE allocation_schedules SET next_installment = 1, next_due = starts_at WHERE id = $1`, s.ID); err != nil {
		t.Fatal(err)
	}
	rep := mustProcess(t, l, day(t, "2025-05-03", time.UTC))
	if rep.Installments != 0 || rep.Duplicates != 3 {
		t.Fatalf("replay after a stale row: %+v", rep)
	}
	if a := account(t, l, "k"); !a.Deposited.Equal(dec("300")) {
		t.Fatalf("deposited %s, want 300", a.Deposited)
	}
	mustVerify(t, l)
}

// The processor keeps local midnight in the configured zone: in New York
// the installment of 2025-03-10 falls due at 04:00 UTC (EDT), the one of
// 2025-03-09 at 05:00 UTC (EST), and back at 05:00 UTC after November's
// change.
func TestScheduleProcessesAtLocalMidnightAcrossDST(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "\n[allocations]\ntimezone = \"America/New_York\"\n")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "ny"})
	ny, _ := time.LoadLocation("America/New_York")
	s, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: "ny", Total: dec("10000"), Amount: dec("10"),
		Frequency: "daily", Start: day(t, "2025-03-08", ny)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Timezone != "America/New_York" {
		t.Fatalf("zone %q", s.Timezone)
	}
	steps := []struct {
		at   string
		want int
	}{
		{"2025-03-09T04:59:59Z", 1}, {"2025-03-09T05:00:00Z", 2},
		{"2025-03-10T03:59:59Z", 2}, {"2025-03-10T04:00:00Z", 3},
		// Catch up to the fall-back day: Mar 8 .. Nov 1 is 239 days.
		{"2025-11-02T03:59:59Z", 239}, {"2025-11-02T04:00:00Z", 240}, // Nov 2 00:00 EDT
		{"2025-11-03T04:59:59Z", 240}, {"2025-11-03T05:00:00Z", 241}, // Nov 3 00:00 EST
	}
	for _, st := range steps {
		at, _ := time.Parse(time.RFC3339, st.at)
		mustProcess(t, l, at)
		if got := scheduleState(t, l, s.ID).Deposited; got != st.want {
			t.Fatalf("at %s: %d installments, want %d", st.at, got, st.want)
		}
	}
	mustVerify(t, l)
}

func TestBadSchedulesAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "b"})
	start := day(t, "2025-01-01", time.UTC)
	before := day(t, "2024-12-01", time.UTC)
	short := day(t, "2025-03-01", time.UTC)
	ok := budget.ScheduleSpec{Account: "b", Total: dec("600"), Amount: dec("100"), Frequency: "monthly", Start: start}
	cases := map[string]func(s *budget.ScheduleSpec){
		"end before start":            func(s *budget.ScheduleSpec) { s.End = &before },
		"end equals start":            func(s *budget.ScheduleSpec) { s.End = &start },
		"zero amount":                 func(s *budget.ScheduleSpec) { s.Amount = dec("0") },
		"negative amount":             func(s *budget.ScheduleSpec) { s.Amount = dec("-100") },
		"zero total":                  func(s *budget.ScheduleSpec) { s.Total = dec("0") },
		"negative total":              func(s *budget.ScheduleSpec) { s.Total = dec("-600") },
		"sub-cent amount":             func(s *budget.ScheduleSpec) { s.Amount = dec("33.333") },
		"over-scale total":            func(s *budget.ScheduleSpec) { s.Total = dec("600.0000001") },
		"amount above the total":      func(s *budget.ScheduleSpec) { s.Amount = dec("601") },
		"unknown frequency":           func(s *budget.ScheduleSpec) { s.Frequency = "fortnightly" },
		"SQL in the frequency":        func(s *budget.ScheduleSpec) { s.Frequency = "monthly'; DROP TABLE ledger; --" },
		"ends short of the total":     func(s *budget.ScheduleSpec) { s.End = &short },
		"too many installments":       func(s *budget.ScheduleSpec) { s.Total, s.Amount, s.Frequency = dec("10000000"), dec("0.01"), "daily" },
		"no start":                    func(s *budget.ScheduleSpec) { s.Start = time.Time{} },
		"negative expiry":             func(s *budget.ScheduleSpec) { s.ExpireAfter = -1 },
		"unknown account":             func(s *budget.ScheduleSpec) { s.Account = "nope" },
		"SQL in the account":          func(s *budget.ScheduleSpec) { s.Account = "b'; DROP TABLE accounts; --" },
		"huge total":                  func(s *budget.ScheduleSpec) { s.Total = dec("99999999999999") },
		"amount with too many digits": func(s *budget.ScheduleSpec) { s.Amount = dec("100.1234567") },
	}
	for name, mutate := range cases {
		spec := ok
		mutate(&spec)
		if _, err := l.CreateSchedule(ctx, spec); !errors.Is(err, budget.ErrInvalid) && !errors.Is(err, budget.ErrAccountNotFound) {
			t.Errorf("%s: got %v, want an invalid-request error", name, err)
		} else if err.Error() == "" {
			t.Errorf("%s: empty message", name)
		}
	}
	ss, err := l.ListSchedules(ctx, "")
	if err != nil || len(ss) != 0 {
		t.Fatalf("bad input created schedules: %d %v", len(ss), err)
	}
	if _, err := l.CreateSchedule(ctx, ok); err != nil {
		t.Fatalf("the good spec: %v", err)
	}
	mustVerify(t, l)
}

// oracleDue is an independent statement of the calendar: Go's AddDate, with
// an overflowing month-end pulled back to the last day of the month, and a
// wall time lost in a spring-forward gap moved past it (every zone used
// here springs forward by one hour).
func oracleDue(start time.Time, freq string, k int) time.Time {
	n := k - 1
	var t time.Time
	switch freq {
	case "daily":
		t = start.AddDate(0, 0, n)
	case "weekly":
		t = start.AddDate(0, 0, 7*n)
	default:
		months := map[string]int{"monthly": 1, "quarterly": 3, "yearly": 12}[freq] * n
		t = start.AddDate(0, months, 0)
		if t.Day() != start.Day() {
			t = t.AddDate(0, 0, -t.Day())
		}
	}
	if t.Hour() == (start.Hour()+23)%24 { // time.Date put the lost hour before the gap
		t = t.Add(time.Hour)
	}
	return t
}

// expected is min(total, installments due at now × amount).
func expected(start time.Time, end *time.Time, freq string, total, amount decimal.Decimal, now time.Time) (decimal.Decimal, int) {
	n := 0
	for k := 1; ; k++ {
		d := oracleDue(start, freq, k)
		if d.After(now) || (end != nil && !d.Before(*end)) {
			break
		}
		if amount.Mul(decimal.NewFromInt(int64(k - 1))).GreaterThanOrEqual(total) {
			break
		}
		n = k
	}
	return decimal.Min(total, amount.Mul(decimal.NewFromInt(int64(n)))), n
}

// Property: over many random schedules and random processing times, with
// two processors racing at every step (at different clocks), each
// schedule's deposits equal min(total, installments due × amount) exactly,
// and no installment is deposited twice.
func TestScheduleProcessorProperty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 42))
	zones := []string{"UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"}
	zone := zones[rng.IntN(len(zones))]
	l := newLedger(t, fmt.Sprintf("\n[allocations]\ntimezone = %q\n", zone))
	l2 := budget.New(l.Pool(), l.Config(), nil) // a second processor: shares nothing in memory but the pool
	loc, _ := time.LoadLocation(zone)
	freqs := []string{"daily", "weekly", "monthly", "quarterly", "yearly"}
	now := time.Now()
	type sched struct {
		id            int64
		start         time.Time
		end           *time.Time
		freq          string
		total, amount decimal.Decimal
	}
	var ss []sched
	for i := 0; i < 8; i++ {
		mustAccount(t, l, budget.AccountSpec{SlurmAccount: fmt.Sprintf("acct%d", i)})
	}
	for i := 0; i < 40; i++ {
		freq := freqs[rng.IntN(len(freqs))]
		span := map[string]int{"daily": 60, "weekly": 200, "monthly": 900, "quarterly": 2000, "yearly": 3000}[freq]
		// Starts at random local times, month-ends included.
		start := time.Date(2026, time.Month(1+rng.IntN(12)), 1+rng.IntN(31), rng.IntN(24), rng.IntN(4)*15, 0, 0, loc).
			AddDate(0, 0, -rng.IntN(span)-400)
		if start.After(now) {
			start = start.AddDate(-1, 0, 0)
		}
		amount := decimal.New(int64(1+rng.IntN(50000)), -2)
		inst := 1 + rng.IntN(40)
		total := amount.Mul(decimal.NewFromInt(int64(inst)))
		if inst > 1 && rng.IntN(2) == 0 { // a remainder in the last installment
			total = total.Sub(decimal.New(int64(rng.IntN(int(amount.Mul(decimal.NewFromInt(100)).IntPart()))), -2))
		}
		var end *time.Time
		if rng.IntN(3) == 0 {
			e := oracleDue(start, freq, inst+rng.IntN(5)).Add(time.Duration(1+rng.IntN(3600)) * time.Second)
			end = &e
		}
		s, err := l.CreateSchedule(ctx, budget.ScheduleSpec{Account: fmt.Sprintf("acct%d", rng.IntN(8)), Total: total,
			Amount: amount, Frequency: freq, Start: start, End: end})
		if err != nil {
			t.Fatalf("schedule %d (%s %s/%s from %s): %v", i, freq, total, amount, start, err)
		}
		ss = append(ss, sched{s.ID, start, end, freq, total, amount})
	}
	// Random processing times, increasing, from the earliest start to now;
	// the last is now itself.
	earliest := now
	for _, s := range ss {
		if s.start.Before(earliest) {
			earliest = s.start
		}
	}
	var times []time.Time
	for i := 0; i < 12; i++ {
		times = append(times, earliest.Add(time.Duration(rng.Int64N(int64(now.Sub(earliest))))))
	}
	times = append(times, now)
	sortTimes(times)
	for step, at := range times {
		// Two processors at once; the second one's clock is a little behind.
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		// The lag is drawn here: rng is not safe for concurrent use.
		lag := time.Duration(rng.IntN(2)) * time.Hour
		for i, p := range []*budget.Ledger{l, l2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := p.ProcessSchedules(ctx, at.Add(-time.Duration(i)*lag))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		for _, s := range ss {
			got := scheduleState(t, l, s.id)
			want, n := expected(s.start, s.end, s.freq, s.total, s.amount, at)
			if !got.DepositedAmount.Equal(want) || got.Deposited != n {
				t.Fatalf("step %d at %s: schedule %d (%s %s/%s from %s, end %v): deposited %s in %d, want %s in %d",
					step, at, s.id, s.freq, s.total, s.amount, s.start, s.end, got.DepositedAmount, got.Deposited, want, n)
			}
		}
	}
	var dup int
	if err := l.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT schedule_id, installment FROM allocations
		WHERE schedule_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("installments deposited twice: %d %v", dup, err)
	}
	mustVerify(t, l)
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}
