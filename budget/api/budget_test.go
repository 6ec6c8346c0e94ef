package api

import (
	"context"
	"github.com/asbb/asbb/budget"
	"net/http"
	"strconv"
	"testing"
)

func TestCheckTakesAHoldThroughAdmitAndAnswersTheOriginalShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("ml-proj", "100")
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"ml-proj","partition":"cpu-aws","nodes":2,"cpus":8,"wall_time":"1:00:00"}`).want(t, 200)
	if r.at("available") != true || r.str("transaction_id") == "" || r.str("decision") != "held" {
		t.Fatalf("not held: %s", r.body)
	}
	// 2 nodes x 1 h x $5 = 10; hold x 1.2 = 12.
	wantNum(t, r, "estimated_cost", "10")
	wantNum(t, r, "hold_amount", "12")
	wantNum(t, r, "budget_remaining", "88")
	wantNum(t, r, "details.account_balance", "100")
	wantNum(t, r, "details.current_hold", "12")
	wantNum(t, r, "details.hold_percentage", "1.2")
	if r.str("hold_amount_str") != "12" {
		t.Fatalf("hold_amount_str = %q", r.str("hold_amount_str"))
	}
	a := e.get("ml-proj")
	wantDec(t, "held", a.Held, "12")
	id, _ := strconv.ParseInt(r.str("transaction_id"), 10, 64)
	h, err := e.l.GetHold(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var actor string
	if err := e.l.Pool().QueryRow(context.Background(), `SELECT actor FROM ledger WHERE hold_id = $1 AND type = 'hold'`, h.ID).Scan(&actor); err != nil {
		t.Fatal(err)
	}
	if actor != "token:t-reconcile" {
		t.Fatalf("hold attributed to %q, want token:t-reconcile", actor)
	}
	e.verify()
}

func TestCheckWallTimeInEverySlurmForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100000")
	for _, c := range []struct{ wall, hold string }{
		{"90", "9"},           // 90 minutes x $5 x 1.2
		{"30:00", "3"},        // MM:SS: 30 minutes
		{"01:00:00", "6"},     // 1 h
		{"1-00", "144"},       // D-HH: 1 day
		{"1-02:00", "156"},    // 26 h
		{"0-00:30:30", "3.1"}, // 31 minutes (seconds round up)
	} {
		r := e.do("POST", "/api/v1/budget/check", "reconcile",
			`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"`+c.wall+`"}`).want(t, 200)
		wantNum(t, r, "hold_amount", c.hold)
	}
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"1:2:3:4"}`).wantError(t, 400, "VALIDATION_ERROR")
	e.verify()
}

func TestCheckCPUsPerNodeAndMemoryAndGPUs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `
[pricing.partitions.cpu-hour]
cpu_hour = "0.10"
mem_gb_hour = "0.01"
max_time = "1-00:00:00"
`)
	e.account("acct", "1000")
	// cpus is the job total: 8 CPUs x 1 h x 0.10 = 0.8, + 2 nodes x 4 GB x 0.01 = 0.08.
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-hour","nodes":2,"cpus":8,"memory":"4GB","wall_time":"01:00:00"}`).want(t, 200)
	wantNum(t, r, "estimated_cost", "0.88")
	// cpus_per_node: 4 per node on 2 nodes is the same job.
	r = e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-hour","nodes":2,"cpus_per_node":4,"memory":"4096MB","wall_time":"01:00:00"}`).want(t, 200)
	wantNum(t, r, "estimated_cost", "0.88")
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-hour","nodes":2,"cpus":5,"cpus_per_node":4,"wall_time":"01:00:00"}`).
		wantError(t, 400, "VALIDATION_ERROR")
	// gpus are the job's total: 2 x $1 + 1 instance x $3.06 per hour.
	r = e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"gpu-aws","nodes":1,"cpus":1,"gpus":2,"wall_time":"01:00:00"}`).want(t, 200)
	wantNum(t, r, "estimated_cost", "5.06")
	e.verify()
}

func TestCheckDeniedIs200WithAvailableFalse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("small", "5")
	before := e.snapshot()
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"small","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	if r.at("available") != false || r.str("transaction_id") != "" || r.str("denial_code") != "insufficient_funds" {
		t.Fatalf("not denied: %s", r.body)
	}
	wantNum(t, r, "budget_remaining", "5")
	wantNum(t, r, "details.account_balance", "5")
	wantNum(t, r, "hold_amount", "6")
	if after := e.snapshot(); after != before {
		t.Fatalf("a denial changed the ledger: %s -> %s", before, after)
	}
	// Unknown account: the original's 404 and message.
	r = e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"nope","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).wantError(t, 404, "NOT_FOUND")
	if r.str("error.message") != "Budget account 'nope' not found" {
		t.Fatalf("message %q", r.str("error.message"))
	}
	// nodes:0 names the field.
	r = e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"small","partition":"cpu-aws","nodes":0,"cpus":1,"wall_time":"01:00:00"}`).wantError(t, 400, "VALIDATION_ERROR")
	if r.str("error.field") != "nodes" {
		t.Fatalf("field %q", r.str("error.field"))
	}
	// A suspended account is the original's 402 ACCOUNT_INACTIVE.
	st := "suspended"
	if _, err := e.l.UpdateAccount(context.Background(), "", "small", budgetPatchStatus(st)); err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"small","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"00:10:00"}`).wantError(t, 402, "ACCOUNT_INACTIVE")
	if after := e.snapshot(); after == before {
		t.Fatal("snapshot did not see the status change")
	}
	e.verify()
}

func TestCheckFreePartitionTakesNoHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "10")
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"local","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	if r.at("available") != true || r.str("decision") != "free" || r.str("transaction_id") != "" {
		t.Fatalf("free partition: %s", r.body)
	}
	wantDec(t, "held", e.get("acct").Held, "0")
}

func TestCheckIdempotencyKeyTakesOneHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	body := `{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00","idempotency_key":"req-1"}`
	a := e.do("POST", "/api/v1/budget/check", "reconcile", body).want(t, 200)
	b := e.do("POST", "/api/v1/budget/check", "reconcile", body).want(t, 200)
	if a.str("transaction_id") != b.str("transaction_id") || b.at("duplicate") != true {
		t.Fatalf("retry took a second hold: %s / %s", a.body, b.body)
	}
	wantDec(t, "held", e.get("acct").Held, "6")
	e.verify()
}

func TestReconcileChargesOnceAndReplaysTheFirstResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":2,"cpus":2,"wall_time":"01:00:00"}`).want(t, 200)
	txn := hold.str("transaction_id")
	body := `{"job_id":"4242","actual_cost":7.5,"transaction_id":"` + txn + `","job_metadata":"{\"k\":1}"}`
	r := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	if r.at("success") != true || r.str("transaction_id") != txn || r.at("duplicate") != false {
		t.Fatalf("reconcile: %s", r.body)
	}
	wantNum(t, r, "original_hold", "12")
	wantNum(t, r, "actual_charge", "7.5")
	wantNum(t, r, "refund_amount", "4.5")
	snap := e.snapshot()
	again := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	if again.at("duplicate") != true || again.str("charge_id") != r.str("charge_id") || again.str("actual_charge") != "7.5" {
		t.Fatalf("repeat: %s", again.body)
	}
	if e.snapshot() != snap {
		t.Fatal("a repeated reconcile changed the ledger")
	}
	a := e.get("acct")
	wantDec(t, "spent", a.Spent, "7.5")
	wantDec(t, "held", a.Held, "0")
	// A string amount works too and is never a float.
	hold2 := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	e.do("POST", "/api/v1/budget/reconcile", "reconcile",
		`{"job_id":"4243","actual_cost":"0.000001","transaction_id":"`+hold2.str("transaction_id")+`"}`).want(t, 200)
	wantDec(t, "spent", e.get("acct").Spent, "7.500001")
	e.verify()
}

func TestReconcileByBoundJobWithoutTransactionID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	id, _ := strconv.ParseInt(hold.str("transaction_id"), 10, 64)
	if err := e.l.BindHold(context.Background(), id, "777"); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"777","actual_cost":3}`).want(t, 200)
	if r.str("transaction_id") != hold.str("transaction_id") {
		t.Fatalf("matched %s, want %s", r.str("transaction_id"), hold.str("transaction_id"))
	}
	e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"778","actual_cost":3}`).wantError(t, 404, "NOT_FOUND")
	e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"actual_cost":3}`).wantError(t, 400, "VALIDATION_ERROR")
	e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"9","actual_cost":3,"transaction_id":"txn_123_456"}`).
		wantError(t, 404, "NOT_FOUND")
	e.verify()
}

func TestReconcileJobEndPricesAtThePinnedRates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":2,"cpus":2,"wall_time":"02:00:00"}`).want(t, 200)
	body := `{"job_id":"55","job_end":{"job_id":55,"account":"acct","partition":"cpu-aws","admin_comment":"asbb:` +
		hold.str("transaction_id") + `","start_time":1700000000,"end_time":1700001800,"job_state":3,"nodes":2,"cpus":2}}`
	r := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	// 2 nodes x 0.5 h x $5 = 5.
	wantNum(t, r, "actual_charge", "5")
	wantNum(t, r, "original_hold", "24")
	again := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	if again.at("duplicate") != true {
		t.Fatalf("repeat: %s", again.body)
	}
	wantDec(t, "spent", e.get("acct").Spent, "5")
	e.verify()
}

func TestReconcileAfterSlurmSettledTheJobTruesUpInsteadOfChargingTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	txn := hold.str("transaction_id")
	// jobcomp settles the job first, under its real run start: $2.50.
	if _, err := e.l.SettleJob(context.Background(), budget.JobEnd{JobID: 91, AdminComment: "asbb:" + txn,
		StartTime: 1700000000, EndTime: 1700001800, Nodes: 1, State: budget.JobComplete}); err != nil {
		t.Fatal(err)
	}
	// Then an integrator reconciles the same hold with the real cost.
	body := `{"job_id":"91","actual_cost":"3.10","transaction_id":"` + txn + `"}`
	r := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	wantNum(t, r, "actual_charge", "3.10")
	wantDec(t, "spent", e.get("acct").Spent, "3.1")
	again := e.do("POST", "/api/v1/budget/reconcile", "reconcile", body).want(t, 200)
	if again.at("duplicate") != true {
		t.Fatalf("repeat: %s", again.body)
	}
	wantDec(t, "spent", e.get("acct").Spent, "3.1")
	e.verify()
}

func budgetPatchStatus(s string) budget.AccountPatch { return budget.AccountPatch{Status: &s} }

var _ = http.StatusOK
