package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const nsfGrant = `{"grant_number":"NSF-2025-12345","agency":"National Science Foundation",
	"program":"Computer and Information Science","principal_investigator":"Dr. Jane Smith",
	"co_investigators":["Dr. John Doe"],"institution":"University Research Center","department":"Computer Science",
	"award_amount":750000,"start_date":"2025-01-01","end_date":"2027-12-31","budget_period_months":12,
	"indirect_rate":"0.30","federal_award_id":"47.070"}`

func TestGrantEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	g := e.do("POST", "/api/v1/grants", "admin", nsfGrant).want(t, http.StatusCreated)
	if g.str("grant_number") != "NSF-2025-12345" || g.str("budget_periods") != "3" || g.str("indirect_rate") != "0.3" {
		t.Fatalf("created: %s", g.body)
	}
	ps := g.at("periods").([]any)
	if len(ps) != 3 || ps[1].(map[string]any)["start_date"] != "2026-01-01" || ps[2].(map[string]any)["budget_str"] != "250000" {
		t.Fatalf("periods: %s", g.body)
	}
	e.do("POST", "/api/v1/grants", "admin", nsfGrant).wantError(t, http.StatusConflict, "CONFLICT")
	e.do("POST", "/api/v1/grants", "read", nsfGrant).wantError(t, http.StatusForbidden, "FORBIDDEN")
	e.do("POST", "/api/v1/grants", "", nsfGrant).wantError(t, http.StatusUnauthorized, "UNAUTHORIZED")

	l := e.do("GET", "/api/v1/grants?active=true", "read", "").want(t, http.StatusOK)
	if l.str("count") != "1" {
		t.Fatalf("list: %s", l.body)
	}
	one := e.do("GET", "/api/v1/grants/NSF-2025-12345", "read", "").want(t, http.StatusOK)
	wantNum(t, one, "award_amount", "750000")
	e.do("GET", "/api/v1/grants/NOPE-1", "read", "").wantError(t, http.StatusNotFound, "NOT_FOUND")
	pr := e.do("GET", "/api/v1/grants/NSF-2025-12345/periods", "read", "").want(t, http.StatusOK)
	if pr.str("count") != "3" {
		t.Fatalf("periods: %s", pr.body)
	}

	// Update: carry-forward off, a new rate; the fixed fields may come back
	// unchanged but not changed.
	u := e.do("PUT", "/api/v1/grants/NSF-2025-12345", "admin",
		`{"carry_forward":false,"indirect_rate":0.25,"award_amount":"750000.00","status":"active"}`).want(t, http.StatusOK)
	if u.str("carry_forward") != "false" || u.str("indirect_rate") != "0.25" {
		t.Fatalf("update: %s", u.body)
	}
	e.do("PUT", "/api/v1/grants/NSF-2025-12345", "admin", `{"award_amount":1}`).
		wantError(t, http.StatusBadRequest, "VALIDATION_ERROR")
	e.do("PUT", "/api/v1/grants/NSF-2025-12345", "admin", `{"indirect_rate":2}`).
		wantError(t, http.StatusBadRequest, "VALIDATION_ERROR")

	// Period budget, link and the grant ledger.
	e.do("PUT", "/api/v1/grants/NSF-2025-12345/periods/2", "admin", `{"budget":"1000"}`).want(t, http.StatusOK)
	e.do("PUT", "/api/v1/grants/NSF-2025-12345/periods/2", "admin", `{"budget":"600000"}`).
		wantError(t, http.StatusBadRequest, "VALIDATION_ERROR")
	e.do("PUT", "/api/v1/grants/NSF-2025-12345/periods/9", "admin", `{"budget":"1"}`).wantError(t, http.StatusNotFound, "NOT_FOUND")
	e.account("lab", "100000")
	e.do("POST", "/api/v1/grants/NSF-2025-12345/accounts", "admin", `{"account":"lab"}`).want(t, http.StatusOK)
	e.do("POST", "/api/v1/grants/NSF-2025-12345/accounts", "admin", `{"account":"nope"}`).wantError(t, http.StatusNotFound, "NOT_FOUND")
	led := e.do("GET", "/api/v1/grants/NSF-2025-12345/ledger?period=2", "read", "").want(t, http.StatusOK)
	if led.str("count") != "2" { // the initial budget and its edit
		t.Fatalf("ledger: %s", led.body)
	}

	// A 3-node, 2-day job (864 held, 1080 with 25% indirect) on the linked
	// account is refused by the period budget (1000
	// in 2026) though the account has 100,000: 402 naming the period.
	res := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"lab","partition":"cpu-aws","nodes":3,"wall_time":"2-00:00:00","user":"alice"}`)
	if res.status != http.StatusOK || res.str("available") != "false" || res.str("denial_code") != "grant_period" ||
		!strings.Contains(res.str("message"), "NSF-2025-12345 period 2 (2026-01-01..2026-12-31)") {
		t.Fatalf("check over the period budget: %d %s", res.status, res.body)
	}
	e.verify()
}

func TestGrantEndpointsRefuseBadInputAndChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.do("POST", "/api/v1/grants", "admin", nsfGrant).want(t, http.StatusCreated)
	before := e.snapshot()
	var grants, periods int
	count := func() string {
		_ = e.l.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM grants), (SELECT count(*) FROM grant_periods)`).
			Scan(&grants, &periods)
		return fmt.Sprint(grants, "/", periods)
	}
	base := count()
	body := func(k, v string) string {
		return strings.Replace(strings.Replace(nsfGrant, `"NSF-2025-12345"`, `"G-NEW"`, 1), k, v, 1)
	}
	cases := map[string]struct {
		body, field string
	}{
		"end before start":   {body(`"end_date":"2027-12-31"`, `"end_date":"2024-12-31"`), "end_date"},
		"zero amount":        {body(`"award_amount":750000`, `"award_amount":0`), "award_amount"},
		"negative amount":    {body(`"award_amount":750000`, `"award_amount":-1`), "award_amount"},
		"float-ish amount":   {body(`"award_amount":750000`, `"award_amount":1e6`), "award_amount"},
		"sub-cent amount":    {body(`"award_amount":750000`, `"award_amount":"10.001"`), "award_amount"},
		"periods of 0":       {body(`"budget_period_months":12`, `"budget_period_months":0`), "budget_period_months"},
		"indirect above 1.5": {body(`"indirect_rate":"0.30"`, `"indirect_rate":"1.51"`), "indirect_rate"},
		"indirect negative":  {body(`"indirect_rate":"0.30"`, `"indirect_rate":-0.1`), "indirect_rate"},
		"bad date":           {body(`"start_date":"2025-01-01"`, `"start_date":"2025-02-30"`), "start_date"},
		"slash in number":    {strings.Replace(nsfGrant, `"NSF-2025-12345"`, `"NSF/1"`, 1), "grant_number"},
		"SQL in number":      {strings.Replace(nsfGrant, `"NSF-2025-12345"`, `"x'; DROP TABLE grants; --"`, 1), "grant_number"},
		"unknown field":      {body(`"agency"`, `"agencyy"`), "agencyy"},
		"bad federal id":     {body(`"47.070"`, `"47-070"`), "federal_award_id"},
	}
	for name, c := range cases {
		r := e.do("POST", "/api/v1/grants", "admin", c.body)
		if r.status != http.StatusBadRequest || r.str("error.code") != "VALIDATION_ERROR" || r.str("error.field") != c.field {
			t.Errorf("%s: %d %s (want 400 naming %s)", name, r.status, r.body, c.field)
		}
	}
	dup := e.do("POST", "/api/v1/grants", "admin", nsfGrant).wantError(t, http.StatusConflict, "CONFLICT")
	if !strings.Contains(dup.str("error.message"), "already exists") {
		t.Fatalf("duplicate: %s", dup.body)
	}
	if got := count(); got != base || e.snapshot() != before {
		t.Fatalf("bad input changed something: %s -> %s", base, got)
	}
}

func TestScheduleEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("ml-proj-001", "")
	s := e.do("POST", "/api/v1/allocations/schedules", "admin", `{"account":"ml-proj-001","total_budget":600,
		"allocation_amount":"100","allocation_frequency":"monthly","start_date":"2025-01-01","end_date":"2025-06-30",
		"idempotency_key":"k1"}`).want(t, http.StatusCreated)
	if s.str("installments") != "6" || s.str("installments_deposited") != "6" || s.str("status") != "completed" {
		t.Fatalf("schedule: %s", s.body)
	}
	wantNum(t, s, "deposited", "600")
	wantDec(t, "deposited", e.get("ml-proj-001").Deposited, "600")
	e.do("POST", "/api/v1/allocations/schedules", "admin", `{"account":"ml-proj-001","total_budget":600,
		"allocation_amount":"100","allocation_frequency":"monthly","start_date":"2025-01-01","end_date":"2025-06-30",
		"idempotency_key":"k1"}`).want(t, http.StatusOK)
	id := s.str("id")
	show := e.do("GET", "/api/v1/allocations/schedules/"+id, "read", "").want(t, http.StatusOK)
	if deps := show.at("deposits").([]any); len(deps) != 6 {
		t.Fatalf("deposits: %s", show.body)
	}
	e.do("GET", "/api/v1/allocations/schedules/999", "read", "").wantError(t, http.StatusNotFound, "NOT_FOUND")
	e.do("GET", "/api/v1/allocations/schedules/x", "read", "").wantError(t, http.StatusNotFound, "NOT_FOUND")

	// A schedule running now: pause, process (nothing), resume, process.
	e.account("weekly", "")
	start := time.Now().UTC().AddDate(0, 0, -20).Format(time.DateOnly)
	w := e.do("POST", "/api/v1/allocations/schedules", "admin", fmt.Sprintf(`{"account":"weekly","total_budget":"1000",
		"allocation_amount":"100","allocation_frequency":"weekly","start_date":%q,"paused":true}`, start)).want(t, http.StatusCreated)
	wid := w.str("id")
	if w.str("installments_deposited") != "0" || w.str("status") != "paused" {
		t.Fatalf("paused schedule: %s", w.body)
	}
	p := e.do("POST", "/api/v1/allocations/process", "admin", "").want(t, http.StatusOK)
	if p.str("installments") != "0" {
		t.Fatalf("process while paused: %s", p.body)
	}
	e.do("PUT", "/api/v1/allocations/schedules/"+wid, "admin", `{"paused":false}`).want(t, http.StatusOK)
	p = e.do("POST", "/api/v1/allocations/process", "admin", "{}").want(t, http.StatusOK)
	if p.str("installments") != "3" {
		t.Fatalf("process after resume: %s", p.body)
	}
	wantNum(t, p, "amount", "300")
	p = e.do("POST", "/api/v1/allocations/process", "admin", `{"as_of":"2099-01-01"}`).want(t, http.StatusOK)
	if p.str("installments") != "7" || p.str("completed") != "1" {
		t.Fatalf("process as of 2099: %s", p.body)
	}
	list := e.do("GET", "/api/v1/allocations/schedules?account=weekly", "read", "").want(t, http.StatusOK)
	if list.str("count") != "1" {
		t.Fatalf("list: %s", list.body)
	}
	e.do("POST", "/api/v1/allocations/process", "read", "").wantError(t, http.StatusForbidden, "FORBIDDEN")

	// The original's account create with allocation_schedule is honoured.
	a := e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"climate-sim","name":"Climate Modeling",
		"has_incremental_budget":true,"allocation_schedule":{"total_budget":20000,"allocation_amount":5000,
		"allocation_frequency":"quarterly","start_date":"2025-01-01","end_date":"2025-12-31","auto_allocate":true}}`).
		want(t, http.StatusCreated)
	wantNum(t, a, "budget_limit", "20000")
	if a.str("has_incremental_budget") != "true" {
		t.Fatalf("account: %s", a.body)
	}
	e.verify()
}

func TestScheduleEndpointsRefuseBadInputAndChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "")
	before := e.snapshot()
	good := `{"account":"acct","total_budget":600,"allocation_amount":100,"allocation_frequency":"monthly","start_date":"2025-01-01","end_date":"2025-06-30"}`
	cases := map[string]string{
		"end before start":    strings.Replace(good, `"end_date":"2025-06-30"`, `"end_date":"2024-06-30"`, 1),
		"zero amount":         strings.Replace(good, `"allocation_amount":100`, `"allocation_amount":0`, 1),
		"negative total":      strings.Replace(good, `"total_budget":600`, `"total_budget":-600`, 1),
		"sub-cent amount":     strings.Replace(good, `"allocation_amount":100`, `"allocation_amount":"33.333"`, 1),
		"unknown frequency":   strings.Replace(good, `"monthly"`, `"fortnightly"`, 1),
		"no frequency":        strings.Replace(good, `"allocation_frequency":"monthly",`, ``, 1),
		"no start":            strings.Replace(good, `"start_date":"2025-01-01",`, ``, 1),
		"short of the total":  strings.Replace(good, `"allocation_amount":100`, `"allocation_amount":50`, 1),
		"malformed JSON":      good[:40],
		"unknown field":       strings.Replace(good, `"account"`, `"acount"`, 1),
		"amount above total":  strings.Replace(good, `"allocation_amount":100`, `"allocation_amount":700`, 1),
		"SQL in the account":  strings.Replace(good, `"acct"`, `"acct'; DROP TABLE ledger; --"`, 1),
		"exponent in amount":  strings.Replace(good, `"allocation_amount":100`, `"allocation_amount":1e2`, 1),
		"bad date":            strings.Replace(good, `"2025-01-01"`, `"01/01/2025"`, 1),
		"negative expiry":     strings.Replace(good, `"account":"acct"`, `"account":"acct","expire_after_periods":-1`, 1),
		"missing account":     strings.Replace(good, `"acct"`, `"nope"`, 1),
		"number as frequency": strings.Replace(good, `"monthly"`, `12`, 1),
	}
	for name, body := range cases {
		r := e.do("POST", "/api/v1/allocations/schedules", "admin", body)
		if r.status != http.StatusBadRequest && !(name == "missing account" && r.status == http.StatusNotFound) {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	e.do("PUT", "/api/v1/allocations/schedules/5", "admin", `{"paused":true}`).wantError(t, http.StatusNotFound, "NOT_FOUND")
	e.do("POST", "/api/v1/allocations/process", "admin", `{"as_of":"soon"}`).wantError(t, http.StatusBadRequest, "VALIDATION_ERROR")
	var n int
	_ = e.l.Pool().QueryRow(context.Background(), `SELECT count(*) FROM allocation_schedules`).Scan(&n)
	if n != 0 || e.snapshot() != before {
		t.Fatalf("bad input changed something (%d schedules)", n)
	}
	if ss, _ := e.l.ListSchedules(context.Background(), ""); len(ss) != 0 {
		t.Fatalf("schedules: %+v", ss)
	}
}
