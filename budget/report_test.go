package budget

import (
	"testing"
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
