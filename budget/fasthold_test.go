package budget_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/jackc/pgx/v5"
)

// lockAccount takes the account's row lock in a transaction of its own, so
// a test can line holds up behind it; commit releases them.
func lockAccount(t *testing.T, l *budget.Ledger, id int64) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := l.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	return tx
}

// waitFor polls cond (every millisecond, for at most 10 s): the tests
// below line up concurrent holds on observable state, never on sleeps.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// lockWaiters is how many statements wait for a row lock on accounts.
func lockWaiters(t *testing.T, l *budget.Ledger) int {
	t.Helper()
	var n int
	if err := l.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE accounts x%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type holdOutcome struct {
	i   int
	res budget.HoldResult
	err error
}

// lineUp starts n holds on account while its row is locked: the first
// goes to the database and waits for the lock, the other n-1 queue behind
// it as one group. It returns once they are lined up, and the outcomes.
func lineUp(t *testing.T, l *budget.Ledger, acct budget.Account, n int, req func(i int) budget.HoldRequest) (pgx.Tx, chan holdOutcome) {
	t.Helper()
	tx := lockAccount(t, l, acct.ID)
	out := make(chan holdOutcome, n)
	hold := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := l.PlaceHold(ctx, req(i))
		out <- holdOutcome{i, r, err}
	}
	go hold(0)
	waitFor(t, "the first hold to wait for the row lock", func() bool { return lockWaiters(t, l) == 1 })
	for i := 1; i < n; i++ {
		go hold(i)
	}
	waitFor(t, "the other holds to queue", func() bool { return budget.GroupQueued(l, acct.SlurmAccount) == n-1 })
	return tx, out
}

