package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/asbb/asbb/budget"
)

func init() {
	register(command{name: "grant report", summary: "compliance report of a budget period (json, csv or html with a burn-down chart)", run: runGrantReport})
}

func runGrantReport(ctx context.Context, e *env, args []string) error {
	fs := e.flags("grant report")
	period := fs.Int("period", -1, "budget period (default: the current one; 0 = the whole grant)")
	format := fs.String("format", "json", "json, csv or html")
	output := fs.String("output", "", "write to this file (default stdout)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin grant report <grant> [--period N] [--format json|csv|html] [--output FILE]")
	}
	var write func(budget.GrantReport, io.Writer) error
	switch *format {
	case "json":
		write = budget.GrantReport.WriteJSON
	case "csv":
		write = budget.GrantReport.WriteCSV
	case "html":
		write = budget.GrantReport.WriteHTML
	default:
		return usagef("--format must be json, csv or html")
	}
	if *period < -1 {
		return usagef("--period must be a period number (0 = the whole grant)")
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	r, err := l.GrantReport(ctx, fs.Arg(0), *period)
	if err != nil {
		return err
	}
	if *output == "" {
		return write(r, e.stdout)
	}
	// Write next to the target and rename, so a reader never sees half a
	// report.
	tmp, err := os.CreateTemp(filepath.Dir(*output), ".asbb-report-*")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := write(r, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp.Name(), *output); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	status := "reconciled"
	if !r.Reconciled {
		status = "NOT reconciled (see its reconciliation section)"
	}
	fmt.Fprintf(e.stderr, "wrote %s: %s %s, total cost %s, %s\n", *output, r.Grant.Number, r.PeriodName,
		budget.FormatMoney(r.Total.Round(2), r.Currency), status)
	return nil
}
