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
