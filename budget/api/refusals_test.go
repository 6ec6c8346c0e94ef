package api

import (
	"context"

	"github.com/asbb/asbb/budget"
	"net/http"
	"strings"
	"testing"
)

// Every endpoint that needs a token refuses a missing, unknown, revoked
// or too weak one, before reading the body, and changes nothing.
func TestAuthenticationAndRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	before := e.snapshot()
	for _, rt := range e.s.Routes() {
		path := strings.ReplaceAll(strings.ReplaceAll(rt.Path, "{account}", "acct"), "{id}", "1")
		body := ""
		if rt.Method != "GET" && rt.Method != "DELETE" {
			body = `{"account":"acct"}`
		}
		if rt.Role == RoleNone {
			if r := e.do(rt.Method, path, "", ""); r.status == 401 || r.status == 403 {
				t.Errorf("%s %s is open but answered %d", rt.Method, path, r.status)
			}
			continue
		}
		e.do(rt.Method, path, "", body).wantError(t, 401, "UNAUTHORIZED")
		e.do(rt.Method, path, "asbb_not-a-token", body).wantError(t, 401, "UNAUTHORIZED")
		for _, weak := range []Role{RoleRead, RoleReconcile} {
			if weak < rt.Role {
				e.do(rt.Method, path, weak.String(), body).wantError(t, 403, "FORBIDDEN")
			}
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the ledger: %s -> %s", before, after)
	}
	// A revoked token stops working (token_cache_ttl is 0 here).
	e.do("GET", "/api/v1/accounts", "read", "").want(t, 200)
	if err := RevokeToken(context.Background(), e.l, "t-read"); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/v1/accounts", "read", "").wantError(t, 401, "UNAUTHORIZED")
	if err := RevokeToken(context.Background(), e.l, "t-read"); err == nil {
		t.Fatal("revoking twice succeeded")
	}
	// Basic auth or a bare token is not a bearer token.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/accounts", nil)
	req.SetBasicAuth("x", e.tokens["admin"])
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("basic auth: %d", res.StatusCode)
	}
}

func TestMetricsAuthIsConfigurable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *budget.Config) { c.Service.MetricsAuth = true })
	e.do("GET", "/metrics", "", "").wantError(t, 401, "UNAUTHORIZED")
	if r := e.do("GET", "/metrics", "read", ""); r.status != 200 || !strings.Contains(string(r.body), "asbb_database_up 1") {
		t.Fatalf("metrics with a read token: %d", r.status)
	}
	e.do("GET", "/health", "", "").want(t, 200)
	e.do("GET", "/version", "", "").want(t, 200)
}

