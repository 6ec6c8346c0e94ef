package budget

import (
	"strings"
	"testing"
	"time"
)

// asbaCase builds an ASBA context from a hand-computed burn rate (the
// cases of TestComputeBurnHandComputed: $3,000 for 100 days, day 30).
func asbaCase(spent, dep, total, held string) asbaContext {
	asOf := day("2025-03-31")
	end := day("2025-06-09")
	in := burnInput{asOf: asOf, loc: time.UTC, window: Window{Period: "30d", From: day("2025-03-01"), To: asOf},
		budget: dec(dep), end: &end, tolerance: dec("25"), spent: dec(spent),
		funds: fundsOf(dec(dep), dec(total), dec(held), dec("0"))}
	b := computeBurn(in)
	b.Kind, b.Target, b.Currency = "account", "acct", "USD"
	return asbaContext{now: asOf, loc: time.UTC, account: Account{SlurmAccount: "acct", Currency: "USD",
		Deposited: dec(dep), Spent: dec(total), Held: dec(held)}, burn: b}
}

func TestASBADecisionsOnHandComputedCases(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name                    string
		spent, dep, total, held string
		status, risk            string
		afford                  bool
	}{
		{"steady", "900", "3000", "900", "0", "EITHER", "LOW", true},
		{"spike", "1500", "3000", "1500", "0", "PREFER_LOCAL", "HIGH", false},
		{"no spend", "0", "3000", "0", "0", "PREFER_AWS", "LOW", true},
		{"exhausted", "3000", "3000", "2900", "100", "EMERGENCY_ONLY", "CRITICAL", false},
	} {
		s := buildBudgetStatus(asbaCase(c.spent, c.dep, c.total, c.held))
		if s.RecommendedDecision != c.status || s.RiskLevel != c.risk || s.CanAffordAWSBurst != c.afford ||
			s.Decision != s.RecommendedDecision || s.HealthScore != s.burnScore() {
			t.Errorf("%s: %s %s %v, want %s %s %v; reasons %q", c.name, s.RecommendedDecision, s.RiskLevel,
				s.CanAffordAWSBurst, c.status, c.risk, c.afford, s.DecisionReasoning)
		}
		if len(s.DecisionReasoning) < 2 {
			t.Errorf("%s: no reasoning", c.name)
		}
	}

	// Affordability on the steady account ($2,100 left): a $100 job is
	// 4.76% of it (LOW risk, HEALTHY): EITHER; $600 is 28.57%: MEDIUM,
	// LOCAL; $3,000 is not affordable.
	c := asbaCase("900", "3000", "900", "0")
	for _, x := range []struct {
		cost, decision, risk, pctBudget string
		affordable                      bool
	}{
		{"100", "EITHER", "LOW", "3.33", true},
		{"600", "LOCAL", "MEDIUM", "20", true},
		{"3000", "LOCAL", "CRITICAL", "100", false},
	} {
		a := buildAffordability(c, ASBAJob{Cost: dec(x.cost)}, DialectASBB)
		if a.RecommendedDecision != x.decision || a.BudgetRisk != x.risk || a.Affordable != x.affordable ||
			a.BudgetImpact.(Number).String() != x.pctBudget {
			t.Errorf("cost %s: %s %s %v impact %v, want %s %s %v %s", x.cost, a.RecommendedDecision, a.BudgetRisk,
				a.Affordable, a.BudgetImpact, x.decision, x.risk, x.affordable, x.pctBudget)
		}
	}
	adv := buildAffordability(c, ASBAJob{Cost: dec("210")}, DialectAdvisor)
	bi, ok := adv.BudgetImpact.(ASBABudgetImpact)
	if !ok || bi.PercentOfRemaining.String() != "10" || bi.BudgetAfterCost.String() != "1890" || bi.OpportunityCost.String() != "7" {
		t.Errorf("advisor budget impact %+v", adv.BudgetImpact)
	}

	// Burst decision: a deadline the local run misses makes an
	// affordable job AWS; an unaffordable one with a deadline, OPTIMIZE;
	// EITHER in the publication phase, AWS.
	dl := day("2025-03-31").Add(2 * time.Hour)
	if d := buildBurstDecision(c, ASBAJob{Cost: dec("100"), LocalMinutes: 600, Deadline: &dl}); d.RecommendedAction != "AWS" ||
		d.UrgencyLevel != "CRITICAL" {
		t.Errorf("deadline: %s %s", d.RecommendedAction, d.UrgencyLevel)
	}
	if d := buildBurstDecision(c, ASBAJob{Cost: dec("5000"), LocalMinutes: 600, Deadline: &dl}); d.RecommendedAction != "OPTIMIZE" {
		t.Errorf("unaffordable with deadline: %s", d.RecommendedAction)
	}
	if d := buildBurstDecision(c, ASBAJob{Cost: dec("100"), ResearchPhase: "PUBLICATION"}); d.RecommendedAction != "AWS" ||
		!strings.Contains(d.Message, "publication") {
		t.Errorf("publication: %s %s", d.RecommendedAction, d.Message)
	}
	if d := buildBurstDecision(c, ASBAJob{Cost: dec("100"), ResearchPhase: "EXPLORATION"}); d.RecommendedAction != "LOCAL" {
		t.Errorf("exploration: %s", d.RecommendedAction)
	}
}

func (s ASBABudgetStatus) burnScore() int { return int(s.BudgetHealthScore.IntPart()) }
