package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/asbb/asbb/budget"
)

func TestSparkline(t *testing.T) {
	d := func(ss ...string) []decimal.Decimal {
		var out []decimal.Decimal
		for _, s := range ss {
			out = append(out, decimal.RequireFromString(s))
		}
		return out
	}
	for _, c := range []struct {
		in    []decimal.Decimal
		width int
		want  string
	}{
		{d("0", "1", "2", "3", "4", "5", "6", "7"), 60, "▁▂▃▄▅▆▇█"},
		{d("0", "0", "0"), 60, "▁▁▁"},
		{d("10", "-5", "10"), 60, "█▁█"},
		{d("1", "1", "2", "2"), 2, "▅█"}, // two buckets: 2 and 4
		{nil, 60, ""},
	} {
		if got := sparkline(c.in, c.width); got != c.want {
			t.Errorf("sparkline(%v, %d) = %q, want %q", c.in, c.width, got, c.want)
		}
	}
}

func TestAnalyticsCommands(t *testing.T) {
	c := newGrantsCLI(t)
	ctx := context.Background()
	expect := func(code int, args ...string) string {
		t.Helper()
		got, out, errOut := c.run(args...)
		if got != code {
			t.Fatalf("asbb-admin %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
		}
		return out
	}
	end := time.Now().AddDate(0, 0, 60).Format("2006-01-02")
	expect(0, "account", "create", "--account", "ml-proj-001", "--budget", "1000", "--end", end)
	for i, amt := range []string{"12.50", "40", "7.25"} {
		if _, err := c.l.Settle(ctx, budget.SettleRequest{Account: "ml-proj-001", JobID: "j" + string(rune('1'+i)), ArrayTaskID: -1,
			Actual: decimal.RequireFromString(amt), User: "alice", Partition: "gpu"}); err != nil {
			t.Fatal(err)
		}
	}

	// The account opened today: its window is today, one day, so the
	// rate is today's $59.75 against the $1,000 spread over the 61 days
	// to its end.
	out := expect(0, "burn-rate", "ml-proj-001", "--period=7d", "--projection")
	for _, want := range []string{"Burn rate of account ml-proj-001, 7d", "Daily Spend Rate: $59.75 (Expected: $16.39, from remaining funds)",
		"Variance: +264.5% (OVERSPENDING)", "Health Score: 23% (CRITICAL)", "Days Remaining: 61", "Daily spend: █",
		"Projection at $59.75/day", "Exhaustion date: ", "Risk: funds run out before the period ends"} {
		if !strings.Contains(out, want) {
			t.Errorf("burn-rate output lacks %q:\n%s", want, out)
		}
	}
	if !strings.ContainsAny(out, "▁▂▃▄▅▆▇█") {
		t.Errorf("no sparkline:\n%s", out)
	}
	var b budget.BurnRate
	if err := json.Unmarshal([]byte(expect(0, "burn-rate", "ml-proj-001", "--json")), &b); err != nil {
		t.Fatal(err)
	}
	if !b.SpentInWindow.Equal(decimal.RequireFromString("59.75")) || len(b.Series) != 1 {
		t.Errorf("json burn rate: spent %s, %d days", b.SpentInWindow, len(b.Series))
	}
	out = expect(0, "burn-rate", "ml-proj-001", "--alerts-only")
	if !strings.Contains(out, "🚨 CRITICAL: account ml-proj-001 is spending 264.5% above its expected rate") ||
		!strings.Contains(out, "⚠️  WARNING: account ml-proj-001 is projected to run out") {
		t.Errorf("alerts-only: %s", out)
	}
	expect(2, "burn-rate", "ml-proj-001", "--period=12x")
	expect(2, "burn-rate")
	expect(4, "burn-rate", "no-such-account")

	out = expect(0, "usage", "show", "ml-proj-001")
	for _, want := range []string{"net $59.75 over 3 jobs", "alice", "gpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage show lacks %q:\n%s", want, out)
		}
	}
	out = expect(0, "usage", "summary")
	if !strings.Contains(out, "ml-proj-001") || !strings.Contains(out, "$940.25") {
		t.Errorf("usage summary:\n%s", out)
	}
	out = expect(0, "usage", "statement", "ml-proj-001", "--from", "2020-01-01")
	for _, want := range []string{"Opening balance: $0.00", "Closing balance: $940.25", "charge", "deposit"} {
		if !strings.Contains(out, want) {
			t.Errorf("statement lacks %q:\n%s", want, out)
		}
	}
	out = expect(0, "forecast", "ml-proj-001")
	if !strings.Contains(out, "WEEK ENDING") || !strings.Contains(out, "PROJECTED REMAINING") {
		t.Errorf("forecast:\n%s", out)
	}

	// Alerts: spend past 50%, check, list, acknowledge.
	if _, err := c.l.Settle(ctx, budget.SettleRequest{Account: "ml-proj-001", JobID: "big", ArrayTaskID: -1,
		Actual: decimal.RequireFromString("500"), User: "bob", Partition: "gpu"}); err != nil {
		t.Fatal(err)
	}
	out = expect(0, "alerts", "check")
	if !strings.Contains(out, "alerts opened") {
		t.Errorf("alerts check: %s", out)
	}
	var as []budget.Alert
	if err := json.Unmarshal([]byte(expect(0, "alerts", "list", "--json")), &as); err != nil || len(as) == 0 {
		t.Fatalf("alerts list: %v %v", as, err)
	}
	out = expect(0, "burn-rate", "ml-proj-001", "--alerts-only")
	if !strings.Contains(out, "has used 56.0% of its budget") {
		t.Errorf("alerts-only after spending:\n%s", out)
	}
	expect(0, "alerts", "ack", "1", "--note", "seen")
	expect(4, "alerts", "ack", "999")
	expect(2, "alerts", "ack", "x")
	expect(2, "alerts", "list", "--status", "bogus")

	// Grant report to files in each format.
	expect(0, "grant", "create", "--number", "NSF-1", "--agency", "NSF", "--pi", "Dr. A", "--amount", "5000",
		"--start", time.Now().AddDate(0, -1, 0).Format("2006-01-02"), "--end", time.Now().AddDate(1, 0, 0).Format("2006-01-02"),
		"--periods", "12", "--indirect", "0.5")
	expect(0, "grant", "link", "NSF-1", "ml-proj-001")
	if _, err := c.l.Settle(ctx, budget.SettleRequest{Account: "ml-proj-001", JobID: "g1", ArrayTaskID: -1,
		Actual: decimal.RequireFromString("10"), User: "carol", Partition: "cpu"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"json", "csv", "html"} {
		path := filepath.Join(dir, "r."+f)
		expect(0, "grant", "report", "NSF-1", "--format", f, "--output", path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "15") {
			t.Errorf("%s report lacks the total cost 15:\n%.500s", f, data)
		}
	}
	out = expect(0, "grant", "report", "NSF-1", "--period", "1")
	var r budget.GrantReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || !r.Reconciled || r.Total.String() != "15" {
		t.Errorf("report json: %v reconciled %v total %s", err, r.Reconciled, r.Total)
	}
	out = expect(0, "burn-rate", "NSF-1")
	if !strings.Contains(out, "Burn rate of grant NSF-1") {
		t.Errorf("grant burn-rate:\n%s", out)
	}
	expect(2, "grant", "report", "NSF-1", "--format", "pdf")
	expect(4, "grant", "report", "NSF-1", "--period", "9")
	expect(4, "grant", "report", "NOPE-1")
}
