package budget

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/asbb/asbb/budget/pgtest"
)

// The analytics tests build ledgers whose history spans weeks. Every row is
// posted through the real functions (asbb_post and friends, so totals and
// running totals are exactly what production writes), then moved back in
// time: the fixture rewrites created_at of the rows a step wrote, in a
// private test database, with triggers off for that one statement. Nothing
// but time is changed, so Verify still proves the ledger consistent.

type fixture struct {
	t   testing.TB
	ctx context.Context
	l   *Ledger
	job int
}

func newFixture(t testing.TB, extra string) *fixture {
	t.Helper()
	cfg, err := ParseConfig(extra)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	pool := pgtest.Pool(t)
	l := New(pool, cfg, nil)
	return &fixture{t: t, ctx: context.Background(), l: l}
}

// setNow fixes the ledger's clock.
func (f *fixture) setNow(t time.Time) { f.l.now = func() time.Time { return t } }

type maxIDs struct{ ledger, holds, charges, allocations, accounts, grantEntries int64 }

func (f *fixture) ids() maxIDs {
	var m maxIDs
	err := f.l.pool.QueryRow(f.ctx, `SELECT (SELECT coalesce(max(id), 0) FROM ledger), (SELECT coalesce(max(id), 0) FROM holds),
		(SELECT coalesce(max(id), 0) FROM charges), (SELECT coalesce(max(id), 0) FROM allocations),
		(SELECT coalesce(max(id), 0) FROM accounts), (SELECT coalesce(max(id), 0) FROM grant_entries)`).
		Scan(&m.ledger, &m.holds, &m.charges, &m.allocations, &m.accounts, &m.grantEntries)
	if err != nil {
		f.t.Fatalf("max ids: %v", err)
	}
	return m
}

// at runs step, then dates every row it wrote at ts.
func (f *fixture) at(ts time.Time, step func()) {
	f.t.Helper()
	before := f.ids()
	step()
	err := f.l.InTx(f.ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(f.ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		for _, u := range []struct {
			sql   string
			since int64
		}{
			{`UPDATE ledger SET created_at = $2::timestamptz WHERE id > $1`, before.ledger},
			{`UPDATE holds SET created_at = $2::timestamptz, updated_at = $2::timestamptz,
				closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE $2::timestamptz END WHERE id > $1`, before.holds},
			{`UPDATE charges SET created_at = $2::timestamptz WHERE id > $1`, before.charges},
			{`UPDATE allocations SET created_at = $2::timestamptz, starts_at = least(starts_at, $2::timestamptz) WHERE id > $1`, before.allocations},
			{`UPDATE accounts SET created_at = $2::timestamptz, updated_at = $2::timestamptz WHERE id > $1`, before.accounts},
			{`UPDATE grant_entries SET created_at = $2::timestamptz WHERE id > $1`, before.grantEntries},
		} {
			if _, err := tx.Exec(f.ctx, u.sql, u.since, ts); err != nil {
				return fmt.Errorf("%s: %w", u.sql, err)
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatalf("backdate to %s: %v", ts, err)
	}
}

func (f *fixture) account(name, budget string) Account {
	f.t.Helper()
	spec := AccountSpec{SlurmAccount: name, Actor: "test"}
	if budget != "" {
		spec.Budget = dec(budget)
	}
	a, err := f.l.CreateAccount(f.ctx, spec)
	if err != nil {
		f.t.Fatalf("create account %s: %v", name, err)
	}
	return a
}

// charge settles a job of the given cost on an account, without a hold.
func (f *fixture) charge(account, amount, user, partition string) Settlement {
	f.t.Helper()
	f.job++
	s, err := f.l.Settle(f.ctx, SettleRequest{Account: account, JobID: fmt.Sprintf("%d", 1000+f.job), ArrayTaskID: -1,
		Actual: dec(amount), User: user, Partition: partition, Actor: "test"})
	if err != nil {
		f.t.Fatalf("charge %s on %s: %v", amount, account, err)
	}
	return s
}

func (f *fixture) hold(account, amount string) int64 {
	f.t.Helper()
	r, err := f.l.PlaceHold(f.ctx, HoldRequest{Account: account, Partition: "cpu", User: "alice", Amount: dec(amount), Tasks: 1, Actor: "test"})
	if err != nil {
		f.t.Fatalf("hold %s on %s: %v", amount, account, err)
	}
	return r.HoldID
}

func (f *fixture) setEnd(account string, end time.Time) {
	f.t.Helper()
	if _, err := f.l.UpdateAccount(f.ctx, "", account, AccountPatch{EndsAt: &end}); err != nil {
		f.t.Fatalf("set end of %s: %v", account, err)
	}
}

func (f *fixture) verify() {
	f.t.Helper()
	rep, err := f.l.Verify(f.ctx)
	if err != nil {
		f.t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		f.t.Fatalf("verify: %+v", rep.Problems)
	}
}

// noon is 12:00 UTC on day n after start.
func noon(start time.Time, n int) time.Time { return start.AddDate(0, 0, n).Add(12 * time.Hour) }
