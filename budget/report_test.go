package budget

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func usageMap(rows []UsageRow) map[string]string {
	m := map[string]string{}
	for _, r := range rows {
		m[r.Key] = r.Total.String()
	}
	return m
}

func sameMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", what, got, want)
			return
		}
	}
}

func TestAccountUsageBreakdown(t *testing.T) {
	t.Parallel()
	f, _ := buildScenarios(t)
	u, err := f.l.AccountUsage(f.ctx, "", "refunded", day("2025-03-01"), day("2025-04-01"))
	if err != nil {
		t.Fatal(err)
	}
	eqDec(t, "charges", u.Charges, "990")
	eqDec(t, "refunds", u.Refunds, "-90")
	eqDec(t, "total", u.Total, "900")
	if u.Jobs != 31 {
		t.Errorf("jobs %d, want 31", u.Jobs)
	}
	sameMap(t, "by user", usageMap(u.ByUser), map[string]string{"alice": "900", "bob": "0"})
	sameMap(t, "by partition", usageMap(u.ByPartition), map[string]string{"cpu": "900", "gpu": "0"})
	sameMap(t, "by month", usageMap(u.ByMonth), map[string]string{"2025-03": "900"})

	// A sub-account's spending counts once under its parent.
	g := newFixture(t, "")
	g.account("dept", "1000")
	if _, err := g.l.CreateAccount(g.ctx, AccountSpec{SlurmAccount: "proj", Parent: "dept", Budget: dec("100")}); err != nil {
		t.Fatal(err)
	}
	g.charge("proj", "12.34", "carol", "gpu")
	g.charge("dept", "1.66", "dave", "cpu")
	u, err = g.l.AccountUsage(g.ctx, "", "dept", day("2020-01-01"), day("2040-01-01"))
	if err != nil {
		t.Fatal(err)
	}
	eqDec(t, "parent total", u.Total, "14")
	sameMap(t, "by account", usageMap(u.ByAccount), map[string]string{"proj": "12.34", "dept": "1.66"})
	a, _ := g.l.GetAccount(g.ctx, "", "dept")
	eqDec(t, "parent total equals the parent's spent", u.Total, a.Spent.String())
	g.verify()
}

// reportFixture is grantFixture plus a $4 refund and a true-up of another
// charge from $8 to $9.50: direct 240 − 4 + 1.5 = 237.50, total with 25%
// indirect 296.875 (fractions of a cent stay exact).
func reportFixture(t *testing.T) *fixture {
	f, _ := grantFixture(t)
	var ids []int64
	rows, err := f.l.pool.Query(f.ctx, `SELECT id FROM charges ORDER BY id LIMIT 2`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := f.l.Refund(f.ctx, ids[0], dec("4"), "test", "partial refund", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.l.Correct(f.ctx, ids[1], dec("9.50"), "test", "true-up", "asbx:1"); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGrantReportReconcilesToTheCent(t *testing.T) {
	t.Parallel()
	f := reportFixture(t)
	r, err := f.l.GrantReport(f.ctx, "NSF-2025-1", -1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Period != 1 || !r.Reconciled {
		t.Fatalf("period %d reconciled %v: %v", r.Period, r.Reconciled, r.Reconciliation)
	}
	eqDec(t, "direct", r.Direct, "237.5")
	eqDec(t, "indirect", r.Indirect, "59.375")
	eqDec(t, "total", r.Total, "296.875")
	if r.Jobs != 30 {
		t.Errorf("jobs %d", r.Jobs)
	}
	b := r.Balances
	eqDec(t, "beginning", b.Beginning, "3650")
	eqDec(t, "spent", b.Spent, "296.875")
	eqDec(t, "held", b.Held, "50")
	eqDec(t, "ending", b.Ending, "3303.125")
	if len(r.Holds) != 1 {
		t.Fatalf("holds %+v", r.Holds)
	}
	eqDec(t, "hold direct", r.HoldsDirect, "40")
	eqDec(t, "hold total", r.HoldsTotal, "50")
	sameMap(t, "by account", usageMap(r.ByAccount), map[string]string{"lab": "296.875"})
	sameMap(t, "by partition", usageMap(r.ByPartition), map[string]string{"gpu": "296.875"})
	monthSum := decimal.Zero
	for _, m := range r.ByMonth {
		monthSum = monthSum.Add(m.Total)
	}
	eqDec(t, "months add up", monthSum, "296.875")
	// The account's own ledger agrees: its charges net of refunds and
	// corrections are the report's direct cost.
	a, _ := f.l.GetAccount(f.ctx, "", "lab")
	eqDec(t, "ledger spent", a.Spent, "237.5")
	// The burn-down runs from the period start to today and ends at the
	// ending balance plus what is held.
	if len(r.BurnDown) != 60 {
		t.Fatalf("burn-down of %d days, want 60", len(r.BurnDown))
	}
	eqDec(t, "burn-down end", r.BurnDown[59].Remaining, "3353.125")

	// Whole grant = its only period; an unknown period is not found.
	w, err := f.l.GrantReport(f.ctx, "NSF-2025-1", 0)
	if err != nil || !w.Total.Equal(r.Total) || !w.Reconciled {
		t.Errorf("whole grant: %v %s %v", err, w.Total, w.Reconciliation)
	}
	if _, err := f.l.GrantReport(f.ctx, "NSF-2025-1", 7); !errors.Is(err, ErrNotFound) {
		t.Errorf("period 7: %v", err)
	}
	if _, err := f.l.GrantReport(f.ctx, "../etc/passwd", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("bad grant number: %v", err)
	}

	// CSV: the cost line and the sections carry the same figures.
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{}
	for _, rec := range recs {
		found[rec[0]+"/"+rec[1]] = rec
	}
	if c := found["cost/total"]; c == nil || c[2] != "237.5" || c[3] != "59.375" || c[4] != "296.875" {
		t.Errorf("csv cost line %v", c)
	}
	if c := found["balance/ending"]; c == nil || c[4] != "3303.125" {
		t.Errorf("csv ending line %v", c)
	}
	if c := found["account/lab"]; c == nil || c[4] != "296.875" || c[5] != "30" {
		t.Errorf("csv account line %v", c)
	}
	// JSON keeps exact decimal strings.
	buf.Reset()
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Total string `json:"total_cost"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Total != "296.875" {
		t.Errorf("json total %q %v", back.Total, err)
	}
	// HTML: self-contained, with the chart's paths.
	buf.Reset()
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`<svg id="burndown"`, `<path id="burndown-actual" d="M70.0 20.0 L`, `id="burndown-plan"`,
		"Grant NSF-2025-1: period 1", "$296.88", "ok: ending balance 3303.125"} {
		if !strings.Contains(page, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), "http") {
		t.Error("html refers to something outside itself")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "MISMATCH") {
		t.Error("html has a script or a mismatch")
	}
	f.verify()
}
