package budget_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

// The hold-path benchmarks measure ASBB's hold beside a bare baseline, in
// the same run and on the same database, as PERF-NOTES asks: the baseline
// is one conditional `UPDATE … RETURNING` plus one `INSERT`, in a single
// round trip, with durable commits. Results are reported as extra metrics
// (p50/p99 in µs, holds/s and ratios); quote medians of several -count runs.
//
//	go test -run '^$' -bench 'Hold|Settle' -benchtime 1x -count 5 ./budget

const bareHold = `WITH a AS (
	UPDATE accounts SET held = held + $1, updated_at = now()
	 WHERE id = $2 AND deposited - spent - held + credit_limit >= $1
	RETURNING id)
INSERT INTO holds (account_id, amount, remaining, month) SELECT id, $1, $1, current_date FROM a RETURNING id`

type benchEnv struct {
	l       *budget.Ledger
	hot     string
	hotID   int64
	bareID  int64
	many    []string
	manyIDs []int64
}

// seedBench builds a database shaped like a production one: 100,000 closed
// holds with their ledger rows, analysed, so the planner chooses the plans
// it would in production (on empty tables every figure is about half).
func seedBench(b *testing.B) *benchEnv {
	b.Helper()
	ctx := context.Background()
	l := newLedger(b, "")
	big := dec("1000000000")
	env := &benchEnv{l: l, hot: "hot"}
	env.hotID = mustAccount(b, l, budget.AccountSpec{SlurmAccount: "hot", Budget: big}).ID
	env.bareID = mustAccount(b, l, budget.AccountSpec{SlurmAccount: "bare", Budget: big}).ID
	for i := 0; i < 100; i++ {
		n := fmt.Sprintf("acct%03d", i)
		env.many = append(env.many, n)
		env.manyIDs = append(env.manyIDs, mustAccount(b, l, budget.AccountSpec{SlurmAccount: n, Budget: big}).ID)
	}
	seed := mustAccount(b, l, budget.AccountSpec{SlurmAccount: "seed", Budget: big}).ID
	// History: 100,000 holds taken and released (hold + release rows that
	// net to zero, so the totals still equal the ledger sums).
	_, err := l.Pool().Exec(ctx, `
		INSERT INTO holds (id, account_id, partition, tasks, amount, remaining, status, month, close_reason, closed_at)
		SELECT 1000000 + g, $1, 'cpu-aws', 1, 1.5, 0, 'closed', current_date, 'seed', now() FROM generate_series(1, 100000) g;
	`, seed)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Pool().Exec(ctx, `
		INSERT INTO ledger (account_id, type, amount, d_held, deposited_after, spent_after, held_after, hold_id, partition, actor)
		SELECT $1, t.type, 1.5, t.d, 1000000000, 0, CASE WHEN t.type = 'hold' THEN 1.5 ELSE 0 END, 1000000 + g, 'cpu-aws', 'seed'
		FROM generate_series(1, 100000) g, (VALUES ('hold', 1.5), ('hold_release', -1.5)) t(type, d)
		ORDER BY g, t.type`, seed); err != nil {
		b.Fatal(err)
	}
	if _, err := l.Pool().Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return env
}

func (e *benchEnv) hold(ctx context.Context, account string) error {
	_, err := e.l.PlaceHold(ctx, budget.HoldRequest{Account: account, Partition: "cpu-aws", User: "bench",
		Amount: dec("1.25"), Tasks: 1, RateVersion: "bench", Pricing: map[string]string{"rate": "5"}})
	return err
}

