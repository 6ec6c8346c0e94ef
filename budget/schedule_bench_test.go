package budget_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkProcessSchedules10k: 10,000 accounts, each with a monthly
// schedule one month behind (one installment due), processed in one run.
// Target: under 5 s per run.
//
//	go test ./budget -run '^$' -bench ProcessSchedules10k -benchtime 3x
func BenchmarkProcessSchedules10k(b *testing.B) {
	ctx := context.Background()
	l := newLedger(b, "")
	const accounts = 10000
	now := time.Now()
	start := now.AddDate(0, -1, 1) // due a month ago; the next one is due tomorrow
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		prefix := fmt.Sprintf("bench%d-", i)
		if _, err := l.Pool().Exec(ctx, `INSERT INTO accounts (slurm_account, name)
			SELECT $1 || g, $1 || g FROM generate_series(1, $2) g`, prefix, accounts); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Pool().Exec(ctx, `INSERT INTO allocation_schedules (account_id, total, amount, frequency, starts_at,
				timezone, installments, next_due)
			SELECT id, 1200, 100, 'monthly', $2, 'UTC', 12, $2 FROM accounts WHERE slurm_account LIKE $1 || '%'`,
			prefix, start); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := l.ProcessSchedules(ctx, now)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Installments != accounts {
			b.Fatalf("deposited %d installments, want %d", rep.Installments, accounts)
		}
	}
	b.ReportMetric(float64(accounts*b.N)/b.Elapsed().Seconds(), "installments/s")
	b.StopTimer()
	mustVerify(b, l)
}
