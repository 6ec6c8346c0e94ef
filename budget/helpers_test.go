package budget_test

import (
	"context"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/shopspring/decimal"
)

const testConfig = `
[submit]
default_partition = "cpu-aws"
timeout = "5s"

[pricing.partitions.cpu-aws]
node_hour = "5.00"
max_time = "2-00:00:00"

[pricing.partitions.gpu-aws]
instance_type = "p3.2xlarge"
instance_hour = "3.06"
gpu_hour = "1.00"
max_time = "1-00:00:00"
`

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// newLedger gives a test its own migrated database and a Ledger on it.
func newLedger(t testing.TB, extra string) *budget.Ledger {
	t.Helper()
	cfg, err := budget.ParseConfig(testConfig + extra)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	pool := pgtest.Pool(t)
	return budget.New(pool, cfg, nil)
}

func mustAccount(t testing.TB, l *budget.Ledger, spec budget.AccountSpec) budget.Account {
	t.Helper()
	a, err := l.CreateAccount(context.Background(), spec)
	if err != nil {
		t.Fatalf("create account %s: %v", spec.SlurmAccount, err)
	}
	return a
}

func account(t testing.TB, l *budget.Ledger, name string) budget.Account {
	t.Helper()
	a, err := l.GetAccount(context.Background(), "", name)
	if err != nil {
		t.Fatalf("get account %s: %v", name, err)
	}
	return a
}

// mustVerify fails the test unless the ledger is consistent.
func mustVerify(t testing.TB, l *budget.Ledger) {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("verify found problems: %+v", rep.Problems)
	}
}

func entryCount(t testing.TB, l *budget.Ledger) int64 {
	t.Helper()
	var n int64
	if err := l.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func job(account string, nodes, minutes uint32) budget.JobRequest {
	j := budget.UnsetJob()
	j.Account, j.MinNodes, j.TimeLimit, j.User = account, nodes, minutes, "alice"
	return j
}

func ptrTime(t testing.TB, s string) *time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return &v
}
