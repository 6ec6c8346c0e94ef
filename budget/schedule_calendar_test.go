package budget

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("zone %s: %v", name, err)
	}
	return loc
}

func dates(p plan, n int) []string {
	var out []string
	for k := 1; k <= n; k++ {
		out = append(out, p.due(k).Format("2006-01-02 15:04 MST"))
	}
	return out
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: installment %d is %s, want %s (all: %v)", what, i+1, got[i], want[i], got)
		}
	}
}

func TestMonthEndsAreCalendarCorrect(t *testing.T) {
	t.Parallel()
	utc := time.UTC
	p := plan{start: time.Date(2024, 1, 31, 0, 0, 0, 0, utc), loc: utc, frequency: "monthly"}
	sameList(t, "monthly from Jan 31 2024 (leap year)", dates(p, 5), []string{
		"2024-01-31 00:00 UTC", "2024-02-29 00:00 UTC", "2024-03-31 00:00 UTC", "2024-04-30 00:00 UTC", "2024-05-31 00:00 UTC"})
	p.start = time.Date(2025, 1, 31, 0, 0, 0, 0, utc)
	sameList(t, "monthly from Jan 31 2025", dates(p, 3), []string{
		"2025-01-31 00:00 UTC", "2025-02-28 00:00 UTC", "2025-03-31 00:00 UTC"})
	p = plan{start: time.Date(2024, 11, 30, 0, 0, 0, 0, utc), loc: utc, frequency: "quarterly"}
	sameList(t, "quarterly from Nov 30", dates(p, 4), []string{
		"2024-11-30 00:00 UTC", "2025-02-28 00:00 UTC", "2025-05-30 00:00 UTC", "2025-08-30 00:00 UTC"})
	p = plan{start: time.Date(2024, 2, 29, 0, 0, 0, 0, utc), loc: utc, frequency: "yearly"}
	sameList(t, "yearly from Feb 29", dates(p, 5), []string{
		"2024-02-29 00:00 UTC", "2025-02-28 00:00 UTC", "2026-02-28 00:00 UTC", "2027-02-28 00:00 UTC", "2028-02-29 00:00 UTC"})
	p = plan{start: time.Date(2023, 12, 31, 0, 0, 0, 0, utc), loc: utc, frequency: "monthly"}
	if got := p.due(3).Format(time.DateOnly); got != "2024-02-29" {
		t.Fatalf("monthly across a year end into a leap February: %s", got)
	}
	if got := p.due(15).Format(time.DateOnly); got != "2025-02-28" {
		t.Fatalf("installment 15: %s", got)
	}
}

// Daily and weekly installments keep their wall-clock time in the zone, so
// across a daylight-saving change the gap is 23 or 25 hours.
func TestInstallmentsFollowDaylightSavingInTheZone(t *testing.T) {
	t.Parallel()
	ny := mustZone(t, "America/New_York")
	p := plan{start: time.Date(2025, 3, 8, 0, 0, 0, 0, ny), loc: ny, frequency: "daily"}
	sameList(t, "daily across spring forward", dates(p, 3), []string{
		"2025-03-08 00:00 EST", "2025-03-09 00:00 EST", "2025-03-10 00:00 EDT"})
	if gap := p.due(3).Sub(p.due(2)); gap != 23*time.Hour {
		t.Fatalf("spring-forward day lasts %s, want 23h", gap)
	}
	p.start = time.Date(2025, 11, 1, 0, 0, 0, 0, ny)
	if gap := p.due(3).Sub(p.due(2)); gap != 25*time.Hour {
		t.Fatalf("fall-back day lasts %s, want 25h", gap)
	}
	p = plan{start: time.Date(2025, 3, 2, 12, 0, 0, 0, ny), loc: ny, frequency: "weekly"}
	sameList(t, "weekly across spring forward", dates(p, 2), []string{"2025-03-02 12:00 EST", "2025-03-09 12:00 EDT"})
	// A start at 02:30 on the spring-forward day does not exist; Go moves it
	// to 03:30 that day only, and the next day is back at 02:30.
	p = plan{start: time.Date(2025, 3, 8, 2, 30, 0, 0, ny), loc: ny, frequency: "daily"}
	sameList(t, "daily at 02:30", dates(p, 3), []string{"2025-03-08 02:30 EST", "2025-03-09 03:30 EDT", "2025-03-10 02:30 EDT"})
	// Monthly at local midnight in a zone whose midnight is not UTC's.
	syd := mustZone(t, "Australia/Sydney")
	p = plan{start: time.Date(2025, 3, 31, 0, 0, 0, 0, syd), loc: syd, frequency: "monthly"}
	sameList(t, "monthly in Sydney across the April DST end", dates(p, 3), []string{
		"2025-03-31 00:00 AEDT", "2025-04-30 00:00 AEST", "2025-05-31 00:00 AEST"})
	for k := 1; k < 400; k++ {
		if !p.due(k + 1).After(p.due(k)) {
			t.Fatalf("installment %d (%s) is not after %d (%s)", k+1, p.due(k+1), k, p.due(k))
		}
	}
}

func TestLastInstallmentTakesTheRemainder(t *testing.T) {
	t.Parallel()
	p := plan{total: decimal.RequireFromString("1000"), amount: decimal.RequireFromString("300")}
	want := []string{"300", "300", "300", "100", "0"}
	for k, w := range want {
		if got := p.installmentAmount(k + 1); !got.Equal(decimal.RequireFromString(w)) {
			t.Fatalf("installment %d: %s, want %s", k+1, got, w)
		}
	}
	end := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	p = plan{start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), loc: time.UTC, frequency: "monthly",
		total: decimal.RequireFromString("1000"), amount: decimal.RequireFromString("300")}
	if n, err := p.count(&end); err != nil || n != 2 {
		t.Fatalf("installments before Mar 1: %d %v, want 2", n, err)
	}
	if n, err := p.count(nil); err != nil || n != 4 {
		t.Fatalf("installments without an end: %d %v, want 4", n, err)
	}
}

func TestPeriodsSplitEvenlyToTheCent(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time { v, _ := time.Parse(time.DateOnly, s); return v }
	ps := planPeriods(d("2025-01-01"), d("2026-03-31"), 12, decimal.RequireFromString("1000"))
	if len(ps) != 2 || ps[1].start.Format(time.DateOnly) != "2026-01-01" || ps[1].end.Format(time.DateOnly) != "2026-03-31" {
		t.Fatalf("periods: %+v", ps)
	}
	ps = planPeriods(d("2025-01-31"), d("2025-04-29"), 1, decimal.RequireFromString("1000"))
	var got []string
	for _, p := range ps {
		got = append(got, p.start.Format(time.DateOnly)+".."+p.end.Format(time.DateOnly)+"="+p.budget.StringFixed(2))
	}
	sameList(t, "monthly periods from Jan 31", got, []string{
		"2025-01-31..2025-02-27=333.33", "2025-02-28..2025-03-30=333.33", "2025-03-31..2025-04-29=333.34"})
}
