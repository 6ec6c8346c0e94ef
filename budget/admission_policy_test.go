package budget_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

// Shadow mode and the database-failure policy of Admit/Modify
// (submit.enforce, submit.on_db_error, and their per-partition overrides).

func TestShadowModeAcceptsWhatWouldBeRefused(t *testing.T) {
	t.Parallel()
	l := newLedger(t, `
[submit.partitions.gpu-aws]
enforce = false
`)
	ctx := context.Background()
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "poor", Budget: dec("1"), Actor: "test"})
	before := account(t, l, "poor")

	// Enforced partition: refused.
	d, err := l.Admit(ctx, job("poor", 4, 600))
	if err != nil || d.Kind != budget.KindRefused || d.Accepted() || !strings.HasPrefix(d.Message, "asbb: account poor has $1.00 available") {
		t.Fatalf("enforced: %+v, %v", d, err)
	}
	// Shadow partition: the same refusal, accepted, said so, no hold.
	g := job("poor", 1, 600)
	g.Partition = "gpu-aws"
	d, err = l.Admit(ctx, g)
	if err != nil || d.Kind != budget.KindShadow || !d.Accepted() || d.HoldID != 0 ||
		!strings.HasPrefix(d.Message, "asbb (shadow mode, job accepted): account poor has $1.00 available") ||
		d.Denial == nil || d.Denial.Code != "insufficient_funds" || !d.Amount.IsPositive() {
		t.Fatalf("shadow: %+v, %v", d, err)
	}
	after := account(t, l, "poor")
	if !after.Held.Equal(before.Held) || !after.Spent.Equal(before.Spent) {
		t.Errorf("shadow decision moved money: held %s -> %s", before.Held, after.Held)
	}
	// Shadow covers every denial, not only funds: an unknown account.
	g.Account = "nobody"
	if d, err := l.Admit(ctx, g); err != nil || d.Kind != budget.KindShadow || !strings.Contains(d.Message, "nobody has no ASBB budget") {
		t.Errorf("unknown account in shadow mode: %+v, %v", d, err)
	}
	// An affordable job in shadow mode is held as usual.
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "rich", Budget: dec("10000"), Actor: "test"})
	g.Account = "rich"
	if d, err := l.Admit(ctx, g); err != nil || d.Kind != budget.KindHeld || d.HoldID == 0 {
		t.Errorf("affordable in shadow mode: %+v, %v", d, err)
	}
	mustVerify(t, l)
}

func TestShadowModeGloballyWithAnEnforcedPartition(t *testing.T) {
	t.Parallel()
	l := newLedger(t, `
[submit.partitions.gpu-aws]
enforce = true
`)
	l.Config().Submit.Enforce = false // testConfig has its [submit] table already
	ctx := context.Background()
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "poor", Budget: dec("1"), Actor: "test"})
	if d, err := l.Admit(ctx, job("poor", 4, 600)); err != nil || d.Kind != budget.KindShadow {
		t.Errorf("cpu (shadow): %+v, %v", d, err)
	}
	g := job("poor", 1, 600)
	g.Partition = "gpu-aws"
	if d, err := l.Admit(ctx, g); err != nil || d.Kind != budget.KindRefused {
		t.Errorf("gpu (enforced): %+v, %v", d, err)
	}
	// A re-priced (modified) job follows the same rule.
	ok := job("poor", 1, 6)
	d, err := l.Admit(ctx, ok)
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("small job: %+v, %v", d, err)
	}
	ch := budget.UnsetJob()
	ch.AdminComment, ch.TimeLimit = d.AdminComment, 6000
	if m, err := l.Modify(ctx, ch); err != nil || m.Kind != budget.KindShadow {
		t.Errorf("modify beyond the budget in shadow mode: %+v, %v", m, err)
	}
	mustVerify(t, l)
}

