package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

// BenchmarkCheck measures /budget/check over HTTP beside the same
// admission (budget.Ledger.Admit) called in process, in one sitting: one
// hot account and 100 accounts, at 1, 16 and 64 concurrent clients. It
// reports requests per second and p50/p99 latency.
//
//	go test ./budget/api -run XXX -bench BenchmarkCheck -benchtime 2000x
func BenchmarkCheck(b *testing.B) {
	e := newEnv(b, "")
	ctx := context.Background()
	e.account("hot", "1000000000")
	for i := 0; i < 100; i++ {
		e.account(fmt.Sprintf("acct-%03d", i), "1000000000")
	}
	if _, err := e.l.Pool().Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	token := "Bearer " + e.tokens["reconcile"]
	job := func(acct string) budget.JobRequest {
		j := budget.UnsetJob()
		j.Account, j.Partition, j.MinNodes, j.MinCPUs, j.TimeLimit = acct, "cpu-aws", 1, 1, 60
		j.Actor = "bench"
		return j
	}
	inProcess := func(acct string) error {
		d, err := e.l.Admit(ctx, job(acct))
		if err == nil && d.Kind != budget.KindHeld {
			err = fmt.Errorf("not held: %s", d.Message)
		}
		return err
	}
	overHTTP := func(acct string) error {
		body := `{"account":"` + acct + `","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"60"}`
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/budget/check", strings.NewReader(body))
		req.Header.Set("Authorization", token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		var buf [4096]byte
		for {
			if _, err := res.Body.Read(buf[:]); err != nil {
				break
			}
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	for _, conc := range []int{1, 16, 64} {
		for _, spread := range []bool{false, true} {
			for _, mode := range []string{"inprocess", "http"} {
				do := inProcess
				if mode == "http" {
					do = overHTTP
				}
				where := "hot"
				if spread {
					where = "100acct"
				}
				b.Run(fmt.Sprintf("%s/c%d/%s", where, conc, mode), func(b *testing.B) {
					lat := make([]time.Duration, b.N)
					var next atomic.Int64
					var wg sync.WaitGroup
					var failed atomic.Int64
					b.ResetTimer()
					start := time.Now()
					for w := 0; w < conc; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := int(next.Add(1)) - 1
								if i >= b.N {
									return
								}
								acct := "hot"
								if spread {
									acct = fmt.Sprintf("acct-%03d", i%100)
								}
								t0 := time.Now()
								if err := do(acct); err != nil {
									failed.Add(1)
								}
								lat[i] = time.Since(t0)
							}
						}()
					}
					wg.Wait()
					took := time.Since(start)
					b.StopTimer()
					if failed.Load() > 0 {
						b.Fatalf("%d requests failed", failed.Load())
					}
					slices.Sort(lat)
					b.ReportMetric(float64(b.N)/took.Seconds(), "req/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				})
			}
		}
	}
}
