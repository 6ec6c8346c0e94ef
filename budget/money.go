package budget

import (
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// Scale is the number of decimal places the ledger stores (NUMERIC(20,6)).
const Scale = 6

// maxAmount is the largest amount NUMERIC(20,6) can hold with headroom for
// sums: 10^13 (ten trillion) in any currency is far beyond a real budget.
var maxAmount = decimal.New(1, 13)

// ParseAmount parses a strictly positive decimal amount from text, the only
// way money enters ASBB from outside. It refuses NaN, infinities, exponents,
// signs, more than six decimal places and absurdly large values.
func ParseAmount(s string) (decimal.Decimal, error) {
	d, err := parseDecimal(s)
	if err != nil {
		return decimal.Zero, err
	}
	if !d.IsPositive() {
		return decimal.Zero, fmt.Errorf("%w: amount %q must be greater than zero", ErrInvalid, s)
	}
	return d, nil
}

// ParseNonNegative is ParseAmount that also accepts zero (an actual cost of
// a job that never ran, a credit limit of nothing).
func ParseNonNegative(s string) (decimal.Decimal, error) {
	d, err := parseDecimal(s)
	if err != nil {
		return decimal.Zero, err
	}
	if d.IsNegative() {
		return decimal.Zero, fmt.Errorf("%w: amount %q must not be negative", ErrInvalid, s)
	}
	return d, nil
}

func parseDecimal(s string) (decimal.Decimal, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "$")
	if t == "" {
		return decimal.Zero, fmt.Errorf("%w: amount is empty", ErrInvalid)
	}
	neg := false
	if t[0] == '-' {
		neg = true
		t = t[1:]
	}
	// Accept only plain decimal notation: digits, at most one point. This
	// rules out NaN, Inf, hex, exponents ("1e9") and thousands separators.
	dot := -1
	for i, c := range t {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && dot < 0:
			dot = i
		default:
			return decimal.Zero, fmt.Errorf("%w: amount %q is not a plain decimal number", ErrInvalid, s)
		}
	}
	if t == "." || dot == len(t)-1 && len(t) == 1 {
		return decimal.Zero, fmt.Errorf("%w: amount %q is not a plain decimal number", ErrInvalid, s)
	}
	if dot >= 0 && len(t)-dot-1 > Scale {
		return decimal.Zero, fmt.Errorf("%w: amount %q has more than %d decimal places", ErrInvalid, s, Scale)
	}
	d, err := decimal.NewFromString(t)
	if err != nil {
		return decimal.Zero, fmt.Errorf("%w: amount %q: %v", ErrInvalid, s, err)
	}
	if d.GreaterThanOrEqual(maxAmount) {
		return decimal.Zero, fmt.Errorf("%w: amount %q is too large (limit %s)", ErrInvalid, s, maxAmount.String())
	}
	if neg {
		d = d.Neg()
	}
	return d, nil
}

// CheckAmount validates an amount that arrived already as a decimal (from
// JSON, say): positive, within scale and range.
func CheckAmount(d decimal.Decimal) error {
	if !d.IsPositive() {
		return fmt.Errorf("%w: amount %s must be greater than zero", ErrInvalid, d)
	}
	return checkRange(d)
}

func checkRange(d decimal.Decimal) error {
	if d.Abs().GreaterThanOrEqual(maxAmount) {
		return fmt.Errorf("%w: amount %s is too large (limit %s)", ErrInvalid, d, maxAmount)
	}
	if !d.Equal(d.Truncate(Scale)) {
		return fmt.Errorf("%w: amount %s has more than %d decimal places", ErrInvalid, d, Scale)
	}
	return nil
}

// FormatMoney renders an amount for people: "$1,234.50" for USD, "1234.50
// EUR" otherwise, always with at least two decimals and never rounding away
// a non-zero sub-cent part.
func FormatMoney(d decimal.Decimal, currency string) string {
	s := d.StringFixed(2)
	if !d.Equal(d.Round(2)) {
		s = d.String()
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String() + "." + frac
	sign := ""
	if neg {
		sign = "-"
	}
	if currency == "" || currency == "USD" {
		return sign + "$" + out
	}
	return sign + out + " " + currency
}