// Holds that queue behind one in flight go in one statement, and each
// caller gets its own hold: its amount, its user, its ledger row.
func TestGroupHoldsEachCallerGetsItsOwnHold(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, "")
	acct := mustAccount(t, l, budget.AccountSpec{SlurmAccount: "hot", Budget: dec("100000")})
	const n = 40
	req := func(i int) budget.HoldRequest {
		return budget.HoldRequest{Account: "hot", Partition: "cpu-aws", User: fmt.Sprintf("u%02d", i),
			Amount: dec(fmt.Sprintf("%d.%06d", i+1, i+1)), Tasks: uint32(i%3 + 1), RateVersion: "v1",
			Pricing: map[string]string{"i": fmt.Sprint(i)}}
	}
	tx, out := lineUp(t, l, acct, n, req)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for k := 0; k < n; k++ {
		o := <-out
		if o.err != nil {
			t.Fatalf("hold %d: %v", o.i, o.err)
		}
		want := req(o.i)
		h, err := l.GetHold(ctx, o.res.HoldID)
		if err != nil {
			t.Fatal(err)
		}
		if seen[h.ID] || !h.Amount.Equal(want.Amount) || h.User != want.User || h.Tasks != int(want.Tasks) ||
			h.AccountID != acct.ID || string(h.Pricing) != fmt.Sprintf(`{"i": "%d"}`, o.i) {
			t.Fatalf("hold %d came back as %+v (pricing %s), want amount %s user %s tasks %d", o.i, h, h.Pricing,
				want.Amount, want.User, want.Tasks)
		}
		seen[h.ID] = true
		if o.res.Account.ID != acct.ID || o.res.Account.Available.LessThan(want.Amount) {
			t.Fatalf("hold %d: account %+v", o.i, o.res.Account)
		}
	}
	// Two transactions: the first hold alone, then the 39 that queued.
	var rows, xacts int
	if err := l.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM holds WHERE account_id = $1`, acct.ID).
		Scan(&rows, &xacts); err != nil {
		t.Fatal(err)
	}
	if rows != n || xacts != 2 {
		t.Fatalf("%d holds in %d transactions, want %d in 2", rows, xacts, n)
	}
	// Every ledger row's totals-after are the running sums (Verify checks).
	mustVerify(t, l)
	var ledgerRows int
	if err := l.Pool().QueryRow(ctx, `SELECT count(*) FROM ledger l JOIN holds h ON h.id = l.hold_id
		WHERE l.type = 'hold' AND l.amount = h.amount AND l.user_name = h.user_name AND l.account_id = $1`, acct.ID).
		Scan(&ledgerRows); err != nil {
		t.Fatal(err)
	}
	if ledgerRows != n {
		t.Fatalf("%d hold ledger rows match their holds, want %d", ledgerRows, n)
	}
}

// A group the account cannot cover in full changes nothing; its members
// go on alone, so exactly what the account can cover is held.
func TestGroupHoldThatDoesNotFitFallsBackToSingleHolds(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, "")
	acct := mustAccount(t, l, budget.AccountSpec{SlurmAccount: "tight", Budget: dec("10")})
	const n = 16
	tx, out := lineUp(t, l, acct, n, func(i int) budget.HoldRequest {
		return budget.HoldRequest{Account: "tight", Partition: "cpu-aws", User: "u", Amount: dec("1"), Tasks: 1}
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	held, denied := 0, 0
	for k := 0; k < n; k++ {
		o := <-out
		var d *budget.Denial
		switch {
		case o.err == nil:
			held++
		case errors.As(o.err, &d) && d.Code == "insufficient_funds":
			denied++
		default:
			t.Fatalf("hold %d: %v", o.i, o.err)
		}
	}
	if held != 10 || denied != 6 {
		t.Fatalf("%d held, %d denied; want 10 and 6", held, denied)
	}
	if a := account(t, l, "tight"); !a.Held.Equal(dec("10")) || !a.Available.IsZero() {
		t.Fatalf("account %+v", a)
	}
	mustVerify(t, l)
}

// A queued hold whose caller stopped waiting is left out of its group.
func TestGroupHoldLeavesOutCallersWhoGaveUp(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, "")
	acct := mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	tx := lockAccount(t, l, acct.ID)
	first := make(chan error, 1)
	go func() {
		_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "acct", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1})
		first <- err
	}()
	waitFor(t, "the first hold to wait for the row lock", func() bool { return lockWaiters(t, l) == 1 })
	short, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := l.PlaceHold(short, budget.HoldRequest{Account: "acct", Partition: "cpu-aws", Amount: dec("2"), Tasks: 1})
		gaveUp <- err
	}()
	waitFor(t, "the second hold to queue", func() bool { return budget.GroupQueued(l, "acct") == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) && !errors.Is(err, budget.ErrUnavailable) {
		t.Fatalf("the hold whose caller gave up: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the group to drain", func() bool { return budget.GroupQueued(l, "acct") == 0 })
	if a := account(t, l, "acct"); !a.Held.Equal(dec("1")) {
		t.Fatalf("held %s, want only the first hold's 1", a.Held)
	}
	mustVerify(t, l)
}

// A partition limit committed while a hold waits for the account's row
// lock governs that hold: the one-statement hold rechecks only the locked
// row after the wait, so the limit must show on it.
func TestFastHoldSeesPartitionLimitSetWhileItWaits(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, "")
	acct := mustAccount(t, l, budget.AccountSpec{SlurmAccount: "lab", Budget: dec("1000")})
	hold := func(amount string) (budget.HoldResult, error) {
		return l.PlaceHold(ctx, budget.HoldRequest{Account: "lab", Partition: "gpu-aws", Amount: dec(amount), Tasks: 1})
	}
	if _, err := hold("5"); err != nil { // warm the fast path's account id
		t.Fatal(err)
	}
	// SetPartitionLimit's steps, held open: lock, limit, usage.
	tx := lockAccount(t, l, acct.ID)
	done := make(chan error, 1)
	go func() {
		_, err := hold("7")
		done <- err
	}()
	waitFor(t, "the hold to wait for the row lock", func() bool { return lockWaiters(t, l) == 1 })
	if _, err := tx.Exec(ctx, `INSERT INTO partition_limits (account_id, partition, max_per_month) VALUES ($1, 'gpu-aws', 100)`, acct.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO partition_usage (account_id, partition, month, committed)
		SELECT account_id, partition, month, sum(remaining + charged) FROM holds
		 WHERE account_id = $1 AND partition = 'gpu-aws' GROUP BY 1, 2, 3`, acct.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var committed string
	if err := l.Pool().QueryRow(ctx, `SELECT sum(committed)::text FROM partition_usage WHERE account_id = $1`, acct.ID).
		Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if committed != "12.000000" {
		t.Fatalf("partition usage %s, want 12.000000 (both holds)", committed)
	}
	mustVerify(t, l)
	// And a hold that would pass the account but not the cap is refused
	// with the partition named.
	_, err := hold("90")
	var d *budget.Denial
	if !errors.As(err, &d) || d.Partition != "gpu-aws" {
		t.Fatalf("hold over the partition cap: %v", err)
	}
}

// The fast path remembers the account a name resolved to only where no
// account created later could take precedence.
func TestFastHoldFollowsAccountScopedLater(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, "\n[cluster]\nname = \"c1\"\n")
	shared := mustAccount(t, l, budget.AccountSpec{Cluster: "*", SlurmAccount: "lab", Budget: dec("100")})
	req := budget.HoldRequest{Account: "lab", Partition: "cpu-aws", Amount: dec("1"), Tasks: 1}
	for i := 0; i < 2; i++ {
		r, err := l.PlaceHold(ctx, req)
		if err != nil || r.Account.ID != shared.ID || r.Account.Cluster != "*" {
			t.Fatalf("hold %d: %+v %v", i, r.Account, err)
		}
	}
	scoped := mustAccount(t, l, budget.AccountSpec{Cluster: "c1", SlurmAccount: "lab", Budget: dec("50")})
	for i := 0; i < 2; i++ {
		r, err := l.PlaceHold(ctx, req)
		if err != nil || r.Account.ID != scoped.ID {
			t.Fatalf("hold after the c1 account was created went to %+v (%v), want account %d", r.Account, err, scoped.ID)
		}
	}
	// A remembered account that is closed is refused, not held.
	if _, err := l.CloseAccount(ctx, "c1", "lab", "test"); err != nil {
		t.Fatal(err)
	}
	_, err := l.PlaceHold(ctx, req)
	var d *budget.Denial
	if !errors.As(err, &d) || d.Code != "account_inactive" {
		t.Fatalf("hold on the closed account: %v", err)
	}
	mustVerify(t, l)
}
