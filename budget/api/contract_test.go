package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/asbb/asbb/budget/spool"
)

// The requests of API-COMPAT.md, posted as the original's clients and its
// sister projects send them, succeed and answer with the original keys.
func TestContractExampleRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"ml-proj-001","name":"ML project","description":"d","budget_limit":100.0,
		"start_date":"2025-01-01T00:00:00Z","end_date":"2030-01-01T00:00:00Z","has_incremental_budget":false}`).want(t, 201)

	// BudgetCheckRequest with every field, the C draft's shape.
	chk := e.do("POST", "/api/v1/budget/check", "reconcile", `{"account":"ml-proj-001","partition":"cpu-aws","nodes":1,"cpus":4,
		"gpus":0,"memory":"4096MB","wall_time":"02:00:00","job_script":"#!/bin/bash\nsrun hostname","user_id":"1000",
		"job_details":{"job_name":"train"}}`).want(t, 200)
	for _, k := range []string{"available", "estimated_cost", "hold_amount", "transaction_id", "message", "budget_remaining",
		"details.account_balance", "details.current_hold", "details.hold_percentage"} {
		if chk.at(k) == nil {
			t.Errorf("budget/check lacks %s: %s", k, chk.body)
		}
	}
	wantNum(t, chk, "estimated_cost", "10")
	wantNum(t, chk, "hold_amount", "12")
	wantNum(t, chk, "budget_remaining", "88")

	// JobReconcileRequest (job_metadata is JSON packed in a string).
	rec := e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"12345","actual_cost":8.4,
		"transaction_id":"`+chk.str("transaction_id")+`","job_metadata":"{\"nodes\":1}"}`).want(t, 200)
	for _, k := range []string{"success", "original_hold", "actual_charge", "refund_amount", "transaction_id", "message"} {
		if rec.at(k) == nil {
			t.Errorf("budget/reconcile lacks %s: %s", k, rec.body)
		}
	}
	wantNum(t, rec, "refund_amount", "3.6")

	// ASBX's ASBXCostReconciliationRequest with every field; and three
	// posts of it charge once.
	_, _ = e.settledJob("ml-proj-001", 5001, 60)
	asbx := `{"job_cost_data":{"job_id":"asbx-5001","slurm_job_id":"5001","account":"ml-proj-001","partition":"cpu-aws",
		"user_id":"alice","submitted_at":"2025-01-01T00:00:00Z","started_at":"2025-01-01T00:01:00Z","completed_at":"2025-01-01T01:01:00Z",
		"job_state":"COMPLETED","exit_code":0,"requested_nodes":1,"used_nodes":1,"requested_cpus":4,"used_cpus":4,
		"requested_gpus":0,"used_gpus":0,"requested_memory":"4G","used_memory":"3G","wall_time_limit":"02:00:00",
		"actual_wall_time":"01:00:00","estimated_cost":5.0,"actual_cost":12.75,"local_cost":0,"aws_cost":12.75,
		"cost_breakdown":{"compute":12.0,"storage":0.75},"cpu_efficiency":0.92,"memory_efficiency":0.75,
		"io_metrics":{"read_mb":10},"network_metrics":{"tx_mb":5},"burst_decision":"AWS","burst_reason":"queue full",
		"instance_types":["c5.xlarge"],"availability_zone":"us-east-1a","job_metadata":{"project":"x"},
		"performance_profile":"cpu-bound","research_domain":"ml","budget_transaction_id":"","reconciliation_status":"pending"},
		"auto_reconcile":true,"update_cost_model":false,"generate_report":false,"notify_stakeholders":false}`
	var first response
	for i := 0; i < 3; i++ {
		r := e.do("POST", "/api/v1/asbx/reconcile", "reconcile", asbx).want(t, 200)
		if i == 0 {
			first = r
		}
	}
	for _, k := range []string{"success", "reconciliation_id", "original_transaction", "estimated_cost", "actual_cost",
		"cost_variance", "cost_variance_pct", "refund_amount", "additional_charge", "estimation_accuracy",
		"model_update_applied", "message"} {
		if first.at(k) == nil {
			t.Errorf("asbx/reconcile lacks %s: %s", k, first.body)
		}
	}
	if n := countType(t, e, "correction"); n != 1 {
		t.Fatalf("three ASBX posts made %d corrections", n)
	}
	// ASBXEpilogRequest with the sample script's "4(x2)".
	ep := e.do("POST", "/api/v1/asbx/epilog", "reconcile", `{"job_id":"5002","account":"ml-proj-001","partition":"cpu-aws",
		"user_id":"alice","job_state":"COMPLETED","exit_code":0,"submit_time":1700000000,"start_time":0,"end_time":0,
		"allocated_nodes":2,"allocated_cpus":"4(x2)","allocated_gpus":0,"requested_memory":"4G","max_rss":"","max_vm_size":"",
		"asbx_data_path":"/tmp/x","asbx_job_report":"","slurm_accounting_data":{}}`).want(t, 200)
	for _, k := range []string{"success", "job_id", "reconciliation_triggered", "message", "next_steps", "data_import_status"} {
		if ep.at(k) == nil {
			t.Errorf("asbx/epilog lacks %s: %s", k, ep.body)
		}
	}
	st := e.do("GET", "/api/v1/asbx/status", "read", "").want(t, 200)
	for _, k := range []string{"asbx_version", "integration_enabled", "last_data_import", "total_jobs_reconciled",
		"successful_reconciliations", "failed_reconciliations", "average_reconciliation_time", "cost_model_accuracy",
		"last_health_check", "health_status"} {
		if _, ok := st.obj[k]; !ok {
			t.Errorf("asbx/status lacks %s: %s", k, st.body)
		}
	}
	// Transactions with the original's query parameters.
	tx := e.do("GET", "/api/v1/transactions?account=ml-proj-001&job_id=12345&type=charge&status=completed&limit=10&offset=0"+
		"&start_date=2020-01-01T00:00:00Z&end_date=2099-01-01T00:00:00Z", "read", "").want(t, 200)
	if tx.str("count") != "1" {
		t.Fatalf("transactions: %s", tx.body)
	}
	row := tx.at("transactions").([]any)[0].(map[string]any)
	for _, k := range []string{"id", "account_id", "job_id", "transaction_id", "type", "amount", "description", "metadata", "status", "created_at", "completed_at"} {
		if _, ok := row[k]; !ok {
			t.Errorf("transaction lacks %s", k)
		}
	}
	acct := e.do("GET", "/api/v1/accounts/ml-proj-001", "read", "").want(t, 200)
	for _, k := range []string{"id", "slurm_account", "name", "description", "budget_limit", "budget_used", "budget_held",
		"has_incremental_budget", "total_allocated", "start_date", "end_date", "status", "created_at", "updated_at"} {
		if _, ok := acct.obj[k]; !ok {
			t.Errorf("account lacks %s", k)
		}
	}
	h := e.do("GET", "/health", "", "").want(t, 200)
	for _, k := range []string{"status", "version", "timestamp", "services", "uptime"} {
		if _, ok := h.obj[k]; !ok {
			t.Errorf("health lacks %s", k)
		}
	}
	e.verify()
}

