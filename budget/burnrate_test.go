package budget

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func decp(s string) *decimal.Decimal { d := dec(s); return &d }

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func eqDec(t *testing.T, what string, got decimal.Decimal, want string) {
	t.Helper()
	if !got.Equal(dec(want)) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func eqDecP(t *testing.T, what string, got *decimal.Decimal, want string) {
	t.Helper()
	if want == "" {
		if got != nil {
			t.Errorf("%s = %s, want none", what, got)
		}
		return
	}
	if got == nil {
		t.Errorf("%s = none, want %s", what, want)
		return
	}
	eqDec(t, what, *got, want)
}

func eqDate(t *testing.T, what string, got *time.Time, want string) {
	t.Helper()
	switch {
	case want == "" && got != nil:
		t.Errorf("%s = %s, want none", what, got.Format(time.RFC3339))
	case want != "" && got == nil:
		t.Errorf("%s = none, want %s", what, want)
	case want != "" && got.UTC().Format("2006-01-02") != want:
		t.Errorf("%s = %s, want %s", what, got.UTC().Format(time.RFC3339), want)
	}
}

// The cases below are computed by hand in docs/analytics.md's terms: an
// account with $3,000 for 100 days (2025-03-01 to 2025-06-09), looked at on
// 2025-03-31 over the last 30 days, so 70 days remain.
func TestComputeBurnHandComputed(t *testing.T) {
	t.Parallel()
	asOf := day("2025-03-31")
	end := day("2025-06-09")
	win := Window{Period: "30d", From: day("2025-03-01"), To: asOf}
	base := burnInput{asOf: asOf, loc: time.UTC, window: win, budget: dec("3000"), end: &end, tolerance: dec("25")}
	cases := []struct {
		name                                 string
		spent, dep, total, held              string
		daily, expected, variance            string
		burn                                 string
		runway, pace, commitment             string
		score                                int
		health                               string
		exhaustion                           string
		days, projected, endBalance, overrun string
		before                               bool
	}{
		{
			// $30/day every day: exactly on plan.
			name: "steady spend", spent: "900", dep: "3000", total: "900", held: "0",
			daily: "30", expected: "30", variance: "0", burn: BurnOnTrack,
			runway: "50", pace: "40", commitment: "10", score: 100, health: HealthHealthy,
			exhaustion: "2025-06-09", days: "70", projected: "2100", endBalance: "0", overrun: "0",
		},
		{
			// $30/day plus a $600 spike: $50/day against $30 expected.
			// runway 1500/50 = 30 of 70 days: 50×30/70 = 21.43;
			// pace 40×(1 − (66.67−10)/90) = 14.81; 21.43+14.81+10 = 46.24.
			name: "spike", spent: "1500", dep: "3000", total: "1500", held: "0",
			daily: "50", expected: "30", variance: "66.67", burn: BurnOverspending,
			runway: "21.43", pace: "14.81", commitment: "10", score: 46, health: HealthWarning,
			exhaustion: "2025-04-30", days: "30", projected: "3500", endBalance: "-2000", overrun: "2000", before: true,
		},
		{
			// Nothing spent: −100% counts as 50 for pace: 40×(1 − 40/90).
			name: "no spend", spent: "0", dep: "3000", total: "0", held: "0",
			daily: "0", expected: "30", variance: "-100", burn: BurnUnderspending,
			runway: "50", pace: "22.22", commitment: "10", score: 82, health: HealthHealthy,
			exhaustion: "", projected: "0", endBalance: "3000", overrun: "0",
		},
		{
			// Steady spend with $300 held by running jobs: remaining 1800,
			// expected (1800+900)/100 = 27, variance 3/27 = 11.11%;
			// runway 60 of 70 days: 42.86; pace 40×(1 − 1.11/90) = 39.51;
			// commitment 10×1800/2100 = 8.57. The holds make it overrun.
			name: "holds outstanding", spent: "900", dep: "3000", total: "900", held: "300",
			daily: "30", expected: "27", variance: "11.11", burn: BurnOnTrack,
			runway: "42.86", pace: "39.51", commitment: "8.57", score: 91, health: HealthHealthy,
			exhaustion: "2025-05-30", days: "60", projected: "2100", endBalance: "-300", overrun: "300", before: true,
		},
		{
			// Everything spent or held: exhausted today, runway and
			// commitment 0; $3,000 in 30 days against (0+3000)/100.
			name: "exhausted", spent: "3000", dep: "3000", total: "2900", held: "100",
			daily: "100", expected: "30", variance: "233.33", burn: BurnOverspending,
			runway: "0", pace: "0", commitment: "0", score: 0, health: HealthCritical,
			exhaustion: "2025-03-31", days: "0", projected: "7000", endBalance: "-7000", overrun: "7000", before: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base
			in.spent = dec(c.spent)
			in.funds = fundsOf(dec(c.dep), dec(c.total), dec(c.held), decimal.Zero)
			b := computeBurn(in)
			eqDec(t, "window days", b.Window.Days, "30")
			eqDec(t, "daily rate", b.DailyRate, c.daily)
			eqDecP(t, "expected", b.ExpectedDailyRate, c.expected)
			if b.ExpectedSource != ExpectedRemainingFunds {
				t.Errorf("expected source = %s", b.ExpectedSource)
			}
			eqDecP(t, "variance", b.VariancePercent, c.variance)
			if b.BurnStatus != c.burn {
				t.Errorf("burn status = %s, want %s", b.BurnStatus, c.burn)
			}
			eqDec(t, "runway", b.Health.Runway, c.runway)
			eqDec(t, "pace", b.Health.Pace, c.pace)
			eqDec(t, "commitment", b.Health.Commitment, c.commitment)
			if b.HealthScore != c.score || b.HealthStatus != c.health {
				t.Errorf("health = %d %s, want %d %s", b.HealthScore, b.HealthStatus, c.score, c.health)
			}
			eqDate(t, "exhaustion", b.Projection.ExhaustionDate, c.exhaustion)
			if c.exhaustion != "" {
				eqDecP(t, "days to exhaustion", b.Projection.DaysToExhaustion, c.days)
			}
			eqDecP(t, "projected spend", b.Projection.ProjectedSpend, c.projected)
			eqDecP(t, "end balance", b.Projection.EndBalance, c.endBalance)
			eqDecP(t, "overrun", b.Projection.Overrun, c.overrun)
			if b.Projection.ExhaustsBeforeEnd != c.before {
				t.Errorf("exhausts before end = %v, want %v", b.Projection.ExhaustsBeforeEnd, c.before)
			}
			if b.DaysRemaining == nil || *b.DaysRemaining != 70 {
				t.Errorf("days remaining = %v, want 70", b.DaysRemaining)
			}
			eqDec(t, "committed", b.Projection.Committed, c.held)
		})
	}
}

