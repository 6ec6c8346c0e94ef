package budget_test

import (
	"context"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
)

// Verify proves more than it is usually asked: tampering with a ledger
// row's totals-after, or with an account's totals, is reported.
func TestVerifyFindsTampering(t *testing.T) {
	for _, c := range []struct{ name, sql, want string }{
		{"a ledger row's totals-after", `UPDATE ledger SET held_after = held_after + 1
			WHERE id = (SELECT min(id) FROM ledger WHERE type = 'hold')`, "1 ledger rows' totals-after differ from the running sums"},
		{"an account's held total", `UPDATE accounts SET held = held + 1`, "held 4 != ledger sum 3"},
		{"a ledger row's amount", `UPDATE ledger SET d_held = 2 WHERE id = (SELECT max(id) FROM ledger)`, "held 3 != ledger sum 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			l := newLedger(t, "")
			mustAccount(t, l, budget.AccountSpec{SlurmAccount: "a", Budget: dec("100")})
			for i := 0; i < 3; i++ {
				if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "a", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1}); err != nil {
					t.Fatal(err)
				}
			}
			mustVerify(t, l)
			// The append-only trigger refuses this; a superuser could
			// still do it, and Verify is how anyone would find out.
			if _, err := l.Pool().Exec(ctx, `ALTER TABLE ledger DISABLE TRIGGER ledger_append_only; `+c.sql); err != nil {
				t.Fatal(err)
			}
			rep, err := l.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range rep.Problems {
				found = found || strings.Contains(p.Problem, c.want)
			}
			if !found {
				t.Fatalf("problems %+v, want one containing %q", rep.Problems, c.want)
			}
		})
	}
}
