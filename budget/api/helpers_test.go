package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
)

const testConfig = `
[submit]
timeout = "10s"

[service]
token_cache_ttl = "0s"
max_body_bytes = 65536

[pricing.partitions.cpu-aws]
node_hour = "5.00"
max_time = "2-00:00:00"

[pricing.partitions.gpu-aws]
instance_type = "p3.2xlarge"
instance_hour = "3.06"
gpu_hour = "1.00"
max_time = "1-00:00:00"
`

// env is one test's service: its own database, ledger, server and a token
// for each role.
type env struct {
	t      testing.TB
	l      *budget.Ledger
	s      *Server
	srv    *httptest.Server
	tokens map[string]string // role -> secret
	dbURL  string
}

func newEnv(t testing.TB, extra string, opts ...func(*budget.Config)) *env {
	t.Helper()
	url := pgtest.URL(t)
	return newEnvOn(t, url, extra, opts...)
}

// newEnvOn builds a service on an existing database (two instances share
// one in the drain test).
func newEnvOn(t testing.TB, url, extra string, opts ...func(*budget.Config)) *env {
	t.Helper()
	cfg, err := budget.ParseConfig(testConfig + extra)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, o := range opts {
		o(cfg)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	l := budget.New(pool, cfg, nil)
	s := New(l, cfg, nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, l: l, s: s, srv: srv, tokens: map[string]string{}, dbURL: url}
	for _, r := range []Role{RoleRead, RoleReconcile, RoleAdmin} {
		name := "t-" + r.String()
		var exists bool
		_ = pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = $1 AND revoked_at IS NULL)`, name).Scan(&exists)
		if exists {
			name += "-2"
		}
		secret, _, err := CreateToken(context.Background(), l, name, r, "test")
		if err != nil {
			t.Fatalf("create token: %v", err)
		}
		e.tokens[r.String()] = secret
	}
	return e
}

func (e *env) account(name, budgetS string) budget.Account {
	e.t.Helper()
	spec := budget.AccountSpec{SlurmAccount: name, Actor: "test"}
	if budgetS != "" {
		spec.Budget = decimal.RequireFromString(budgetS)
	}
	a, err := e.l.CreateAccount(context.Background(), spec)
	if err != nil {
		e.t.Fatalf("create account %s: %v", name, err)
	}
	return a
}

func (e *env) get(name string) budget.Account {
	e.t.Helper()
	a, err := e.l.GetAccount(context.Background(), "", name)
	if err != nil {
		e.t.Fatalf("get account %s: %v", name, err)
	}
	return a
}

// response is a reply: status, raw body and the decoded object.
type response struct {
	status int
	body   []byte
	obj    map[string]any
}

func (r response) str(path string) string {
	v := r.at(path)
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// at walks "a.b.c" through nested objects.
func (r response) at(path string) any {
	var cur any = r.obj
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// do sends a request with the role's token ("" = none; anything else that
// is not a role is sent as the token itself).
func (e *env) do(method, path, role, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if role != "" {
		tok, ok := e.tokens[role]
		if !ok {
			tok = role
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, body: b}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	_ = dec.Decode(&out.obj)
	return out
}

// want fails unless the reply has the status.
func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// wantError checks a refusal: status, code and the envelope's keys.
func (r response) wantError(t testing.TB, status int, code string) response {
	t.Helper()
	r.want(t, status)
	if got := r.str("error.code"); got != code {
		t.Fatalf("error code %q, want %q: %s", got, code, r.body)
	}
	if r.str("request_id") == "" || r.str("timestamp") == "" || r.str("error.message") == "" {
		t.Fatalf("error envelope incomplete: %s", r.body)
	}
	return r
}

// snapshot is everything a refused request must leave unchanged.
func (e *env) snapshot() string {
	e.t.Helper()
	var s string
	err := e.l.Pool().QueryRow(context.Background(), `SELECT concat_ws(',',
		(SELECT count(*) FROM ledger), (SELECT count(*) FROM accounts), (SELECT count(*) FROM holds),
		(SELECT count(*) FROM charges), (SELECT count(*) FROM allocations),
		(SELECT coalesce(sum(deposited), 0) || '/' || coalesce(sum(spent), 0) || '/' || coalesce(sum(held), 0) FROM accounts),
		(SELECT string_agg(name || ':' || description || ':' || status || ':' || credit_limit, ';' ORDER BY id) FROM accounts))`).Scan(&s)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// verify fails unless the ledger is consistent.
func (e *env) verify() {
	e.t.Helper()
	rep, err := e.l.Verify(context.Background())
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		e.t.Fatalf("verify found problems: %+v", rep.Problems)
	}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func wantDec(t testing.TB, what string, got decimal.Decimal, want string) {
	t.Helper()
	if !got.Equal(dec(want)) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func wantNum(t testing.TB, r response, path, want string) {
	t.Helper()
	got, err := decimal.NewFromString(r.str(path))
	if err != nil || !got.Equal(dec(want)) {
		t.Fatalf("%s = %q, want %s: %s", path, r.str(path), want, r.body)
	}
}
