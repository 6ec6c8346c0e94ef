package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "burn-rate", summary: "daily spend against the expected rate, health score, projection", run: runBurnRate})
}

func runBurnRate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("burn-rate")
	period := fs.String("period", "", "window: 7d, 30d, 90d, 6m, 1y (default alerts.window, 30d)")
	from := fs.String("from", "", "window start (date), instead of --period")
	to := fs.String("to", "", "window end (date, inclusive; default now)")
	projection := fs.Bool("projection", false, "show the projection (exhaustion date, end-of-period balance)")
	alertsOnly := fs.Bool("alerts-only", false, "show only the alert conditions")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON (always with series and projection)")
	fs.SetInterspersed(true)
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin burn-rate <account|grant> [--period=90d] [--projection] [--alerts-only] [--json]")
	}
	target := fs.Arg(0)
	var opts budget.BurnOptions
	opts.Series = true
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	cfg := l.Config()
	now := time.Now()
	switch {
	case *from != "" || *to != "":
		if *period != "" {
			return usagef("give --period or --from/--to, not both")
		}
		if *from == "" {
			return usagef("--to needs --from")
		}
		f, err := e.parseDate("from", *from)
		if err != nil {
			return err
		}
		t := now
		if *to != "" {
			if t, err = e.parseEndDate("to", *to); err != nil {
				return err
			}
		}
		if opts.Window, err = budget.WindowBetween(f, t); err != nil {
			return usagef("%v", err)
		}
	case *period != "":
		if opts.Window, err = budget.ParseWindow(*period, now, cfg.Location()); err != nil {
			return usagef("--period: %v", err)
		}
	}
	b, err := l.BurnRateOf(ctx, *cluster, target, opts)
	if err != nil {
		return err
	}
	if *alertsOnly {
		conds, err := l.AlertConditions(ctx, b)
		if err != nil {
			return err
		}
		if *asJSON {
			if conds == nil {
				conds = []budget.Condition{}
			}
			return e.printJSON(conds)
		}
		printConditions(e.stdout, b, conds)
		return nil
	}
	if *asJSON {
		return e.printJSON(b)
	}
	printBurnRate(e.stdout, b, *projection)
	return nil
}

func printConditions(w io.Writer, b budget.BurnRate, conds []budget.Condition) {
	if len(conds) == 0 {
		fmt.Fprintf(w, "No alerts for %s %s.\n", b.Kind, b.Target)
		return
	}
	for _, c := range conds {
		mark := "ℹ️  INFO"
		switch c.Severity {
		case budget.SeverityCritical:
			mark = "🚨 CRITICAL"
		case budget.SeverityWarning:
			mark = "⚠️  WARNING"
		}
		fmt.Fprintf(w, "%s: %s\n", mark, c.Message)
	}
}

