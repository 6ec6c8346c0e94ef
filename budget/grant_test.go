package budget_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

func date(t testing.TB, s string) time.Time { return day(t, s, time.UTC) }

func mustGrant(t testing.TB, l *budget.Ledger, spec budget.GrantSpec) budget.Grant {
	t.Helper()
	g, err := l.CreateGrant(context.Background(), spec)
	if err != nil {
		t.Fatalf("create grant %s: %v", spec.Number, err)
	}
	return g
}

func periods(t testing.TB, l *budget.Ledger, number string) []budget.GrantPeriod {
	t.Helper()
	ps, err := l.GrantPeriods(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func periodTable(ps []budget.GrantPeriod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%d %s..%s %s", p.Period, p.StartDate, p.EndDate, p.Budget.StringFixed(2)))
	}
	return out
}

func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// The three grants of docs/grants.md (the README examples).
func TestReadmeGrantPeriods(t *testing.T) {
	t.Parallel()
	l := newLedger(t, "")
	mustGrant(t, l, budget.GrantSpec{Number: "NSF-2025-12345", Agency: "National Science Foundation",
		Program: "Computer and Information Science", PI: "Dr. Jane Smith", CoPIs: []string{"Dr. John Doe"},
		Institution: "University Research Center", Department: "Computer Science", Amount: dec("750000"),
		Start: date(t, "2025-01-01"), End: date(t, "2027-12-31"), PeriodMonths: 12, IndirectRate: dec("0.30"), FederalID: "47.070"})
	wantLines(t, "NSF 3-year annual", periodTable(periods(t, l, "NSF-2025-12345")), []string{
		"1 2025-01-01..2025-12-31 250000.00",
		"2 2026-01-01..2026-12-31 250000.00",
		"3 2027-01-01..2027-12-31 250000.00"})
	mustGrant(t, l, budget.GrantSpec{Number: "R01-GM123456", Agency: "National Institutes of Health",
		Program: "NIGMS Research Project Grant", PI: "Dr. Maria Garcia", Institution: "University Research Center",
		Department: "Biology", Amount: dec("1875000"), Start: date(t, "2025-07-01"), End: date(t, "2030-06-30"),
		PeriodMonths: 12, IndirectRate: dec("0.55"), FederalID: "93.859"})
	wantLines(t, "NIH 5-year annual from mid-year", periodTable(periods(t, l, "R01-GM123456")), []string{
		"1 2025-07-01..2026-06-30 375000.00",
		"2 2026-07-01..2027-06-30 375000.00",
		"3 2027-07-01..2028-06-30 375000.00",
		"4 2028-07-01..2029-06-30 375000.00",
		"5 2029-07-01..2030-06-30 375000.00"})
	mustGrant(t, l, budget.GrantSpec{Number: "DE-SC0012345", Agency: "Department of Energy", Program: "Advanced Scientific Computing Research",
		PI: "Dr. Wei Chen", Institution: "University Research Center", Department: "Physics", Amount: dec("500000.10"),
		Start: date(t, "2025-01-01"), End: date(t, "2026-12-31"), PeriodMonths: 6, IndirectRate: dec("0.25"), FederalID: "81.049"})
	wantLines(t, "DOE 2-year half-yearly, remainder to the last period", periodTable(periods(t, l, "DE-SC0012345")), []string{
		"1 2025-01-01..2025-06-30 125000.02",
		"2 2025-07-01..2025-12-31 125000.02",
		"3 2026-01-01..2026-06-30 125000.02",
		"4 2026-07-01..2026-12-31 125000.04"})
	g, err := l.GetGrant(context.Background(), "NSF-2025-12345")
	if err != nil || g.Periods != 3 || !g.IndirectRate.Equal(dec("0.3")) || g.FederalID != "47.070" || g.CoPIs[0] != "Dr. John Doe" {
		t.Fatalf("grant: %+v %v", g, err)
	}
	active, err := l.ListGrants(context.Background(), budget.GrantFilter{ActiveOn: ptrTime(t, "2025-03-01T00:00:00Z")})
	if err != nil || len(active) != 2 {
		t.Fatalf("active on 2025-03-01: %d %v (NIH starts in July)", len(active), err)
	}
	mustVerify(t, l)
}

// currentGrant makes a grant whose periods are calendar months from this
// one (period 1), and links a well-funded account to it.
func currentGrant(t *testing.T, l *budget.Ledger, number, acct string, rate string, carry bool) budget.GrantPeriod {
	t.Helper()
	now := time.Now().UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	mustGrant(t, l, budget.GrantSpec{Number: number, Agency: "NSF", PI: "Dr. P", Amount: dec("1200"), Start: first,
		End: first.AddDate(1, 0, -1), PeriodMonths: 1, IndirectRate: dec(rate), CarryForward: &carry})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: acct, Budget: dec("100000")})
	if err := l.LinkGrant(context.Background(), number, "", acct, "test"); err != nil {
		t.Fatal(err)
	}
	return periods(t, l, number)[0]
}

func TestIndirectCostsCountAtHoldAndCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	currentGrant(t, l, "G-IND", "lab", "0.30", true)
	h, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "lab", Partition: "cpu-aws", Amount: dec("40"), Tasks: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := periods(t, l, "G-IND")[0]
	if !p.Held.Equal(dec("52")) || !p.Remaining.Equal(dec("48")) {
		t.Fatalf("after a hold of 40 at 30%% indirect: held %s remaining %s, want 52 and 48", p.Held, p.Remaining)
	}
	if _, err := l.Settle(ctx, budget.SettleRequest{HoldID: h.HoldID, JobID: "7", ArrayTaskID: -1, Actual: dec("25.50")}); err != nil {
		t.Fatal(err)
	}
	p = periods(t, l, "G-IND")[0]
	if !p.Held.IsZero() || !p.Spent.Equal(dec("33.15")) || !p.Remaining.Equal(dec("66.85")) {
		t.Fatalf("after a charge of 25.50: held %s spent %s remaining %s, want 0, 33.15 (25.50 × 1.3), 66.85", p.Held, p.Spent, p.Remaining)
	}
	// The account itself is charged the direct cost only.
	if a := account(t, l, "lab"); !a.Spent.Equal(dec("25.50")) {
		t.Fatalf("account spent %s", a.Spent)
	}
	es, err := l.GrantEntries(ctx, "G-IND", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range es {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); !strings.HasSuffix(got, "hold,charge,charge") {
		t.Fatalf("grant ledger: %s", got) // the charge releases the hold's share and spends
	}
	// A refund gives back its share with the same factor.
	var charge int64
	if err := l.Pool().QueryRow(ctx, `SELECT id FROM charges WHERE job_id = '7'`).Scan(&charge); err != nil {
		t.Fatal(err)
	}
	if err := l.Refund(ctx, charge, dec("5.50"), "test", "node failure", ""); err != nil {
		t.Fatal(err)
	}
	if p = periods(t, l, "G-IND")[0]; !p.Spent.Equal(dec("26")) {
		t.Fatalf("after a refund of 5.50: spent %s, want 26", p.Spent)
	}
	mustVerify(t, l)
}

func TestHoldRefusedByThePeriodBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	p := currentGrant(t, l, "G-CAP", "capped", "0.50", true)
	// 100 budget: 70 × 1.5 = 105 does not fit though the account has 100000.
	_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "capped", Partition: "cpu-aws", Amount: dec("70"), Tasks: 1})
	var den *budget.Denial
	if !errors.As(err, &den) || den.Code != "grant_period" {
		t.Fatalf("hold over the period budget: %v", err)
	}
	msg := den.UserMessage()
	if !strings.Contains(msg, p.Name()) || !strings.Contains(msg, "$100.00 left") || !strings.Contains(msg, "$105.00") {
		t.Fatalf("refusal %q should name %q and the numbers", msg, p.Name())
	}
	if a := account(t, l, "capped"); !a.Held.IsZero() {
		t.Fatalf("a refused hold changed the account: %+v", a)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "capped", Partition: "cpu-aws", Amount: dec("66.66"), Tasks: 1}); err != nil {
		t.Fatalf("66.66 × 1.5 = 99.99 fits: %v", err)
	}
	// The account's own limit still applies, and says so.
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "poor", Budget: dec("10")})
	if err := l.LinkGrant(ctx, "G-CAP", "", "poor", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "poor", Partition: "cpu-aws", Amount: dec("11"), Tasks: 1}); !errors.As(err, &den) || den.Code != "insufficient_funds" {
		t.Fatalf("account limit: %v", err)
	}
	// Moving budget into the period lets the job in.
	if _, err := l.SetPeriodBudget(ctx, "G-CAP", p.Period+1, dec("0"), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetPeriodBudget(ctx, "G-CAP", p.Period, dec("200"), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "capped", Partition: "cpu-aws", Amount: dec("66.66"), Tasks: 1}); err != nil {
		t.Fatalf("after raising the budget: %v", err)
	}
	if _, err := l.SetPeriodBudget(ctx, "G-CAP", p.Period, dec("1200"), "test"); !errors.Is(err, budget.ErrInvalid) {
		t.Fatalf("period budgets above the award: %v", err)
	}
	mustVerify(t, l)
}

