package main

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "forecast", summary: "project an account's (or grant's) balance week by week", run: runForecast})
}

// ForecastWeek is one row of the forecast.
type ForecastWeek struct {
	Date      string          `json:"date"`
	Spent     decimal.Decimal `json:"projected_spent"` // from now to this date
	Remaining decimal.Decimal `json:"projected_remaining"`
}

func runForecast(ctx context.Context, e *env, args []string) error {
	fs := e.flags("forecast")
	period := fs.String("period", "", "history the rate is taken from (default alerts.window, 30d)")
	weeks := fs.Int("weeks", 0, "weeks to project (default: to the period end, at most 52; else 12)")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin forecast <account|grant> [--period 30d] [--weeks N] [--json]")
	}
	if *weeks < 0 || *weeks > 520 {
		return usagef("--weeks must be 1-520")
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	var opts budget.BurnOptions
	if *period != "" {
		if opts.Window, err = budget.ParseWindow(*period, time.Now(), l.Config().Location()); err != nil {
			return usagef("--period: %v", err)
		}
	}
	b, err := l.BurnRateOf(ctx, *cluster, fs.Arg(0), opts)
	if err != nil {
		return err
	}
	n := *weeks
	if n == 0 {
		n = 12
		if b.DaysRemaining != nil {
			n = min(52, max(1, (*b.DaysRemaining+6)/7))
		}
	}
	var rows []ForecastWeek
	for i := 1; i <= n; i++ {
		d := decimal.NewFromInt(int64(7 * i))
		spend := b.DailyRate.Mul(d).Round(2)
		rows = append(rows, ForecastWeek{Date: b.AsOf.AddDate(0, 0, 7*i).Format("2006-01-02"), Spent: spend,
			Remaining: b.Funds.Remaining.Sub(spend)})
	}
	if *asJSON {
		return e.printJSON(struct {
			BurnRate budget.BurnRate `json:"burn_rate"`
			Weeks    []ForecastWeek  `json:"weeks"`
		}{b, rows})
	}
	printBurnRate(e.stdout, b, true)
	fmt.Fprintln(e.stdout)
	m := func(d decimal.Decimal) string { return budget.FormatMoney(d, b.Currency) }
	tw := e.table("WEEK ENDING", "PROJECTED SPEND", "PROJECTED REMAINING", "")
	for _, r := range rows {
		mark := ""
		if r.Remaining.IsNegative() {
			mark = "exhausted"
		}
		row(tw, r.Date, m(r.Spent), m(r.Remaining), mark)
	}
	return tw.Flush()
}
