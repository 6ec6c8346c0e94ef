package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

// The advisor's client types, as aws-slurm-burst-advisor declares them in
// internal/budget/asbb_client.go (floats and all: this is their decoder,
// not ours). Decoding our answers into them is the contract.
type advisorBudgetStatus struct {
	Account            string    `json:"account"`
	BudgetLimit        float64   `json:"budget_limit"`
	BudgetUsed         float64   `json:"budget_used"`
	BudgetHeld         float64   `json:"budget_held"`
	BudgetAvailable    float64   `json:"budget_available"`
	BurnRate           float64   `json:"burn_rate"`
	BurnRateVariance   float64   `json:"burn_rate_variance"`
	HealthScore        int       `json:"health_score"`
	RiskLevel          string    `json:"risk_level"`
	GrantDaysRemaining int       `json:"grant_days_remaining"`
	Decision           string    `json:"decision"`
	CanAffordAWS       bool      `json:"can_afford_aws"`
	LastUpdated        time.Time `json:"last_updated"`
}

type advisorAffordability struct {
	Affordable          bool   `json:"affordable"`
	RecommendedDecision string `json:"recommended_decision"`
	BudgetImpact        struct {
		CostAsPercentOfBudget    float64 `json:"cost_as_percent_of_budget"`
		CostAsPercentOfRemaining float64 `json:"cost_as_percent_of_remaining"`
		OpportunityCost          float64 `json:"opportunity_cost"`
		BudgetAfterCost          float64 `json:"budget_after_cost"`
	} `json:"budget_impact"`
	RiskAssessment struct {
		BudgetRisk   string   `json:"budget_risk"`
		DeadlineRisk string   `json:"deadline_risk"`
		OverallRisk  string   `json:"overall_risk"`
		RiskFactors  []string `json:"risk_factors"`
	} `json:"risk_assessment"`
	AlternativeOptions []struct {
		Strategy    string  `json:"strategy"`
		Cost        float64 `json:"cost"`
		Timeline    string  `json:"timeline"`
		Score       float64 `json:"score"`
		Description string  `json:"description"`
	} `json:"alternative_options"`
	ConfidenceLevel float64 `json:"confidence_level"`
}

type advisorTimeline struct {
	Account        string    `json:"account"`
	GrantStartDate time.Time `json:"grant_start_date"`
	GrantEndDate   time.Time `json:"grant_end_date"`
	DaysRemaining  int       `json:"days_remaining"`
	CurrentPeriod  string    `json:"current_period"`
	NextAllocation struct {
		Date   time.Time `json:"date"`
		Amount float64   `json:"amount"`
		Source string    `json:"source"`
	} `json:"next_allocation"`
	UpcomingDeadlines []struct {
		Type      string    `json:"type"`
		Name      string    `json:"name"`
		Date      time.Time `json:"date"`
		DaysUntil int       `json:"days_until"`
		Urgency   string    `json:"urgency"`
		Impact    string    `json:"impact"`
	} `json:"upcoming_deadlines"`
	BudgetGuidance struct {
		RecommendedStrategy     string   `json:"recommended_strategy"`
		MaxRecommendedSpend     float64  `json:"max_recommended_spend"`
		ConservationAdvice      string   `json:"conservation_advice"`
		OptimizationSuggestions []string `json:"optimization_suggestions"`
	} `json:"budget_guidance"`
	EmergencyBurstAdvice struct {
		EmergencyFundsAvailable bool    `json:"emergency_funds_available"`
		EmergencyThreshold      float64 `json:"emergency_threshold"`
		EmergencyProcedure      string  `json:"emergency_procedure"`
		ContactInfo             string  `json:"contact_info"`
	} `json:"emergency_burst_advice"`
}

