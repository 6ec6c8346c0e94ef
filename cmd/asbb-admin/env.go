package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
	"github.com/spf13/pflag"
)

// env is what every subcommand shares: output streams, the config and a
// lazily opened ledger.
type env struct {
	stdout, stderr io.Writer
	configPath     string
	cfg            *budget.Config
	ledger         *budget.Ledger
}

// flags returns a flag set with the global flags every command accepts.
func (e *env) flags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("asbb-admin "+name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.configPath, "config", "", "config file (default $ASBB_CONFIG or "+budget.DefaultConfigPath+")")
	return fs
}

// parse parses flags; --help prints usage and reports done.
func (e *env) parse(fs *pflag.FlagSet, args []string) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return true, nil
		}
		return false, usageError{err.Error()}
	}
	return false, nil
}

func (e *env) config() (*budget.Config, error) {
	if e.cfg == nil {
		cfg, err := budget.LoadConfig(e.configPath)
		if err != nil {
			return nil, err
		}
		e.cfg = cfg
	}
	return e.cfg, nil
}

// open returns the ledger, connecting on first use.
func (e *env) open(ctx context.Context) (*budget.Ledger, error) {
	if e.ledger != nil {
		return e.ledger, nil
	}
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := budget.Open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if err := l.Ping(ctx); err != nil {
		l.Close()
		return nil, err
	}
	e.ledger = l
	return l, nil
}

func (e *env) close() {
	if e.ledger != nil {
		e.ledger.Close()
	}
}

// actor names who did a write from the CLI, for the ledger.
func actor() string {
	return "cli:" + currentUser()
}

// printJSON writes v as indented JSON.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table starts an aligned table with a header row.
func (e *env) table(header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw io.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// money formats an amount in the configured currency.
func (e *env) money(d decimal.Decimal) string {
	cur := "USD"
	if e.cfg != nil {
		cur = e.cfg.Pricing.Currency
	}
	return budget.FormatMoney(d, cur)
}

// parseDate accepts YYYY-MM-DD (midnight in the configured zone) or RFC 3339.
func (e *env) parseDate(flag, s string) (time.Time, error) {
	loc := time.UTC
	if cfg, err := e.config(); err == nil {
		loc = cfg.Location()
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s: %q is not a date (YYYY-MM-DD or RFC 3339)", flag, s)
}

// parseEndDate is parseDate for inclusive end dates: YYYY-MM-DD means the
// end of that day.
func (e *env) parseEndDate(flag, s string) (time.Time, error) {
	t, err := e.parseDate(flag, s)
	if err == nil && len(s) == len("2006-01-02") {
		t = t.AddDate(0, 0, 1)
	}
	return t, err
}

func fmtDate(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format("2006-01-02")
}
