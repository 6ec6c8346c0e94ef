package budget

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// ASBA: the decision endpoints the cost advisor (aws-slurm-burst-advisor)
// and the original ASBB's clients call. Every answer is built from real
// ledger data (an unknown account is ErrAccountNotFound, never invented
// numbers) by the pure build* functions below from an asbaContext the
// ledger gathers; each recommendation comes with the reasons that decided
// it. docs/analytics.md, "ASBA", documents the rules.
//
// Two clients disagree on two keys (API-COMPAT.md §2): budget_impact is a
// number (percent) for ASBB's documented shape and an object for the
// advisor; current_period is an int or a string. The dialect picks one.

// Dialects of the ASBA answers.
const (
	DialectASBB    = "asbb"    // the original ASBB's documented shapes
	DialectAdvisor = "advisor" // aws-slurm-burst-advisor's client structs
)

// Number is a decimal written as a JSON number with its exact digits
// (the original's clients read numbers; it never passes through a float).
type Number struct{ decimal.Decimal }

func (n Number) MarshalJSON() ([]byte, error) { return []byte(n.Decimal.String()), nil }

func num(d decimal.Decimal) Number   { return Number{d.Round(2)} }
func ratio(d decimal.Decimal) Number { return Number{d.Round(4)} }
func numi(i int64) Number            { return Number{decimal.NewFromInt(i)} }
func pctOf(a, b decimal.Decimal) Number {
	if !b.IsPositive() {
		return Number{}
	}
	return Number{a.Mul(hundred).DivRound(b, 2)}
}

// asbaContext is what every ASBA answer is built from.
type asbaContext struct {
	now      time.Time
	loc      *time.Location
	account  Account
	burn     BurnRate // the account's, over alerts.window
	grant    *Grant   // the grant the account draws on, if any
	period   *GrantPeriod
	periods  int
	gburn    *BurnRate // the grant's
	alerts   []Alert
	upcoming []AllocationEvent // next installments and pending allocations
}

// spendable is what a new job may still cost: the account's remaining
// funds (after holds, with its credit limit), and for a grant-funded
// account no more than the period has left in direct cost.
func (c asbaContext) spendable() decimal.Decimal {
	s := c.burn.Funds.Available
	if c.period != nil && c.grant != nil {
		g := c.period.Remaining.Div(one.Add(c.grant.IndirectRate)).Round(Scale)
		s = decimal.Min(s, g)
	}
	return decimal.Max(s, decimal.Zero)
}

// budgetBase is what percentages of "the budget" are of: the account's
// deposits.
func (c asbaContext) budgetBase() decimal.Decimal { return c.account.Deposited }

func (l *Ledger) asbaContext(ctx context.Context, cluster, account, grantNumber string) (asbaContext, error) {
	a, err := l.resolve(ctx, l.pool, cluster, account)
	if err != nil {
		return asbaContext{}, err
	}
	c := asbaContext{now: l.now(), loc: l.cfg.Location(), account: a}
	if c.burn, err = l.accountBurnRate(ctx, a, BurnOptions{Series: true}); err != nil {
		return c, err
	}
	if grantNumber == "" {
		var n *string
		if err := l.pool.QueryRow(ctx, `SELECT (asbb_grant_of($1)).number`, a.ID).Scan(&n); err != nil {
			return c, dbErr("find the account's grant", err)
		}
		if n != nil {
			grantNumber = *n
		}
	}
	if grantNumber != "" {
		g, err := l.GetGrant(ctx, grantNumber)
		if err != nil {
			return c, err
		}
		ps, err := l.GrantPeriods(ctx, g.Number)
		if err != nil {
			return c, err
		}
		gloc, err := time.LoadLocation(g.Timezone)
		if err != nil {
			gloc = c.loc
		}
		if p, ok := grantPeriodAt(ps, c.now.In(gloc).Format(time.DateOnly)); ok {
			c.period = &p
		}
		gb, err := l.grantBurnRate(ctx, g, BurnOptions{})
		if err != nil {
			return c, err
		}
		c.grant, c.periods, c.gburn = &g, len(ps), &gb
	}
	if c.alerts, err = l.ListAlerts(ctx, AlertFilter{Account: a.SlurmAccount}); err != nil {
		return c, err
	}
	scheds, err := l.ListSchedules(ctx, a.SlurmAccount)
	if err != nil {
		return c, err
	}
	for _, s := range scheds {
		if s.NextDue != nil && !s.Paused {
			c.upcoming = append(c.upcoming, AllocationEvent{Date: *s.NextDue, Amount: num(s.NextAmount),
				Description: fmt.Sprintf("installment %d of %d of schedule %d (%s)", s.Deposited+1, s.Installments, s.ID, s.Frequency),
				Type:        "AUTOMATIC", Source: "schedule"})
		}
	}
	als, err := l.ListAllocations(ctx, a.SlurmAccount, 100)
	if err != nil {
		return c, err
	}
	for _, al := range als {
		if al.Status == "pending" && al.ScheduleID == nil {
			c.upcoming = append(c.upcoming, AllocationEvent{Date: al.StartsAt, Amount: num(al.Amount),
				Description: "allocation " + strconv.FormatInt(al.ID, 10) + ": " + al.Note, Type: "MANUAL", Source: "allocation"})
		}
	}
	for i := range c.upcoming {
		c.upcoming[i].DaysFromNow = daysUntil(c.now, c.upcoming[i].Date)
		c.upcoming[i].DaysUntil = c.upcoming[i].DaysFromNow
	}
	return c, nil
}

// daysUntil counts whole days from now to t, a part day counting as one.
func daysUntil(now, t time.Time) int {
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + 24*time.Hour - 1) / (24 * time.Hour))
}

// riskOf maps a health score to the original's risk levels.
func riskOf(score int) string {
	switch {
	case score < 40:
		return "CRITICAL"
	case score < 60:
		return "HIGH"
	case score < 80:
		return "MEDIUM"
	}
	return "LOW"
}

// ---------------------------------------------------------------- status