func TestComputeBurnWithoutEnd(t *testing.T) {
	t.Parallel()
	asOf := day("2025-03-31")
	in := burnInput{asOf: asOf, loc: time.UTC, window: Window{From: day("2025-03-01"), To: asOf},
		spent: dec("300"), funds: fundsOf(dec("1000"), dec("300"), decimal.Zero, dec("50")), budget: dec("1000"),
		tolerance: dec("25")}
	b := computeBurn(in)
	// $10/day, 700 left: 70 days of runway against the 90-day horizon:
	// runway 50×70/90 = 38.89, pace follows runway (40×38.89/50 = 31.11).
	eqDec(t, "daily", b.DailyRate, "10")
	if b.ExpectedDailyRate != nil || b.ExpectedSource != ExpectedNone || b.BurnStatus != BurnNoBaseline {
		t.Errorf("expected = %v %s %s, want none", b.ExpectedDailyRate, b.ExpectedSource, b.BurnStatus)
	}
	eqDec(t, "runway", b.Health.Runway, "38.89")
	eqDec(t, "pace", b.Health.Pace, "31.11")
	if b.HealthScore != 80 || b.HealthStatus != HealthHealthy {
		t.Errorf("health = %d %s, want 80 HEALTHY", b.HealthScore, b.HealthStatus)
	}
	eqDate(t, "exhaustion", b.Projection.ExhaustionDate, "2025-06-09")
	if b.Projection.EndBalance != nil || b.DaysRemaining != nil {
		t.Errorf("no end: end balance %v, days remaining %v", b.Projection.EndBalance, b.DaysRemaining)
	}
	eqDec(t, "available includes the credit limit", b.Funds.Available, "750")
	eqDecP(t, "percent used", b.PercentUsed, "30")
}

