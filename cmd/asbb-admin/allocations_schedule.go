package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/spf13/pflag"
)

// Scheduled (incremental) allocations: "account create --incremental ..."
// through the account-create hook, and the allocations schedule, schedules,
// show, process, pause and resume commands.

func init() {
	register(command{name: "allocations schedule", summary: "add an incremental allocation schedule to an account", run: runAllocSchedule})
	register(command{name: "allocations schedules", summary: "list allocation schedules and their progress", run: runAllocSchedules})
	register(command{name: "allocations show", summary: "show an allocation schedule and its installments", run: runAllocShow})
	register(command{name: "allocations process", summary: "deposit due installments and close ended grant periods", run: runAllocProcess})
	register(command{name: "allocations pause", summary: "pause an allocation schedule", run: runAllocPause})
	register(command{name: "allocations resume", summary: "resume a paused schedule (due installments are caught up)", run: runAllocResume})
	accountCreateHooks = append(accountCreateHooks, incrementalHook())
}

// scheduleFlags are the flags of an incremental schedule, shared by
// "account create --incremental" and "allocations schedule".
type scheduleFlags struct {
	total, amount, frequency, expire string
}

func (f *scheduleFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.total, "total-budget", "", "total the schedule deposits over its life")
	fs.StringVar(&f.amount, "allocation-amount", "", "amount of each installment (the last takes the remainder)")
	fs.StringVar(&f.frequency, "allocation-frequency", "", "daily, weekly, monthly, quarterly or yearly")
	fs.StringVar(&f.expire, "allocation-expiry", "", "installments lapse unused after this many periods (1 = use it or lose it)")
}

// zone is the calendar of schedules and grants.
func (e *env) zone() (string, *time.Location, error) {
	cfg, err := e.config()
	if err != nil {
		return "", nil, err
	}
	tz := cfg.AllocationTimezone()
	loc, err := time.LoadLocation(tz)
	return tz, loc, err
}

// scheduleDates reads --start (default: today) and the inclusive --end as
// midnights in the allocation zone.
func (e *env) scheduleDates(start, end string) (time.Time, *time.Time, error) {
	_, loc, err := e.zone()
	if err != nil {
		return time.Time{}, nil, err
	}
	var s time.Time
	if start == "" {
		now := time.Now().In(loc)
		s = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	} else if s, err = time.ParseInLocation(time.DateOnly, start, loc); err != nil {
		return s, nil, usagef("--start: %q is not a date (YYYY-MM-DD)", start)
	}
	if end == "" {
		return s, nil, nil
	}
	t, err := time.ParseInLocation(time.DateOnly, end, loc)
	if err != nil {
		return s, nil, usagef("--end: %q is not a date (YYYY-MM-DD)", end)
	}
	t = t.AddDate(0, 0, 1) // inclusive: the end of that day
	return s, &t, nil
}

// spec turns the flags into a schedule; the account is filled in later.
func (f *scheduleFlags) spec(e *env, start, end string) (budget.ScheduleSpec, error) {
	var spec budget.ScheduleSpec
	var err error
	if f.total == "" || f.amount == "" || f.frequency == "" {
		return spec, usagef("an incremental allocation needs --total-budget, --allocation-amount and --allocation-frequency")
	}
	if spec.Total, err = amountFlag("total-budget", f.total); err != nil {
		return spec, err
	}
	if spec.Amount, err = amountFlag("allocation-amount", f.amount); err != nil {
		return spec, err
	}
	spec.Frequency = f.frequency
	if f.expire != "" {
		if spec.ExpireAfter, err = strconv.Atoi(f.expire); err != nil || spec.ExpireAfter < 1 {
			return spec, usagef("--allocation-expiry: %q is not a number of periods (1 or more)", f.expire)
		}
	}
	if spec.Start, spec.End, err = e.scheduleDates(start, end); err != nil {
		return spec, err
	}
	spec.Actor = actor()
	tz, _, err := e.zone()
	if err != nil {
		return spec, err
	}
	if _, err := budget.PlanSchedule(spec, tz); err != nil {
		return spec, usagef("%v", err)
	}
	return spec, nil
}

