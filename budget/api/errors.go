package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
)

// apiError is an error with its HTTP status and the original ASBB's error
// code (VALIDATION_ERROR, NOT_FOUND, ...).
type apiError struct {
	status  int
	code    string
	message string
	field   string
	details string
}

func (e *apiError) Error() string {
	if e.field != "" {
		return e.field + ": " + e.message
	}
	return e.message
}

// invalid is a 400 about one request field.
func invalid(field, f string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "VALIDATION_ERROR", field: field, message: fmt.Sprintf(f, a...)}
}

// fieldErr turns a budget error about one field into a 400 naming it (or
// passes other errors through).
func fieldErr(field string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, budget.ErrInvalid) {
		return &apiError{status: http.StatusBadRequest, code: "VALIDATION_ERROR", field: field, message: cleanMessage(err)}
	}
	return err
}

// envelope is the original's error body.
type envelope struct {
	Error     envelopeError `json:"error"`
	RequestID string        `json:"request_id"`
	Timestamp time.Time     `json:"timestamp"`
}

type envelopeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details string `json:"details,omitempty"`
	Field   string `json:"field,omitempty"`
}

// toAPIError maps budget sentinels and denials to statuses and codes. Only
// a real database outage gives a 5xx other than a bug (500, logged).
func toAPIError(err error) *apiError {
	var ae *apiError
	var den *budget.Denial
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "VALIDATION_ERROR",
			message: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &den):
		code := "INSUFFICIENT_BUDGET"
		switch den.Code {
		case "account_inactive", "account_not_started":
			code = "ACCOUNT_INACTIVE"
		case "account_expired":
			code = "ACCOUNT_EXPIRED"
		case "partition_job_cap", "partition_month_cap":
			code = "PARTITION_LIMIT_EXCEEDED"
		}
		return &apiError{status: http.StatusPaymentRequired, code: code, message: den.UserMessage(), details: den.Code}
	case errors.Is(err, budget.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: "SERVICE_UNAVAILABLE",
			message: "the budget database is unavailable; retry shortly"}
	case errors.Is(err, budget.ErrAccountNotFound):
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "account", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrHoldNotFound):
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", field: "transaction_id", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrAccountExists):
		return &apiError{status: http.StatusConflict, code: "DUPLICATE_ACCOUNT", field: "slurm_account", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "CONFLICT", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrInvalid):
		return &apiError{status: http.StatusBadRequest, code: "VALIDATION_ERROR", message: cleanMessage(err)}
	case errors.Is(err, budget.ErrInsufficient):
		return &apiError{status: http.StatusPaymentRequired, code: "INSUFFICIENT_BUDGET", message: cleanMessage(err)}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this.
		return &apiError{status: 499, code: "CLIENT_CLOSED_REQUEST", message: "request cancelled"}
	}
	return &apiError{status: http.StatusInternalServerError, code: "INTERNAL_ERROR", message: "internal error"}
}

// cleanMessage drops the wrapping prefixes of a budget error down to its
// sentinel's part: "create account x: invalid request: name too long"
// becomes "name too long" (the code already says "invalid").
func cleanMessage(err error) string {
	s := err.Error()
	for _, sentinel := range []error{budget.ErrInvalid, budget.ErrAccountNotFound, budget.ErrHoldNotFound,
		budget.ErrNotFound, budget.ErrConflict, budget.ErrAccountExists} {
		if i := strings.LastIndex(s, sentinel.Error()+": "); i >= 0 && errors.Is(err, sentinel) {
			rest := s[i+len(sentinel.Error())+2:]
			if sentinel == budget.ErrAccountNotFound {
				return fmt.Sprintf("Budget account '%s' not found", rest)
			}
			return rest
		}
	}
	return s
}

// writeError writes the envelope; 5xx other than 503 are logged with the
// request id so the client's id finds the cause.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	rid := requestIDOf(r)
	switch {
	case ae.status >= 500 && ae.status != http.StatusServiceUnavailable:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", rid, "error", err)
	case ae.status == http.StatusServiceUnavailable:
		s.log.Warn("database unavailable", "method", r.Method, "path", r.URL.Path, "request_id", rid, "error", err)
	default:
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "request_id", rid,
			"status", ae.status, "error", err)
	}
	_ = reply(w, ae.status, envelope{
		Error:     envelopeError{Code: ae.code, Message: ae.message, Details: ae.details, Field: ae.field},
		RequestID: rid,
		Timestamp: time.Now().UTC(),
	})
}
