package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestAnalyticsEndpoints(t *testing.T) {
	t.Parallel()
	e := advisorEnv(t)
	ctx := context.Background()

	r := e.do(http.MethodGet, "/api/v1/burn-rate/ml-proj-001?period=7d", "read", "").want(t, 200)
	if r.str("kind") != "account" || r.str("daily_rate") != "40" || r.str("expected_source") != "grant_period" ||
		r.str("projection.committed") != "10" || r.at("series") == nil {
		t.Errorf("account burn rate: %s", r.body)
	}
	r = e.do(http.MethodGet, "/api/v1/burn-rate/grant/NSF-2025-12345?series=false", "read", "").want(t, 200)
	// The grant sees the charge with its 50% indirect: $60, and the hold as $15.
	if r.str("kind") != "grant" || r.str("spent_in_window") != "60" || r.str("funds.held") != "15" || r.at("series") != nil {
		t.Errorf("grant burn rate: %s", r.body)
	}
	e.do(http.MethodGet, "/api/v1/burn-rate/nope", "read", "").wantError(t, 404, "NOT_FOUND")
	e.do(http.MethodGet, "/api/v1/burn-rate/grant/NOPE-1", "read", "").wantError(t, 404, "NOT_FOUND")
	e.do(http.MethodGet, "/api/v1/burn-rate/ml-proj-001?period=9q", "read", "").wantError(t, 400, "VALIDATION_ERROR")
	e.do(http.MethodGet, "/api/v1/burn-rate/ml-proj-001?period=7d&from=2025-01-01", "read", "").wantError(t, 400, "VALIDATION_ERROR")
	r = e.do(http.MethodGet, "/api/v1/burn-rate/ml-proj-001?from=2020-01-01&to=2030-01-01", "read", "").want(t, 200)
	if r.str("spent_in_window") != "40" {
		t.Errorf("custom window: %s", r.body)
	}
	e.do(http.MethodGet, "/api/v1/burn-rate/ml-proj-001", "", "").wantError(t, 401, "UNAUTHORIZED")

	r = e.do(http.MethodGet, "/api/v1/analytics/health-score", "read", "").want(t, 200)
	if r.str("count") != "1" || r.str("accounts") == "" {
		t.Errorf("health scores: %s", r.body)
	}
	e.do(http.MethodGet, "/api/v1/analytics/health-score?account=nope", "read", "").wantError(t, 404, "NOT_FOUND")

	// Alerts: evaluate, list, acknowledge (admin only), metrics.
	if _, err := e.l.EvaluateAlerts(ctx); err != nil {
		t.Fatal(err)
	}
	r = e.do(http.MethodGet, "/api/v1/alerts", "read", "").want(t, 200)
	list, _ := r.at("alerts").([]any)
	if len(list) == 0 {
		t.Fatalf("no alerts: %s", r.body)
	}
	id := list[0].(map[string]any)["id"]
	path := "/api/v1/alerts/" + id.(interface{ String() string }).String() + "/acknowledge"
	e.do(http.MethodPost, path, "read", `{"note":"x"}`).wantError(t, 403, "FORBIDDEN")
	r = e.do(http.MethodPost, path, "admin", `{"notes":"reviewing with finance","user":"Dr. Smith"}`).want(t, 200)
	if r.str("status") != "acknowledged" || !strings.Contains(r.str("acknowledged_by"), "Dr. Smith") {
		t.Errorf("ack: %s", r.body)
	}
	e.do(http.MethodPost, "/api/v1/alerts/abc/acknowledge", "admin", "").wantError(t, 400, "VALIDATION_ERROR")
	e.do(http.MethodPost, "/api/v1/alerts/99999/acknowledge", "admin", "").wantError(t, 404, "NOT_FOUND")
	e.do(http.MethodGet, "/api/v1/alerts?status=nope", "read", "").wantError(t, 400, "VALIDATION_ERROR")
	res, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(m), `asbb_alerts_open{rule=`) || !strings.Contains(string(m), `status="acknowledged"`) {
		t.Errorf("metrics lack asbb_alerts_open:\n%.3000s", m)
	}

	// Reports in the three formats.
	r = e.do(http.MethodPost, "/api/v1/grants/NSF-2025-12345/reports", "read", `{"period":1}`).want(t, 200)
	if r.str("total_cost") != "60" || r.str("reconciled") != "true" || r.str("holds_outstanding_total") != "15" {
		t.Errorf("json report: %s", r.body)
	}
	for format, want := range map[string]string{"csv": "cost,total,40,20,60,1", "html": `<path id="burndown-actual"`} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/grants/NSF-2025-12345/reports?format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+e.tokens["read"])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/"+format) {
			t.Errorf("%s report: %d %s\n%.600s", format, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}
	e.do(http.MethodPost, "/api/v1/grants/NSF-2025-12345/reports", "read", `{"format":"pdf"}`).wantError(t, 400, "VALIDATION_ERROR")
	e.do(http.MethodPost, "/api/v1/grants/NSF-2025-12345/reports", "read", `{"period":-3}`).wantError(t, 400, "VALIDATION_ERROR")
	e.do(http.MethodPost, "/api/v1/grants/NSF-2025-12345/reports", "read", `{"period":9}`).wantError(t, 404, "NOT_FOUND")
	e.do(http.MethodPost, "/api/v1/grants/NSF-2025-12345/reports", "read", `{"perio":1}`).wantError(t, 400, "VALIDATION_ERROR")
	e.verify()
}
