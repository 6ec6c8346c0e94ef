package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
	"github.com/spf13/pflag"
)

func init() {
	register(command{name: "grant create", summary: "record a grant and generate its budget periods", run: runGrantCreate})
	register(command{name: "grant list", summary: "list grants", run: runGrantList})
	register(command{name: "grant show", summary: "show a grant, its accounts and periods", run: runGrantShow})
	register(command{name: "grant periods", summary: "list a grant's budget periods with what is held, spent and left", run: runGrantPeriods})
	register(command{name: "grant link", summary: "make an account (and its sub-accounts) draw on a grant", run: runGrantLink})
	register(command{name: "grant update", summary: "change a grant's details, status, carry-forward or indirect rate", run: runGrantUpdate})
	register(command{name: "grant budget", summary: "set the budget of one open period", run: runGrantBudget})
	register(command{name: "grant ledger", summary: "list a grant's ledger (holds, charges, carry-forward, lapses)", run: runGrantLedger})
}

// grantDate parses a calendar date flag.
func grantDate(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, usagef("--%s is required (YYYY-MM-DD)", flag)
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return t, usagef("--%s: %q is not a date (YYYY-MM-DD)", flag, s)
	}
	return t, nil
}

// rateFlag parses an indirect rate: a plain decimal fraction (0.30).
func rateFlag(s string) (decimal.Decimal, error) {
	d, err := budget.ParseNonNegative(s)
	if err != nil {
		return d, usagef("--indirect: %v (write 30%% as 0.30)", err)
	}
	return d, nil
}

// grantArgs reads the positional arguments of a grant command.
func grantArgs(fs *pflag.FlagSet, want int, usage string) ([]string, error) {
	if fs.NArg() != want {
		return nil, usagef("usage: asbb-admin %s", usage)
	}
	return fs.Args(), nil
}

func runGrantCreate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant create")
	var spec budget.GrantSpec
	fs.StringVar(&spec.Number, "number", "", "grant (award) number (required)")
	fs.StringVar(&spec.Agency, "agency", "", "funding agency (required)")
	fs.StringVar(&spec.Program, "program", "", "program")
	fs.StringVar(&spec.PI, "pi", "", "principal investigator (required)")
	fs.StringArrayVar(&spec.CoPIs, "co-pi", nil, "co-investigator (repeat for several)")
	fs.StringVar(&spec.Institution, "institution", "", "institution")
	fs.StringVar(&spec.Department, "department", "", "department")
	amount := fs.String("amount", "", "total award (required)")
	start := fs.String("start", "", "first day of the grant (YYYY-MM-DD)")
	end := fs.String("end", "", "last day of the grant (YYYY-MM-DD, inclusive)")
	fs.IntVar(&spec.PeriodMonths, "periods", 12, "budget-period length in months (12 = annual periods)")
	indirect := fs.String("indirect", "0", "indirect (F&A) cost rate, 0 to 1.5 (0.30 = 30%)")
	fs.StringVar(&spec.FederalID, "federal-id", "", "federal assistance listing number, e.g. 47.070")
	fs.StringVar(&spec.Status, "status", "active", "pending, active, suspended or closed")
	carry := fs.Bool("carry-forward", true, "carry a closed period's unspent budget into the next (false: it lapses)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if spec.Amount, err = amountFlag("amount", *amount); err != nil {
		return err
	}
	if spec.Start, err = grantDate("start", *start); err != nil {
		return err
	}
	if spec.End, err = grantDate("end", *end); err != nil {
		return err
	}
	if spec.IndirectRate, err = rateFlag(*indirect); err != nil {
		return err
	}
	spec.CarryForward, spec.Actor = carry, actor()
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	g, err := l.CreateGrant(ctx, spec)
	if err != nil {
		return err
	}
	ps, err := l.GrantPeriods(ctx, g.Number)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(grantView{g, ps})
	}
	fmt.Fprintf(e.stdout, "created grant %s (%s): %s from %s to %s in %d budget periods, indirect rate %s\n",
		g.Number, g.Agency, e.money(g.Amount), g.StartDate, g.EndDate, g.Periods, g.IndirectRate)
	return printPeriods(e, ps)
}

// grantView is a grant with its periods, for JSON.
type grantView struct {
	budget.Grant
	BudgetPeriods []budget.GrantPeriod `json:"periods"`
}

func runGrantList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant list")
	active := fs.Bool("active", false, "only active grants whose dates include today")
	status := fs.String("status", "", "only grants with this status")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	f := budget.GrantFilter{Status: *status}
	if *active {
		now := time.Now()
		f.ActiveOn = &now
	}
	gs, err := l.ListGrants(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		if gs == nil {
			gs = []budget.Grant{}
		}
		return e.printJSON(gs)
	}
	tw := e.table("GRANT", "AGENCY", "PI", "AMOUNT", "START", "END", "PERIODS", "INDIRECT", "SPENT", "STATUS", "ACCOUNTS")
	for _, g := range gs {
		row(tw, g.Number, g.Agency, g.PI, e.money(g.Amount), g.StartDate, g.EndDate, g.Periods, g.IndirectRate,
			e.money(g.Spent.Round(2)), g.Status, strings.Join(g.Accounts, ","))
	}
	return tw.Flush()
}

func runGrantShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant show")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 1, "grant show <grant-number>")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	g, err := l.GetGrant(ctx, a[0])
	if err != nil {
		return err
	}
	ps, err := l.GrantPeriods(ctx, g.Number)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(grantView{g, ps})
	}
	w := e.stdout
	fmt.Fprintf(w, "grant %s: %s\n", g.Number, g.Status)
	fmt.Fprintf(w, "  agency       %s\n", g.Agency)
	fmt.Fprintf(w, "  program      %s\n", g.Program)
	fmt.Fprintf(w, "  PI           %s\n", g.PI)
	if len(g.CoPIs) > 0 {
		fmt.Fprintf(w, "  co-PIs       %s\n", strings.Join(g.CoPIs, "; "))
	}
	fmt.Fprintf(w, "  institution  %s, %s\n", g.Institution, g.Department)
	fmt.Fprintf(w, "  award        %s from %s to %s (%s)\n", e.money(g.Amount), g.StartDate, g.EndDate, g.Timezone)
	fmt.Fprintf(w, "  periods      %d of %d months, carry-forward %v\n", g.Periods, g.PeriodMonths, g.CarryForward)
	fmt.Fprintf(w, "  indirect     %s\n", g.IndirectRate)
	if g.FederalID != "" {
		fmt.Fprintf(w, "  federal id   %s\n", g.FederalID)
	}
	fmt.Fprintf(w, "  accounts     %s\n", strings.Join(g.Accounts, ", "))
	fmt.Fprintf(w, "  spent        %s (with indirect), held %s\n", e.money(g.Spent.Round(2)), e.money(g.Held.Round(2)))
	return printPeriods(e, ps)
}

func printPeriods(e *env, ps []budget.GrantPeriod) error {
	tw := e.table("PERIOD", "START", "END", "BUDGET", "CARRIED", "HELD", "SPENT", "REMAINING", "STATUS")
	for _, p := range ps {
		row(tw, p.Period, p.StartDate, p.EndDate, e.money(p.Budget), e.money(p.Adjusted.Round(2)), e.money(p.Held.Round(2)),
			e.money(p.Spent.Round(2)), e.money(p.Remaining.Round(2)), p.Status)
	}
	return tw.Flush()
}

func runGrantPeriods(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant periods")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 1, "grant periods <grant-number>")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	ps, err := l.GrantPeriods(ctx, a[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(ps)
	}
	return printPeriods(e, ps)
}

func runGrantLink(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant link")
	cluster := fs.String("cluster", "", "cluster of the account (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 2, "grant link <grant-number> <account>")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := l.LinkGrant(ctx, a[0], *cluster, a[1], actor()); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "account %s (and its sub-accounts) now draws on grant %s\n", a[1], a[0])
	return nil
}

func runGrantUpdate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant update")
	str := func(name, usage string) *string { return fs.String(name, "", usage) }
	agency, program, pi := str("agency", "funding agency"), str("program", "program"), str("pi", "principal investigator")
	inst, dept, fed := str("institution", "institution"), str("department", "department"), str("federal-id", "assistance listing")
	status := str("status", "pending, active, suspended or closed")
	indirect := str("indirect", "indirect rate for holds and charges from now on")
	coPIs := fs.StringArray("co-pi", nil, "replace the co-PIs (repeat for several)")
	carry := fs.Bool("carry-forward", true, "carry unspent budget into the next period")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 1, "grant update <grant-number> [flags]")
	if err != nil {
		return err
	}
	var p budget.GrantPatch
	set := func(name string, v *string, dst **string) {
		if fs.Changed(name) {
			*dst = v
		}
	}
	set("agency", agency, &p.Agency)
	set("program", program, &p.Program)
	set("pi", pi, &p.PI)
	set("institution", inst, &p.Institution)
	set("department", dept, &p.Department)
	set("federal-id", fed, &p.FederalID)
	set("status", status, &p.Status)
	if fs.Changed("co-pi") {
		p.CoPIs = coPIs
	}
	if fs.Changed("carry-forward") {
		p.CarryForward = carry
	}
	if fs.Changed("indirect") {
		r, err := rateFlag(*indirect)
		if err != nil {
			return err
		}
		p.IndirectRate = &r
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	g, err := l.UpdateGrant(ctx, a[0], p, actor())
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(g)
	}
	fmt.Fprintf(e.stdout, "updated grant %s\n", g.Number)
	return nil
}

func runGrantBudget(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant budget")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 3, "grant budget <grant-number> <period> <amount>")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(a[1])
	if err != nil || n < 1 {
		return usagef("%q is not a period number", a[1])
	}
	amt, err := budget.ParseNonNegative(a[2])
	if err != nil {
		return usagef("amount: %v", err)
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	p, err := l.SetPeriodBudget(ctx, a[0], n, amt, actor())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: budget %s, remaining %s\n", p.Name(), e.money(p.Budget), e.money(p.Remaining.Round(2)))
	return nil
}

func runGrantLedger(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant ledger")
	period := fs.Int("period", 0, "only this period")
	limit := fs.Int("limit", 1000, "most rows")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	a, err := grantArgs(fs, 1, "grant ledger <grant-number> [--period N]")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	es, err := l.GrantEntries(ctx, a[0], *period, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		if es == nil {
			es = []budget.GrantEntry{}
		}
		return e.printJSON(es)
	}
	tw := e.table("ID", "PERIOD", "TYPE", "ACCOUNT", "DIRECT", "FACTOR", "HELD", "SPENT", "BUDGET", "WHEN", "REASON")
	for _, x := range es {
		acct := "-"
		if x.Account != nil {
			acct = *x.Account
		}
		row(tw, x.ID, x.Period, x.Type, acct, x.Direct, x.Factor, x.DHeld, x.DSpent, x.DBudget,
			x.CreatedAt.Format("2006-01-02 15:04"), x.Reason)
	}
	return tw.Flush()
}
