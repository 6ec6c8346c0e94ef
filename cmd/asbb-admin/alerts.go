package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "alerts list", summary: "list alerts (unresolved by default)", run: runAlertsList})
	register(command{name: "alerts ack", summary: "acknowledge an alert", run: runAlertsAck})
	register(command{name: "alerts check", summary: "evaluate the alert rules once (what the service does every alerts.interval)", run: runAlertsCheck})
}

func runAlertsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("alerts list")
	var f budget.AlertFilter
	fs.StringVar(&f.Status, "status", "", "open, acknowledged, resolved or all (default: unresolved)")
	fs.StringVar(&f.Account, "account", "", "only this account")
	fs.StringVar(&f.Grant, "grant", "", "only this grant")
	fs.StringVar(&f.Severity, "severity", "", "info, warning or critical")
	fs.IntVar(&f.Limit, "limit", 100, "most rows")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	as, err := l.ListAlerts(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		if as == nil {
			as = []budget.Alert{}
		}
		return e.printJSON(as)
	}
	tw := e.table("ID", "SEVERITY", "STATUS", "TYPE", "TARGET", "SINCE", "SEEN", "MESSAGE")
	for _, a := range as {
		row(tw, a.ID, a.Severity, a.Status, a.Rule, a.TargetKind+" "+a.Target, a.FirstSeen.Format("2006-01-02 15:04"),
			a.FireCount, a.Message)
	}
	return tw.Flush()
}

func runAlertsAck(ctx context.Context, e *env, args []string) error {
	fs := e.flags("alerts ack")
	note := fs.String("note", "", "note kept with the acknowledgement")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin alerts ack <id> [--note TEXT]")
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id <= 0 {
		return usagef("alert id %q is not a number", fs.Arg(0))
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	a, err := l.AcknowledgeAlert(ctx, id, actor(), *note)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(a)
	}
	fmt.Fprintf(e.stdout, "alert %d acknowledged: %s\n", a.ID, a.Message)
	return nil
}

func runAlertsCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags("alerts check")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	run, err := l.EvaluateAlerts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(run)
	}
	if run.Skipped {
		fmt.Fprintln(e.stdout, "another evaluator is running; nothing done")
		return nil
	}
	fmt.Fprintf(e.stdout, "%d conditions firing: %d alerts opened, %d resolved, %d posted to the webhook\n",
		run.Firing, run.Opened, run.Resolved, run.Notified)
	return nil
}
