package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthVersionAndRequestIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	h := e.do("GET", "/health", "", "").want(t, 200)
	if h.str("status") != "healthy" || h.str("services.database") != "healthy" || h.str("workers.asbx_ingest") != "not_started" {
		t.Fatalf("health: %s", h.body)
	}
	v := e.do("GET", "/version", "", "").want(t, 200)
	for _, k := range []string{"version", "go_version", "os", "arch"} {
		if v.str(k) == "" {
			t.Fatalf("version lacks %s: %s", k, v.body)
		}
	}
	// The client's request id is echoed in the envelope.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/accounts/nope", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["read"])
	req.Header.Set("X-Request-ID", "trace-123")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	_ = json.NewDecoder(res.Body).Decode(&env)
	res.Body.Close()
	if env.RequestID != "trace-123" || res.Header.Get("X-Request-ID") != "trace-123" {
		t.Fatalf("request id %q", env.RequestID)
	}
}

// A real outage (the PostgreSQL server stopped) is the one cause of a 5xx
// besides bugs: 503, never 500.
func TestDatabaseOutageIs503(t *testing.T) {
	t.Parallel()
	inst := pgtest.NewInstance(t, "")
	e := newEnvOn(t, inst.URL(), "", func(c *budget.Config) { c.Database.ConnectTimeout.Duration = time.Second })
	e.account("acct", "100")
	e.s.auth.ttl = time.Hour // the tokens stay trusted while the database is away
	e.do("GET", "/api/v1/accounts", "admin", "").want(t, 200)
	e.do("GET", "/api/v1/accounts", "read", "").want(t, 200)
	e.do("POST", "/api/v1/budget/check", "reconcile", `{"account":"acct","partition":"cpu-aws","wall_time":"1"}`).want(t, 200)
	inst.Stop()
	e.do("GET", "/health", "", "").want(t, 503)
	e.do("GET", "/api/v1/accounts", "read", "").wantError(t, 503, "SERVICE_UNAVAILABLE")
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"wall_time":"1"}`).wantError(t, 503, "SERVICE_UNAVAILABLE")
	e.do("POST", "/api/v1/accounts", "admin", `{"slurm_account":"new"}`).wantError(t, 503, "SERVICE_UNAVAILABLE")
	inst.Start()
	e.do("GET", "/health", "", "").want(t, 200)
	e.verify()
}

func TestPanicInAHandlerIsA500Envelope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.s.handle("GET /test/panic", RoleNone, func(w http.ResponseWriter, r *http.Request) error { panic("boom") })
	e.do("GET", "/test/panic", "", "").wantError(t, 500, "INTERNAL_ERROR")
	e.do("GET", "/health", "", "").want(t, 200)
}

func TestMetricsUseTheRealNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "10")
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"01:00:00"}`).want(t, 200)
	e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"05:00:00"}`).want(t, 200)
	e.do("POST", "/api/v1/budget/reconcile", "reconcile", `{"job_id":"1","actual_cost":1,"transaction_id":"999"}`).want(t, 404)
	m := string(e.do("GET", "/metrics", "", "").want(t, 200).body)
	for _, want := range []string{
		`asbb_account_deposited{account="acct",cluster="*",currency="USD"} 10`,
		`asbb_account_held{account="acct",cluster="*",currency="USD"} 6`,
		`asbb_account_available{account="acct",cluster="*",currency="USD"} 4`,
		`asbb_account_spent{account="acct",cluster="*",currency="USD"} 0`,
		`asbb_holds_total{outcome="held"} 1`,
		`asbb_holds_total{outcome="refused"} 1`,
		`asbb_denials_total{code="insufficient_funds"} 1`,
		`asbb_settlements_total{outcome="not_found"} 1`,
		`asbb_hold_duration_seconds_count 2`,
		`asbb_settle_duration_seconds_count 1`,
		`asbb_http_requests_total{code="200",method="POST",route="/api/v1/budget/check"} 2`,
		`asbb_budget_accounts_total{status="active"} 1`,
		`asbb_active_holds 1`,
		`asbb_database_up 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The OpenAPI document describes exactly the registered routes, with the
// roles they need.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	cfg, _ := budget.ParseConfig(testConfig)
	s := New(budget.New(nil, cfg, nil), cfg, nil)
	documented := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			role, _ := op["x-asbb-role"].(string)
			if role == "" {
				role = "none"
			}
			documented[strings.ToUpper(method)+" "+path] = role
			if _, ok := op["responses"]; !ok {
				t.Errorf("%s %s has no responses", method, path)
			}
		}
	}
	var routes []string
	for _, rt := range s.Routes() {
		k := rt.Method + " " + rt.Path
		routes = append(routes, k)
		role, ok := documented[k]
		if !ok {
			t.Errorf("route %s is not in openapi.json", k)
			continue
		}
		if role != rt.Role.String() {
			t.Errorf("%s: openapi says role %s, the route needs %s", k, role, rt.Role)
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("openapi.json documents %s, which is not a route", k)
	}
	sort.Strings(routes)
	// The document is served as is.
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/v1/openapi.json")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("serve openapi: %v %v", err, res)
	}
	res.Body.Close()
}