func TestComputeBurnGivenExpectation(t *testing.T) {
	t.Parallel()
	asOf := day("2025-03-31")
	end := day("2025-12-31")
	in := burnInput{asOf: asOf, loc: time.UTC, window: Window{From: day("2025-03-24"), To: asOf},
		spent: dec("70"), funds: fundsOf(dec("1000"), dec("70"), decimal.Zero, decimal.Zero), budget: dec("365"),
		end: &end, expected: decp("1"), source: ExpectedGrantPeriod, tolerance: dec("25")}
	b := computeBurn(in)
	eqDec(t, "daily", b.DailyRate, "10")
	eqDecP(t, "variance", b.VariancePercent, "900")
	if b.ExpectedSource != ExpectedGrantPeriod || b.BurnStatus != BurnOverspending {
		t.Errorf("source %s status %s", b.ExpectedSource, b.BurnStatus)
	}
	eqDecP(t, "percent used of the period budget", b.PercentUsed, "19.18")
	// Expected zero with spending is overspending, pace 0.
	in.expected = decp("0")
	b = computeBurn(in)
	if b.BurnStatus != BurnOverspending || b.VariancePercent != nil || !b.Health.Pace.IsZero() {
		t.Errorf("expected zero: %s %v pace %s", b.BurnStatus, b.VariancePercent, b.Health.Pace)
	}
}

func TestComputeBurnShortWindowCountsOneDay(t *testing.T) {
	t.Parallel()
	asOf := day("2025-03-31").Add(3 * time.Hour)
	in := burnInput{asOf: asOf, loc: time.UTC, window: Window{From: day("2025-03-31"), To: asOf},
		spent: dec("12"), funds: fundsOf(dec("100"), dec("12"), decimal.Zero, decimal.Zero), tolerance: dec("25")}
	b := computeBurn(in)
	eqDec(t, "days", b.Window.Days, "1")
	eqDec(t, "daily", b.DailyRate, "12")
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// 2025-03-09 is the spring-forward day in New York: "7d" is still 7.
	now := time.Date(2025, 3, 12, 15, 30, 0, 0, ny)
	for _, c := range []struct {
		period, from string
		days         string
	}{
		{"7d", "2025-03-05T15:30:00-05:00", "7"},
		{"30d", "2025-02-10T15:30:00-05:00", "30"},
		{"90d", "2024-12-12T15:30:00-05:00", "90"},
		{"2w", "2025-02-26T15:30:00-05:00", "14"},
		{"6m", "2024-09-12T15:30:00-04:00", "181"},
		{"1y", "2024-03-12T15:30:00-04:00", "365"},
	} {
		w, err := ParseWindow(c.period, now, ny)
		if err != nil {
			t.Fatalf("%s: %v", c.period, err)
		}
		if got := w.From.Format(time.RFC3339); got != c.from {
			t.Errorf("%s: from %s, want %s", c.period, got, c.from)
		}
		eqDec(t, c.period+" days", spanDays(w.From, w.To, ny), c.days)
	}
	for _, bad := range []string{"", "0d", "30", "d", "-7d", "7h", "1.5d", "11y", "99999d", "7d; DROP TABLE ledger", "7D"} {
		if _, err := ParseWindow(bad, now, ny); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
	if _, err := WindowBetween(now, now); err == nil {
		t.Error("empty custom window accepted")
	}
}

func TestHealthStatusBands(t *testing.T) {
	t.Parallel()
	for score, want := range map[int]string{100: HealthHealthy, 80: HealthHealthy, 79: HealthConcern, 60: HealthConcern,
		59: HealthWarning, 40: HealthWarning, 39: HealthCritical, 0: HealthCritical} {
		if got := HealthStatusOf(score); got != want {
			t.Errorf("HealthStatusOf(%d) = %s, want %s", score, got, want)
		}
	}
}