// printBurnRate writes the human report, in the original README's words:
//
//	Daily Spend Rate: $145.67 (Expected: $125.00)
//	Variance: +16.5% (ON_TRACK)
//	Health Score: 78% (CONCERN)
//	Days Remaining: 847
func printBurnRate(w io.Writer, b budget.BurnRate, projection bool) {
	m := func(d decimal.Decimal) string { return budget.FormatMoney(d.Round(2), b.Currency) }
	loc := b.Window.From.Location()
	fmt.Fprintf(w, "Burn rate of %s %s, %s (%s to %s, days: %s)\n", b.Kind, b.Target, b.Window.Period,
		b.Window.From.In(loc).Format("2006-01-02 15:04"), b.Window.To.In(loc).Format("2006-01-02 15:04"), b.Window.Days.Round(1))
	exp := "no expected rate: no end date, grant period or schedule"
	if b.ExpectedDailyRate != nil {
		exp = "Expected: " + m(*b.ExpectedDailyRate) + ", from " + strings.ReplaceAll(b.ExpectedSource, "_", " ")
	}
	fmt.Fprintf(w, "Daily Spend Rate: %s (%s)\n", m(b.DailyRate), exp)
	if b.VariancePercent != nil {
		sign := ""
		if b.VariancePercent.IsPositive() {
			sign = "+"
		}
		fmt.Fprintf(w, "Variance: %s%s%% (%s)\n", sign, b.VariancePercent.StringFixed(1), b.BurnStatus)
	} else {
		fmt.Fprintf(w, "Variance: - (%s)\n", b.BurnStatus)
	}
	fmt.Fprintf(w, "Health Score: %d%% (%s)  [runway %s + pace %s + commitment %s]\n", b.HealthScore, b.HealthStatus,
		b.Health.Runway.StringFixed(1), b.Health.Pace.StringFixed(1), b.Health.Commitment.StringFixed(1))
	if b.DaysRemaining != nil {
		fmt.Fprintf(w, "Days Remaining: %d (period ends %s)\n", *b.DaysRemaining, b.PeriodEnd.In(loc).Format("2006-01-02"))
	}
	used := ""
	if b.PercentUsed != nil {
		used = fmt.Sprintf(", %s%% of %s used or held", b.PercentUsed.StringFixed(1), m(b.Budget))
	}
	fmt.Fprintf(w, "Spent in window: %s; remaining %s after %s held%s\n", m(b.SpentInWindow), m(b.Funds.Remaining),
		m(b.Funds.Held), used)
	if len(b.Series) > 0 {
		vals := make([]decimal.Decimal, len(b.Series))
		peak, peakDay := decimal.Zero, ""
		for i, p := range b.Series {
			vals[i] = p.Spent
			if p.Spent.GreaterThan(peak) {
				peak, peakDay = p.Spent, p.Date
			}
		}
		line := sparkline(vals, 60)
		if peakDay != "" {
			fmt.Fprintf(w, "Daily spend: %s  (peak %s on %s)\n", line, m(peak), peakDay)
		} else {
			fmt.Fprintf(w, "Daily spend: %s  (nothing spent)\n", line)
		}
	}
	if !projection {
		return
	}
	p := b.Projection
	fmt.Fprintf(w, "Projection at %s/day (active holds of %s counted as spent):\n", m(p.DailyRate), m(p.Committed))
	switch {
	case p.ExhaustionDate != nil:
		fmt.Fprintf(w, "  Exhaustion date: %s (%s days)\n", p.ExhaustionDate.In(loc).Format("2006-01-02"), p.DaysToExhaustion.StringFixed(1))
	case p.DailyRate.IsPositive():
		fmt.Fprintf(w, "  Exhaustion date: beyond ten years\n")
	default:
		fmt.Fprintf(w, "  Exhaustion date: never at this rate (nothing spent)\n")
	}
	if p.EndBalance != nil {
		fmt.Fprintf(w, "  Projected spend to %s: %s; end-of-period balance %s", b.PeriodEnd.In(loc).Format("2006-01-02"),
			m(*p.ProjectedSpend), m(*p.EndBalance))
		if p.Overrun.IsPositive() {
			fmt.Fprintf(w, " (overrun %s)", m(*p.Overrun))
		}
		fmt.Fprintln(w)
		if p.ExhaustsBeforeEnd {
			fmt.Fprintf(w, "  Risk: funds run out before the period ends\n")
		}
	}
}

var sparkLevels = []rune("▁▂▃▄▅▆▇█")

// sparkline draws values (daily spend) as block characters, at most width
// wide: longer series are summed into buckets of consecutive days. Zero and
// negative days (refunds) draw as the lowest block.
func sparkline(vals []decimal.Decimal, width int) string {
	if len(vals) == 0 {
		return ""
	}
	if width < 1 {
		width = 1
	}
	if len(vals) > width {
		per := (len(vals) + width - 1) / width
		var b []decimal.Decimal
		for i := 0; i < len(vals); i += per {
			s := decimal.Zero
			for _, v := range vals[i:min(i+per, len(vals))] {
				s = s.Add(v)
			}
			b = append(b, s)
		}
		vals = b
	}
	peak := decimal.Zero
	for _, v := range vals {
		peak = decimal.Max(peak, v)
	}
	var sb strings.Builder
	top := decimal.NewFromInt(int64(len(sparkLevels) - 1))
	for _, v := range vals {
		i := 0
		if peak.IsPositive() && v.IsPositive() {
			i = int(v.Mul(top).DivRound(peak, 0).IntPart())
		}
		sb.WriteRune(sparkLevels[i])
	}
	return sb.String()
}
