package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
	"github.com/spf13/pflag"
)

func init() {
	register(command{name: "account create", summary: "create an account mapped to a Slurm account", run: runAccountCreate})
	register(command{name: "account list", summary: "list accounts with their balances", run: runAccountList})
	register(command{name: "account show", summary: "show one account, its limits and recent entries", run: runAccountShow})
	register(command{name: "account update", summary: "change an account's name, dates or limits", run: runAccountUpdate})
	register(command{name: "account close", summary: "close an account (no new holds; running jobs still settle)", run: runAccountClose})
	register(command{name: "account delete", summary: "delete an account that has no history", run: runAccountDelete})
	register(command{name: "account limit", summary: "set or remove a per-partition limit", run: runAccountLimit})
	register(command{name: "account withdraw", summary: "take unspent, unheld funds out of an account", run: runAccountWithdraw})
}

// accountCreateHook lets another file extend "account create" (allocation
// schedules add --incremental and friends) without editing this one.
type accountCreateHook struct {
	// flags adds the hook's flags.
	flags func(fs *pflag.FlagSet)
	// validate checks the hook's flags before anything is written.
	validate func(e *env) error
	// after runs once the account exists.
	after func(ctx context.Context, e *env, l *budget.Ledger, a budget.Account) error
}

var accountCreateHooks []accountCreateHook

// amountFlag parses a money flag, naming the flag in the error.
func amountFlag(name, v string) (decimal.Decimal, error) {
	d, err := budget.ParseAmount(v)
	if err != nil {
		return d, usagef("--%s: %v", name, err)
	}
	return d, nil
}

func optAmount(name, v string) (*decimal.Decimal, error) {
	if v == "" {
		return nil, nil
	}
	d, err := amountFlag(name, v)
	return &d, err
}

func runAccountCreate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account create")
	account := fs.String("account", "", "Slurm account name (required)")
	name := fs.String("name", "", "display name (default: the account name)")
	desc := fs.String("description", "", "description")
	budgetS := fs.String("budget", "", "initial budget, deposited now (or at --start)")
	start := fs.String("start", "", "first day the account may run jobs (YYYY-MM-DD)")
	end := fs.String("end", "", "last day the account may run jobs (YYYY-MM-DD, inclusive)")
	parent := fs.String("parent", "", "parent account: its funds cap this account's spending too")
	credit := fs.String("credit-limit", "", "overdraft allowed below zero (default 0)")
	maxJob := fs.String("max-job-cost", "", "largest hold one job (or array task) may take")
	currency := fs.String("currency", "", "ISO 4217 currency (default pricing.currency)")
	cluster := fs.String("cluster", "", "cluster that owns the account (default cluster.name)")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	for _, h := range accountCreateHooks {
		h.flags(fs)
	}
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *account == "" {
		return usagef("--account is required")
	}
	spec := budget.AccountSpec{Cluster: *cluster, SlurmAccount: *account, Name: *name, Description: *desc,
		Currency: *currency, Parent: *parent, Actor: actor()}
	var err error
	if *budgetS != "" {
		if spec.Budget, err = amountFlag("budget", *budgetS); err != nil {
			return err
		}
	}
	for _, h := range accountCreateHooks {
		if err := h.validate(e); err != nil {
			return err
		}
	}
	if *start != "" {
		t, err := e.parseDate("start", *start)
		if err != nil {
			return err
		}
		spec.StartsAt = &t
	}
	if *end != "" {
		t, err := e.parseEndDate("end", *end)
		if err != nil {
			return err
		}
		spec.EndsAt = &t
	}
	if *credit != "" {
		d, err := budget.ParseNonNegative(*credit)
		if err != nil {
			return usagef("--credit-limit: %v", err)
		}
		spec.CreditLimit = d
	}
	if spec.MaxJobCost, err = optAmount("max-job-cost", *maxJob); err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	a, err := l.CreateAccount(ctx, spec)
	if err != nil {
		return err
	}
	for _, h := range accountCreateHooks {
		if err := h.after(ctx, e, l, a); err != nil {
			return fmt.Errorf("account %s was created, but: %w", a.SlurmAccount, err)
		}
	}
	if a, err = l.GetAccount(ctx, a.Cluster, a.SlurmAccount); err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(a)
	}
	fmt.Fprintf(e.stdout, "created account %s (%s): deposited %s, available %s\n", a.SlurmAccount, a.Name,
		e.money(a.Deposited), e.money(a.Available))
	return nil
}