func (e *benchEnv) bare(ctx context.Context, id int64) error {
	var hid int64
	return e.l.Pool().QueryRow(ctx, bareHold, decimal.RequireFromString("1.25"), id).Scan(&hid)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// BenchmarkHoldLatency alternates an ASBB hold and the bare baseline, one
// caller, and reports both p50s and p99s and the ratio of the medians.
func BenchmarkHoldLatency(b *testing.B) {
	env := seedBench(b)
	ctx := context.Background()
	const n = 2000
	for i := 0; i < 50; i++ { // warm the pool and the plan caches
		_ = env.hold(ctx, env.hot)
		_ = env.bare(ctx, env.bareID)
	}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		ours := make([]time.Duration, 0, n)
		base := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if err := env.hold(ctx, env.hot); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := env.bare(ctx, env.bareID); err != nil {
				b.Fatal(err)
			}
			ours = append(ours, t1.Sub(t0))
			base = append(base, time.Since(t1))
		}
		b.ReportMetric(us(percentile(ours, 0.5)), "hold_p50_us")
		b.ReportMetric(us(percentile(ours, 0.99)), "hold_p99_us")
		b.ReportMetric(us(percentile(base, 0.5)), "bare_p50_us")
		b.ReportMetric(us(percentile(base, 0.99)), "bare_p99_us")
		b.ReportMetric(float64(percentile(ours, 0.5))/float64(percentile(base, 0.5)), "p50_ratio")
	}
}

// BenchmarkSettleLatency settles holds one at a time (charge + release in
// one transaction).
func BenchmarkSettleLatency(b *testing.B) {
	env := seedBench(b)
	ctx := context.Background()
	const n = 2000
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		ids := make([]int64, n)
		for i := range ids {
			r, err := env.l.PlaceHold(ctx, budget.HoldRequest{Account: env.hot, Partition: "cpu-aws", Amount: dec("1.25"), Tasks: 1,
				Pricing: map[string]string{}})
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = r.HoldID
		}
		lat := make([]time.Duration, 0, n)
		for i, id := range ids {
			t0 := time.Now()
			if _, err := env.l.Settle(ctx, budget.SettleRequest{HoldID: id, JobID: fmt.Sprintf("%d-%d", it, i), ArrayTaskID: -1,
				RunStart: 1, Actual: dec("0.75")}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.ReportMetric(us(percentile(lat, 0.5)), "settle_p50_us")
		b.ReportMetric(us(percentile(lat, 0.99)), "settle_p99_us")
	}
}

// throughput runs total operations split over callers and returns ops/s.
func throughput(callers, total int, op func(i int) error) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	per := total / callers
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := op(c*per + i); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		}(c)
	}
	wg.Wait()
	return float64(per*callers) / time.Since(start).Seconds(), first
}

// BenchmarkHoldThroughput measures holds per second on one hot account and
// across 100 accounts at 1, 4, 16 and 64 concurrent callers, ASBB beside
// the bare baseline in the same sitting (alternating), and the ratio.
// "hot-alone" is the hot account with group holds turned off: every hold
// its own statement and commit, like the bare baseline.
func BenchmarkHoldThroughput(b *testing.B) {
	env := seedBench(b)
	ctx := context.Background()
	env.l.Pool().Config().MaxConns = 80
	for _, shape := range []string{"hot", "hot-alone", "100accounts"} {
		for _, callers := range []int{1, 4, 16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", shape, callers), func(b *testing.B) {
				total := 1600
				if callers == 1 {
					total = 800
				}
				budget.SetGrouping(env.l, shape != "hot-alone")
				defer budget.SetGrouping(env.l, true)
				for it := 0; it < b.N; it++ {
					ours, err := throughput(callers, total, func(i int) error {
						if shape != "100accounts" {
							return env.hold(ctx, env.hot)
						}
						return env.hold(ctx, env.many[i%100])
					})
					if err != nil {
						b.Fatal(err)
					}
					base, err := throughput(callers, total, func(i int) error {
						if shape != "100accounts" {
							return env.bare(ctx, env.bareID)
						}
						return env.bare(ctx, env.manyIDs[i%100])
					})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(ours, "holds/s")
					b.ReportMetric(base, "bare/s")
					b.ReportMetric(ours/base, "ratio")
				}
			})
		}
	}
}