// Two accounts draw on one grant; 64 holds race. The period row lock makes
// the period's budget hold exactly like an account's balance.
func TestConcurrentHoldsOnTwoAccountsNeverOverdrawAPeriod(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	p := currentGrant(t, l, "G-RACE", "left", "0.25", true)
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "right", Budget: dec("100000")})
	if err := l.LinkGrant(ctx, "G-RACE", "", "right", "test"); err != nil {
		t.Fatal(err)
	}
	// Each hold is 4 × 1.25 = 5 of the period's 100: exactly 20 fit.
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := []string{"left", "right"}[i%2]
			_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: acct, Partition: "cpu-aws", Amount: dec("4"), Tasks: 1})
			var den *budget.Denial
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.As(err, &den) && den.Code == "grant_period":
				refused.Add(1)
			default:
				t.Errorf("hold: %v", err)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 20 || refused.Load() != 44 {
		t.Fatalf("accepted %d refused %d, want 20 and 44", accepted.Load(), refused.Load())
	}
	got := periods(t, l, "G-RACE")[p.Period-1]
	if !got.Held.Equal(dec("100")) || !got.Remaining.IsZero() {
		t.Fatalf("period held %s remaining %s", got.Held, got.Remaining)
	}
	if l, r := account(t, l, "left"), account(t, l, "right"); !l.Held.Add(r.Held).Equal(dec("80")) {
		t.Fatalf("accounts hold %s + %s, want 80", l.Held, r.Held)
	}
	mustVerify(t, l)
}

// At a period boundary the processor closes the period: an active hold
// moves to the next period, and the unspent rest is carried forward or
// lapses, as entries in the grant's ledger.
func TestPeriodCloseCarriesForwardOrLapses(t *testing.T) {
	t.Parallel()
	for _, carry := range []bool{true, false} {
		t.Run(fmt.Sprintf("carry_forward=%v", carry), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			l := newLedger(t, "")
			p := currentGrant(t, l, "G-CF", "cf", "0.50", carry)
			h1, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "cf", Partition: "cpu-aws", Amount: dec("30"), Tasks: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Settle(ctx, budget.SettleRequest{HoldID: h1.HoldID, JobID: "1", ArrayTaskID: -1, Actual: dec("20")}); err != nil {
				t.Fatal(err)
			}
			h2, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "cf", Partition: "cpu-aws", Amount: dec("10"), Tasks: 1})
			if err != nil {
				t.Fatal(err)
			}
			// Period 1 (this month): budget 100, spent 30, held 15.
			end, _ := time.Parse(time.DateOnly, p.EndDate)
			rep := mustProcess(t, l, end.Add(24*time.Hour+time.Hour))
			if len(rep.Periods) != 1 || rep.Periods[0].Period != 1 || rep.Periods[0].Outcome != "closed" {
				t.Fatalf("closed: %+v", rep.Periods)
			}
			c := rep.Periods[0]
			if !c.Unspent.Equal(dec("70")) {
				t.Fatalf("period 1 unspent %s, want 70 (100 - 30 spent; the 15 held moved on)", c.Unspent)
			}
			ps := periods(t, l, "G-CF")
			p2, p3 := ps[0], ps[1]
			if p2.Status != "closed" || !p2.Held.IsZero() || !p2.Remaining.IsZero() {
				t.Fatalf("closed period: %+v", p2)
			}
			if carry {
				if !c.Carried.Equal(dec("70")) || !c.Lapsed.IsZero() || !p3.Adjusted.Equal(dec("70")) || !p3.Remaining.Equal(dec("155")) {
					t.Fatalf("carry forward: close %+v next %+v", c, p3)
				}
			} else if !c.Lapsed.Equal(dec("70")) || !c.Carried.IsZero() || !p3.Adjusted.IsZero() || !p3.Remaining.Equal(dec("85")) {
				t.Fatalf("lapse: close %+v next %+v", c, p3)
			}
			if !p3.Held.Equal(dec("15")) {
				t.Fatalf("the active hold did not move: %+v", p3)
			}
			es, err := l.GrantEntries(ctx, "G-CF", 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			last := es[len(es)-1]
			want := map[bool]string{true: "carry_forward", false: "lapse"}[carry]
			if last.Type != want || !last.DBudget.Equal(dec("-70")) {
				t.Fatalf("last entry of period 1: %+v, want %s of -70", last, want)
			}
			// The hold, released later, leaves the period it moved to.
			if _, err := l.ReleaseHold(ctx, h2.HoldID, "test", "cancelled"); err != nil {
				t.Fatal(err)
			}
			if p3 = periods(t, l, "G-CF")[1]; !p3.Held.IsZero() {
				t.Fatalf("after release: %+v", p3)
			}
			// Closing again is a no-op.
			if rep := mustProcess(t, l, end.Add(25*time.Hour)); len(rep.Periods) != 0 {
				t.Fatalf("second close: %+v", rep.Periods)
			}
			mustVerify(t, l)
		})
	}
}

func TestBadGrantsAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	ok := budget.GrantSpec{Number: "NSF-1", Agency: "NSF", PI: "Dr. P", Amount: dec("1000"),
		Start: date(t, "2025-01-01"), End: date(t, "2025-12-31"), PeriodMonths: 12, IndirectRate: dec("0.3"), FederalID: "47.070"}
	mustGrant(t, l, ok)
	cases := map[string]func(s *budget.GrantSpec){
		"duplicate grant number": func(s *budget.GrantSpec) {},
		"end before start":       func(s *budget.GrantSpec) { s.Number, s.End = "X1", date(t, "2024-12-31") },
		"zero amount":            func(s *budget.GrantSpec) { s.Number, s.Amount = "X2", dec("0") },
		"negative amount":        func(s *budget.GrantSpec) { s.Number, s.Amount = "X3", dec("-1000") },
		"sub-cent amount":        func(s *budget.GrantSpec) { s.Number, s.Amount = "X4", dec("1000.001") },
		"periods of 0":           func(s *budget.GrantSpec) { s.Number, s.PeriodMonths = "X5", 0 },
		"negative periods":       func(s *budget.GrantSpec) { s.Number, s.PeriodMonths = "X6", -12 },
		"indirect below 0":       func(s *budget.GrantSpec) { s.Number, s.IndirectRate = "X7", dec("-0.01") },
		"indirect above 1.5":     func(s *budget.GrantSpec) { s.Number, s.IndirectRate = "X8", dec("1.51") },
		"slash in the number":    func(s *budget.GrantSpec) { s.Number = "NSF/1" },
		"SQL in the number":      func(s *budget.GrantSpec) { s.Number = "x'; DROP TABLE grants; --" },
		"empty number":           func(s *budget.GrantSpec) { s.Number = "" },
		"no agency":              func(s *budget.GrantSpec) { s.Number, s.Agency = "X9", "" },
		"no PI":                  func(s *budget.GrantSpec) { s.Number, s.PI = "X10", " " },
		"bad federal id":         func(s *budget.GrantSpec) { s.Number, s.FederalID = "X11", "47-070" },
		"unknown status":         func(s *budget.GrantSpec) { s.Number, s.Status = "X12", "maybe" },
		"no dates":               func(s *budget.GrantSpec) { s.Number, s.Start = "X13", time.Time{} },
		"huge amount":            func(s *budget.GrantSpec) { s.Number, s.Amount = "X14", dec("1e14") },
	}
	for name, mutate := range cases {
		spec := ok
		mutate(&spec)
		_, err := l.CreateGrant(ctx, spec)
		if !errors.Is(err, budget.ErrInvalid) && !(name == "duplicate grant number" && errors.Is(err, budget.ErrConflict)) {
			t.Errorf("%s: got %v", name, err)
		} else if name == "duplicate grant number" && !strings.Contains(err.Error(), "NSF-1 already exists") {
			t.Errorf("duplicate: message %q", err)
		}
	}
	gs, err := l.ListGrants(ctx, budget.GrantFilter{})
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants after bad input: %d %v", len(gs), err)
	}
	var n int
	if err := l.Pool().QueryRow(ctx, `SELECT count(*) FROM grant_periods`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("periods after bad input: %d %v", n, err)
	}
	bad := dec("2")
	if _, err := l.UpdateGrant(ctx, "NSF-1", budget.GrantPatch{IndirectRate: &bad}, "test"); !errors.Is(err, budget.ErrInvalid) {
		t.Fatalf("update with indirect 2: %v", err)
	}
	if _, err := l.SetPeriodBudget(ctx, "NSF-1", 1, dec("-1"), "test"); !errors.Is(err, budget.ErrInvalid) {
		t.Fatalf("negative period budget: %v", err)
	}
	if _, err := l.SetPeriodBudget(ctx, "NSF-1", 2, dec("1"), "test"); !errors.Is(err, budget.ErrNotFound) {
		t.Fatalf("missing period: %v", err)
	}
	if _, err := l.GetGrant(ctx, "nope"); !errors.Is(err, budget.ErrNotFound) {
		t.Fatalf("missing grant: %v", err)
	}
	mustVerify(t, l)
}

func TestGrantLinksDoNotOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	currentGrant(t, l, "G-A", "dept", "0", true)
	mustGrant(t, l, budget.GrantSpec{Number: "G-B", Agency: "NSF", PI: "Dr. P", Amount: dec("1000"),
		Start: date(t, "2025-01-01"), End: date(t, "2030-12-31"), PeriodMonths: 12})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "proj", Parent: "dept", Budget: dec("50")})
	if err := l.LinkGrant(ctx, "G-B", "", "proj", "test"); !errors.Is(err, budget.ErrConflict) {
		t.Fatalf("linking a child of a linked account: %v", err)
	}
	if err := l.LinkGrant(ctx, "G-A", "", "dept", "test"); err != nil {
		t.Fatalf("linking again: %v", err)
	}
	// The child draws on its parent's grant.
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "proj", Partition: "cpu-aws", Amount: dec("40"), Tasks: 1}); err != nil {
		t.Fatal(err)
	}
	if p := periods(t, l, "G-A")[0]; !p.Held.Equal(dec("40")) {
		t.Fatalf("period held %s, want 40 from the sub-account", p.Held)
	}
	if err := l.LinkGrant(ctx, "G-B", "", "nope", "test"); !errors.Is(err, budget.ErrAccountNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
	mustVerify(t, l)
}

// Property: whatever moves on a grant-funded account — holds, increases and
// decreases, array tasks settling one by one, charges without a hold,
// corrections, refunds, releases — the period holds exactly the account's
// held × factor and has spent exactly its spent × factor.
func TestGrantFollowsEveryKindOfLedgerRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	currentGrant(t, l, "G-ALL", "all", "0.55", true)
	if _, err := l.SetPeriodBudget(ctx, "G-ALL", 2, dec("0"), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetPeriodBudget(ctx, "G-ALL", 1, dec("200"), "test"); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		a := account(t, l, "all")
		p := periods(t, l, "G-ALL")[0]
		if !p.Held.Equal(a.Held.Mul(dec("1.55"))) || !p.Spent.Equal(a.Spent.Mul(dec("1.55"))) {
			t.Fatalf("%s: period held %s spent %s; account held %s spent %s (× 1.55)", step, p.Held, p.Spent, a.Held, a.Spent)
		}
		mustVerify(t, l)
	}
	h, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "all", Partition: "cpu-aws", Amount: dec("30.000001"), Tasks: 3})
	if err != nil {
		t.Fatal(err)
	}
	check("hold")
	if err := l.AdjustHold(ctx, h.HoldID, dec("45"), 3, nil, nil, "test", "longer"); err != nil {
		t.Fatal(err)
	}
	check("increase")
	var den *budget.Denial
	if err := l.AdjustHold(ctx, h.HoldID, dec("200"), 3, nil, nil, "test", "much longer"); !errors.As(err, &den) || den.Code != "grant_period" {
		t.Fatalf("an increase beyond the period: %v", err)
	}
	if err := l.AdjustHold(ctx, h.HoldID, dec("36"), 3, nil, nil, "test", "shorter"); err != nil {
		t.Fatal(err)
	}
	check("decrease")
	for task := 0; task < 3; task++ {
		if _, err := l.Settle(ctx, budget.SettleRequest{HoldID: h.HoldID, JobID: "9", ArrayTaskID: task, Actual: dec("7.333333")}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("array task %d", task))
	}
	s, err := l.Settle(ctx, budget.SettleRequest{Account: "all", JobID: "10", ArrayTaskID: -1, Actual: dec("3.10")})
	if err != nil {
		t.Fatal(err)
	}
	check("charge without a hold")
	if _, err := l.Correct(ctx, s.ChargeID, dec("4.25"), "asbx", "actual cost", "asbx:10"); err != nil {
		t.Fatal(err)
	}
	check("correction")
	if err := l.Refund(ctx, s.ChargeID, dec("1.25"), "test", "partial refund", ""); err != nil {
		t.Fatal(err)
	}
	check("refund")
	h2, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "all", Partition: "cpu-aws", Amount: dec("12"), Tasks: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReleaseHold(ctx, h2.HoldID, "test", "cancelled"); err != nil {
		t.Fatal(err)
	}
	check("release")
	// Deposits and withdrawals do not touch the grant.
	if err := l.Withdraw(ctx, "", "all", dec("5"), "test", "return", ""); err != nil {
		t.Fatal(err)
	}
	check("withdraw")
}

func TestHoldsOutsideAnActiveGrantAreRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustGrant(t, l, budget.GrantSpec{Number: "OLD", Agency: "NSF", PI: "P", Amount: dec("1000"),
		Start: date(t, "2020-01-01"), End: date(t, "2021-12-31"), PeriodMonths: 12})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "late", Budget: dec("1000")})
	if err := l.LinkGrant(ctx, "OLD", "", "late", "test"); err != nil {
		t.Fatal(err)
	}
	_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "late", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1})
	var den *budget.Denial
	if !errors.As(err, &den) || den.Code != "grant_period" || !strings.Contains(den.UserMessage(), "OLD (ended 2021-12-31)") {
		t.Fatalf("hold after the grant's end: %v", err)
	}
	currentGrant(t, l, "SUSP", "susp", "0", true)
	st := "suspended"
	if _, err := l.UpdateGrant(ctx, "SUSP", budget.GrantPatch{Status: &st}, "test"); err != nil {
		t.Fatal(err)
	}
	_, err = l.PlaceHold(ctx, budget.HoldRequest{Account: "susp", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1})
	if !errors.As(err, &den) || !strings.Contains(den.UserMessage(), "grant is suspended") {
		t.Fatalf("hold on a suspended grant: %v", err)
	}
	// The last period of a grant closes only once its holds are gone.
	act := "active"
	if _, err := l.UpdateGrant(ctx, "SUSP", budget.GrantPatch{Status: &act}, "test"); err != nil {
		t.Fatal(err)
	}
	h, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "susp", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1})
	if err != nil {
		t.Fatal(err)
	}
	far := time.Now().AddDate(2, 0, 0)
	rep := mustProcess(t, l, far)
	last := rep.Periods[len(rep.Periods)-1]
	if last.Grant != "SUSP" || last.Period != 12 || last.Outcome != "active_holds" {
		t.Fatalf("last period with a hold: %+v", last)
	}
	ps := periods(t, l, "SUSP")
	if ps[11].Status != "open" || !ps[11].Held.Equal(dec("1")) || ps[10].Status != "closed" {
		t.Fatalf("the hold should have moved to the last period, still open: %+v", ps[10:])
	}
	if _, err := l.ReleaseHold(ctx, h.HoldID, "test", "done"); err != nil {
		t.Fatal(err)
	}
	rep = mustProcess(t, l, far)
	if len(rep.Periods) != 1 || rep.Periods[0].Outcome != "closed" {
		t.Fatalf("close after release: %+v", rep.Periods)
	}
	// The last period's rest lapses, carry-forward or not.
	if !rep.Periods[0].Lapsed.IsPositive() || !rep.Periods[0].Carried.IsZero() {
		t.Fatalf("last period: %+v", rep.Periods[0])
	}
	mustVerify(t, l)
}
