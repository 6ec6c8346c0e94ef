package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "allocations add", summary: "deposit an allocation into an account", run: runAllocAdd})
	register(command{name: "allocations list", summary: "list allocations (deposits)", run: runAllocList})
	register(command{name: "transactions list", summary: "list ledger entries", run: runTxList})
	register(command{name: "holds list", summary: "list holds", run: runHoldsList})
	register(command{name: "holds release", summary: "release what a hold still holds", run: runHoldRelease})
	register(command{name: "refund", summary: "refund part or all of a charge", run: runRefund})
	register(command{name: "verify", summary: "prove every account's totals equal its ledger sums", run: runVerify})
}

func runAllocAdd(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations add")
	account := fs.String("account", "", "account (required)")
	amount := fs.String("amount", "", "amount (required)")
	start := fs.String("start", "", "date the money becomes available (default now)")
	expires := fs.String("expires", "", "date unspent money is forfeited (inclusive)")
	note := fs.String("note", "", "note recorded with the allocation")
	key := fs.String("idempotency-key", "", "makes a retried deposit happen once")
	currency := fs.String("currency", "", "currency of the amount (must match the account)")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *account == "" {
		return usagef("--account is required")
	}
	amt, err := amountFlag("amount", *amount)
	if err != nil {
		return err
	}
	d := budget.Deposit{Amount: amt, Note: *note, Actor: actor(), IdempotencyKey: *key, Currency: *currency}
	if *start != "" {
		if d.StartsAt, err = e.parseDate("start", *start); err != nil {
			return err
		}
	}
	if *expires != "" {
		t, err := e.parseEndDate("expires", *expires)
		if err != nil {
			return err
		}
		d.ExpiresAt = &t
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	al, err := l.AddDeposit(ctx, *cluster, *account, d)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(al)
	}
	verb := "deposited"
	if al.Duplicate {
		verb = "already deposited (same idempotency key)"
	}
	fmt.Fprintf(e.stdout, "%s %s into %s (allocation %d, %s)\n", verb, e.money(al.Amount), al.Account, al.ID, al.Status)
	return nil
}

func runAllocList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations list")
	account := fs.String("account", "", "only this account")
	limit := fs.Int("limit", 100, "most rows")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	als, err := l.ListAllocations(ctx, *account, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		if als == nil {
			als = []budget.Allocation{}
		}
		return e.printJSON(als)
	}
	tw := e.table("ID", "ACCOUNT", "AMOUNT", "STARTS", "EXPIRES", "STATUS", "FORFEITED", "NOTE")
	for _, a := range als {
		row(tw, a.ID, a.Account, e.money(a.Amount), a.StartsAt.Format("2006-01-02"), fmtDate(a.ExpiresAt), a.Status,
			e.money(a.Forfeited), a.Note)
	}
	return tw.Flush()
}

func runTxList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("transactions list")
	var f budget.EntryFilter
	fs.StringVar(&f.Account, "account", "", "only this account")
	fs.StringVar(&f.JobID, "job", "", "only this Slurm job id")
	fs.StringVar(&f.Type, "type", "", "only this type (deposit, hold, charge, hold_release, ...)")
	since := fs.String("since", "", "entries on or after this date")
	until := fs.String("until", "", "entries up to this date (inclusive)")
	fs.IntVar(&f.Limit, "limit", 50, "most rows")
	fs.Int64Var(&f.BeforeID, "before", 0, "entries with ids below this (paging)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *since != "" {
		t, err := e.parseDate("since", *since)
		if err != nil {
			return err
		}
		f.From = &t
	}
	if *until != "" {
		t, err := e.parseEndDate("until", *until)
		if err != nil {
			return err
		}
		f.To = &t
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	es, err := l.ListEntries(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		if es == nil {
			es = []budget.Entry{}
		}
		return e.printJSON(es)
	}
	printEntries(e, es)
	return nil
}