func TestClientReconcileSettlesAndReportsOutages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.account("acct", "100")
	hold := e.do("POST", "/api/v1/budget/check", "reconcile",
		`{"account":"acct","partition":"cpu-aws","nodes":1,"cpus":1,"wall_time":"02:00:00"}`).want(t, 200)
	c := &Client{BaseURL: e.srv.URL, Token: e.tokens["reconcile"], Timeout: 5 * time.Second}
	end := budget.JobEnd{JobID: 88, Account: "acct", Partition: "cpu-aws", AdminComment: "asbb:" + hold.str("transaction_id"),
		StartTime: 1000, EndTime: 1000 + 1800, State: budget.JobComplete, Nodes: 1, CPUs: 1}
	r, err := c.Reconcile(context.Background(), end)
	if err != nil {
		t.Fatal(err)
	}
	if r.ActualChargeStr != "2.5" || r.Duplicate {
		t.Fatalf("reconcile: %+v", r)
	}
	if r, err = c.Reconcile(context.Background(), end); err != nil || !r.Duplicate {
		t.Fatalf("repeat: %+v %v", r, err)
	}
	// A refused record is ErrInvalid (quarantine, do not spool forever).
	bad := end
	bad.JobID = 0
	if _, err := c.Reconcile(context.Background(), bad); !errors.Is(err, budget.ErrInvalid) {
		t.Fatalf("bad record: %v", err)
	}
	// A read token is refused: the caller spools (ErrUnavailable).
	weak := &Client{BaseURL: e.srv.URL, Token: e.tokens["read"], Timeout: time.Second}
	if _, err := weak.Reconcile(context.Background(), end); !errors.Is(err, budget.ErrUnavailable) {
		t.Fatalf("weak token: %v", err)
	}
	// An unreachable service fails within the bounded time.
	down := &Client{BaseURL: "http://127.0.0.1:1", Token: "x", Timeout: 1500 * time.Millisecond}
	start := time.Now()
	if _, err := down.Reconcile(context.Background(), end); !errors.Is(err, budget.ErrUnavailable) {
		t.Fatalf("down: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("an unreachable service took %s (bound 1.5s)", took)
	}
	wantDec(t, "spent", e.get("acct").Spent, "2.5")
	e.verify()
	_ = strconv.Itoa
}

// The Grafana dashboard and the alert rules in contrib/ use only metric
// names the service exports.
func TestContribUsesRealMetricNames(t *testing.T) {
	t.Parallel()
	cfg, _ := budget.ParseConfig(testConfig)
	s := New(budget.New(nil, cfg, nil), cfg, nil)
	known := map[string]bool{}
	for _, d := range []string{"asbb_holds_total", "asbb_denials_total", "asbb_settlements_total", "asbb_hold_duration_seconds",
		"asbb_settle_duration_seconds", "asbb_asbx_reconciliations_total", "asbb_spool_backlog", "asbb_recovery_releases_total",
		"asbb_http_requests_total", "asbb_http_request_duration_seconds", "asbb_worker_runs_total",
		"asbb_worker_last_success_timestamp_seconds", "asbb_account_deposited", "asbb_account_spent", "asbb_account_held",
		"asbb_account_available", "asbb_budget_accounts_total", "asbb_active_holds", "asbb_database_up"} {
		known[d] = true
	}
	// Every name above must really be registered: describe the registry.
	ch := make(chan *prometheus.Desc, 1000)
	go func() { s.metrics.describe(ch); close(ch) }()
	registered := map[string]bool{}
	for d := range ch {
		registered[descName(d)] = true
	}
	for n := range known {
		if !registered[n] && strings.HasPrefix(n, "asbb_") {
			t.Errorf("%s is not registered", n)
		}
	}
	re := regexp.MustCompile(`asbb_[a-z_]+`)
	for _, f := range []string{"../../contrib/grafana/asbb-dashboard.json", "../../contrib/prometheus/asbb-alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
			if !registered[base] {
				t.Errorf("%s uses %s, which the service does not export", f, m)
			}
		}
	}
}

// On shutdown (SIGTERM cancels Run's context) an in-flight request
// finishes, the workers stop and Serve returns cleanly.
func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", func(c *budget.Config) { c.Service.ShutdownTimeout.Duration = 5 * time.Second })
	started := make(chan struct{})
	e.s.handle("GET /test/slow", RoleNone, func(w http.ResponseWriter, r *http.Request) error {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return reply(w, 200, map[string]bool{"done": true})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.s.Serve(ctx, ln) }()
	got := make(chan int, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/test/slow")
		if err != nil {
			got <- -1
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	<-started
	stop()
	if code := <-got; code != 200 {
		t.Fatalf("in-flight request got %d", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for name, st := range e.s.workerHealth() {
		if st != "stopping" {
			t.Errorf("worker %s is %s after shutdown", name, st)
		}
	}
}