func runAccountList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account list")
	status := fs.String("status", "", "only accounts with this status (active, suspended, closed)")
	parent := fs.String("parent", "", "only children of this account")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	as, err := l.ListAccounts(ctx, budget.AccountFilter{Status: *status, Parent: *parent})
	if err != nil {
		return err
	}
	if *asJSON {
		if as == nil {
			as = []budget.Account{}
		}
		return e.printJSON(as)
	}
	tw := e.table("ACCOUNT", "NAME", "STATUS", "PARENT", "DEPOSITED", "SPENT", "HELD", "AVAILABLE", "ENDS")
	for _, a := range as {
		p := a.Parent
		if p == "" {
			p = "-"
		}
		row(tw, a.SlurmAccount, a.Name, a.Status, p, e.money(a.Deposited), e.money(a.Spent), e.money(a.Held),
			e.money(a.Available), fmtEnd(a))
	}
	return tw.Flush()
}

func fmtEnd(a budget.Account) string {
	if a.EndsAt == nil {
		return "-"
	}
	t := a.EndsAt.AddDate(0, 0, -1)
	return fmtDate(&t)
}

func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return "", usagef("expected one %s", what)
	}
	return args[0], nil
}

func runAccountShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account show")
	asJSON := fs.Bool("json", false, "print JSON")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	name, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	a, err := l.GetAccount(ctx, *cluster, name)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(a)
	}
	w := e.stdout
	fmt.Fprintf(w, "Account:      %s (%s)\n", a.SlurmAccount, a.Name)
	if a.Description != "" {
		fmt.Fprintf(w, "Description:  %s\n", a.Description)
	}
	fmt.Fprintf(w, "Status:       %s   Cluster: %s   Currency: %s\n", a.Status, a.Cluster, a.Currency)
	if a.Parent != "" {
		fmt.Fprintf(w, "Parent:       %s\n", a.Parent)
	}
	fmt.Fprintf(w, "Dates:        %s to %s\n", fmtDate(a.StartsAt), fmtEnd(a))
	fmt.Fprintf(w, "Deposited:    %s\n", e.money(a.Deposited))
	fmt.Fprintf(w, "Spent:        %s\n", e.money(a.Spent))
	fmt.Fprintf(w, "Held:         %s\n", e.money(a.Held))
	if a.CreditLimit.IsPositive() {
		fmt.Fprintf(w, "Credit limit: %s\n", e.money(a.CreditLimit))
	}
	fmt.Fprintf(w, "Available:    %s\n", e.money(a.Available))
	if a.MaxJobCost != nil {
		fmt.Fprintf(w, "Max per job:  %s\n", e.money(*a.MaxJobCost))
	}
	if len(a.Limits) > 0 {
		fmt.Fprintln(w, "\nPartition limits:")
		tw := e.table("  PARTITION", "MAX/JOB", "MAX/MONTH", "USED THIS MONTH")
		for _, p := range a.Limits {
			row(tw, "  "+p.Partition, optMoney(e, p.MaxJobCost), optMoney(e, p.MaxPerMonth), e.money(p.UsedMonth))
		}
		tw.Flush()
	}
	entries, err := l.ListEntries(ctx, budget.EntryFilter{Account: a.SlurmAccount, Limit: 10})
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		fmt.Fprintln(w, "\nRecent ledger entries:")
		printEntries(e, entries)
	}
	return nil
}

func optMoney(e *env, d *decimal.Decimal) string {
	if d == nil {
		return "unlimited"
	}
	return e.money(*d)
}

