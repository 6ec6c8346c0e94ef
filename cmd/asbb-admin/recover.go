package main

import (
	"context"
	"fmt"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/slurm"
)

func init() {
	register(command{name: "recover", summary: "reconcile active holds with Slurm (bind, settle, release orphans)", run: runRecover})
}

func runRecover(ctx context.Context, e *env, args []string) error {
	fs := e.flags("recover")
	dry := fs.Bool("dry-run", false, "show what would be done, change nothing")
	minAge := fs.Duration("min-hold-age", 0, "only release holds older than this (default recovery.min_hold_age)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *minAge < 0 {
		return usagef("--min-hold-age must not be negative")
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	rep, err := l.Recover(ctx, slurm.NewClient(l.Config()), budget.RecoverOptions{DryRun: *dry, MinHoldAge: *minAge, Actor: actor()})
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(rep)
	}
	if rep.Skipped {
		fmt.Fprintln(e.stdout, "another recovery sweep is running (asbb-service?); nothing done")
		return nil
	}
	tw := e.table("HOLD", "ACCOUNT", "JOB", "ACTION", "AMOUNT", "REASON")
	for _, a := range rep.Actions {
		action := a.Action
		if *dry && action != "keep" {
			action = "would " + action
		}
		if a.Error != "" {
			action += " FAILED: " + a.Error
		}
		row(tw, a.HoldID, a.Account, dash(a.JobID), action, dash(a.Amount), a.Reason)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d active hold(s), %d Slurm job(s): bound %d, settled %d, released %d, kept %d, errors %d\n",
		rep.Holds, rep.Jobs, rep.Bound, rep.Settled, rep.Released, rep.Kept, rep.Errors)
	if rep.Errors > 0 {
		return fmt.Errorf("%d action(s) failed", rep.Errors)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