func printEntries(e *env, es []budget.Entry) {
	tw := e.table("ID", "TIME", "ACCOUNT", "TYPE", "AMOUNT", "AVAILABLE AFTER", "JOB", "ACTOR", "REASON")
	for _, x := range es {
		job := "-"
		if x.JobID != nil {
			job = *x.JobID
			if x.ArrayTaskID != nil {
				job += "_" + strconv.Itoa(*x.ArrayTaskID)
			}
		} else if x.HoldID != nil {
			job = "hold " + strconv.FormatInt(*x.HoldID, 10)
		}
		acct := x.Account
		if x.Origin != nil {
			acct += " (via " + *x.Origin + ")"
		}
		avail := x.DepositedAfter.Sub(x.SpentAfter).Sub(x.HeldAfter)
		reason := x.Reason
		if len(reason) > 60 {
			reason = reason[:57] + "..."
		}
		row(tw, x.ID, x.CreatedAt.Local().Format("2006-01-02 15:04:05"), acct, x.Type, e.money(x.Amount), e.money(avail),
			job, x.Actor, reason)
	}
	tw.Flush()
}

func runHoldsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("holds list")
	var f budget.HoldFilter
	fs.StringVar(&f.Account, "account", "", "only this account")
	fs.StringVar(&f.Status, "status", "active", "active, closed, or '' for all")
	fs.IntVar(&f.Limit, "limit", 100, "most rows")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	hs, err := l.ListHolds(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		if hs == nil {
			hs = []budget.Hold{}
		}
		return e.printJSON(hs)
	}
	tw := e.table("HOLD", "ACCOUNT", "PARTITION", "USER", "JOB", "TASKS", "AMOUNT", "REMAINING", "CHARGED", "STATUS", "CREATED")
	for _, h := range hs {
		job := "-"
		if h.JobID != nil {
			job = *h.JobID
		}
		row(tw, h.ID, h.Account, h.Partition, h.User, job, fmt.Sprintf("%d/%d", h.SettledTasks, h.Tasks), e.money(h.Amount),
			e.money(h.Remaining), e.money(h.Charged), h.Status, h.CreatedAt.Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func runHoldRelease(ctx context.Context, e *env, args []string) error {
	fs := e.flags("holds release")
	reason := fs.String("reason", "", "why (recorded in the ledger; required)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	idS, err := oneArg(fs.Args(), "hold id")
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(idS, 10, 64)
	if err != nil || id <= 0 {
		return usagef("hold id %q is not a number", idS)
	}
	if *reason == "" {
		return usagef("--reason is required")
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	amt, err := l.ReleaseHold(ctx, id, actor(), *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "released %s of hold %d\n", e.money(amt), id)
	return nil
}

func runRefund(ctx context.Context, e *env, args []string) error {
	fs := e.flags("refund")
	charge := fs.Int64("charge", 0, "charge id (from transactions list --type charge --json)")
	amount := fs.String("amount", "", "amount to refund (at most what the charge still counts)")
	reason := fs.String("reason", "", "why (required)")
	key := fs.String("idempotency-key", "", "makes a retried refund happen once")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *charge <= 0 || *reason == "" {
		return usagef("--charge and --reason are required")
	}
	amt, err := amountFlag("amount", *amount)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := l.Refund(ctx, *charge, amt, actor(), *reason, *key); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "refunded %s of charge %d\n", e.money(amt), *charge)
	return nil
}

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := e.flags("verify")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	rep, err := l.Verify(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if rep.Problems == nil {
			rep.Problems = []budget.VerifyProblem{}
		}
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else {
		for _, p := range rep.Problems {
			fmt.Fprintf(e.stdout, "PROBLEM %s: %s\n", p.Account, p.Problem)
		}
		if rep.OK() {
			fmt.Fprintf(e.stdout, "ledger OK: %d accounts, %d entries, %d holds; every total equals its ledger sum\n",
				rep.Accounts, rep.Entries, rep.Holds)
		}
	}
	if !rep.OK() {
		return fmt.Errorf("ledger verification found %d problems", len(rep.Problems))
	}
	return nil
}
