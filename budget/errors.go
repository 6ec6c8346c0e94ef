package budget

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// Sentinel errors. Callers test them with errors.Is; every entry point maps
// them to its own vocabulary (HTTP status, C return code, exit code).
var (
	ErrInvalid         = errors.New("invalid request")
	ErrAccountNotFound = errors.New("account not found")
	ErrHoldNotFound    = errors.New("hold not found")
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrAccountExists   = errors.New("account already exists")
	ErrInsufficient    = errors.New("insufficient funds")
	ErrUnavailable     = errors.New("budget database unavailable")
)

// Denial is a refusal of the budget, explained with the numbers. It
// unwraps to ErrInsufficient so callers can treat all refusals alike.
type Denial struct {
	Code      string          // insufficient_funds, partition_month_cap, ...
	Account   string          // the Slurm account that refused (an ancestor, possibly)
	Partition string          // set for partition caps
	Period    string          // set for grant-period refusals
	Currency  string          // of the amounts below
	Available decimal.Decimal // available funds (or remaining allowance)
	Amount    decimal.Decimal // what the job needed
	Limit     decimal.Decimal // the cap that refused, when a cap did
	Detail    string          // how the cost was computed, for the user
	Hint      string          // what the user can do
}

func (d *Denial) Error() string { return "budget refused: " + d.UserMessage() }

// Unwrap makes errors.Is(err, ErrInsufficient) true for every denial.
func (d *Denial) Unwrap() error { return ErrInsufficient }

// UserMessage is the sentence a user sees in sbatch's error output.
func (d *Denial) UserMessage() string {
	m := func(x decimal.Decimal) string { return FormatMoney(x, d.Currency) }
	var s string
	switch d.Code {
	case "insufficient_funds":
		s = fmt.Sprintf("account %s has %s available; this job may cost up to %s", d.Account, m(d.Available), m(d.Amount))
	case "ancestor_insufficient_funds":
		s = fmt.Sprintf("parent account %s has %s available; this job may cost up to %s", d.Account, m(d.Available), m(d.Amount))
	case "max_job_cost":
		s = fmt.Sprintf("account %s allows at most %s per job; this job may cost up to %s", d.Account, m(d.Limit), m(d.Amount))
	case "partition_job_cap":
		s = fmt.Sprintf("account %s allows at most %s per job on partition %s; this job may cost up to %s", d.Account, m(d.Limit), d.Partition, m(d.Amount))
	case "partition_month_cap":
		s = fmt.Sprintf("account %s may spend %s per month on partition %s and has %s of it left; this job may cost up to %s", d.Account, m(d.Limit), d.Partition, m(d.Available), m(d.Amount))
	case "grant_period":
		s = fmt.Sprintf("grant budget period %s has %s left; this job may cost up to %s including indirect costs", d.Period, m(d.Available), m(d.Amount))
	case "account_inactive":
		s = fmt.Sprintf("account %s is not active", d.Account)
	case "account_not_started":
		s = fmt.Sprintf("account %s is not open yet", d.Account)
	case "account_expired":
		s = fmt.Sprintf("account %s has ended", d.Account)
	case "account_not_found":
		s = fmt.Sprintf("account %s has no ASBB budget", d.Account)
	case "no_account":
		s = "this job names no account and no default account is configured; submit with --account"
	case "no_time_limit":
		s = fmt.Sprintf("partition %s is priced and has no finite time limit; submit with --time", d.Partition)
	case "unpriced_partition":
		s = fmt.Sprintf("partition %s has no price and unpriced partitions are not allowed", d.Partition)
	default:
		s = d.Code
		if d.Detail != "" {
			s += ": " + d.Detail
			return "asbb: " + s
		}
	}
	var b strings.Builder
	b.WriteString("asbb: ")
	b.WriteString(s)
	if d.Detail != "" {
		b.WriteString(" (")
		b.WriteString(d.Detail)
		b.WriteString(")")
	}
	b.WriteString(".")
	if d.Hint != "" {
		b.WriteString(" ")
		b.WriteString(d.Hint)
	}
	return b.String()
}