// advisorEnv: an account with $1,000 for 100 days, $40 spent today and a
// $10 hold; a grant of $10,000 over a year, 50% indirect, funding it.
func advisorEnv(t *testing.T) *env {
	e := newEnv(t, "")
	ctx := context.Background()
	end := time.Now().AddDate(0, 0, 100)
	if _, err := e.l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: "ml-proj-001", Budget: dec("1000"), EndsAt: &end}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.CreateGrant(ctx, budget.GrantSpec{Number: "NSF-2025-12345", Agency: "NSF", PI: "Dr. Jane Smith",
		Amount: dec("10000"), Start: time.Now().AddDate(0, -1, 0), End: time.Now().AddDate(1, 0, 0), PeriodMonths: 12,
		IndirectRate: dec("0.5")}); err != nil {
		t.Fatal(err)
	}
	if err := e.l.LinkGrant(ctx, "NSF-2025-12345", "", "ml-proj-001", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Settle(ctx, budget.SettleRequest{Account: "ml-proj-001", JobID: "1", ArrayTaskID: -1, Actual: dec("40"),
		User: "alice", Partition: "gpu-aws"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.PlaceHold(ctx, budget.HoldRequest{Account: "ml-proj-001", Partition: "gpu-aws", Amount: dec("10"), Tasks: 1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// post sends a body and decodes the answer into v too.
func (e *env) post(path, body string, v any) response {
	e.t.Helper()
	r := e.do(http.MethodPost, path, "read", body)
	if v != nil && r.status == 200 {
		if err := json.Unmarshal(r.body, v); err != nil {
			e.t.Fatalf("%s: the client cannot decode the answer: %v\n%s", path, err, r.body)
		}
	}
	return r
}

func TestASBAAnswersTheAdvisorsRequests(t *testing.T) {
	t.Parallel()
	e := advisorEnv(t)

	// GetAccountStatus: {"account"}.
	var st advisorBudgetStatus
	r := e.post("/api/v1/asba/budget-status", `{"account":"ml-proj-001"}`, &st).want(t, 200)
	if st.Account != "ml-proj-001" || st.BudgetLimit != 1000 || st.BudgetUsed != 40 || st.BudgetHeld != 10 ||
		st.BudgetAvailable != 950 || st.BurnRate != 40 || st.Decision == "" || st.LastUpdated.IsZero() || st.RiskLevel == "" {
		t.Errorf("advisor's view of budget-status: %+v\n%s", st, r.body)
	}
	// The original's keys are there too, from the same numbers.
	wantNum(t, r, "budget_limit", "1000")
	wantNum(t, r, "daily_burn_rate", "40")
	if r.str("grant_number") != "NSF-2025-12345" || r.str("recommended_decision") != st.Decision ||
		r.at("decision_reasoning") == nil || r.str("health_status") == "" {
		t.Errorf("budget-status: %s", r.body)
	}
	if st.HealthScore < 0 || st.HealthScore > 100 || r.str("budget_health_score") != r.str("health_score") {
		t.Errorf("health score %d / %s", st.HealthScore, r.str("budget_health_score"))
	}

	// CheckAffordability: {"account","estimated_cost"}.
	var af advisorAffordability
	r = e.post("/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":25.5}`, &af).want(t, 200)
	if !af.Affordable || af.RecommendedDecision == "" || af.BudgetImpact.CostAsPercentOfBudget != 2.55 ||
		af.BudgetImpact.BudgetAfterCost != 924.5 || len(af.AlternativeOptions) != 2 || af.AlternativeOptions[1].Cost != 25.5 ||
		af.RiskAssessment.BudgetRisk != "low" || af.ConfidenceLevel <= 0 {
		t.Errorf("advisor's view of affordability: %+v\n%s", af, r.body)
	}
	// 950 available, but the grant period's 10,000 at 1.5x is not the
	// limit: 25.5 of 950 is 2.68%.
	if af.BudgetImpact.CostAsPercentOfRemaining != 2.68 {
		t.Errorf("percent of remaining %v", af.BudgetImpact.CostAsPercentOfRemaining)
	}
	// The original's request gets budget_impact as a number...
	r = e.post("/api/v1/asba/affordability-check",
		`{"account":"ml-proj-001","estimated_aws_cost":25.5,"estimated_local_time":120,"job_priority":"high"}`, nil).want(t, 200)
	wantNum(t, r, "budget_impact", "2.55")
	wantNum(t, r, "estimated_aws_cost", "25.5")
	if r.str("recommendations") == "" && r.at("recommendations") == nil {
		t.Errorf("recommendations is null: %s", r.body)
	}
	// ...unless the advisor's dialect is asked for.
	r = e.post("/api/v1/asba/affordability-check?dialect=advisor", `{"account":"ml-proj-001","estimated_aws_cost":"25.50"}`, nil).want(t, 200)
	wantNum(t, r, "budget_impact.cost_as_percent_of_budget", "2.55")
	// Too expensive: not affordable, LOCAL, with the numbers.
	r = e.post("/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":5000}`, nil).want(t, 200)
	if r.str("affordable") != "false" || r.str("recommended_decision") != "LOCAL" || !strings.Contains(r.str("message"), "$950.00") {
		t.Errorf("unaffordable: %s", r.body)
	}

	// GetGrantTimeline: {"account","look_ahead_days":90,"include_alerts":true}.
	var tl advisorTimeline
	r = e.post("/api/v1/asba/grant-timeline", `{"account":"ml-proj-001","look_ahead_days":90,"include_alerts":true}`, &tl).want(t, 200)
	if tl.CurrentPeriod != "1" || tl.GrantStartDate.IsZero() || tl.DaysRemaining < 360 || tl.BudgetGuidance.RecommendedStrategy == "" ||
		tl.EmergencyBurstAdvice.EmergencyProcedure == "" {
		t.Errorf("advisor's view of grant-timeline: %+v\n%s", tl, r.body)
	}
	// The original's request names the grant and gets an int period.
	r = e.post("/api/v1/asba/grant-timeline", `{"grant_number":"NSF-2025-12345","look_ahead_days":400}`, nil).want(t, 200)
	if r.str("current_period") != "1" || r.str("total_periods") != "2" || r.str("account") != "ml-proj-001" {
		t.Errorf("grant-timeline by grant: %s", r.body)
	}
	if _, isNum := r.at("current_period").(json.Number); !isNum {
		t.Errorf("current_period is not a number in the asbb dialect: %s", r.body)
	}
	if !strings.Contains(string(r.body), `"type":"RENEWAL"`) || !strings.Contains(string(r.body), `"type":"PERIOD_END"`) {
		t.Errorf("no deadlines in 400 days: %s", r.body)
	}

	// burst-decision with a deadline the local run misses.
	dl := time.Now().Add(3 * time.Hour).UTC().Format(time.RFC3339)
	r = e.post("/api/v1/asba/burst-decision", `{"account":"ml-proj-001","estimated_aws_cost":30,"estimated_local_time":600,
		"job_priority":"normal","job_deadline":"`+dl+`","research_phase":"PUBLICATION","collaboration_impact":false}`, nil).want(t, 200)
	if r.str("recommended_action") != "AWS" || r.str("urgency_level") != "CRITICAL" || r.str("deadline_risk") != "HIGH" {
		t.Errorf("burst-decision: %s", r.body)
	}
	if !strings.Contains(r.str("message"), "only bursting meets the deadline") {
		t.Errorf("burst-decision message: %s", r.str("message"))
	}
	if fs, ok := r.at("decision_factors").([]any); !ok || len(fs) != 4 {
		t.Errorf("decision factors: %s", r.body)
	}
	e.verify()
}

func TestASBARefusesBadRequestsAndUnknownAccounts(t *testing.T) {
	t.Parallel()
	e := advisorEnv(t)
	before := e.snapshot()
	for _, c := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/api/v1/asba/budget-status", `{"account":"nope"}`, 404, "NOT_FOUND"},
		{"/api/v1/asba/affordability-check", `{"account":"nope","estimated_cost":1}`, 404, "NOT_FOUND"},
		{"/api/v1/asba/grant-timeline", `{"account":"nope","look_ahead_days":90}`, 404, "NOT_FOUND"},
		{"/api/v1/asba/burst-decision", `{"account":"nope","estimated_aws_cost":1}`, 404, "NOT_FOUND"},
		{"/api/v1/asba/budget-status", `{"account":"x'; DROP TABLE ledger; --"}`, 404, "NOT_FOUND"},
		{"/api/v1/asba/budget-status", `{}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/budget-status", `{"account":`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/budget-status", `{"account":"ml-proj-001","grant_number":"../x"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":-5}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":1e9}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":"1.0000001"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":1,"job_priority":"urgent"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check", `{"account":"ml-proj-001","estimated_cost":1,"job_deadline":"tomorrow"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/affordability-check?dialect=xml", `{"account":"ml-proj-001","estimated_cost":1}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/burst-decision", `{"account":"ml-proj-001","estimated_aws_cost":1,"research_phase":"WRITING"}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/grant-timeline", `{"look_ahead_days":90}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/grant-timeline", `{"account":"ml-proj-001","look_ahead_days":-1}`, 400, "VALIDATION_ERROR"},
		{"/api/v1/asba/grant-timeline", `{"grant_number":"NOPE-1"}`, 404, "NOT_FOUND"},
	} {
		r := e.do(http.MethodPost, c.path, "read", c.body)
		if r.status != c.status || r.str("error.code") != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.path, c.body, r.status, r.body, c.status, c.code)
		}
	}
	if r := e.do(http.MethodPost, "/api/v1/asba/budget-status", "", `{"account":"ml-proj-001"}`); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	if e.snapshot() != before {
		t.Error("a refused request changed the ledger")
	}
}
