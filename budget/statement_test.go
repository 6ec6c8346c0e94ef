package budget

import (
	"errors"
	"testing"
)

func TestAccountStatementReconcilesToTheCent(t *testing.T) {
	t.Parallel()
	f, _ := buildScenarios(t)
	st, err := f.l.AccountStatement(f.ctx, "", "held", day("2025-03-10"), day("2025-03-31"))
	if err != nil {
		t.Fatal(err)
	}
	// Nine $30 charges before the start; 21 charges and the $300 hold in
	// the range.
	eqDec(t, "opening balance", st.Opening.Balance, "2730")
	eqDec(t, "opening spent", st.Opening.Spent, "270")
	if len(st.Entries) != 22 {
		t.Fatalf("%d entries, want 22", len(st.Entries))
	}
	eqDec(t, "charges", st.Totals.Charges, "630")
	eqDec(t, "held change", st.Totals.HeldChange, "300")
	eqDec(t, "net spent", st.Totals.NetSpent, "630")
	eqDec(t, "closing balance", st.Closing.Balance, "1800")
	eqDec(t, "closing held", st.Closing.Held, "300")
	// Opening + movements = closing.
	eqDec(t, "reconciliation", st.Opening.Balance.Sub(st.Totals.NetSpent).Sub(st.Totals.HeldChange).
		Add(st.Totals.Deposits).Add(st.Totals.Withdrawals), st.Closing.Balance.String())

	// A refund shows as its own negative line.
	st, err = f.l.AccountStatement(f.ctx, "", "refunded", day("2025-03-06"), day("2025-03-08"))
	if err != nil {
		t.Fatal(err)
	}
	eqDec(t, "refunds", st.Totals.Refunds, "-90")
	eqDec(t, "charges", st.Totals.Charges, "150") // 30 + 90 on the 6th, 30 on the 7th
	eqDec(t, "net", st.Totals.NetSpent, "60")
	// The whole life of an account: opening zero, closing its totals.
	st, err = f.l.AccountStatement(f.ctx, "", "steady", day("2020-01-01"), day("2030-01-01"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.l.GetAccount(f.ctx, "", "steady")
	if st.Opening.AfterEntry != 0 || !st.Opening.Balance.IsZero() || !st.Closing.Spent.Equal(a.Spent) ||
		!st.Closing.Deposited.Equal(a.Deposited) || len(st.Entries) != 31 {
		t.Errorf("lifetime statement: opening %+v closing %+v, %d entries", st.Opening, st.Closing, len(st.Entries))
	}
	eqDec(t, "deposits", st.Totals.Deposits, "3000")
	// A range with nothing in it.
	st, err = f.l.AccountStatement(f.ctx, "", "idle", day("2025-03-10"), day("2025-03-20"))
	if err != nil || len(st.Entries) != 0 || !st.Opening.Balance.Equal(dec("3000")) || !st.Closing.Balance.Equal(dec("3000")) {
		t.Errorf("empty range: %+v %v", st, err)
	}

	if _, err := f.l.AccountStatement(f.ctx, "", "held", day("2025-03-10"), day("2025-03-10")); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty range: %v, want ErrInvalid", err)
	}
	if _, err := f.l.AccountStatement(f.ctx, "", "nobody", day("2025-03-10"), day("2025-03-11")); !errors.Is(err, ErrAccountNotFound) {
		t.Errorf("unknown account: %v, want ErrAccountNotFound", err)
	}
}