// downLedger is a Ledger whose database cannot be reached: a port nothing
// listens on (refused at once) or a listener that accepts and never
// answers (only the deadline ends the wait).
func downLedger(t *testing.T, extra string, silent bool) *budget.Ledger {
	t.Helper()
	addr := "127.0.0.1:1"
	if silent {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		addr = ln.Addr().String()
	}
	cfg, err := budget.ParseConfig(testConfig + extra + "\n[database]\nurl = \"postgres://asbb@" + addr + "/asbb?sslmode=disable\"\n")
	if err != nil {
		t.Fatal(err)
	}
	l, err := budget.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestOnDBErrorReject(t *testing.T) {
	t.Parallel()
	l := downLedger(t, "", false)
	d, err := l.Admit(context.Background(), job("proj", 1, 60))
	if !errors.Is(err, budget.ErrUnavailable) || d.Kind != budget.KindRefused || d.Accepted() ||
		!strings.Contains(d.Message, "budget database is unavailable") || !strings.Contains(d.Message, "on_db_error=reject") {
		t.Fatalf("reject: %+v, %v", d, err)
	}
	// The estimate is still reported (logs, the API's reply).
	if !d.Amount.Equal(dec("6")) {
		t.Errorf("amount %s, want the estimate 6", d.Amount)
	}
	// Unpriced partitions need no database at all.
	free := job("proj", 1, 60)
	free.Partition = "debug"
	if d, err := l.Admit(context.Background(), free); err != nil || d.Kind != budget.KindFree {
		t.Errorf("free partition during an outage: %+v, %v", d, err)
	}
	// Modify during an outage follows the policy too.
	ch := budget.UnsetJob()
	ch.JobID, ch.TimeLimit = "77", 120
	if d, err := l.Modify(context.Background(), ch); !errors.Is(err, budget.ErrUnavailable) || d.Kind != budget.KindRefused {
		t.Errorf("modify during an outage: %+v, %v", d, err)
	}
}

func TestOnDBErrorAcceptPerPartition(t *testing.T) {
	t.Parallel()
	l := downLedger(t, `
[submit.partitions.gpu-aws]
on_db_error = "accept"
`, false)
	g := job("proj", 1, 60)
	g.Partition = "gpu-aws"
	d, err := l.Admit(context.Background(), g)
	if err != nil || d.Kind != budget.KindDBAccept || !d.Accepted() || d.HoldID != 0 ||
		!strings.Contains(d.Message, "accepted without a hold") || !d.Amount.IsPositive() {
		t.Fatalf("gpu accept: %+v, %v", d, err)
	}
	if d, err := l.Admit(context.Background(), job("proj", 1, 60)); !errors.Is(err, budget.ErrUnavailable) || d.Kind != budget.KindRefused {
		t.Errorf("cpu keeps the global reject: %+v, %v", d, err)
	}
}

func TestOnDBErrorAcceptGloballyWithARejectingPartition(t *testing.T) {
	t.Parallel()
	l := downLedger(t, `
[submit.partitions.gpu-aws]
on_db_error = "reject"
`, false)
	l.Config().Submit.OnDBError = "accept"
	if d, err := l.Admit(context.Background(), job("proj", 1, 60)); err != nil || d.Kind != budget.KindDBAccept {
		t.Errorf("cpu accept: %+v, %v", d, err)
	}
	g := job("proj", 1, 60)
	g.Partition = "gpu-aws"
	if d, err := l.Admit(context.Background(), g); !errors.Is(err, budget.ErrUnavailable) || d.Kind != budget.KindRefused {
		t.Errorf("gpu reject: %+v, %v", d, err)
	}
}

// A database that accepts connections and never answers: the submit path
// gives up at submit.timeout and applies the policy.
func TestSubmitTimeoutAppliesThePolicy(t *testing.T) {
	t.Parallel()
	l := downLedger(t, "", true)
	cfg := l.Config()
	cfg.Submit.Timeout.Duration = 200 * time.Millisecond
	start := time.Now()
	d, err := l.Admit(context.Background(), job("proj", 1, 60))
	elapsed := time.Since(start)
	if !errors.Is(err, budget.ErrUnavailable) || d.Kind != budget.KindRefused || !strings.Contains(d.Message, "unavailable") {
		t.Fatalf("silent database: %+v, %v", d, err)
	}
	// Not a performance assertion: a hang would take the connect timeout
	// (2s) or forever; the deadline must end it well before.
	if elapsed > 1500*time.Millisecond {
		t.Errorf("admission waited %s on a silent database with submit.timeout 200ms", elapsed)
	}
}
