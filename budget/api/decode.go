package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

// decodeJSON reads one JSON object into v strictly: an unknown field is
// refused with its name, a wrong type names its field, trailing data and
// NUL characters (which PostgreSQL text cannot hold) are refused.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return invalid("", "cannot read request body: %v", err)
	}
	return decodeBytes(body, v)
}

func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("", "request body is empty; send a JSON object")
	}
	if bytes.Contains(bytes.ToLower(body), []byte(`\u0000`)) {
		return invalid("", "request body contains a NUL character")
	}
	if !utf8.Valid(body) {
		return invalid("", "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "malformed JSON: unexpected data after the object")
	}
	return nil
}

// jsonError explains a decoding error, naming the field where it can.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return invalid(fe.field, "%s", fe.msg)
	case errors.As(err, &se):
		return invalid("", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: the body ends too early")
	case errors.As(err, &te):
		if te.Field == "" {
			return invalid("", "the body must be a JSON object, not %s", te.Value)
		}
		return invalid(te.Field, "%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return invalid(f, "unknown field %q", f)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return invalid("", "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "map", k == "struct":
		return "an object"
	case k == "slice":
		return "an array"
	}
	return "a " + k
}

// fieldError is returned by custom unmarshalers that know their field's
// meaning but not its name; jsonError turns it into a 400.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// Amount is a money field as clients send it: a JSON number or a decimal
// string. It keeps the text and is parsed by budget.ParseNonNegative, so
// it never passes through a float64.
type Amount struct {
	raw string
	set bool
}

func (a *Amount) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	switch {
	case s == "null":
		*a = Amount{}
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		a.raw, a.set = str, true
	case len(s) > 0 && (s[0] == '-' || s[0] >= '0' && s[0] <= '9'):
		a.raw, a.set = s, true
	default:
		// Let the caller name the field: keep the text, parsing fails.
		a.raw, a.set = s, true
	}
	return nil
}

// Set reports whether the field was present (and not null).
func (a Amount) Set() bool { return a.set }

// NonNegative parses the amount (zero allowed), naming field on error.
func (a Amount) NonNegative(field string) (decimal.Decimal, error) {
	if !a.set {
		return decimal.Zero, invalid(field, "%s is required", field)
	}
	d, err := budget.ParseNonNegative(a.raw)
	return d, fieldErr(field, err)
}

// Positive parses a strictly positive amount, naming field on error.
func (a Amount) Positive(field string) (decimal.Decimal, error) {
	if !a.set {
		return decimal.Zero, invalid(field, "%s is required", field)
	}
	d, err := budget.ParseAmount(a.raw)
	return d, fieldErr(field, err)
}

// num writes a decimal as a JSON number with its exact text (never via a
// float) for the original's clients, which read numbers.
type num struct{ decimal.Decimal }

func (n num) MarshalJSON() ([]byte, error) { return []byte(n.Decimal.String()), nil }

func numOf(d decimal.Decimal) num { return num{d} }

// Date is a date field: RFC 3339 or YYYY-MM-DD (midnight UTC). It keeps
// the text so the handler can name the field when it does not parse.
type Date struct {
	raw string
	set bool
}

func (d *Date) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = Date{}
		return nil
	}
	d.set = true
	if err := json.Unmarshal(b, &d.raw); err != nil {
		d.raw = string(b) // not a string: Get refuses it by name
	}
	return nil
}

// Get parses the date; nil when absent.
func (d Date) Get(field string) (*time.Time, error) {
	if !d.set {
		return nil, nil
	}
	t, err := parseDate(d.raw)
	if err != nil {
		return nil, invalid(field, "%s: %q is not a date (RFC 3339 or YYYY-MM-DD)", field, truncate(d.raw, 40))
	}
	return &t, nil
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is not a date", budget.ErrInvalid, truncate(s, 40))
}

// lenientInt is a count that ASBX's sample scripts send as a number, a
// numeric string or Slurm's "4(x2)" (4 on each of 2 nodes: 8). Anything
// else reads as 0: the field is informational.
type lenientInt int64

func (n *lenientInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"`)
	*n = lenientInt(parseSlurmCount(s))
	return nil
}

// parseSlurmCount reads "8", "4(x2)", "4(x2),2" (= 10); -1 when unreadable.
func parseSlurmCount(s string) int64 {
	var total int64
	if s == "" || s == "null" {
		return 0
	}
	for _, part := range strings.Split(s, ",") {
		v, rep, hasRep := strings.Cut(part, "(x")
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || n < 0 {
			return 0
		}
		m := int64(1)
		if hasRep {
			m, err = strconv.ParseInt(strings.TrimSuffix(rep, ")"), 10, 32)
			if err != nil || m < 0 {
				return 0
			}
		}
		total += n * m
		if total > 1<<31 {
			return 0
		}
	}
	return total
}

// checkLen refuses an over-long string field (PostgreSQL indexes and the
// ledger's columns have limits; a clear 400 beats a database error).
func checkLen(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "%s is longer than %d bytes", field, max)
	}
	return nil
}

// checkQuery refuses query strings that cannot be stored or compared in
// PostgreSQL text (NUL, invalid UTF-8) before any handler runs.
func checkQuery(r *http.Request) error {
	if len(r.URL.RawQuery) > 8192 {
		return invalid("", "query string is too long")
	}
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			if strings.ContainsRune(v, 0) || !utf8.ValidString(v) || strings.ContainsRune(k, 0) {
				return invalid(k, "query parameter %s contains a NUL or invalid UTF-8", truncate(k, 40))
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalid(name, "%s must be a non-negative integer", name)
	}
	if n > max {
		return 0, invalid(name, "%s must be at most %d", name, max)
	}
	return n, nil
}

// queryTime reads an optional RFC 3339 (or YYYY-MM-DD) query parameter.
func queryTime(r *http.Request, name string) (*time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := parseDate(v)
	if err != nil {
		return nil, invalid(name, "%s: %q is not a date (RFC 3339 or YYYY-MM-DD)", name, truncate(v, 40))
	}
	return &t, nil
}

func strOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