// incrementalHook adds --incremental and the schedule flags to "account
// create": the account's --start and --end are the schedule's, and due
// installments are deposited at once.
func incrementalHook() accountCreateHook {
	var (
		fs          *pflag.FlagSet
		incremental bool
		f           scheduleFlags
		spec        budget.ScheduleSpec
	)
	flagValue := func(name string) string {
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			return fl.Value.String()
		}
		return ""
	}
	return accountCreateHook{
		flags: func(set *pflag.FlagSet) {
			fs = set
			fs.BoolVar(&incremental, "incremental", false, "fund the account by a schedule of installments (with the three flags below)")
			f.add(fs)
		},
		validate: func(e *env) error {
			if !incremental {
				if f.total != "" || f.amount != "" || f.frequency != "" || f.expire != "" {
					return usagef("--total-budget, --allocation-amount, --allocation-frequency and --allocation-expiry need --incremental")
				}
				return nil
			}
			var err error
			spec, err = f.spec(e, flagValue("start"), flagValue("end"))
			return err
		},
		after: func(ctx context.Context, e *env, l *budget.Ledger, a budget.Account) error {
			if !incremental {
				return nil
			}
			spec.Cluster, spec.Account = a.Cluster, a.SlurmAccount
			s, rep, err := createAndProcess(ctx, l, spec)
			if err != nil {
				return err
			}
			if flagValue("json") == "true" {
				return nil
			}
			describeSchedule(e, s, rep)
			return nil
		},
	}
}

func createAndProcess(ctx context.Context, l *budget.Ledger, spec budget.ScheduleSpec) (budget.Schedule, budget.ProcessReport, error) {
	s, err := l.CreateSchedule(ctx, spec)
	if err != nil {
		return s, budget.ProcessReport{}, err
	}
	rep, err := l.ProcessSchedule(ctx, s.ID, time.Now())
	if err != nil {
		return s, rep, fmt.Errorf("schedule %d was created, but depositing its due installments failed (the processor will retry): %w", s.ID, err)
	}
	s, err = l.GetSchedule(ctx, s.ID)
	return s, rep, err
}

func describeSchedule(e *env, s budget.Schedule, rep budget.ProcessReport) {
	end := ""
	if s.EndsAt != nil {
		end = " to " + s.EndsAt.In(mustLoc(s.Timezone)).AddDate(0, 0, -1).Format(time.DateOnly)
	}
	fmt.Fprintf(e.stdout, "schedule %d: %s in %d %s installments of %s from %s%s; %d deposited now (%s)\n",
		s.ID, e.money(s.Total), s.Installments, s.Frequency, e.money(s.Amount),
		s.StartsAt.In(mustLoc(s.Timezone)).Format(time.DateOnly), end, rep.Installments, e.money(rep.Amount))
}

func mustLoc(tz string) *time.Location {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.UTC
	}
	return loc
}

func runAllocSchedule(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations schedule")
	account := fs.String("account", "", "account (required)")
	start := fs.String("start", "", "first installment's date (YYYY-MM-DD, default today)")
	end := fs.String("end", "", "no installment after this date (inclusive)")
	note := fs.String("note", "", "note recorded with the schedule")
	key := fs.String("idempotency-key", "", "makes a retried create happen once")
	paused := fs.Bool("paused", false, "create it paused")
	cluster := fs.String("cluster", "", "cluster (default cluster.name)")
	asJSON := fs.Bool("json", false, "print JSON")
	var f scheduleFlags
	f.add(fs)
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *account == "" {
		return usagef("--account is required")
	}
	spec, err := f.spec(e, *start, *end)
	if err != nil {
		return err
	}
	spec.Cluster, spec.Account, spec.Note, spec.IdempotencyKey, spec.Paused = *cluster, *account, *note, *key, *paused
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	s, rep, err := createAndProcess(ctx, l, spec)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(s)
	}
	describeSchedule(e, s, rep)
	return nil
}

func runAllocSchedules(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations schedules")
	account := fs.String("account", "", "only this account")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	ss, err := l.ListSchedules(ctx, *account)
	if err != nil {
		return err
	}
	if *asJSON {
		if ss == nil {
			ss = []budget.Schedule{}
		}
		return e.printJSON(ss)
	}
	tw := e.table("ID", "ACCOUNT", "TOTAL", "AMOUNT", "FREQUENCY", "START", "DONE", "DEPOSITED", "NEXT DUE", "STATUS")
	for _, s := range ss {
		loc := mustLoc(s.Timezone)
		next := "-"
		if s.NextDue != nil {
			next = s.NextDue.In(loc).Format(time.DateOnly)
		}
		row(tw, s.ID, s.Account, e.money(s.Total), e.money(s.Amount), s.Frequency, s.StartsAt.In(loc).Format(time.DateOnly),
			fmt.Sprintf("%d/%d", s.Deposited, s.Installments), e.money(s.DepositedAmount), next, s.Status)
	}
	return tw.Flush()
}