// 64 clients race /budget/check for three times the balance: exactly what
// fits is held, never more, and the ledger verifies.
func TestConcurrentChecksNeverOverCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("hot", "600") // 100 holds of $6 fit; 300 are asked for
	const clients, perClient = 64, 5
	var held, refused, other atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				r := e.do("POST", "/api/v1/budget/check", "reconcile",
					`{"account":"hot","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`)
				switch {
				case r.status == 200 && r.at("available") == true:
					held.Add(1)
				case r.status == 200:
					refused.Add(1)
				default:
					other.Add(1)
					t.Errorf("status %d: %s", r.status, r.body)
				}
			}
		}()
	}
	wg.Wait()
	if held.Load() != 100 || refused.Load() != clients*perClient-100 {
		t.Fatalf("held %d, refused %d, other %d; want 100 held", held.Load(), refused.Load(), other.Load())
	}
	a := e.get("hot")
	wantDec(t, "held", a.Held, "600")
	wantDec(t, "available", a.Available, "0")
	e.verify()
}

// Two service instances against one database drain a spool of 1,000
// settlement records and 1,000 ASBX files: every record and file exactly
// once.
func TestTwoInstancesDrainSpoolsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("drains 2,000 files; run without -short")
	}
	t.Parallel()
	const n = 1000
	url := pgtest.URL(t)
	settleDir, asbxDir := t.TempDir(), t.TempDir()
	opts := func(c *budget.Config) {
		c.Epilog.SpoolDir, c.Service.ASBXSpoolDir = settleDir, asbxDir
		c.Service.SpoolInterval.Duration, c.Service.ASBXInterval.Duration = 20*time.Millisecond, 20*time.Millisecond
		c.Recovery.Interval.Duration = time.Hour
		c.Service.ShutdownTimeout.Duration = 5 * time.Second
	}
	a := newEnvOn(t, url, "", opts)
	b := newEnvOn(t, url, "", opts)
	a.account("proj", "1000000")
	ctx := context.Background()
	// n jobs that ran: the first n/2 are charged by jobcomp (their ASBX
	// file trues the charge up), the rest only through the spool, and
	// each has an ASBX file. Holds are taken in the core directly (fast).
	sp := spool.New(settleDir, nil)
	for i := 0; i < n; i++ {
		job := uint32(100000 + i)
		d, err := a.l.Admit(ctx, budget.JobRequest{Account: "proj", Partition: "cpu-aws", TimeLimit: 60, MinNodes: 1,
			MaxNodes: budget.NoVal, NumTasks: budget.NoVal, CPUsPerTask: budget.NoVal16, MinCPUs: budget.NoVal, PnMinMemory: budget.NoVal64})
		if err != nil || d.Kind != budget.KindHeld {
			t.Fatalf("admit: %v %+v", err, d)
		}
		end := budget.JobEnd{JobID: job, Account: "proj", Partition: "cpu-aws", AdminComment: d.AdminComment,
			StartTime: 1_700_000_000, EndTime: 1_700_000_000 + 1800, State: budget.JobComplete, Nodes: 1, CPUs: 1}
		if i < n/2 {
			if _, err := a.l.SettleJob(ctx, end); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sp.Write(end); err != nil {
			t.Fatal(err)
		}
		writeASBXFile(t, asbxDir, strconv.Itoa(int(job)), "3.000001")
	}
	runCtx, stop := context.WithCancel(ctx)
	errs := make(chan error, 2)
	for _, e := range []*env{a, b} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- e.s.Serve(runCtx, ln) }()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left, _ := sp.List()
		pending := 0
		_ = a.l.Pool().QueryRow(ctx, `SELECT count(*) FROM asbx_reconciliations WHERE status = 'pending'`).Scan(&pending)
		if len(left) == 0 && len(a.s.asbxFiles()) == 0 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained: %d settlements, %d ASBX files, %d pending left", len(left), len(a.s.asbxFiles()), pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("serve: %v", err)
		}
	}
	var charges, corrections, files, recs int
	var spent string
	_ = a.l.Pool().QueryRow(ctx, `SELECT count(*) FROM charges`).Scan(&charges)
	_ = a.l.Pool().QueryRow(ctx, `SELECT count(*) FROM ledger WHERE type = 'correction'`).Scan(&corrections)
	_ = a.l.Pool().QueryRow(ctx, `SELECT count(*) FROM asbx_files WHERE status = 'done'`).Scan(&files)
	_ = a.l.Pool().QueryRow(ctx, `SELECT count(*) FROM asbx_reconciliations WHERE status = 'corrected'`).Scan(&recs)
	_ = a.l.Pool().QueryRow(ctx, `SELECT spent::text FROM accounts WHERE slurm_account = 'proj'`).Scan(&spent)
	if charges != n || corrections != n || files != n || recs != n {
		t.Fatalf("charges %d, corrections %d, files %d, reconciliations %d; want %d each", charges, corrections, files, recs, n)
	}
	// Every job's charge ($2.50 computed) trued up to $3.000001, once.
	if want := fmt.Sprintf("%d.%06d", 3*n, n); spent != want {
		t.Fatalf("spent %s, want %s", spent, want)
	}
	done, _ := os.ReadDir(filepath.Join(asbxDir, "done"))
	if len(done) != n {
		t.Fatalf("%d files in done/, want %d", len(done), n)
	}
	var byInstance int
	_ = a.l.Pool().QueryRow(ctx, `SELECT count(DISTINCT processed_by) FROM asbx_files`).Scan(&byInstance)
	if byInstance != 2 {
		t.Errorf("ASBX files were imported by %d instance(s); both should have taken part", byInstance)
	}
	a.verify()
}
