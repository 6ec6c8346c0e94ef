package budget

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Benchmarks of the analytics on big ledgers (run with -bench; they are not
// part of a plain `go test`). The fixtures are bulk-inserted with
// generate_series rather than posted one by one: consistent ledger rows
// (running totals that follow from the deltas) and account totals set to
// match, which Verify checks before timing starts.
//
//	go test ./budget -run '^$' -bench 'BurnRateMillion|HealthScore10k' -benchtime 20x -count 5

// BenchmarkBurnRateMillionEntries: one account with 1,000,000 ledger
// entries over a year (a deposit, 999,998 charges of $1.25, an active
// hold): burn rate with projection and daily series over 30 days, 90 days
// and a year.
func BenchmarkBurnRateMillionEntries(b *testing.B) {
	f := newFixture(b, "")
	ctx := context.Background()
	now := time.Now()
	start := now.AddDate(-1, 0, 0)
	f.account("big", "")
	var id int64
	if err := f.l.pool.QueryRow(ctx, `SELECT id FROM accounts WHERE slurm_account = 'big'`).Scan(&id); err != nil {
		b.Fatal(err)
	}
	setup := time.Now()
	const charges = 999998
	step := now.Sub(start).Seconds() / float64(charges+1) // seconds between rows (a timestamp, not money)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ledger (account_id, type, amount, d_deposited, deposited_after, spent_after, held_after, actor, created_at)
		 VALUES ($1, 'deposit', 5000000, 5000000, 5000000, 0, 0, 'bench', $2)`, []any{id, start}},
		{`INSERT INTO ledger (account_id, type, amount, d_spent, deposited_after, spent_after, held_after, cluster, job_id,
		                     partition, user_name, actor, created_at)
		 SELECT $1, 'charge', 1.25, 1.25, 5000000, 1.25 * g, 0, '*', g::text, 'cpu', 'u' || (g % 50), 'bench',
		        $2::timestamptz + g * make_interval(secs => $3::float8)
		 FROM generate_series(1, ` + fmt.Sprint(charges) + `) g`, []any{id, start, step}},
		{`UPDATE accounts SET deposited = 5000000, spent = 1.25 * ` + fmt.Sprint(charges) + ` WHERE id = $1`, []any{id}},
	} {
		if _, err := f.l.pool.Exec(ctx, q.sql, q.args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	f.hold("big", "100")
	if _, err := f.l.pool.Exec(ctx, `VACUUM ANALYZE ledger`); err != nil {
		b.Fatal(err)
	}
	var n int64
	_ = f.l.pool.QueryRow(ctx, `SELECT count(*) FROM ledger WHERE account_id = $1`, id).Scan(&n)
	f.verify()
	b.Logf("seeded %d ledger entries in %s", n, time.Since(setup).Round(time.Millisecond))
	if n != 1000000 {
		b.Fatalf("%d entries, want 1,000,000", n)
	}
	for _, period := range []string{"30d", "90d", "1y"} {
		b.Run(period, func(b *testing.B) {
			w, err := ParseWindow(period, time.Now(), f.l.cfg.Location())
			if err != nil {
				b.Fatal(err)
			}
			var br BurnRate
			for b.Loop() {
				if br, err = f.l.AccountBurnRate(ctx, "", "big", BurnOptions{Window: w, Series: true}); err != nil {
					b.Fatal(err)
				}
			}
			if !br.DailyRate.IsPositive() || br.Projection.ExhaustionDate == nil || !br.Projection.Committed.Equal(dec("100")) {
				b.Fatalf("burn rate %+v", br)
			}
		})
	}
	// Baseline: the obvious query, summing the window's rows by day
	// (what the snapshot design avoids).
	b.Run("baseline-sum-by-day-90d", func(b *testing.B) {
		from := time.Now().AddDate(0, 0, -90)
		for b.Loop() {
			rows, err := f.l.pool.Query(ctx, `SELECT (created_at AT TIME ZONE 'UTC')::date, sum(d_spent) FROM ledger
				WHERE account_id = $1 AND created_at >= $2 GROUP BY 1`, id, from)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
			}
			rows.Close()
		}
	})
}

// BenchmarkHealthScore10kAccounts: the health score of 10,000 accounts
// (each with a deposit and 19 charges over 60 days: 200,000 entries).
func BenchmarkHealthScore10kAccounts(b *testing.B) {
	f := newFixture(b, "")
	ctx := context.Background()
	now := time.Now()
	setup := time.Now()
	for _, q := range []string{
		`INSERT INTO accounts (slurm_account, name, path, created_at) SELECT 'acct' || g, 'acct' || g, '{}', $1::timestamptz
		 FROM generate_series(1, 10000) g`,
		`UPDATE accounts SET path = ARRAY[id]`,
		`INSERT INTO ledger (account_id, type, amount, d_deposited, deposited_after, spent_after, held_after, actor, created_at)
		 SELECT id, 'deposit', 1000, 1000, 1000, 0, 0, 'bench', $1::timestamptz FROM accounts`,
		`INSERT INTO ledger (account_id, type, amount, d_spent, deposited_after, spent_after, held_after, cluster, job_id,
		                     partition, user_name, actor, created_at)
		 SELECT a.id, 'charge', (a.id % 7) + 1, (a.id % 7) + 1, 1000, ((a.id % 7) + 1) * g, 0, '*', a.id || '.' || g, 'cpu', 'u',
		        'bench', $1::timestamptz + g * interval '3 days'
		 FROM accounts a, generate_series(1, 19) g`,
		`UPDATE accounts SET deposited = 1000, spent = ((id % 7) + 1) * 19`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, now.AddDate(0, 0, -60))
		}
		if _, err := f.l.pool.Exec(ctx, q, args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	for _, t := range []string{"accounts", "ledger"} {
		if _, err := f.l.pool.Exec(ctx, `VACUUM ANALYZE `+t); err != nil {
			b.Fatal(err)
		}
	}
	f.verify()
	b.Logf("seeded 10,000 accounts, 200,000 entries in %s", time.Since(setup).Round(time.Millisecond))
	var hs []AccountHealth
	var err error
	for b.Loop() {
		if hs, err = f.l.HealthScores(ctx, "30d"); err != nil {
			b.Fatal(err)
		}
	}
	if len(hs) != 10000 {
		b.Fatalf("%d health scores", len(hs))
	}
}