// scheduleID reads the one positional argument.
func scheduleID(fs *pflag.FlagSet) (int64, error) {
	if fs.NArg() != 1 {
		return 0, usagef("give one schedule id (see 'asbb-admin allocations schedules')")
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("%q is not a schedule id", fs.Arg(0))
	}
	return id, nil
}

func runAllocShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations show")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	id, err := scheduleID(fs)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	s, err := l.GetSchedule(ctx, id)
	if err != nil {
		return err
	}
	als, err := l.ScheduleInstallments(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		if als == nil {
			als = []budget.Allocation{}
		}
		return e.printJSON(struct {
			budget.Schedule
			Deposits []budget.Allocation `json:"deposits"`
		}{s, als})
	}
	loc := mustLoc(s.Timezone)
	fmt.Fprintf(e.stdout, "schedule %d on %s: %s\n", s.ID, s.Account, s.Status)
	fmt.Fprintf(e.stdout, "  total %s in installments of %s, %s from %s", e.money(s.Total), e.money(s.Amount), s.Frequency,
		s.StartsAt.In(loc).Format(time.DateOnly))
	if s.EndsAt != nil {
		fmt.Fprintf(e.stdout, " to %s", s.EndsAt.In(loc).AddDate(0, 0, -1).Format(time.DateOnly))
	}
	fmt.Fprintf(e.stdout, " (%s)\n", s.Timezone)
	if s.ExpireAfter != nil {
		fmt.Fprintf(e.stdout, "  each installment lapses unused after %d period(s)\n", *s.ExpireAfter)
	}
	fmt.Fprintf(e.stdout, "  deposited %s in %d of %d installments", e.money(s.DepositedAmount), s.Deposited, s.Installments)
	if s.NextDue != nil {
		fmt.Fprintf(e.stdout, "; next %s on %s", e.money(s.NextAmount), s.NextDue.In(loc).Format(time.DateOnly))
	}
	fmt.Fprintln(e.stdout)
	tw := e.table("INSTALLMENT", "ALLOCATION", "AMOUNT", "DUE", "EXPIRES", "STATUS", "FORFEITED")
	for _, a := range als {
		row(tw, *a.Installment, a.ID, e.money(a.Amount), a.StartsAt.In(loc).Format(time.DateOnly), fmtDate(a.ExpiresAt),
			a.Status, e.money(a.Forfeited))
	}
	return tw.Flush()
}

func runAllocProcess(ctx context.Context, e *env, args []string) error {
	fs := e.flags("allocations process")
	at := fs.String("now", "", "process as of this time (RFC 3339; default now): installments due by then")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--now: %q is not an RFC 3339 time", *at)
		}
		now = t
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	rep, err := l.ProcessSchedules(ctx, now)
	if err != nil {
		return err
	}
	if *asJSON {
		if rep.Periods == nil {
			rep.Periods = []budget.PeriodClose{}
		}
		return e.printJSON(rep)
	}
	fmt.Fprintf(e.stdout, "deposited %d installments (%s) on %d schedules; %d schedules completed",
		rep.Installments, e.money(rep.Amount), rep.Schedules, rep.Completed)
	if rep.Duplicates > 0 {
		fmt.Fprintf(e.stdout, "; %d already deposited by another processor", rep.Duplicates)
	}
	fmt.Fprintln(e.stdout)
	for _, p := range rep.Periods {
		switch p.Outcome {
		case "closed":
			fmt.Fprintf(e.stdout, "closed %s period %d: unspent %s, carried forward %s, lapsed %s\n",
				p.Grant, p.Period, e.money(p.Unspent), e.money(p.Carried), e.money(p.Lapsed))
		default:
			fmt.Fprintf(e.stdout, "%s period %d not closed: %s\n", p.Grant, p.Period, p.Outcome)
		}
	}
	return nil
}

func runAllocPause(ctx context.Context, e *env, args []string) error {
	return pauseResume(ctx, e, args, "allocations pause", true)
}

func runAllocResume(ctx context.Context, e *env, args []string) error {
	return pauseResume(ctx, e, args, "allocations resume", false)
}

func pauseResume(ctx context.Context, e *env, args []string, name string, pause bool) error {
	fs := e.flags(name)
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	id, err := scheduleID(fs)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	s, err := l.UpdateSchedule(ctx, id, budget.SchedulePatch{Paused: &pause}, actor())
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(s)
	}
	verb := "resumed (the next run deposits what fell due meanwhile)"
	if pause {
		verb = "paused"
	}
	fmt.Fprintf(e.stdout, "schedule %d on %s %s\n", s.ID, s.Account, verb)
	return nil
}