// Bad bodies: each a clear 4xx naming the problem, and no change in the
// ledger. No body produces a 5xx.
func TestBadRequestsAreRefusedWithoutChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	txn := hold.str("transaction_id")
	inj := `x'; DROP TABLE ledger; --`
	type c struct {
		method, path, body, field string
		status                    int
	}
	cases := []c{
		// malformed JSON, wrong shapes
		{"POST", "/api/v1/budget/check", `{"account":`, "", 400},
		{"POST", "/api/v1/budget/check", ``, "", 400},
		{"POST", "/api/v1/budget/check", `[]`, "", 400},
		{"POST", "/api/v1/budget/check", `"acct"`, "", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct"} {"x":1}`, "", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","nodes":"two"}`, "nodes", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","nodes":1.5}`, "nodes", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","nodes":1e30}`, "nodes", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","nodes":-1,"wall_time":"1:00:00","partition":"cpu-aws"}`, "nodes", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","cpus":-4,"wall_time":"1:00:00","partition":"cpu-aws"}`, "cpus", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","nodes":100001,"wall_time":"1:00:00","partition":"cpu-aws"}`, "nodes", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","wall_time":"99999:00:00","partition":"cpu-aws"}`, "wall_time", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","wall_time":"1:00:00","partition":"cpu-aws","memory":"lots"}`, "memory", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","wall_time":"1:00:00","partition":"cpu-aws","bogus":1}`, "bogus", 400},
		{"POST", "/api/v1/budget/check", `{"account":"` + inj + `","partition":"cpu-aws","wall_time":"1:00:00"}`, "account", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct","partition":"` + inj + `","wall_time":"1:00:00"}`, "partition", 400},
		{"POST", "/api/v1/budget/check", `{"account":"acct\u0000","partition":"cpu-aws","wall_time":"1:00:00"}`, "", 400},
		{"POST", "/api/v1/budget/check", `{"account":"nope","partition":"cpu-aws","wall_time":"1:00:00"}`, "account", 404},
		{"POST", "/api/v1/budget/check", `{"account":"acct","partition":"cpu-aws","wall_time":"UNLIMITED","nodes":1}`, "", 200},
		{"POST", "/api/v1/budget/check", `{"account":"acct","partition":"cpu-aws","wall_time":"1:00:00","idempotency_key":"` + strings.Repeat("k", 300) + `"}`, "idempotency_key", 400},
		// money: negative, huge, over-scale, exponent, not a number
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":-1,"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":"-0.01","transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":1e20,"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":99999999999999999999,"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":0.0000001,"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":"NaN","transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":true,"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":{},"transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","transaction_id":"` + txn + `"}`, "actual_cost", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":1,"transaction_id":"` + inj + `"}`, "transaction_id", 404},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":1,"transaction_id":"999999999"}`, "transaction_id", 404},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"` + strings.Repeat("9", 65) + `","actual_cost":1,"transaction_id":"` + txn + `"}`, "job_id", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_id":"1","actual_cost":1,"transaction_id":"` + txn + `","extra":1}`, "extra", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_end":{"job_id":0}}`, "job_end.job_id", 400},
		{"POST", "/api/v1/budget/reconcile", `{"job_end":{"job_id":5,"surprise":1}}`, "surprise", 400},
		// accounts
		{"POST", "/api/v1/accounts", `{"slurm_account":"` + inj + `"}`, "slurm_account", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","budget_limit":-5}`, "budget_limit", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","budget_limit":1e14}`, "budget_limit", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","budget_limit":"10000000000000"}`, "budget_limit", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","budget_limit":1.1234567}`, "budget_limit", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","start_date":"yesterday"}`, "start_date", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","start_date":"2025-02-01","end_date":"2025-01-01"}`, "", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","currency":"dollars"}`, "currency", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","parent":"nope"}`, "", 404},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","name":"` + strings.Repeat("n", 300) + `"}`, "", 400},
		{"POST", "/api/v1/accounts", `{"slurm_account":"acct"}`, "slurm_account", 409},
		{"POST", "/api/v1/accounts", `{"slurm_account":"new1","allocation_schedule":{"total_budget":1,"bogus":2}}`, "bogus", 400},
		{"PUT", "/api/v1/accounts/acct", `{"status":"deleted"}`, "status", 400},
		{"PUT", "/api/v1/accounts/acct", `{"credit_limit":-1}`, "credit_limit", 400},
		{"PUT", "/api/v1/accounts/acct", `{"budget_limit":"1000000000000000"}`, "budget_limit", 400},
		{"PUT", "/api/v1/accounts/acct", `{"budget_limit":"1"}`, "budget_limit", 402}, // 6 is held: only 94 may be withdrawn
		{"PUT", "/api/v1/accounts/acct", `{"name":""}`, "", 400},
		{"PUT", "/api/v1/accounts/x%27%3B%20DROP%20TABLE%20ledger", `{"name":"x"}`, "account", 404},
		{"PUT", "/api/v1/accounts/nope", `{"name":"x"}`, "account", 404},
		{"DELETE", "/api/v1/accounts/acct", ``, "", 409},
		{"DELETE", "/api/v1/accounts/nope", ``, "account", 404},
		// allocations
		{"POST", "/api/v1/allocations", `{"account":"acct","amount":0}`, "amount", 400},
		{"POST", "/api/v1/allocations", `{"account":"acct","amount":-3}`, "amount", 400},
		{"POST", "/api/v1/allocations", `{"account":"acct","amount":"1e3"}`, "amount", 400},
		{"POST", "/api/v1/allocations", `{"account":"acct","amount":10,"currency":"EUR"}`, "", 400},
		{"POST", "/api/v1/allocations", `{"account":"acct","amount":10,"expires_at":"2001-01-01"}`, "", 400},
		{"POST", "/api/v1/allocations", `{"account":"nope","amount":10}`, "account", 404},
		{"POST", "/api/v1/allocations", `{"account":"` + inj + `","amount":10}`, "account", 400},
		{"POST", "/api/v1/allocations", `{"amount":10}`, "account", 400},
		// ASBX
		{"POST", "/api/v1/asbx/reconcile", `{}`, "job_cost_data", 400},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"slurm_job_id":"1","actual_cost":-2}}`, "job_cost_data.actual_cost", 400},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"slurm_job_id":"` + inj + `","actual_cost":2}}`, "job_cost_data.slurm_job_id", 400},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"slurm_job_id":"1","actual_cost":2,"started_at":"noon"}}`, "job_cost_data.started_at", 400},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"slurm_job_id":"1","actual_cost":2,"cpu_efficiency":"x"}}`, "", 400},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"slurm_job_id":"1","actual_cost":2}}`, "job_cost_data.slurm_job_id", 404},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"budget_transaction_id":"` + inj + `","actual_cost":2}}`, "job_cost_data.budget_transaction_id", 404},
		{"POST", "/api/v1/asbx/reconcile", `{"job_cost_data":{"budget_transaction_id":"99999","actual_cost":2}}`, "job_cost_data.budget_transaction_id", 404},
		{"POST", "/api/v1/asbx/epilog", `{"job_id":"` + inj + `"}`, "job_id", 400},
		{"POST", "/api/v1/asbx/epilog", `{"job_id":"5","account":"` + inj + `","start_time":1,"end_time":2}`, "account", 400},
		// query strings
		{"GET", "/api/v1/transactions?limit=-1", ``, "limit", 400},
		{"GET", "/api/v1/transactions?limit=abc", ``, "limit", 400},
		{"GET", "/api/v1/transactions?type=bogus", ``, "type", 400},
		{"GET", "/api/v1/transactions?start_date=yesterday", ``, "start_date", 400},
		{"GET", "/api/v1/transactions?account=" + "x%27%20OR%201%3D1", ``, "account", 400},
		{"GET", "/api/v1/transactions?job_id=%00", ``, "job_id", 400},
		{"GET", "/api/v1/transactions?cursor=abc", ``, "cursor", 400},
		{"GET", "/api/v1/accounts/nope", ``, "account", 404},
		{"GET", "/api/v1/accounts/" + "x%27%3B%20DROP", ``, "account", 404},
		{"GET", "/api/v1/allocations/abc", ``, "id", 404},
		{"GET", "/api/v1/allocations/99999", ``, "", 404},
		{"GET", "/api/v1/nothing-here", ``, "", 404},
		{"PATCH", "/api/v1/accounts", `{}`, "", 405},
	}
	before := e.snapshot()
	for _, c := range cases {
		r := e.do(c.method, c.path, "admin", c.body)
		if r.status >= 500 {
			t.Errorf("%s %s %s: %d (a body must never cause a 5xx): %s", c.method, c.path, c.body, r.status, r.body)
			continue
		}
		if r.status != c.status {
			t.Errorf("%s %s %s: status %d, want %d: %s", c.method, c.path, c.body, r.status, c.status, r.body)
			continue
		}
		if c.status == 200 {
			continue
		}
		if r.str("error.code") == "" || r.str("error.message") == "" {
			t.Errorf("%s %s: no error envelope: %s", c.method, c.path, r.body)
		}
		if c.field != "" && r.str("error.field") != c.field {
			t.Errorf("%s %s %s: field %q, want %q: %s", c.method, c.path, c.body, r.str("error.field"), c.field, r.body)
		}
	}
	// (UNLIMITED is priced at the partition's max_time, 2 days: $288, more
	// than the account has, so it too is refused.)
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the ledger:\n%s\n%s", before, after)
	}
	e.verify()
}

// Bodies larger than service.max_body_bytes are refused with 413.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	big := `{"account":"` + strings.Repeat("a", 70000) + `"}`
	e.do("POST", "/api/v1/budget/check", "admin", big).wantError(t, 413, "VALIDATION_ERROR")
}
