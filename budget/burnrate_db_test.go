package budget

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// buildScenarios writes the hand-computed cases of TestComputeBurnHandComputed
// as real ledgers: $3,000 accounts opened 2025-03-01, ending 2025-06-09,
// looked at on 2025-03-31 (docs/analytics.md works the numbers).
func buildScenarios(t *testing.T) (*fixture, time.Time) {
	f := newFixture(t, "")
	start := day("2025-03-01")
	f.at(start, func() {
		for _, n := range []string{"steady", "spike", "idle", "held", "refunded"} {
			f.account(n, "3000")
		}
	})
	for d := 0; d < 30; d++ {
		f.at(noon(start, d), func() {
			for _, n := range []string{"steady", "spike", "held", "refunded"} {
				f.charge(n, "30", "alice", "cpu")
			}
			switch d {
			case 5:
				f.charge("refunded", "90", "bob", "gpu")
			case 28:
				f.charge("spike", "600", "bob", "gpu")
			case 29:
				f.hold("held", "300")
			}
		})
		if d == 6 {
			f.at(noon(start, 6).Add(time.Hour), func() {
				var charge int64
				if err := f.l.pool.QueryRow(f.ctx, `SELECT id FROM charges WHERE actual = 90`).Scan(&charge); err != nil {
					t.Fatal(err)
				}
				if err := f.l.Refund(f.ctx, charge, dec("90"), "test", "wrong partition", ""); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	for _, n := range []string{"steady", "spike", "idle", "held", "refunded"} {
		f.setEnd(n, day("2025-06-09"))
	}
	now := day("2025-03-31")
	f.setNow(now)
	return f, now
}

func TestAccountBurnRateOnConstructedLedgers(t *testing.T) {
	t.Parallel()
	f, _ := buildScenarios(t)
	cases := []struct {
		account                      string
		spent, daily, expected, vari string
		score                        int
		health, burn, exhaustion     string
		endBalance                   string
		remaining                    string
	}{
		{"steady", "900", "30", "30", "0", 100, HealthHealthy, BurnOnTrack, "2025-06-09", "0", "2100"},
		{"spike", "1500", "50", "30", "66.67", 46, HealthWarning, BurnOverspending, "2025-04-30", "-2000", "1500"},
		{"idle", "0", "0", "30", "-100", 82, HealthHealthy, BurnUnderspending, "", "3000", "3000"},
		{"held", "900", "30", "27", "11.11", 91, HealthHealthy, BurnOnTrack, "2025-05-30", "-300", "1800"},
		{"refunded", "900", "30", "30", "0", 100, HealthHealthy, BurnOnTrack, "2025-06-09", "0", "2100"},
	}
	for _, c := range cases {
		b, err := f.l.AccountBurnRate(f.ctx, "", c.account, BurnOptions{Series: true})
		if err != nil {
			t.Fatalf("%s: %v", c.account, err)
		}
		t.Run(c.account, func(t *testing.T) {
			eqDec(t, "spent in window", b.SpentInWindow, c.spent)
			eqDec(t, "days", b.Window.Days, "30")
			eqDec(t, "daily", b.DailyRate, c.daily)
			eqDecP(t, "expected", b.ExpectedDailyRate, c.expected)
			eqDecP(t, "variance", b.VariancePercent, c.vari)
			if b.HealthScore != c.score || b.HealthStatus != c.health || b.BurnStatus != c.burn {
				t.Errorf("health %d %s %s, want %d %s %s", b.HealthScore, b.HealthStatus, b.BurnStatus, c.score, c.health, c.burn)
			}
			eqDate(t, "exhaustion", b.Projection.ExhaustionDate, c.exhaustion)
			eqDecP(t, "end balance", b.Projection.EndBalance, c.endBalance)
			eqDec(t, "remaining", b.Funds.Remaining, c.remaining)
			// The series covers every day of the window and adds up to
			// the window's spend; its last remaining is today's.
			if len(b.Series) != 30 || b.Series[0].Date != "2025-03-01" || b.Series[29].Date != "2025-03-30" {
				t.Fatalf("series has %d days from %v", len(b.Series), b.Series)
			}
			sum := decimal.Zero
			for _, p := range b.Series {
				sum = sum.Add(p.Spent)
			}
			eqDec(t, "series sum", sum, c.spent)
			eqDec(t, "series cumulative", b.Series[29].Cumulative, c.spent)
			eqDec(t, "series last remaining", b.Series[29].Remaining, c.remaining)
			eqDecP(t, "series last expected", b.Series[29].Expected, dec(c.expected).Mul(dec("30")).String())
		})
	}
	// Day-level detail: the spike on day 28, the refund on day 6.
	b, _ := f.l.AccountBurnRate(f.ctx, "", "spike", BurnOptions{Series: true})
	eqDec(t, "spike day", b.Series[28].Spent, "630")
	b, _ = f.l.AccountBurnRate(f.ctx, "", "refunded", BurnOptions{Series: true})
	eqDec(t, "charge day", b.Series[5].Spent, "120")
	eqDec(t, "refund day", b.Series[6].Spent, "-60")

	// The bulk health scores agree with the one-account answers.
	hs, err := f.l.HealthScores(f.ctx, "30d")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, c := range cases {
		want[c.account] = c.score
	}
	if len(hs) != len(cases) {
		t.Fatalf("health scores for %d accounts, want %d", len(hs), len(cases))
	}
	for _, h := range hs {
		if h.HealthScore != want[h.Account] {
			t.Errorf("bulk health of %s = %d, want %d", h.Account, h.HealthScore, want[h.Account])
		}
	}
	f.verify()
}

func TestBurnRateOfAPastWindow(t *testing.T) {
	t.Parallel()
	f, _ := buildScenarios(t)
	w, err := WindowBetween(day("2025-03-10"), day("2025-03-20"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.l.AccountBurnRate(f.ctx, "", "steady", BurnOptions{Window: w})
	if err != nil {
		t.Fatal(err)
	}
	// Days 9..18 fall in the window; the funds are those of 2025-03-20:
	// 19 charges made, 2430 left; expected (2430 + 300) / 91 days = 30.
	eqDec(t, "spent", b.SpentInWindow, "300")
	eqDec(t, "daily", b.DailyRate, "30")
	eqDec(t, "remaining then", b.Funds.Remaining, "2430")
	eqDecP(t, "expected", b.ExpectedDailyRate, "30")
	if !b.AsOf.Equal(day("2025-03-20")) {
		t.Errorf("as of %s", b.AsOf)
	}
}

func TestBurnRateDaysFollowTheConfiguredZone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "[pricing]\ntimezone = \"America/New_York\"\n")
	ny, _ := time.LoadLocation("America/New_York")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, ny)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	f.at(at("2025-03-20 15:00"), func() { f.account("late", "1000") })
	f.at(at("2025-03-20 23:30"), func() { f.charge("late", "10", "alice", "cpu") })
	f.at(at("2025-03-21 00:30"), func() { f.charge("late", "20", "alice", "cpu") })
	f.at(at("2025-03-22 12:00"), func() { f.charge("late", "30", "alice", "cpu") })
	f.setNow(at("2025-03-23 10:00"))
	b, err := f.l.AccountBurnRate(f.ctx, "", "late", BurnOptions{Series: true})
	if err != nil {
		t.Fatal(err)
	}
	// The 30-day window starts at the account's first local midnight:
	// 3 days and 10 hours, 60 spent: 60 / 3.416667 = 17.560974.
	if !b.Window.From.Equal(at("2025-03-20 00:00")) {
		t.Errorf("window starts %s", b.Window.From)
	}
	eqDec(t, "days", b.Window.Days, "3.416667")
	eqDec(t, "daily", b.DailyRate, "17.560974")
	got := map[string]string{}
	for _, p := range b.Series {
		got[p.Date] = p.Spent.String()
	}
	want := map[string]string{"2025-03-20": "10", "2025-03-21": "20", "2025-03-22": "30", "2025-03-23": "0"}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for d, v := range want {
		if got[d] != v {
			t.Errorf("%s spent %s, want %s", d, got[d], v)
		}
	}
	if b.ExpectedDailyRate != nil || b.BurnStatus != BurnNoBaseline {
		t.Errorf("an account without an end has no expected rate: %v %s", b.ExpectedDailyRate, b.BurnStatus)
	}
	f.verify()
}

func TestBurnRateRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.account("ok", "10")
	for _, name := range []string{"nope", "x'; DROP TABLE ledger; --", ""} {
		if _, err := f.l.AccountBurnRate(f.ctx, "", name, BurnOptions{}); err == nil {
			t.Errorf("burn rate of %q: no error", name)
		}
	}
	if _, err := f.l.HealthScores(f.ctx, "12x"); err == nil {
		t.Error("bad period accepted")
	}
}

// grantFixture: a one-period grant of $3,650 for 365 days (so $10/day is the
// plan) that started 60 days ago, 25% indirect, funding account "lab",
// which spent $8 direct ($10 total) a day for the last 30 days and has a
// $40 hold ($50 total) open. Grant postings pick their period by the real
// clock, so the grant's dates are set around today.
func grantFixture(t *testing.T) (*fixture, time.Time) {
	f := newFixture(t, "")
	today := Date(time.Now().UTC())
	start := today.AddDate(0, 0, -60)
	f.at(start, func() {
		f.account("lab", "10000")
		if _, err := f.l.CreateGrant(f.ctx, GrantSpec{Number: "NSF-2025-1", Agency: "NSF", PI: "Dr. Smith",
			Amount: dec("3650"), Start: start, End: start.AddDate(0, 0, 364), PeriodMonths: 12,
			IndirectRate: dec("0.25"), Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := f.l.LinkGrant(f.ctx, "NSF-2025-1", "", "lab", "test"); err != nil {
			t.Fatal(err)
		}
	})
	for d := 0; d < 30; d++ {
		f.at(noon(today, d-30), func() { f.charge("lab", "8", "alice", "gpu") })
	}
	f.hold("lab", "40")
	f.setNow(today)
	return f, today
}

func TestGrantBurnRate(t *testing.T) {
	t.Parallel()
	f, today := grantFixture(t)
	b, err := f.l.BurnRateOf(f.ctx, "", "NSF-2025-1", BurnOptions{Series: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind != "grant" || b.ExpectedSource != ExpectedGrantPeriod {
		t.Fatalf("kind %s source %s", b.Kind, b.ExpectedSource)
	}
	// 30 × $10 total cost against 3650 / 365 = $10/day planned.
	eqDec(t, "spent", b.SpentInWindow, "300")
	eqDec(t, "daily", b.DailyRate, "10")
	eqDecP(t, "expected", b.ExpectedDailyRate, "10")
	eqDecP(t, "variance", b.VariancePercent, "0")
	// The period: 3650 budget, 300 spent, 50 held: 3300 left, 305 days to
	// go, 330 days of runway; commitment 10 × 3300/3350 = 9.85.
	eqDec(t, "remaining", b.Funds.Remaining, "3300")
	eqDec(t, "held", b.Funds.Held, "50")
	eqDecP(t, "percent used", b.PercentUsed, "9.59")
	if b.DaysRemaining == nil || *b.DaysRemaining != 305 {
		t.Errorf("days remaining %v, want 305", b.DaysRemaining)
	}
	eqDec(t, "commitment", b.Health.Commitment, "9.85")
	if b.HealthScore != 100 || b.BurnStatus != BurnOnTrack {
		t.Errorf("health %d %s", b.HealthScore, b.BurnStatus)
	}
	eqDecP(t, "end balance", b.Projection.EndBalance, "250")
	eqDate(t, "exhaustion", b.Projection.ExhaustionDate, today.AddDate(0, 0, 330).Format("2006-01-02"))
	if len(b.Series) != 30 {
		t.Fatalf("series of %d days", len(b.Series))
	}
	eqDec(t, "series day", b.Series[0].Spent, "10")
	eqDec(t, "burn-down remaining", b.Series[29].Remaining, "3350")

	// The only account of the grant is measured against the period's
	// plan in direct cost: 3650 / 1.25 / 365 = $8/day.
	a, err := f.l.AccountBurnRate(f.ctx, "", "lab", BurnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.ExpectedSource != ExpectedGrantPeriod {
		t.Errorf("account expected source %s", a.ExpectedSource)
	}
	eqDecP(t, "account expected", a.ExpectedDailyRate, "8")
	eqDec(t, "account daily", a.DailyRate, "8")
	if a.PeriodEnd == nil || !a.PeriodEnd.Equal(today.AddDate(0, 0, 305)) {
		t.Errorf("account period end %v", a.PeriodEnd)
	}
	if _, err := f.l.BurnRateOf(f.ctx, "", "NO-SUCH-1", BurnOptions{}); err == nil {
		t.Error("unknown target accepted")
	}
	f.verify()
}

func TestBurnRateAcrossAPeriodBoundary(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	today := Date(time.Now().UTC())
	first := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	start := first.AddDate(0, -2, 0)
	f.at(start, func() {
		f.account("mo", "5000")
		if _, err := f.l.CreateGrant(f.ctx, GrantSpec{Number: "MONTHLY-1", Agency: "DOE", PI: "Dr. Who",
			Amount: dec("1200"), Start: start, End: start.AddDate(1, 0, -1), PeriodMonths: 1, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := f.l.LinkGrant(f.ctx, "MONTHLY-1", "", "mo", "test"); err != nil {
			t.Fatal(err)
		}
	})
	for d := 1; d <= 40; d++ {
		f.at(noon(today, -d), func() { f.charge("mo", "3", "alice", "cpu") })
	}
	f.setNow(today)
	b, err := f.l.GrantBurnRate(f.ctx, "MONTHLY-1", BurnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The window reaches into last month's period; the plan is this
	// month's: $100 over the days of this month.
	next := first.AddDate(0, 1, 0)
	monthDays := int64(next.Sub(first).Hours() / 24)
	eqDecP(t, "expected", b.ExpectedDailyRate, dec("100").DivRound(decimal.NewFromInt(monthDays), Scale).String())
	eqDec(t, "daily", b.DailyRate, "3")
	if b.PeriodEnd == nil || !b.PeriodEnd.Equal(next) {
		t.Errorf("period end %v, want %s", b.PeriodEnd, next)
	}
	// Budget is this month's 100; what it shows as spent is what the grant
	// put in this period.
	eqDec(t, "budget", b.Budget, "100")
	f.verify()
}
