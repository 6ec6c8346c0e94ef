package main

import (
	"context"
	"fmt"
	"time"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "usage show", summary: "an account's spending by account, user, partition and month", run: runUsageShow})
	register(command{name: "usage summary", summary: "every account's funds, recent spending and health", run: runUsageSummary})
	register(command{name: "usage statement", summary: "an account's statement: opening balance, entries, closing balance", run: runUsageStatement})
}

// rangeFlags reads --from/--to (default: the last 30 days).
func (e *env) rangeFlags(from, to string) (time.Time, time.Time, error) {
	end := time.Now()
	var err error
	if to != "" {
		if end, err = e.parseEndDate("to", to); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	start := end.AddDate(0, 0, -30)
	if from != "" {
		if start, err = e.parseDate("from", from); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !end.After(start) {
		return time.Time{}, time.Time{}, usagef("--to must be after --from")
	}
	return start, end, nil
}

func runUsageShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags("usage show")
	from := fs.String("from", "", "first day (default 30 days ago)")
	to := fs.String("to", "", "last day, inclusive (default now)")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin usage show <account> [--from DATE] [--to DATE] [--json]")
	}
	start, end, err := e.rangeFlags(*from, *to)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	u, err := l.AccountUsage(ctx, *cluster, fs.Arg(0), start, end)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(u)
	}
	fmt.Fprintf(e.stdout, "Usage of %s (with sub-accounts), %s to %s\n", u.Account, start.Format("2006-01-02"), end.Format("2006-01-02"))
	fmt.Fprintf(e.stdout, "Charges %s, refunds %s, corrections %s: net %s over %d jobs\n\n",
		e.money(u.Charges), e.money(u.Refunds), e.money(u.Corrections), e.money(u.Total), u.Jobs)
	for _, sec := range []struct {
		name string
		rows []budget.UsageRow
	}{{"ACCOUNT", u.ByAccount}, {"USER", u.ByUser}, {"PARTITION", u.ByPartition}, {"MONTH", u.ByMonth}} {
		tw := e.table(sec.name, "SPENT", "JOBS")
		for _, r := range sec.rows {
			key := r.Key
			if key == "" {
				key = "(none)"
			}
			row(tw, key, e.money(r.Total), r.Jobs)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout)
	}
	return nil
}

func runUsageSummary(ctx context.Context, e *env, args []string) error {
	fs := e.flags("usage summary")
	period := fs.String("period", "", "burn-rate window (default alerts.window, 30d)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	hs, err := l.HealthScores(ctx, *period)
	if err != nil {
		return err
	}
	if *asJSON {
		if hs == nil {
			hs = []budget.AccountHealth{}
		}
		return e.printJSON(hs)
	}
	tw := e.table("ACCOUNT", "REMAINING", "USED", "DAILY", "EXPECTED", "VARIANCE", "STATUS", "HEALTH", "RUNS OUT")
	for _, h := range hs {
		used, exp, v, out := "-", "-", "-", "-"
		if h.PercentUsed != nil {
			used = h.PercentUsed.StringFixed(1) + "%"
		}
		if h.Expected != nil {
			exp = budget.FormatMoney(h.Expected.Round(2), h.Currency)
		}
		if h.VariancePercent != nil {
			v = h.VariancePercent.StringFixed(1) + "%"
		}
		if h.ExhaustionDate != nil {
			out = h.ExhaustionDate.Format("2006-01-02")
		}
		row(tw, h.Account, budget.FormatMoney(h.Remaining, h.Currency), used, budget.FormatMoney(h.DailyRate.Round(2), h.Currency),
			exp, v, h.BurnStatus, fmt.Sprintf("%d %s", h.HealthScore, h.HealthStatus), out)
	}
	return tw.Flush()
}

func runUsageStatement(ctx context.Context, e *env, args []string) error {
	fs := e.flags("usage statement")
	from := fs.String("from", "", "first day (default 30 days ago)")
	to := fs.String("to", "", "last day, inclusive (default now)")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin usage statement <account> [--from DATE] [--to DATE] [--json]")
	}
	start, end, err := e.rangeFlags(*from, *to)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	st, err := l.AccountStatement(ctx, *cluster, fs.Arg(0), start, end)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(st)
	}
	m := func(d budget.Balance) string {
		return fmt.Sprintf("%s (deposited %s, spent %s, held %s)", e.money(d.Balance), e.money(d.Deposited), e.money(d.Spent), e.money(d.Held))
	}
	fmt.Fprintf(e.stdout, "Statement of %s, %s to %s\n", st.Account, start.Format(time.RFC3339), end.Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "Opening balance: %s\n\n", m(st.Opening))
	tw := e.table("ID", "TIME", "TYPE", "AMOUNT", "BALANCE", "HELD", "JOB", "USER", "REASON")
	for _, x := range st.Entries {
		job, user := "", ""
		if x.JobID != nil {
			job = *x.JobID
		}
		if x.User != nil {
			user = *x.User
		}
		if x.Origin != nil {
			user += " (" + *x.Origin + ")"
		}
		row(tw, x.ID, x.CreatedAt.Format("2006-01-02 15:04:05"), x.Type, e.money(x.Amount),
			e.money(x.DepositedAfter.Sub(x.SpentAfter).Sub(x.HeldAfter)), e.money(x.HeldAfter), job, user, x.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := st.Totals
	fmt.Fprintf(e.stdout, "\nDeposits %s, withdrawals %s, charges %s, refunds %s, corrections %s, holds %s\n",
		e.money(t.Deposits), e.money(t.Withdrawals), e.money(t.Charges), e.money(t.Refunds), e.money(t.Corrections), e.money(t.HeldChange))
	fmt.Fprintf(e.stdout, "Closing balance: %s\n", m(st.Closing))
	return nil
}
