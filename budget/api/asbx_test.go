package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

// settledJob holds and settles a job (1 node, cpu-aws) the way jobcomp
// would, returning its hold id and computed charge.
func (e *env) settledJob(account string, job uint32, minutes int64) (int64, budget.Settlement) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"`+account+`","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"02:00:00"}`).want(e.t, 200)
	id, _ := strconv.ParseInt(r.str("transaction_id"), 10, 64)
	st, err := e.l.SettleJob(context.Background(), budget.JobEnd{JobID: job, Account: account, Partition: "cpu-aws",
		AdminComment: "asbb:" + strconv.FormatInt(id, 10), StartTime: 1_700_000_000, EndTime: 1_700_000_000 + minutes*60,
		State: budget.JobComplete, Nodes: 1, CPUs: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return id, st
}

func countType(t testing.TB, e *env, typ string) int {
	t.Helper()
	var n int
	if err := e.l.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger WHERE type = $1 AND origin_account_id IS NULL`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestASBXReconcilePostedThreeTimesChargesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("proj", "100")
	hold, st := e.settledJob("proj", 1001, 60) // computed charge: $5
	wantDec(t, "computed", st.Actual, "5")
	body := fmt.Sprintf(`{"job_cost_data":{"job_id":"asbx-1","slurm_job_id":"1001","account":"proj","partition":"cpu-aws",
		"job_state":"COMPLETED","estimated_cost":6,"actual_cost":12.75,"aws_cost":12.75,"cpu_efficiency":0.5,
		"burst_decision":"AWS","budget_transaction_id":"%d"},"auto_reconcile":true}`, hold)
	var first response
	for i := 0; i < 3; i++ {
		r := e.do("POST", "/api/v1/asbx/reconcile", "reconcile", body).want(t, 200)
		if i == 0 {
			first = r
		}
		if r.str("reconciliation_id") != first.str("reconciliation_id") || r.str("ledger_id") != first.str("ledger_id") {
			t.Fatalf("repeat %d differs: %s vs %s", i, r.body, first.body)
		}
		if (i > 0) != (r.at("duplicate") == true) {
			t.Fatalf("repeat %d duplicate flag: %s", i, r.body)
		}
	}
	if first.str("reconciliation_status") != "corrected" || first.str("original_transaction") != strconv.FormatInt(hold, 10) {
		t.Fatalf("first: %s", first.body)
	}
	wantNum(t, first, "estimated_cost", "5")
	wantNum(t, first, "actual_cost", "12.75")
	wantNum(t, first, "cost_variance", "7.75")
	wantNum(t, first, "cost_variance_pct", "155")
	wantNum(t, first, "additional_charge", "7.75")
	wantNum(t, first, "refund_amount", "0")
	wantNum(t, first, "estimation_accuracy", "0")
	if len(first.at("warnings").([]any)) == 0 || len(first.at("recommendations").([]any)) == 0 {
		t.Fatalf("no warnings/recommendations: %s", first.body)
	}
	// One charge, one correction: the account spent exactly the AWS cost.
	if c, k := countType(t, e, "charge"), countType(t, e, "correction"); c != 1 || k != 1 {
		t.Fatalf("%d charges and %d corrections, want 1 and 1", c, k)
	}
	wantDec(t, "spent", e.get("proj").Spent, "12.75")
	// A later, different cost trues up again (to the new total, not +).
	r := e.do("POST", "/api/v1/asbx/reconcile", "reconcile",
		fmt.Sprintf(`{"job_cost_data":{"slurm_job_id":"1001","actual_cost":"4.5","budget_transaction_id":"%d"}}`, hold)).want(t, 200)
	wantNum(t, r, "refund_amount", "8.25")
	wantDec(t, "spent", e.get("proj").Spent, "4.5")
	// Matching by Slurm job id alone works too.
	_, _ = e.settledJob("proj", 1002, 30)
	r = e.do("POST", "/api/v1/asbx/reconcile", "reconcile", `{"job_cost_data":{"slurm_job_id":"1002","actual_cost":2.5}}`).want(t, 200)
	if r.str("reconciliation_status") != "unchanged" {
		t.Fatalf("same cost: %s", r.body)
	}
	st2 := e.do("GET", "/api/v1/asbx/status", "read", "").want(t, 200)
	if st2.str("successful_reconciliations") != "3" || st2.str("failed_reconciliations") != "0" || st2.at("integration_enabled") != true {
		t.Fatalf("status: %s", st2.body)
	}
	e.verify()
}

func TestASBXReportBeforeTheChargeWaitsThenTruesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("proj", "100")
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"proj","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"02:00:00"}`).want(t, 200)
	hold := r.str("transaction_id")
	p := e.do("POST", "/api/v1/asbx/reconcile", "reconcile",
		`{"job_cost_data":{"slurm_job_id":"2001","actual_cost":9,"budget_transaction_id":"`+hold+`"}}`).want(t, 202)
	if p.str("reconciliation_status") != "pending" || countType(t, e, "correction") != 0 {
		t.Fatalf("pending: %s", p.body)
	}
	id, _ := strconv.ParseInt(hold, 10, 64)
	if _, err := e.l.SettleJob(context.Background(), budget.JobEnd{JobID: 2001, Account: "proj", Partition: "cpu-aws",
		AdminComment: "asbb:" + hold, StartTime: 100, EndTime: 100 + 3600, State: budget.JobComplete, Nodes: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.retryPendingASBX(context.Background()); err != nil {
		t.Fatal(err)
	}
	if countType(t, e, "correction") != 1 {
		t.Fatal("the pending report did not true up the charge")
	}
	wantDec(t, "spent", e.get("proj").Spent, "9")
	again := e.do("POST", "/api/v1/asbx/reconcile", "reconcile",
		`{"job_cost_data":{"slurm_job_id":"2001","actual_cost":9,"budget_transaction_id":"`+hold+`"}}`).want(t, 200)
	if again.str("reconciliation_status") != "corrected" || again.at("duplicate") != true {
		t.Fatalf("after retry: %s", again.body)
	}
	_ = id
	e.verify()
}

func TestASBXReleasedHoldIsChargedTheReportedCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("proj", "100")
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"proj","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"02:00:00"}`).want(t, 200)
	id, _ := strconv.ParseInt(r.str("transaction_id"), 10, 64)
	if _, err := e.l.ReleaseHold(context.Background(), id, "test", "job vanished"); err != nil {
		t.Fatal(err)
	}
	c := e.do("POST", "/api/v1/asbx/reconcile", "reconcile",
		`{"job_cost_data":{"actual_cost":3.25,"budget_transaction_id":"`+r.str("transaction_id")+`"}}`).want(t, 200)
	if c.str("reconciliation_status") != "charged" {
		t.Fatalf("released hold: %s", c.body)
	}
	e.do("POST", "/api/v1/asbx/reconcile", "reconcile",
		`{"job_cost_data":{"actual_cost":3.25,"budget_transaction_id":"`+r.str("transaction_id")+`"}}`).want(t, 200)
	wantDec(t, "spent", e.get("proj").Spent, "3.25")
	e.verify()
}

func TestASBXEpilogSettlesOnceForEveryNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("proj", "100")
	r := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"proj","partition":"cpu-aws","nodes":2,"cpus":8,"wall_time":"02:00:00"}`).want(t, 200)
	id, _ := strconv.ParseInt(r.str("transaction_id"), 10, 64)
	if err := e.l.BindHold(context.Background(), id, "3001"); err != nil {
		t.Fatal(err)
	}
	// ASBX's sample script: cpus as "4(x2)", per-node Epilog posts twice.
	body := `{"job_id":"3001","account":"proj","partition":"cpu-aws","user_id":"alice","job_state":"COMPLETED","exit_code":0,
		"submit_time":1700000000,"start_time":1700000000,"end_time":1700003600,"allocated_nodes":2,"allocated_cpus":"4(x2)",
		"allocated_gpus":0,"requested_memory":"4G","max_rss":"1G","max_vm_size":"2G","asbx_data_path":"","asbx_job_report":"",
		"slurm_accounting_data":{"Elapsed":"01:00:00"}}`
	a := e.do("POST", "/api/v1/asbx/epilog", "reconcile", body).want(t, 200)
	b := e.do("POST", "/api/v1/asbx/epilog", "reconcile", body).want(t, 200)
	if a.at("reconciliation_triggered") != true || a.str("actual_charge") != "10" || b.at("duplicate") != true {
		t.Fatalf("epilog: %s / %s", a.body, b.body)
	}
	if countType(t, e, "charge") != 1 {
		t.Fatal("two node epilogs charged twice")
	}
	e.verify()
}

func writeASBXFile(t testing.TB, dir, job, cost string) {
	t.Helper()
	body := fmt.Sprintf(`{"job_id":"%s","account":"proj","user_id":"alice","partition":"cpu-aws","actual_cost":%s,
		"compute_cost":%s,"storage_cost":0,"network_cost":0,"spot_savings":1.5,"instance_types":["c5.xlarge"],
		"duration_hours":1.0,"success":true,"export_time":"2025-01-01T00:00:00Z","plugin_version":"0.3.1"}`, job, cost, cost)
	path := filepath.Join(dir, "job-"+job+"-asbb-reconciliation.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(path, old, old)
}

func TestASBXFilesAreIngestedOnceAndMovedAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEnv(t, "", func(c *budget.Config) { c.Service.ASBXSpoolDir = dir })
	e.account("proj", "100")
	_, _ = e.settledJob("proj", 4001, 60)
	writeASBXFile(t, dir, "4001", "7.25") // charged job: trued up
	writeASBXFile(t, dir, "4002", "1")    // nothing yet: waits
	if err := os.WriteFile(filepath.Join(dir, "job-4003-asbb-reconciliation.json"), []byte(`{"job_id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(filepath.Join(dir, "job-4003-asbb-reconciliation.json"), old, old)
	if err := e.s.ingestASBX(context.Background()); err == nil {
		t.Fatal("a corrupt file was not reported")
	}
	for _, f := range []string{"done/job-4001-asbb-reconciliation.json", "done/job-4002-asbb-reconciliation.json",
		"failed/job-4003-asbb-reconciliation.json", "failed/job-4003-asbb-reconciliation.json.error"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if len(e.s.asbxFiles()) != 0 {
		t.Fatal("files left in the spool")
	}
	wantDec(t, "spent", e.get("proj").Spent, "7.25")
	// The same file again (ASBX re-exported it unchanged) changes nothing.
	writeASBXFile(t, dir, "4001", "7.25")
	if err := e.s.ingestASBX(context.Background()); err != nil {
		t.Fatal(err)
	}
	if countType(t, e, "correction") != 1 {
		t.Fatal("re-ingesting the same report corrected again")
	}
	st := e.do("GET", "/api/v1/asbx/status", "read", "").want(t, 200)
	if st.str("asbx_version") != "0.3.1" || st.str("pending_reconciliations") != "1" || st.str("files_failed") != "1" || st.str("last_data_import") == "" {
		t.Fatalf("status: %s", st.body)
	}
	e.verify()
}