// ASBABudgetStatus is the answer of POST /api/v1/asba/budget-status: the
// original's keys plus the advisor's names for the same facts.
type ASBABudgetStatus struct {
	Account           string     `json:"account"`
	GrantNumber       string     `json:"grant_number,omitempty"`
	Currency          string     `json:"currency"`
	BudgetLimit       Number     `json:"budget_limit"`
	BudgetUsed        Number     `json:"budget_used"`
	BudgetHeld        Number     `json:"budget_held"`
	BudgetAvailable   Number     `json:"budget_available"`
	BudgetUtilization Number     `json:"budget_utilization"`
	GrantStartDate    *time.Time `json:"grant_start_date,omitempty"`
	GrantEndDate      *time.Time `json:"grant_end_date,omitempty"`
	DaysRemaining     int        `json:"days_remaining"`

	DailyBurnRate     Number `json:"daily_burn_rate"`
	ExpectedDailyRate Number `json:"expected_daily_rate"`
	BurnRateVariance  Number `json:"burn_rate_variance"`
	BudgetHealthScore Number `json:"budget_health_score"`
	HealthStatus      string `json:"health_status"`
	BurnRateStatus    string `json:"burn_rate_status"`

	ProjectedDepletionDate *time.Time `json:"projected_depletion_date,omitempty"`
	RiskLevel              string     `json:"risk_level"`

	CanAffordAWSBurst   bool     `json:"can_afford_aws_burst"`
	RecommendedDecision string   `json:"recommended_decision"`
	DecisionReasoning   []string `json:"decision_reasoning"`
	ActiveAlerts        []Alert  `json:"active_alerts,omitempty"`
	Warnings            []string `json:"warnings,omitempty"`

	// The advisor's names (internal/budget/asbb_client.go BudgetStatus).
	BurnRate           Number `json:"burn_rate"`
	HealthScore        int    `json:"health_score"`
	GrantDaysRemaining int    `json:"grant_days_remaining"`
	Decision           string `json:"decision"`
	CanAffordAWS       bool   `json:"can_afford_aws"`

	LastUpdated time.Time `json:"last_updated"`
}

// ASBABudgetStatus answers budget-status for an account (and the grant it
// draws on, or the one named).
func (l *Ledger) ASBABudgetStatus(ctx context.Context, cluster, account, grantNumber string) (ASBABudgetStatus, error) {
	c, err := l.asbaContext(ctx, cluster, account, grantNumber)
	if err != nil {
		return ASBABudgetStatus{}, err
	}
	return buildBudgetStatus(c), nil
}

// statusDecision is the budget-status rule (docs/analytics.md):
//
//	EMERGENCY_ONLY  nothing left to spend, health CRITICAL, or funds run out within 7 days
//	PREFER_LOCAL    health WARNING, overspending, 90% or more used or held, or funds run out before the period ends
//	PREFER_AWS      health HEALTHY, underspending, under 75% used (money that would otherwise go unspent)
//	EITHER          anything else
func statusDecision(c asbaContext) (string, []string) {
	b := c.burn
	m := func(d decimal.Decimal) string { return FormatMoney(d.Round(2), b.Currency) }
	var why []string
	used := decimal.Zero
	if b.PercentUsed != nil {
		used = *b.PercentUsed
	}
	why = append(why, fmt.Sprintf("health score %d (%s), burn rate %s/day against %s (%s)", b.HealthScore, b.HealthStatus,
		m(b.DailyRate), expectedText(b), b.BurnStatus))
	spend := c.spendable()
	switch {
	case !spend.IsPositive():
		return "EMERGENCY_ONLY", append(why, fmt.Sprintf("nothing left to spend: %s available after holds", m(spend)))
	case b.HealthStatus == HealthCritical:
		return "EMERGENCY_ONLY", append(why, "health is CRITICAL: keep bursting for emergencies")
	case b.Projection.DaysToExhaustion != nil && b.Projection.DaysToExhaustion.LessThanOrEqual(decimal.NewFromInt(7)):
		return "EMERGENCY_ONLY", append(why, fmt.Sprintf("at this rate the funds run out on %s, within a week",
			b.Projection.ExhaustionDate.Format(time.DateOnly)))
	case b.HealthStatus == HealthWarning:
		return "PREFER_LOCAL", append(why, "health is WARNING: prefer local resources")
	case b.BurnStatus == BurnOverspending:
		return "PREFER_LOCAL", append(why, fmt.Sprintf("spending %s%% above the expected rate", b.VariancePercent.StringFixed(1)))
	case used.GreaterThanOrEqual(decimal.NewFromInt(90)):
		return "PREFER_LOCAL", append(why, fmt.Sprintf("%s%% of the budget is used or held", used.StringFixed(1)))
	case b.Projection.ExhaustsBeforeEnd:
		return "PREFER_LOCAL", append(why, fmt.Sprintf("at this rate the funds run out on %s, before the period ends on %s",
			b.Projection.ExhaustionDate.Format(time.DateOnly), b.PeriodEnd.Format(time.DateOnly)))
	case b.HealthStatus == HealthHealthy && b.BurnStatus == BurnUnderspending && used.LessThan(decimal.NewFromInt(75)):
		return "PREFER_AWS", append(why, fmt.Sprintf("spending %s%% below plan with %s left: bursting uses funds that would otherwise go unspent",
			b.VariancePercent.Neg().StringFixed(1), m(spend)))
	}
	return "EITHER", append(why, fmt.Sprintf("%s available, spending on plan", m(spend)))
}

func expectedText(b BurnRate) string {
	if b.ExpectedDailyRate == nil {
		return "no expected rate"
	}
	return FormatMoney(b.ExpectedDailyRate.Round(2), b.Currency) + "/day expected"
}

func buildBudgetStatus(c asbaContext) ASBABudgetStatus {
	b := c.burn
	s := ASBABudgetStatus{Account: c.account.SlurmAccount, Currency: c.account.Currency,
		BudgetLimit: num(c.account.Deposited), BudgetUsed: num(c.account.Spent), BudgetHeld: num(c.account.Held),
		BudgetAvailable: num(c.spendable()), DailyBurnRate: num(b.DailyRate),
		BudgetHealthScore: numi(int64(b.HealthScore)), HealthStatus: b.HealthStatus, BurnRateStatus: b.BurnStatus,
		ProjectedDepletionDate: b.Projection.ExhaustionDate, RiskLevel: riskOf(b.HealthScore),
		ActiveAlerts: c.alerts, LastUpdated: c.now}
	if b.PercentUsed != nil {
		s.BudgetUtilization = Number{*b.PercentUsed}
	}
	if b.ExpectedDailyRate != nil {
		s.ExpectedDailyRate = num(*b.ExpectedDailyRate)
	} else {
		s.Warnings = append(s.Warnings, "no expected rate: the account has no end date, grant period or allocation schedule, so variance is not computed")
	}
	if b.VariancePercent != nil {
		s.BurnRateVariance = Number{*b.VariancePercent}
	}
	if b.DaysRemaining != nil {
		s.DaysRemaining = *b.DaysRemaining
	}
	if c.grant != nil {
		s.GrantNumber = c.grant.Number
		if t, err := time.Parse(time.DateOnly, c.grant.StartDate); err == nil {
			s.GrantStartDate = &t
		}
		if t, err := time.Parse(time.DateOnly, c.grant.EndDate); err == nil {
			s.GrantEndDate = &t
			s.GrantDaysRemaining = daysUntil(c.now, t.AddDate(0, 0, 1))
		}
	} else {
		s.GrantDaysRemaining = s.DaysRemaining
	}
	if b.Projection.ExhaustsBeforeEnd {
		s.Warnings = append(s.Warnings, fmt.Sprintf("projected to run out on %s, before the period ends on %s",
			b.Projection.ExhaustionDate.Format(time.DateOnly), b.PeriodEnd.Format(time.DateOnly)))
	}
	s.RecommendedDecision, s.DecisionReasoning = statusDecision(c)
	s.CanAffordAWSBurst = s.RecommendedDecision == "PREFER_AWS" || s.RecommendedDecision == "EITHER"
	s.BurnRate, s.HealthScore, s.Decision, s.CanAffordAWS = s.DailyBurnRate, b.HealthScore, s.RecommendedDecision, s.CanAffordAWSBurst
	if s.ActiveAlerts == nil {
		s.ActiveAlerts = []Alert{}
	}
	return s
}