func runAccountUpdate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account update")
	name := fs.String("name", "", "new display name")
	desc := fs.String("description", "", "new description")
	start := fs.String("start", "", "new start date")
	end := fs.String("end", "", "new end date (inclusive)")
	clearEnd := fs.Bool("no-end", false, "remove the end date")
	credit := fs.String("credit-limit", "", "new credit limit")
	maxJob := fs.String("max-job-cost", "", "new per-job maximum")
	clearMax := fs.Bool("no-max-job-cost", false, "remove the per-job maximum")
	status := fs.String("status", "", "active or suspended")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	acct, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	var p budget.AccountPatch
	set := func(f string) bool { return fs.Changed(f) }
	if set("name") {
		p.Name = name
	}
	if set("description") {
		p.Description = desc
	}
	if set("status") {
		p.Status = status
	}
	if set("start") {
		t, err := e.parseDate("start", *start)
		if err != nil {
			return err
		}
		p.StartsAt = &t
	}
	if set("end") {
		t, err := e.parseEndDate("end", *end)
		if err != nil {
			return err
		}
		p.EndsAt = &t
	}
	p.ClearEnd, p.ClearMaxJob = *clearEnd, *clearMax
	if set("credit-limit") {
		d, err := budget.ParseNonNegative(*credit)
		if err != nil {
			return usagef("--credit-limit: %v", err)
		}
		p.CreditLimit = &d
	}
	if set("max-job-cost") {
		if p.MaxJobCost, err = optAmount("max-job-cost", *maxJob); err != nil {
			return err
		}
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	a, err := l.UpdateAccount(ctx, *cluster, acct, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "updated account %s: available %s\n", a.SlurmAccount, e.money(a.Available))
	return nil
}

func runAccountClose(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account close")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	name, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	a, err := l.CloseAccount(ctx, *cluster, name, actor())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "closed account %s; %s still held for running jobs\n", a.SlurmAccount, e.money(a.Held))
	return nil
}

func runAccountDelete(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account delete")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	name, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := l.DeleteAccount(ctx, *cluster, name); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted account %s\n", name)
	return nil
}

func runAccountLimit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account limit")
	partition := fs.String("partition", "", "partition (required)")
	maxJob := fs.String("max-job-cost", "", "largest hold one job may take on the partition")
	maxMonth := fs.String("max-per-month", "", "most the account may commit on the partition per calendar month")
	remove := fs.Bool("remove", false, "remove the partition's limits")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	name, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	if *partition == "" {
		return usagef("--partition is required")
	}
	if !*remove && *maxJob == "" && *maxMonth == "" {
		return usagef("give --max-job-cost and/or --max-per-month, or --remove")
	}
	var mj, mm *decimal.Decimal
	if !*remove {
		if mj, err = optAmount("max-job-cost", *maxJob); err != nil {
			return err
		}
		if *maxMonth != "" {
			d, err := budget.ParseNonNegative(*maxMonth)
			if err != nil {
				return usagef("--max-per-month: %v", err)
			}
			mm = &d
		}
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := l.SetPartitionLimit(ctx, *cluster, name, *partition, mj, mm); err != nil {
		return err
	}
	if *remove {
		fmt.Fprintf(e.stdout, "removed the limits of %s on %s\n", name, *partition)
	} else {
		fmt.Fprintf(e.stdout, "set the limits of %s on %s: per job %s, per month %s\n", name, *partition, optMoney(e, mj), optMoney(e, mm))
	}
	return nil
}

func runAccountWithdraw(ctx context.Context, e *env, args []string) error {
	fs := e.flags("account withdraw")
	amount := fs.String("amount", "", "amount to withdraw (required)")
	reason := fs.String("reason", "", "why (recorded in the ledger; required)")
	key := fs.String("idempotency-key", "", "makes a retried withdrawal happen once")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	name, err := oneArg(fs.Args(), "account name")
	if err != nil {
		return err
	}
	if *reason == "" {
		return usagef("--reason is required")
	}
	amt, err := amountFlag("amount", *amount)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := l.Withdraw(ctx, *cluster, name, amt, actor(), *reason, *key); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "withdrew %s from %s\n", e.money(amt), name)
	return nil
}
