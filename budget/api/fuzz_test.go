package api

import (
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// The decoders of every write body never panic, and whatever they accept
// as money is within the ledger's range and scale.
func FuzzDecoders(f *testing.F) {
	for _, s := range []string{
		`{"account":"a","partition":"p","nodes":1,"cpus":4,"memory":"4GB","wall_time":"1-00:00:00"}`,
		`{"job_id":"1","actual_cost":"1.5","transaction_id":"7"}`,
		`{"job_id":"1","actual_cost":1e3}`, `{"actual_cost":-0}`, `{"actual_cost":"$1,000"}`,
		`{"job_cost_data":{"slurm_job_id":"1_2","actual_cost":12.75,"cpu_efficiency":0.5}}`,
		`{"job_id":"5","allocated_cpus":"4(x2),2","start_time":"17"}`,
		`{"slurm_account":"x","budget_limit":0.000001,"allocation_schedule":{"total_budget":"1"}}`,
		`{"account":"\u0000"}`, `[`, `null`, `{"a":`, `{"nodes":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c CheckRequest
		if decodeBytes(body, &c) == nil {
			_, _ = c.jobRequest()
		}
		var r ReconcileRequest
		if decodeBytes(body, &r) == nil {
			if d, err := r.ActualCost.NonNegative("actual_cost"); err == nil {
				checkMoney(t, d)
			}
		}
		var a ASBXReconcileRequest
		_ = decodeBytes(body, &a)
		var ep ASBXEpilogRequest
		_ = decodeBytes(body, &ep)
		var ac AccountCreate
		if decodeBytes(body, &ac) == nil {
			if d, err := ac.BudgetLimit.NonNegative("budget_limit"); err == nil {
				checkMoney(t, d)
			}
			_, _ = ac.StartDate.Get("start_date")
		}
		var al AllocationCreate
		if decodeBytes(body, &al) == nil {
			if d, err := al.Amount.Positive("amount"); err == nil {
				checkMoney(t, d)
			}
		}
		_ = parseSlurmCount(string(body))
		_, _ = parseMemoryMB(string(body))
		_, _, _ = splitJobID(string(body))
	})
}

func checkMoney(t *testing.T, d decimal.Decimal) {
	t.Helper()
	if d.IsNegative() || d.GreaterThanOrEqual(decimal.New(1, 13)) || !d.Equal(d.Truncate(6)) {
		t.Fatalf("accepted out-of-range money %s", d)
	}
	if strings.Contains(d.String(), "e") {
		t.Fatalf("odd money text %s", d)
	}
}