// ---------------------------------------------------------- affordability

// ASBAJob is a job the advisor asks about.
type ASBAJob struct {
	Cost                decimal.Decimal // estimated AWS cost
	LocalMinutes        int64           // estimated time to finish locally (queue wait + run)
	Priority            string          // low, normal, high, critical, emergency
	Deadline            *time.Time
	ConferenceDeadline  *time.Time
	ResearchPhase       string // EXPLORATION, DEVELOPMENT, VALIDATION, PUBLICATION
	CollaborationImpact bool
}

var priorities = map[string]int{"": 1, "low": 0, "normal": 1, "high": 2, "critical": 3, "emergency": 4}

func (j *ASBAJob) validate() error {
	if j.Cost.IsNegative() {
		return fmt.Errorf("%w: estimated cost must not be negative", ErrInvalid)
	}
	if err := checkRange(j.Cost); err != nil {
		return err
	}
	if j.LocalMinutes < 0 || j.LocalMinutes > 10*365*24*60 {
		return fmt.Errorf("%w: estimated_local_time must be 0 to ten years in minutes", ErrInvalid)
	}
	j.Priority = strings.ToLower(j.Priority)
	if _, ok := priorities[j.Priority]; !ok {
		return fmt.Errorf("%w: job_priority %q is not low, normal, high, critical or emergency", ErrInvalid, j.Priority)
	}
	j.ResearchPhase = strings.ToUpper(j.ResearchPhase)
	switch j.ResearchPhase {
	case "", "EXPLORATION", "DEVELOPMENT", "VALIDATION", "PUBLICATION":
	default:
		return fmt.Errorf("%w: research_phase %q is not EXPLORATION, DEVELOPMENT, VALIDATION or PUBLICATION", ErrInvalid, j.ResearchPhase)
	}
	return nil
}

// ASBABudgetImpact is the advisor's budget_impact object.
type ASBABudgetImpact struct {
	PercentOfBudget    Number `json:"cost_as_percent_of_budget"`
	PercentOfRemaining Number `json:"cost_as_percent_of_remaining"`
	OpportunityCost    Number `json:"opportunity_cost"` // days of planned spending the cost represents
	BudgetAfterCost    Number `json:"budget_after_cost"`
}

// ASBARisk is the risk_assessment object (the advisor reads budget_risk,
// deadline_risk, overall_risk in lower case and risk_factors).
type ASBARisk struct {
	OverallRisk          string   `json:"overall_risk"`
	BudgetRisk           string   `json:"budget_risk"`
	DeadlineRisk         string   `json:"deadline_risk"`
	GrantRisk            string   `json:"grant_risk,omitempty"`
	RiskFactors          []string `json:"risk_factors"`
	MitigationStrategies []string `json:"mitigation_strategies,omitempty"`
	ConfidenceLevel      Number   `json:"confidence_level"`
}

// ASBAOption is one alternative, with both clients' keys.
type ASBAOption struct {
	Option              string `json:"option"` // LOCAL, AWS, DEFER
	EstimatedCost       Number `json:"estimated_cost"`
	EstimatedTime       int64  `json:"estimated_time"` // minutes
	Risk                string `json:"risk"`
	Reasoning           string `json:"reasoning"`
	RecommendationScore Number `json:"recommendation_score"`
	// The advisor's AlternativeOption.
	Strategy    string `json:"strategy"`
	Cost        Number `json:"cost"`
	Timeline    string `json:"timeline"`
	Score       Number `json:"score"`
	Description string `json:"description"`
}

// ASBAAffordability is the answer of affordability-check.
type ASBAAffordability struct {
	Account              string         `json:"account"`
	Affordable           bool           `json:"affordable"`
	RecommendedDecision  string         `json:"recommended_decision"` // LOCAL, AWS, EITHER
	ConfidenceLevel      Number         `json:"confidence_level"`
	EstimatedAWSCost     Number         `json:"estimated_aws_cost"`
	BudgetImpact         any            `json:"budget_impact"` // Number (asbb) or ASBABudgetImpact (advisor)
	CostOpportunityRatio Number         `json:"cost_opportunity_ratio"`
	TimeToDeadline       int64          `json:"time_to_deadline"`
	LocalCompletionTime  *time.Time     `json:"local_completion_time,omitempty"`
	BudgetRisk           string         `json:"budget_risk"`
	DeadlineRisk         string         `json:"deadline_risk"`
	OverallRisk          string         `json:"overall_risk"`
	RiskAssessment       ASBARisk       `json:"risk_assessment"`
	DecisionFactors      map[string]any `json:"decision_factors"`
	Reasoning            []string       `json:"reasoning"`
	Recommendations      []string       `json:"recommendations"`
	AlternativeOptions   []ASBAOption   `json:"alternative_options"`
	Message              string         `json:"message"`
}

// assessment is the shared analysis of a job against the budget.
type assessment struct {
	spend, after         decimal.Decimal
	affordable           bool
	budgetRisk, deadRisk string // LOW, MEDIUM, HIGH, CRITICAL
	toDeadline           int64  // minutes; 0 = no deadline
	pctBudget, pctRemain Number
	reasons, riskFactors []string
	confidence           decimal.Decimal
	decision             string          // LOCAL, AWS, EITHER
	because              string          // the reason that decided it
	pressure             decimal.Decimal // local time / time to deadline
}

