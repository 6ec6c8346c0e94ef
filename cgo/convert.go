package main

import (
	"context"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/asbb/asbb/budget"
)

// Return codes and kinds of asbb.h, mirrored as Go constants so that the
// conversion logic is plain Go (testable with go test, where test files
// cannot use cgo). exports.go checks them against the header at compile
// time.
const (
	abiVersion = 1

	rcOK          = 0
	rcRefused     = 1
	rcInvalid     = -1
	rcConfig      = -2
	rcUnavailable = -3
	rcNotInit     = -4
	rcABI         = -5
	rcInternal    = -6
	rcNotFound    = -7

	kindNone     = 0
	kindFree     = 1
	kindHeld     = 2
	kindRefused  = 3
	kindShadow   = 4
	kindDBAccept = 5
)

// writeMsg copies s into dst as a NUL-terminated C string, truncating on a
// UTF-8 boundary; it never writes past len(dst). An empty dst (NULL or
// msg_len 0) receives nothing.
func writeMsg(dst []byte, s string) {
	if len(dst) == 0 {
		return
	}
	n := len(s)
	if n > len(dst)-1 {
		n = len(dst) - 1
		// Back off to the start of the rune that would be cut.
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
	}
	copy(dst, s[:n])
	dst[n] = 0
}

// decisionOut is what asbb_decision_t receives.
type decisionOut struct {
	kind         int32
	holdID       string
	amount       string
	adminComment string
}

// kindOf maps a budget decision kind to enum asbb_kind.
func kindOf(k budget.DecisionKind) int32 {
	switch k {
	case budget.KindFree:
		return kindFree
	case budget.KindHeld:
		return kindHeld
	case budget.KindRefused:
		return kindRefused
	case budget.KindShadow:
		return kindShadow
	case budget.KindDBAccept:
		return kindDBAccept
	}
	return kindNone
}

// decisionFields fills the out struct's fields. commentCap is the size of
// the admin_comment array: a comment that does not fit is replaced by the
// marker alone, because a truncated comment would lose the marker (which
// is at its end) and with it the job's hold.
func decisionFields(d budget.Decision, commentCap int) (decisionOut, bool) {
	out := decisionOut{kind: kindOf(d.Kind), adminComment: d.AdminComment}
	if d.HoldID > 0 {
		out.holdID = strconv.FormatInt(d.HoldID, 10)
		out.amount = d.Amount.String()
	}
	trimmed := false
	if len(out.adminComment) >= commentCap && d.HoldID > 0 {
		out.adminComment = "asbb:" + out.holdID
		trimmed = true
	}
	return out, trimmed
}

// rcOf maps an admission result to enum asbb_rc: a decision (err == nil)
// is OK unless refused; an error is classified by its sentinel. The
// on_db_error=reject outage is an error wrapping ErrUnavailable, so it is
// ASBB_ERR_UNAVAILABLE (with the user's message set).
func rcOf(d budget.Decision, err error) int {
	if err == nil {
		if d.Kind == budget.KindRefused {
			return rcRefused
		}
		return rcOK
	}
	return rcOfErr(err)
}

func rcOfErr(err error) int {
	switch {
	case errors.Is(err, budget.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return rcUnavailable
	case errors.Is(err, budget.ErrInvalid):
		return rcInvalid
	case errors.Is(err, budget.ErrHoldNotFound), errors.Is(err, budget.ErrNotFound), errors.Is(err, budget.ErrAccountNotFound):
		return rcNotFound
	}
	return rcInternal
}

// jobEnd normalises a settlement record from C: NO_VAL/0 array fields mean
// "not an array task".
func jobEnd(e budget.JobEnd) budget.JobEnd {
	if e.ArrayJobID == budget.NoVal {
		e.ArrayJobID = 0
	}
	if e.ArrayJobID == 0 {
		e.ArrayTaskID = budget.NoVal
	}
	if e.Actor == "" {
		e.Actor = "slurm:jobcomp"
	}
	return e
}
