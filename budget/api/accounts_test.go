package api

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

func TestAccountsCRUD(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	r := e.do("POST", "/api/v1/accounts", "admin",
		`{"slurm_account":"ml-proj-001","name":"ML project","description":"GPU work","budget_limit":5000,"start_date":"2025-01-01","end_date":"2030-12-31T00:00:00Z"}`).
		want(t, 201)
	if r.str("slurm_account") != "ml-proj-001" || r.str("status") != "active" || r.str("deposited") != "5000" {
		t.Fatalf("created: %s", r.body)
	}
	wantNum(t, r, "budget_limit", "5000")
	wantNum(t, r, "budget_used", "0")
	wantNum(t, r, "total_allocated", "5000")
	// The initial deposit is attributed to the token.
	var actor string
	if err := e.l.Pool().QueryRow(context.Background(), `SELECT actor FROM ledger WHERE type = 'deposit'`).Scan(&actor); err != nil {
		t.Fatal(err)
	}
	if actor != "token:t-admin" {
		t.Fatalf("deposit by %q", actor)
	}
	e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"ml-proj-001"}`).wantError(t, 409, "DUPLICATE_ACCOUNT")
	e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"empty","budget_limit":0}`).want(t, 201)

	l := e.do("GET", "/api/v1/accounts", "read", "").want(t, 200)
	if l.str("count") != "2" {
		t.Fatalf("list: %s", l.body)
	}
	e.do("GET", "/api/v1/accounts?status=closed", "read", "").want(t, 200)
	s := e.do("GET", "/api/v1/accounts/ml-proj-001", "read", "").want(t, 200)
	wantNum(t, s, "budget_available", "5000")

	// Update: descriptive fields, and budget_limit deposits or withdraws
	// the difference.
	u := e.do("PUT", "/api/v1/accounts/ml-proj-001", "admin", `{"name":"Renamed","budget_limit":"6000.50"}`).want(t, 200)
	if u.str("name") != "Renamed" || u.str("deposited") != "6000.5" {
		t.Fatalf("update: %s", u.body)
	}
	u = e.do("PUT", "/api/v1/accounts/ml-proj-001", "admin", `{"budget_limit":4000,"budget_used":123,"id":9}`).want(t, 200)
	if u.str("deposited") != "4000" {
		t.Fatalf("lower limit: %s", u.body)
	}
	u = e.do("PUT", "/api/v1/accounts/ml-proj-001", "admin", `{"status":"suspended"}`).want(t, 200)
	if u.str("status") != "suspended" {
		t.Fatalf("suspend: %s", u.body)
	}
	// Delete: only without history; an account with history is closed.
	e.do("DELETE", "/api/v1/accounts/ml-proj-001", "admin", "").wantError(t, 409, "CONFLICT")
	e.do("DELETE", "/api/v1/accounts/empty", "admin", "").want(t, 200)
	e.do("GET", "/api/v1/accounts/empty", "read", "").wantError(t, 404, "NOT_FOUND")
	c := e.do("PUT", "/api/v1/accounts/ml-proj-001", "admin", `{"status":"closed"}`).want(t, 200)
	if c.str("status") != "closed" {
		t.Fatalf("close: %s", c.body)
	}
	e.verify()
}

func TestAllocations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "")
	r := e.do("POST", "/api/v1/allocations", "admin", `{"account":"acct","amount":"250.25","note":"Q1","idempotency_key":"q1"}`).want(t, 201)
	if r.str("amount_str") != "250.25" || r.str("status") != "active" || r.str("actor") != "token:t-admin" {
		t.Fatalf("allocation: %s", r.body)
	}
	again := e.do("POST", "/api/v1/allocations", "admin", `{"account":"acct","amount":"250.25","note":"Q1","idempotency_key":"q1"}`).want(t, 200)
	if again.str("id") != r.str("id") {
		t.Fatal("idempotency key deposited twice")
	}
	e.do("POST", "/api/v1/allocations", "admin", `{"account":"acct","amount":100,"start_date":"2099-01-01","expires_at":"2099-06-01"}`).want(t, 201)
	wantDec(t, "deposited", e.get("acct").Deposited, "250.25")
	l := e.do("GET", "/api/v1/allocations?account=acct", "read", "").want(t, 200)
	if l.str("count") != "2" {
		t.Fatalf("list: %s", l.body)
	}
	one := e.do("GET", "/api/v1/allocations/"+r.str("id"), "read", "").want(t, 200)
	wantNum(t, one, "amount", "250.25")
	acct := e.do("GET", "/api/v1/accounts/acct", "read", "").want(t, 200)
	wantNum(t, acct, "total_allocated", "350.25")
	if acct.str("next_allocation_date") == "" {
		t.Fatalf("no next allocation: %s", acct.body)
	}
	e.verify()
}

func TestTransactionsFiltersAndCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("a1", "1000")
	e.account("a2", "1000")
	var txns []string
	for i := 0; i < 5; i++ {
		r := e.do("POST", "/api/v1/budget/check", "reconcile",
			`{"account":"a1","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
		txns = append(txns, r.str("transaction_id"))
	}
	e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"j1","actual_cost":2,"transaction_id":"`+txns[0]+`"}`).want(t, 200)

	all := e.do("GET", "/api/v1/transactions?account=a1", "read", "").want(t, 200)
	if all.str("count") != "7" { // deposit + 5 holds + 1 charge
		t.Fatalf("a1 has %s entries: %s", all.str("count"), all.body)
	}
	ch := e.do("GET", "/api/v1/transactions?type=charge&job_id=j1", "read", "").want(t, 200)
	if ch.str("count") != "1" || !strings.Contains(string(ch.body), `"transaction_id":"`+txns[0]+`"`) {
		t.Fatalf("charge: %s", ch.body)
	}
	al := e.do("GET", "/api/v1/transactions?type=allocation&account=a2", "read", "").want(t, 200)
	if al.str("count") != "1" {
		t.Fatalf("allocation alias: %s", al.body)
	}
	if e.do("GET", "/api/v1/transactions?status=pending", "read", "").want(t, 200).str("count") != "0" {
		t.Fatal("ledger entries are never pending")
	}
	if e.do("GET", "/api/v1/transactions?start_date=2099-01-01", "read", "").want(t, 200).str("count") != "0" {
		t.Fatal("start_date not applied")
	}
	// Cursor paging walks every entry exactly once, newest first.
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		p := e.do("GET", "/api/v1/transactions?limit=3"+cursor, "read", "").want(t, 200)
		for _, tx := range p.at("transactions").([]any) {
			id := tx.(map[string]any)["id"].(interface{ String() string }).String()
			if seen[id] {
				t.Fatalf("entry %s on two pages", id)
			}
			seen[id] = true
		}
		pages++
		next := p.str("next_cursor")
		if next == "" {
			break
		}
		cursor = "&cursor=" + next
	}
	if len(seen) != 8 || pages != 3 {
		t.Fatalf("cursor saw %d entries in %d pages", len(seen), pages)
	}
	off := e.do("GET", "/api/v1/transactions?limit=2&offset=6", "read", "").want(t, 200)
	if off.str("count") != "2" {
		t.Fatalf("offset: %s", off.body)
	}
	_ = strconv.Itoa
	_ = budget.ErrInvalid
}

func TestAccountCreateHonoursAllocationSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	start := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	before := e.snapshot()
	e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"inc","allocation_schedule":{"total_budget":1200,
		"allocation_amount":100,"allocation_frequency":"hourly","start_date":"`+start+`","auto_allocate":true}}`).
		wantError(t, 400, "VALIDATION_ERROR")
	if e.snapshot() != before {
		t.Fatal("a bad schedule created the account")
	}
	r := e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"inc","budget_limit":0,"has_incremental_budget":true,
		"allocation_schedule":{"total_budget":1200,"allocation_amount":100,"allocation_frequency":"monthly",
		"start_date":"`+start+`","auto_allocate":true}}`).want(t, 201)
	if r.at("has_incremental_budget") != true || r.str("next_allocation_date") == "" {
		t.Fatalf("schedule: %s", r.body)
	}
	wantNum(t, r, "budget_limit", "100") // the first installment fell due yesterday
	e.verify()
}