var riskRank = map[string]int{"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}

func maxRisk(a, b string) string {
	if riskRank[b] > riskRank[a] {
		return b
	}
	return a
}

// assess applies the affordability rule (docs/analytics.md):
//
//	affordable   cost <= what may still be spent (after holds; for a grant-funded
//	             account also the period's remainder in direct cost)
//	budget risk  CRITICAL unaffordable, HIGH > 50% of what is left, MEDIUM > 20%, else LOW
//	deadline     HIGH when the local estimate misses the deadline, MEDIUM when it
//	             uses > 75% of the time left, else LOW (no deadline: LOW)
//	decision     unaffordable: LOCAL. Deadline HIGH: AWS. Health WARNING/CRITICAL,
//	             overspending or budget risk HIGH: LOCAL, unless priority is
//	             critical/emergency. Budget risk LOW and health HEALTHY: AWS when
//	             underspending, else EITHER. Otherwise LOCAL.
func assess(c asbaContext, j ASBAJob) assessment {
	b := c.burn
	m := func(d decimal.Decimal) string { return FormatMoney(d.Round(2), b.Currency) }
	a := assessment{spend: c.spendable(), budgetRisk: "LOW", deadRisk: "LOW"}
	a.after = a.spend.Sub(j.Cost)
	a.affordable = j.Cost.LessThanOrEqual(a.spend)
	a.pctBudget = pctOf(j.Cost, c.budgetBase())
	a.pctRemain = pctOf(j.Cost, a.spend)
	share := decimal.NewFromInt(100)
	if a.spend.IsPositive() {
		share = j.Cost.Mul(hundred).DivRound(a.spend, 2)
	}
	switch {
	case !a.affordable:
		a.budgetRisk = "CRITICAL"
		a.reasons = append(a.reasons, fmt.Sprintf("the job may cost %s but only %s may still be spent", m(j.Cost), m(a.spend)))
		a.riskFactors = append(a.riskFactors, "cost exceeds the remaining budget")
	case share.GreaterThan(decimal.NewFromInt(50)):
		a.budgetRisk = "HIGH"
		a.riskFactors = append(a.riskFactors, fmt.Sprintf("the job takes %s%% of what is left", share.StringFixed(1)))
	case share.GreaterThan(decimal.NewFromInt(20)):
		a.budgetRisk = "MEDIUM"
		a.riskFactors = append(a.riskFactors, fmt.Sprintf("the job takes %s%% of what is left", share.StringFixed(1)))
	}
	if a.affordable {
		a.reasons = append(a.reasons, fmt.Sprintf("the job's %s is %s%% of the %s that may still be spent", m(j.Cost),
			share.StringFixed(1), m(a.spend)))
	}
	if j.Deadline != nil {
		a.toDeadline = max(0, int64(j.Deadline.Sub(c.now).Minutes()))
		switch {
		case j.LocalMinutes > a.toDeadline:
			a.deadRisk = "HIGH"
			a.riskFactors = append(a.riskFactors, fmt.Sprintf("running locally (%d min) misses the deadline (%d min away)", j.LocalMinutes, a.toDeadline))
		case decimal.NewFromInt(j.LocalMinutes * 4).GreaterThan(decimal.NewFromInt(a.toDeadline * 3)):
			a.deadRisk = "MEDIUM"
			a.riskFactors = append(a.riskFactors, "running locally uses most of the time to the deadline")
		}
		if a.toDeadline > 0 {
			a.pressure = decimal.Min(one, decimal.NewFromInt(j.LocalMinutes).DivRound(decimal.NewFromInt(a.toDeadline), 4))
		} else {
			a.pressure = one
		}
	}
	b2 := b.BurnStatus
	urgent := priorities[j.Priority] >= 3
	switch {
	case !a.affordable:
		a.decision = "LOCAL"
		a.reasons = append(a.reasons, "not affordable: run locally")
	case a.deadRisk == "HIGH":
		a.decision = "AWS"
		a.reasons = append(a.reasons, "only bursting meets the deadline, and the budget covers it")
	case (b.HealthStatus == HealthWarning || b.HealthStatus == HealthCritical || b2 == BurnOverspending || a.budgetRisk == "HIGH") && !urgent:
		a.decision = "LOCAL"
		a.reasons = append(a.reasons, fmt.Sprintf("budget health %d (%s), %s, budget risk %s: preserve funds", b.HealthScore,
			b.HealthStatus, strings.ToLower(b2), a.budgetRisk))
	case (b.HealthStatus == HealthWarning || b.HealthStatus == HealthCritical || b2 == BurnOverspending || a.budgetRisk == "HIGH") && urgent:
		a.decision = "AWS"
		a.reasons = append(a.reasons, "the budget is under strain, but the job's priority is "+j.Priority)
	case a.budgetRisk == "LOW" && b.HealthStatus == HealthHealthy && b2 == BurnUnderspending:
		a.decision = "AWS"
		a.reasons = append(a.reasons, "spending is below plan: bursting uses funds that would otherwise go unspent")
	case a.budgetRisk == "LOW" && b.HealthStatus == HealthHealthy:
		a.decision = "EITHER"
		a.reasons = append(a.reasons, "healthy budget and a small job: either is fine")
	default:
		a.decision = "LOCAL"
		a.reasons = append(a.reasons, fmt.Sprintf("budget risk %s with health %s: prefer local", a.budgetRisk, b.HealthStatus))
	}
	a.because = a.reasons[len(a.reasons)-1]
	a.confidence = decimal.RequireFromString("0.9")
	if b.ExpectedDailyRate == nil {
		a.confidence = decimal.RequireFromString("0.7")
		a.reasons = append(a.reasons, "no expected rate for this account: confidence is lower")
	}
	if b.Window.Days.LessThan(decimal.NewFromInt(7)) {
		a.confidence = a.confidence.Sub(decimal.RequireFromString("0.2"))
		a.reasons = append(a.reasons, "less than a week of history: confidence is lower")
	}
	return a
}

func lower(s string) string { return strings.ToLower(s) }

func (a assessment) options(c asbaContext, j ASBAJob) []ASBAOption {
	cur := c.account.Currency
	awsScore, localScore := decimal.RequireFromString("0.5"), decimal.RequireFromString("0.5")
	switch a.decision {
	case "AWS":
		awsScore, localScore = decimal.RequireFromString("0.8"), decimal.RequireFromString("0.2")
	case "LOCAL":
		awsScore, localScore = decimal.RequireFromString("0.2"), decimal.RequireFromString("0.8")
	}
	if !a.affordable {
		awsScore = decimal.Zero
	}
	local := ASBAOption{Option: "LOCAL", EstimatedTime: j.LocalMinutes, Risk: a.deadRisk,
		Reasoning: "no cost to the budget; finishes in the local estimate", RecommendationScore: ratio(localScore),
		Strategy: "local", Timeline: fmt.Sprintf("%d minutes", j.LocalMinutes), Score: ratio(localScore),
		Description: "run on the local cluster at no cost to the budget"}
	aws := ASBAOption{Option: "AWS", EstimatedCost: num(j.Cost), Risk: a.budgetRisk,
		Reasoning:           fmt.Sprintf("costs %s, leaving %s", FormatMoney(j.Cost.Round(2), cur), FormatMoney(a.after.Round(2), cur)),
		RecommendationScore: ratio(awsScore), Strategy: "aws", Cost: num(j.Cost), Timeline: "on burst capacity",
		Score: ratio(awsScore), Description: "burst to AWS at the estimated cost"}
	return []ASBAOption{local, aws}
}

// ASBAAffordability answers affordability-check.
func (l *Ledger) ASBAAffordability(ctx context.Context, cluster, account string, j ASBAJob, dialect string) (ASBAAffordability, error) {
	if err := j.validate(); err != nil {
		return ASBAAffordability{}, err
	}
	c, err := l.asbaContext(ctx, cluster, account, "")
	if err != nil {
		return ASBAAffordability{}, err
	}
	return buildAffordability(c, j, dialect), nil
}

func buildAffordability(c asbaContext, j ASBAJob, dialect string) ASBAAffordability {
	a := assess(c, j)
	b := c.burn
	overall := maxRisk(a.budgetRisk, a.deadRisk)
	r := ASBAAffordability{Account: c.account.SlurmAccount, Affordable: a.affordable, RecommendedDecision: a.decision,
		ConfidenceLevel: ratio(a.confidence), EstimatedAWSCost: num(j.Cost), TimeToDeadline: a.toDeadline,
		BudgetRisk: a.budgetRisk, DeadlineRisk: a.deadRisk, OverallRisk: overall,
		RiskAssessment: ASBARisk{OverallRisk: lower(overall), BudgetRisk: lower(a.budgetRisk), DeadlineRisk: lower(a.deadRisk),
			RiskFactors: append([]string{}, a.riskFactors...), ConfidenceLevel: ratio(a.confidence)},
		Reasoning: a.reasons, Recommendations: []string{}, AlternativeOptions: a.options(c, j)}
	if j.LocalMinutes > 0 {
		t := c.now.Add(time.Duration(j.LocalMinutes) * time.Minute)
		r.LocalCompletionTime = &t
		r.CostOpportunityRatio = num(j.Cost.Mul(decimal.NewFromInt(60)).DivRound(decimal.NewFromInt(j.LocalMinutes), 4))
	}
	opp := decimal.Zero
	if e := b.ExpectedDailyRate; e != nil && e.IsPositive() {
		opp = j.Cost.DivRound(*e, 2)
	}
	if dialect == DialectAdvisor {
		r.BudgetImpact = ASBABudgetImpact{PercentOfBudget: a.pctBudget, PercentOfRemaining: a.pctRemain,
			OpportunityCost: Number{opp}, BudgetAfterCost: num(a.after)}
	} else {
		r.BudgetImpact = a.pctBudget
	}
	r.DecisionFactors = map[string]any{"available": num(a.spend), "budget_after_cost": num(a.after),
		"cost_percent_of_remaining": a.pctRemain, "health_score": b.HealthScore, "health_status": b.HealthStatus,
		"burn_rate_status": b.BurnStatus, "days_of_planned_spending": Number{opp}, "job_priority": j.Priority}
	if !a.affordable {
		r.Recommendations = append(r.Recommendations, "run locally, or ask the PI to add funds before bursting")
	}
	if a.deadRisk != "LOW" && a.decision != "AWS" {
		r.Recommendations = append(r.Recommendations, "the deadline is at risk: consider a smaller or spot AWS run")
	}
	r.Message = fmt.Sprintf("%s: %s", a.decision, a.because)
	if !a.affordable {
		r.Message = "not affordable: " + a.reasons[0]
	}
	return r
}

// ---------------------------------------------------------- burst decision

// ASBADecisionFactor is one weighted input of a burst decision.
type ASBADecisionFactor struct {
	Factor      string `json:"factor"`
	Weight      Number `json:"weight"`
	Value       Number `json:"value"` // 0-1, higher favours bursting
	Impact      string `json:"impact"`
	Description string `json:"description"`
}

// ASBABurstDecision is the answer of burst-decision.
type ASBABurstDecision struct {
	Account             string               `json:"account"`
	RecommendedAction   string               `json:"recommended_action"` // LOCAL, AWS, DEFER, OPTIMIZE
	Confidence          Number               `json:"confidence"`
	UrgencyLevel        string               `json:"urgency_level"`
	BudgetImpact        Number               `json:"budget_impact"`
	AffordabilityScore  Number               `json:"affordability_score"`
	CostEfficiency      Number               `json:"cost_efficiency"` // cost per hour of local time avoided
	TimelinePressure    Number               `json:"timeline_pressure"`
	DeadlineRisk        string               `json:"deadline_risk"`
	GrantHealthImpact   string               `json:"grant_health_impact"`
	BudgetPreservation  Number               `json:"budget_preservation"`
	DecisionFactors     []ASBADecisionFactor `json:"decision_factors"`
	RiskAssessment      ASBARisk             `json:"risk_assessment"`
	Alternatives        []ASBAOption         `json:"alternatives"`
	ImmediateActions    []string             `json:"immediate_actions"`
	LongtermSuggestions []string             `json:"longterm_suggestions"`
	Reasoning           []string             `json:"reasoning"`
	Message             string               `json:"message"`
}

// ASBABurstDecision answers burst-decision.
func (l *Ledger) ASBABurstDecision(ctx context.Context, cluster, account string, j ASBAJob) (ASBABurstDecision, error) {
	if err := j.validate(); err != nil {
		return ASBABurstDecision{}, err
	}
	c, err := l.asbaContext(ctx, cluster, account, "")
	if err != nil {
		return ASBABurstDecision{}, err
	}
	return buildBurstDecision(c, j), nil
}

// buildBurstDecision: the affordability decision, refined (docs/analytics.md):
// unaffordable jobs are OPTIMIZE when the deadline is at risk (make the job
// cheaper), DEFER when an allocation arrives within a week, else LOCAL;
// EITHER becomes AWS for the PUBLICATION phase, a conference deadline
// within 14 days or a job others wait on, else LOCAL.
func buildBurstDecision(c asbaContext, j ASBAJob) ASBABurstDecision {
	a := assess(c, j)
	b := c.burn
	action, because := a.decision, a.because
	why := append([]string{}, a.reasons...)
	say := func(s string) { why, because = append(why, s), s }
	if j.ConferenceDeadline != nil && j.Deadline == nil {
		j.Deadline = j.ConferenceDeadline
	}
	switch {
	case !a.affordable && a.deadRisk != "LOW":
		action = "OPTIMIZE"
		say("the deadline is at risk but the budget cannot cover the job: make it cheaper (spot, fewer nodes)")
	case !a.affordable:
		action = "LOCAL"
		for _, u := range c.upcoming {
			if u.DaysFromNow <= 7 && u.Amount.Add(a.spend).GreaterThanOrEqual(j.Cost) {
				action = "DEFER"
				say(fmt.Sprintf("an allocation of %s arrives on %s: defer the burst until then",
					FormatMoney(u.Amount.Decimal, c.account.Currency), u.Date.Format(time.DateOnly)))
				break
			}
		}
	case action == "EITHER":
		conf := j.ConferenceDeadline != nil && j.ConferenceDeadline.Sub(c.now) < 14*24*time.Hour
		if j.ResearchPhase == "PUBLICATION" || conf || j.CollaborationImpact {
			action = "AWS"
			say("publication phase, a conference deadline within two weeks, or others waiting: burst")
		} else {
			action = "LOCAL"
			say("no time pressure: keep the funds and run locally")
		}
	}
	urgency := "LOW"
	switch {
	case priorities[j.Priority] >= 4 || a.pressure.GreaterThanOrEqual(one):
		urgency = "CRITICAL"
	case priorities[j.Priority] >= 3 || a.deadRisk == "HIGH" || (j.Deadline != nil && j.Deadline.Sub(c.now) < 48*time.Hour):
		urgency = "HIGH"
	case priorities[j.Priority] >= 2 || a.deadRisk == "MEDIUM":
		urgency = "MEDIUM"
	}
	afford := decimal.Zero
	if a.spend.IsPositive() {
		afford = decimal.Max(decimal.Zero, one.Sub(j.Cost.DivRound(a.spend, 4)))
	}
	preserve := afford
	impact := "NONE"
	switch {
	case !a.affordable:
		impact = "SEVERE"
	case a.budgetRisk == "HIGH":
		impact = "MODERATE"
	case a.budgetRisk == "MEDIUM":
		impact = "MINOR"
	}
	health := decimal.NewFromInt(int64(b.HealthScore)).Div(hundred)
	deadVal := map[string]string{"LOW": "0", "MEDIUM": "0.5", "HIGH": "1", "CRITICAL": "1"}[a.deadRisk]
	phase := map[string]string{"": "0.5", "EXPLORATION": "0.2", "DEVELOPMENT": "0.4", "VALIDATION": "0.6", "PUBLICATION": "1"}[j.ResearchPhase]
	factor := func(name, w string, v decimal.Decimal, desc string) ASBADecisionFactor {
		imp := "NEUTRAL"
		switch {
		case v.GreaterThan(decimal.RequireFromString("0.6")):
			imp = "POSITIVE"
		case v.LessThan(decimal.RequireFromString("0.4")):
			imp = "NEGATIVE"
		}
		return ASBADecisionFactor{Factor: name, Weight: ratio(decimal.RequireFromString(w)), Value: ratio(v), Impact: imp, Description: desc}
	}
	d := ASBABurstDecision{Account: c.account.SlurmAccount, RecommendedAction: action, Confidence: ratio(a.confidence),
		UrgencyLevel: urgency, BudgetImpact: a.pctBudget, AffordabilityScore: ratio(afford),
		TimelinePressure: ratio(a.pressure), DeadlineRisk: a.deadRisk, GrantHealthImpact: impact,
		BudgetPreservation: ratio(preserve),
		DecisionFactors: []ASBADecisionFactor{
			factor("affordability", "0.4", afford, fmt.Sprintf("share of the remaining budget left after the job (%s left)", FormatMoney(a.after.Round(2), c.account.Currency))),
			factor("deadline", "0.3", decimal.RequireFromString(deadVal), "deadline risk of running locally: "+a.deadRisk),
			factor("budget_health", "0.2", health, fmt.Sprintf("health score %d (%s, %s)", b.HealthScore, b.HealthStatus, b.BurnStatus)),
			factor("research_phase", "0.1", decimal.RequireFromString(phase), "research phase "+strings.ToLower(j.ResearchPhase)),
		},
		RiskAssessment: ASBARisk{OverallRisk: maxRisk(a.budgetRisk, a.deadRisk), BudgetRisk: a.budgetRisk, DeadlineRisk: a.deadRisk,
			GrantRisk: riskOf(b.HealthScore), RiskFactors: append([]string{}, a.riskFactors...), ConfidenceLevel: ratio(a.confidence),
			MitigationStrategies: []string{}},
		Alternatives: a.options(c, j), ImmediateActions: []string{}, LongtermSuggestions: []string{}, Reasoning: why}
	if j.LocalMinutes > 0 {
		d.CostEfficiency = num(j.Cost.Mul(decimal.NewFromInt(60)).DivRound(decimal.NewFromInt(j.LocalMinutes), 4))
	}
	if a.budgetRisk != "LOW" {
		d.RiskAssessment.MitigationStrategies = append(d.RiskAssessment.MitigationStrategies, "use spot capacity or fewer nodes to cut the cost")
	}
	switch action {
	case "AWS":
		d.ImmediateActions = append(d.ImmediateActions, "submit to the burst partition")
	case "LOCAL":
		d.ImmediateActions = append(d.ImmediateActions, "submit to the local partition")
	case "DEFER":
		d.ImmediateActions = append(d.ImmediateActions, "hold the job until the next allocation arrives")
	case "OPTIMIZE":
		d.ImmediateActions = append(d.ImmediateActions, "reduce the job's cost (spot instances, fewer nodes, shorter time limit) and ask again")
	}
	if b.BurnStatus == BurnOverspending {
		d.LongtermSuggestions = append(d.LongtermSuggestions, "spending runs above plan: review the group's burst usage")
	}
	if b.BurnStatus == BurnUnderspending {
		d.LongtermSuggestions = append(d.LongtermSuggestions, "spending runs below plan: funds may go unspent at the period end")
	}
	d.Message = fmt.Sprintf("%s (%s urgency): %s", action, strings.ToLower(urgency), because)
	return d
}

// ---------------------------------------------------------- grant timeline

// AllocationEvent is money arriving later (both clients' keys).
type AllocationEvent struct {
	Date        time.Time `json:"date"`
	Amount      Number    `json:"amount"`
	Description string    `json:"description"`
	Type        string    `json:"type"` // AUTOMATIC (schedule), MANUAL (dated deposit)
	DaysFromNow int       `json:"days_from_now"`
	Source      string    `json:"source"` // the advisor's: schedule, allocation
	DaysUntil   int       `json:"-"`
}

// ASBADeadline is an upcoming date that matters to the budget.
type ASBADeadline struct {
	Type            string    `json:"type"`
	Description     string    `json:"description"`
	Name            string    `json:"name"`
	Date            time.Time `json:"date"`
	DaysFromNow     int       `json:"days_from_now"`
	DaysUntil       int       `json:"days_until"`
	Severity        string    `json:"severity"`
	Urgency         string    `json:"urgency"`
	BudgetImpact    string    `json:"budget_impact"`
	Impact          string    `json:"impact"`
	Recommendations []string  `json:"recommendations"`
}

// ASBATimelinePoint is one day of the budget timeline.
type ASBATimelinePoint struct {
	Date               time.Time `json:"date"`
	CumulativeSpend    Number    `json:"cumulative_spend"`
	CumulativeExpected Number    `json:"cumulative_expected"`
	RemainingBudget    Number    `json:"remaining_budget"`
	BurnRateStatus     string    `json:"burn_rate_status"`
	HealthScore        Number    `json:"health_score"`
}

// ASBAGuidance is the advisor's budget_guidance.
type ASBAGuidance struct {
	RecommendedStrategy     string   `json:"recommended_strategy"`
	MaxRecommendedSpend     Number   `json:"max_recommended_spend"`
	ConservationAdvice      string   `json:"conservation_advice"`
	OptimizationSuggestions []string `json:"optimization_suggestions"`
}

// ASBAEmergencyAdvice is the advisor's emergency_burst_advice.
type ASBAEmergencyAdvice struct {
	EmergencyFundsAvailable bool   `json:"emergency_funds_available"`
	EmergencyThreshold      Number `json:"emergency_threshold"`
	EmergencyProcedure      string `json:"emergency_procedure"`
	ContactInfo             string `json:"contact_info"`
}

// ASBAEmergencyOption is the original's emergency option.
type ASBAEmergencyOption struct {
	Option       string   `json:"option"`
	Description  string   `json:"description"`
	Timeline     string   `json:"timeline"`
	Requirements []string `json:"requirements"`
	RiskLevel    string   `json:"risk_level"`
}

// ASBAGrantTimeline is the answer of grant-timeline.
type ASBAGrantTimeline struct {
	GrantNumber            string                `json:"grant_number,omitempty"`
	Account                string                `json:"account"`
	GrantStartDate         *time.Time            `json:"grant_start_date"`
	GrantEndDate           *time.Time            `json:"grant_end_date"`
	CurrentPeriod          any                   `json:"current_period"` // int (asbb) or string (advisor)
	TotalPeriods           int                   `json:"total_periods"`
	PeriodEndDate          *time.Time            `json:"period_end_date"`
	DaysUntilPeriodEnd     int                   `json:"days_until_period_end"`
	DaysUntilGrantEnd      int                   `json:"days_until_grant_end"`
	DaysRemaining          int                   `json:"days_remaining"`
	AllocationSchedule     []AllocationEvent     `json:"allocation_schedule"`
	NextAllocation         *AllocationEvent      `json:"next_allocation"`
	UpcomingDeadlines      []ASBADeadline        `json:"upcoming_deadlines"`
	BudgetTimeline         []ASBATimelinePoint   `json:"budget_timeline"`
	CurrentUrgency         string                `json:"current_urgency"`
	BurstingRecommendation string                `json:"bursting_recommendation"`
	OptimizationAdvice     []string              `json:"optimization_advice"`
	EmergencyOptions       []ASBAEmergencyOption `json:"emergency_options,omitempty"`
	BudgetGuidance         ASBAGuidance          `json:"budget_guidance"`
	EmergencyBurstAdvice   ASBAEmergencyAdvice   `json:"emergency_burst_advice"`
	ActiveAlerts           []Alert               `json:"active_alerts,omitempty"`
	LastUpdated            time.Time             `json:"last_updated"`
}

// ASBAGrantTimeline answers grant-timeline for an account (its grant) or a
// grant (with no account, the grant's first linked account).
func (l *Ledger) ASBAGrantTimeline(ctx context.Context, cluster, account, grantNumber string, lookAhead int, alerts bool, dialect string) (ASBAGrantTimeline, error) {
	if lookAhead == 0 {
		lookAhead = 90
	}
	if lookAhead < 1 || lookAhead > 3660 {
		return ASBAGrantTimeline{}, fmt.Errorf("%w: look_ahead_days must be 1-3660", ErrInvalid)
	}
	if account == "" {
		if grantNumber == "" {
			return ASBAGrantTimeline{}, fmt.Errorf("%w: give an account or a grant_number", ErrInvalid)
		}
		g, err := l.GetGrant(ctx, grantNumber)
		if err != nil {
			return ASBAGrantTimeline{}, err
		}
		if len(g.Accounts) == 0 {
			return ASBAGrantTimeline{}, fmt.Errorf("%w: grant %s funds no account yet", ErrNotFound, grantNumber)
		}
		account = g.Accounts[0]
	}
	c, err := l.asbaContext(ctx, cluster, account, grantNumber)
	if err != nil {
		return ASBAGrantTimeline{}, err
	}
	t := buildGrantTimeline(c, lookAhead, dialect)
	if !alerts {
		t.ActiveAlerts = nil
	}
	return t, nil
}

// buildGrantTimeline (docs/analytics.md): urgency CRITICAL when the funds
// run out within 7 days, HIGH before the period ends, MEDIUM when
// overspending, else LOW. Bursting EMERGENCY on CRITICAL health,
// CONSERVATIVE when overspending or WARNING, AGGRESSIVE when underspending
// with more than a quarter of the period budget left within 60 days of a
// period end that lapses (no carry-forward, or the grant's last period),
// else NORMAL.
func buildGrantTimeline(c asbaContext, lookAhead int, dialect string) ASBAGrantTimeline {
	b := c.burn
	cur := c.account.Currency
	m := func(d decimal.Decimal) string { return FormatMoney(d.Round(2), cur) }
	t := ASBAGrantTimeline{Account: c.account.SlurmAccount, LastUpdated: c.now, ActiveAlerts: c.alerts,
		AllocationSchedule: []AllocationEvent{}, UpcomingDeadlines: []ASBADeadline{}, OptimizationAdvice: []string{},
		BudgetTimeline: []ASBATimelinePoint{}}
	if t.ActiveAlerts == nil {
		t.ActiveAlerts = []Alert{}
	}
	horizon := c.now.AddDate(0, 0, lookAhead)
	period := 0
	if c.grant != nil {
		g := c.grant
		t.GrantNumber, t.TotalPeriods = g.Number, c.periods
		if s, err := time.Parse(time.DateOnly, g.StartDate); err == nil {
			t.GrantStartDate = &s
		}
		if e, err := time.Parse(time.DateOnly, g.EndDate); err == nil {
			end := e.AddDate(0, 0, 1)
			t.GrantEndDate = &e
			t.DaysUntilGrantEnd = daysUntil(c.now, end)
			if end.Before(horizon) {
				t.UpcomingDeadlines = append(t.UpcomingDeadlines, deadline("RENEWAL", g.Number+" ends", e, c.now,
					fmt.Sprintf("unspent funds after %s are lost unless the grant is extended", e.Format(time.DateOnly)),
					[]string{"plan a no-cost extension or the renewal before the end date"}))
			}
		}
		t.DaysRemaining = t.DaysUntilGrantEnd
		if p := c.period; p != nil {
			period = p.Period
			if e, err := time.Parse(time.DateOnly, p.EndDate); err == nil {
				t.PeriodEndDate = &e
				t.DaysUntilPeriodEnd = daysUntil(c.now, e.AddDate(0, 0, 1))
				if e.Before(horizon) {
					lapse := "carried forward to the next period"
					if !g.CarryForward || p.Period == c.periods {
						lapse = "lost (no carry-forward)"
					}
					t.UpcomingDeadlines = append(t.UpcomingDeadlines, deadline("PERIOD_END",
						fmt.Sprintf("budget period %d ends", p.Period), e, c.now,
						fmt.Sprintf("%s of the period's budget left, %s at its end", m(p.Remaining), lapse),
						[]string{"spend or re-plan the period's remainder before it ends"}))
				}
			}
		}
	} else {
		if c.account.StartsAt != nil {
			t.GrantStartDate = c.account.StartsAt
		}
		if c.account.EndsAt != nil {
			t.GrantEndDate, t.PeriodEndDate = c.account.EndsAt, c.account.EndsAt
			t.DaysUntilGrantEnd = daysUntil(c.now, *c.account.EndsAt)
			t.DaysUntilPeriodEnd, t.DaysRemaining = t.DaysUntilGrantEnd, t.DaysUntilGrantEnd
			if c.account.EndsAt.Before(horizon) {
				t.UpcomingDeadlines = append(t.UpcomingDeadlines, deadline("RENEWAL", "account "+c.account.SlurmAccount+" ends",
					*c.account.EndsAt, c.now, m(b.Funds.Remaining)+" left when the account closes", []string{"renew the account or spend down"}))
			}
		}
	}
	if dialect == DialectAdvisor {
		t.CurrentPeriod = ""
		if period > 0 {
			t.CurrentPeriod = strconv.Itoa(period)
		}
		for i := range t.UpcomingDeadlines {
			t.UpcomingDeadlines[i].Type = strings.ToLower(t.UpcomingDeadlines[i].Type)
			t.UpcomingDeadlines[i].Urgency = strings.ToLower(t.UpcomingDeadlines[i].Urgency)
		}
	} else {
		t.CurrentPeriod = period
	}
	for _, u := range c.upcoming {
		if u.Date.Before(horizon) {
			t.AllocationSchedule = append(t.AllocationSchedule, u)
			if t.NextAllocation == nil || u.Date.Before(t.NextAllocation.Date) {
				x := u
				t.NextAllocation = &x
			}
		}
	}
	for _, p := range b.Series {
		d, _ := time.ParseInLocation(time.DateOnly, p.Date, c.loc)
		pt := ASBATimelinePoint{Date: d, CumulativeSpend: num(p.Cumulative), RemainingBudget: num(p.Remaining),
			BurnRateStatus: b.BurnStatus, HealthScore: numi(int64(b.HealthScore))}
		if p.Expected != nil {
			pt.CumulativeExpected = num(*p.Expected)
		}
		t.BudgetTimeline = append(t.BudgetTimeline, pt)
	}
	// Urgency and bursting.
	soon := b.Projection.DaysToExhaustion != nil && b.Projection.DaysToExhaustion.LessThanOrEqual(decimal.NewFromInt(7))
	switch {
	case soon:
		t.CurrentUrgency = "CRITICAL"
	case b.Projection.ExhaustsBeforeEnd:
		t.CurrentUrgency = "HIGH"
	case b.BurnStatus == BurnOverspending:
		t.CurrentUrgency = "MEDIUM"
	default:
		t.CurrentUrgency = "LOW"
	}
	lapses := c.grant != nil && c.period != nil && (!c.grant.CarryForward || c.period.Period == c.periods) &&
		t.DaysUntilPeriodEnd <= 60 && c.period.Remaining.Mul(decimal.NewFromInt(4)).GreaterThan(c.period.Budget.Add(c.period.Adjusted))
	switch {
	case b.HealthStatus == HealthCritical || soon:
		t.BurstingRecommendation = "EMERGENCY"
		t.OptimizationAdvice = append(t.OptimizationAdvice, "burst only for deadline-critical work; everything else runs locally")
	case b.BurnStatus == BurnOverspending || b.HealthStatus == HealthWarning:
		t.BurstingRecommendation = "CONSERVATIVE"
		t.OptimizationAdvice = append(t.OptimizationAdvice, fmt.Sprintf("spending %s/day against %s: prefer local resources and spot capacity",
			m(b.DailyRate), expectedText(b)))
	case b.BurnStatus == BurnUnderspending && lapses:
		t.BurstingRecommendation = "AGGRESSIVE"
		t.OptimizationAdvice = append(t.OptimizationAdvice, fmt.Sprintf("%s of the period's budget lapses in %d days: bursting now uses it",
			m(c.period.Remaining), t.DaysUntilPeriodEnd))
	default:
		t.BurstingRecommendation = "NORMAL"
		t.OptimizationAdvice = append(t.OptimizationAdvice, "spending is on plan: burst when the queue wait matters")
	}
	strategy := map[string]string{"EMERGENCY": "emergency_only", "CONSERVATIVE": "conservative", "AGGRESSIVE": "aggressive", "NORMAL": "balanced"}
	// Spend over the look-ahead that keeps to plan: the expected rate over
	// the window, but never more than what may be spent.
	maxSpend := c.spendable()
	if e := b.ExpectedDailyRate; e != nil {
		maxSpend = decimal.Min(maxSpend, e.Mul(decimal.NewFromInt(int64(lookAhead))))
	}
	t.BudgetGuidance = ASBAGuidance{RecommendedStrategy: strategy[t.BurstingRecommendation], MaxRecommendedSpend: num(maxSpend),
		ConservationAdvice: t.OptimizationAdvice[0], OptimizationSuggestions: t.OptimizationAdvice}
	t.EmergencyBurstAdvice = ASBAEmergencyAdvice{EmergencyFundsAvailable: c.account.CreditLimit.IsPositive(),
		EmergencyThreshold: num(c.account.CreditLimit),
		EmergencyProcedure: "an administrator can raise the account's credit limit (asbb-admin account update --credit-limit) or deposit an allocation"}
	if t.BurstingRecommendation == "EMERGENCY" {
		t.EmergencyOptions = []ASBAEmergencyOption{
			{Option: "EMERGENCY_FUND", Description: "deposit an emergency allocation into the account", Timeline: "immediate",
				Requirements: []string{"approval of whoever funds the account"}, RiskLevel: "LOW"},
			{Option: "REALLOCATE", Description: "move unspent funds from another account", Timeline: "immediate",
				Requirements: []string{"a withdrawal from the other account and a deposit here"}, RiskLevel: "MEDIUM"},
		}
	}
	if dialect == DialectAdvisor {
		for i := range t.UpcomingDeadlines {
			t.UpcomingDeadlines[i].Urgency = strings.ToLower(t.UpcomingDeadlines[i].Urgency)
		}
	}
	return t
}

func deadline(typ, name string, at, now time.Time, impact string, recs []string) ASBADeadline {
	days := daysUntil(now, at)
	sev := "LOW"
	switch {
	case days <= 7:
		sev = "CRITICAL"
	case days <= 30:
		sev = "HIGH"
	case days <= 60:
		sev = "MEDIUM"
	}
	return ASBADeadline{Type: typ, Description: name, Name: name, Date: at, DaysFromNow: days, DaysUntil: days,
		Severity: sev, Urgency: sev, BudgetImpact: impact, Impact: impact, Recommendations: recs}
}
