package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/shopspring/decimal"
)

// DecisionKind is the outcome of an admission.
type DecisionKind string

const (
	KindFree     DecisionKind = "free"      // unpriced partition: no hold
	KindHeld     DecisionKind = "held"      // accepted with a hold
	KindRefused  DecisionKind = "refused"   // refused by the budget
	KindShadow   DecisionKind = "shadow"    // would be refused; accepted by shadow mode
	KindDBAccept DecisionKind = "db_accept" // database failed; accepted by on_db_error = "accept"
)

// Decision is what the admission function answers.
type Decision struct {
	Kind      DecisionKind    `json:"kind"`
	HoldID    int64           `json:"hold_id,omitempty"`
	Amount    decimal.Decimal `json:"amount"`
	Estimate  *Estimate       `json:"estimate,omitempty"`
	Account   string          `json:"account,omitempty"`
	Partition string          `json:"partition,omitempty"`
	// Message is what the user sees: the refusal with its numbers, or a
	// notice (held, shadow, database outage).
	Message string `json:"message"`
	// AdminComment is the job's admin_comment afterwards ("" = unchanged).
	AdminComment string  `json:"admin_comment,omitempty"`
	Denial       *Denial `json:"-"`
	// Before is the account as read just before the hold (for API replies).
	Before *Account `json:"-"`
	// Duplicate is set when an idempotency key returned an earlier hold.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Accepted reports whether Slurm should accept the job.
func (d Decision) Accepted() bool { return d.Kind != KindRefused }

// Stats counts admissions by outcome since the process started (the
// service exports them; inside slurmctld they are logged).
type Stats struct {
	Free, Held, Refused, Shadow, DBAccept, DBReject atomic.Int64
}

var stats Stats

// AdmissionStats returns the process-wide admission counters.
func AdmissionStats() *Stats { return &stats }

const userHint = "Ask your PI or run 'asbb-admin account show <account>' to see the budget."

// Admit prices a job and takes its hold: the one admission function of
// ASBB. It runs under submit.timeout, applies shadow mode and the
// on_db_error policy, and explains every refusal with the numbers.
func (l *Ledger) Admit(ctx context.Context, job JobRequest) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Submit.Timeout.Duration)
	defer cancel()
	job, d, done := l.resolveJob(job)
	if done {
		return l.refuse(job, d, nil), nil
	}
	est, priced, err := l.cfg.Price(job, job.Partition)
	if err != nil {
		var den *Denial
		if errors.As(err, &den) {
			return l.refuse(job, den, nil), nil
		}
		return Decision{Kind: KindRefused, Message: "asbb: " + userError(err)}, err
	}
	if !priced {
		stats.Free.Add(1)
		return Decision{Kind: KindFree, Account: job.Account, Partition: job.Partition}, nil
	}
	return l.hold(ctx, job, est, "")
}

// resolveJob fills account and partition from the config. done is true
// when the job cannot be priced at all (the denial says why).
func (l *Ledger) resolveJob(job JobRequest) (JobRequest, *Denial, bool) {
	job.Cluster = l.cluster(job.Cluster)
	if job.Partition == "" {
		job.Partition = l.cfg.Submit.DefaultPartition
	}
	if i := strings.IndexByte(job.Partition, ','); i >= 0 {
		// Several partitions: price the first (the others are alternatives
		// Slurm may choose; a site prices them alike or lists one).
		job.Partition = job.Partition[:i]
	}
	if job.Account == "" {
		job.Account = l.cfg.Accounts.Default
	}
	if job.Account == "" {
		if _, priced := l.cfg.Pricing.Partitions[job.Partition]; priced || l.cfg.Pricing.RequirePrice || job.Partition == "" {
			return job, &Denial{Code: "no_account"}, true
		}
	}
	if job.Partition == "" {
		return job, &Denial{Code: "no_partition", Detail: "this job names no partition and submit.default_partition is not set; submit with --partition"}, true
	}
	return job, nil, false
}

func (l *Ledger) hold(ctx context.Context, job JobRequest, est Estimate, replaces string) (Decision, error) {
	res, err := l.PlaceHold(ctx, HoldRequest{
		Cluster: job.Cluster, Account: job.Account, Partition: job.Partition, User: job.User,
		Amount: est.Total, Tasks: est.Resources.Tasks, RateVersion: est.RateVersion,
		Pricing: est, Request: job, IdempotencyKey: job.IdempotencyKey, Actor: actorOf(job),
	})
	var den *Denial
	switch {
	case err == nil:
		stats.Held.Add(1)
		msg := fmt.Sprintf("asbb: held %s on account %s (%s)", FormatMoney(est.Total, est.Currency), job.Account, est.Explanation)
		d := Decision{Kind: KindHeld, HoldID: res.HoldID, Amount: est.Total, Estimate: &est, Account: job.Account,
			Partition: job.Partition, Message: msg, AdminComment: commentWithHold(job.AdminComment, res.HoldID),
			Before: &res.Account, Duplicate: res.Duplicate}
		l.log.Info("hold taken", "account", job.Account, "partition", job.Partition, "user", job.User,
			"hold_id", res.HoldID, "amount", est.Total.String(), "replaces", replaces)
		return d, nil
	case errors.As(err, &den):
		den.Detail = est.Explanation
		d := l.refuse(job, den, &est)
		if res.Account.ID != 0 {
			d.Before = &res.Account
		}
		return d, nil
	case errors.Is(err, ErrAccountNotFound):
		return l.refuse(job, &Denial{Code: "account_not_found", Account: job.Account}, &est), nil
	case errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		return l.outage(job, est, err)
	}
	return Decision{Kind: KindRefused, Message: "asbb: " + userError(err), Estimate: &est}, err
}

// refuse applies shadow mode to a denial.
func (l *Ledger) refuse(job JobRequest, den *Denial, est *Estimate) Decision {
	if den.Hint == "" && den.Code != "no_account" && den.Code != "no_time_limit" {
		den.Hint = userHint
	}
	if den.Currency == "" {
		den.Currency = l.cfg.Pricing.Currency
	}
	msg := den.UserMessage()
	d := Decision{Kind: KindRefused, Estimate: est, Account: job.Account, Partition: job.Partition, Message: msg, Denial: den}
	if est != nil {
		d.Amount = est.Total
	}
	if !l.enforced(job.Partition) {
		stats.Shadow.Add(1)
		d.Kind = KindShadow
		d.Message = "asbb (shadow mode, job accepted): " + strings.TrimPrefix(msg, "asbb: ")
		l.log.Warn("would refuse job (shadow mode)", "account", job.Account, "partition", job.Partition,
			"user", job.User, "reason", den.Code, "message", msg)
		return d
	}
	stats.Refused.Add(1)
	l.log.Info("job refused", "account", job.Account, "partition", job.Partition, "user", job.User,
		"reason", den.Code, "message", msg)
	return d
}

// outage applies submit.on_db_error when the database failed or was too
// slow. The returned error is nil when the policy accepted the job.
func (l *Ledger) outage(job JobRequest, est Estimate, cause error) (Decision, error) {
	policy := l.cfg.Submit.OnDBError
	if o, ok := l.cfg.Submit.Partitions[job.Partition]; ok && o.OnDBError != "" {
		policy = o.OnDBError
	}
	if !l.enforced(job.Partition) {
		// Shadow mode never refuses a job, an outage included.
		policy = "accept"
	}
	l.log.Error("budget database unavailable at submit", "account", job.Account, "partition", job.Partition,
		"user", job.User, "policy", policy, "error", cause)
	if policy == "accept" {
		stats.DBAccept.Add(1)
		return Decision{Kind: KindDBAccept, Estimate: &est, Account: job.Account, Partition: job.Partition, Amount: est.Total,
			Message: "asbb: the budget database is unavailable; job accepted without a hold (submit.on_db_error=accept)"}, nil
	}
	stats.DBReject.Add(1)
	return Decision{Kind: KindRefused, Estimate: &est, Account: job.Account, Partition: job.Partition, Amount: est.Total,
			Message: "asbb: the budget database is unavailable, so this job cannot be priced against its budget; try again shortly (submit.on_db_error=reject)"},
		fmt.Errorf("admit job: %w", cause)
}

func (l *Ledger) enforced(partition string) bool {
	if o, ok := l.cfg.Submit.Partitions[partition]; ok && o.Enforce != nil {
		return *o.Enforce
	}
	return l.cfg.Submit.Enforce
}

func actorOf(job JobRequest) string {
	if job.Actor != "" {
		return job.Actor
	}
	if job.User != "" {
		return "slurm:" + job.User
	}
	return "slurm"
}

// userError is an error's text fit for a user: the sentinel's detail only.
func userError(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// baseJobID is the job id a hold binds to: an array task "10_2" settles
// under its array's id "10".
func baseJobID(id string) string {
	if i := strings.IndexByte(id, '_'); i >= 0 {
		return id[:i]
	}
	return id
}

// Modify re-prices a pending job whose request changed (job_modify).
// Decision.AdminComment is always empty: Slurm 22.05 refuses the whole
// update when a job_modify plugin sets admin_comment for a non-admin, so
// the hold keeps its id and a moved job is found through the old hold. The
// request carries the changed fields; unset fields keep the values stored
// on the job's hold. An increase is checked and held atomically; a decrease
// is released. A move to another account or partition moves the hold.
func (l *Ledger) Modify(ctx context.Context, req JobRequest) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Submit.Timeout.Duration)
	defer cancel()
	var h Hold
	var err error
	if id, ok := HoldIDFromComment(req.AdminComment); ok {
		h, err = l.GetHold(ctx, id)
	} else if req.JobID != "" {
		h, err = l.HoldForJob(ctx, req.Cluster, baseJobID(req.JobID))
	} else {
		err = ErrHoldNotFound
	}
	switch {
	case errors.Is(err, ErrHoldNotFound):
		// No hold: the job was free, or accepted during an outage. A
		// change that keeps its partition keeps it so (the C plugin sees
		// only the changed fields, so an unnamed partition is the old
		// one). A move to a partition is priced as a new admission, bound
		// to the job by id because job_modify cannot set admin_comment.
		if req.Partition == "" {
			stats.Free.Add(1)
			return Decision{Kind: KindFree, Account: req.Account}, nil
		}
		d, err := l.Admit(ctx, req)
		if err == nil && d.Kind == KindHeld && req.JobID != "" {
			if berr := l.BindHold(ctx, d.HoldID, baseJobID(req.JobID)); berr != nil {
				l.log.Warn("could not bind hold to job", "hold_id", d.HoldID, "job_id", req.JobID, "error", berr)
			}
		}
		d.AdminComment = ""
		return d, err
	case errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		return l.outage(req, Estimate{}, err)
	case err != nil:
		return Decision{Kind: KindRefused, Message: "asbb: " + userError(err)}, err
	}
	var base JobRequest
	if err := json.Unmarshal(h.Request, &base); err != nil {
		return Decision{Kind: KindRefused, Message: "asbb: cannot read the job's hold"}, fmt.Errorf("decode hold %d request: %w", h.ID, err)
	}
	merged := mergeJob(base, req)
	if req.JobID != "" && h.JobID == nil {
		if err := l.BindHold(ctx, h.ID, baseJobID(req.JobID)); err != nil {
			l.log.Warn("could not bind hold to job", "hold_id", h.ID, "job_id", req.JobID, "error", err)
		}
	}
	merged, den, done := l.resolveJob(merged)
	if done {
		return l.refuse(merged, den, nil), nil
	}
	est, priced, err := l.cfg.Price(merged, merged.Partition)
	if err != nil {
		if errors.As(err, &den) {
			return l.refuse(merged, den, nil), nil
		}
		return Decision{Kind: KindRefused, Message: "asbb: " + userError(err)}, err
	}
	if h.Status != "active" {
		return Decision{Kind: KindFree, Account: merged.Account, Partition: merged.Partition,
			Message: "asbb: the job's hold is already settled"}, nil
	}
	sameAccount := merged.Account == h.Account && merged.Partition == h.Partition
	if !priced {
		if _, err := l.ReleaseHold(ctx, h.ID, actorOf(merged), "job moved to an unpriced partition"); err != nil {
			return l.outage(merged, Estimate{}, err)
		}
		return Decision{Kind: KindFree, Account: merged.Account, Partition: merged.Partition}, nil
	}
	if !sameAccount {
		// Take the new hold first so a refusal leaves the old one intact.
		merged.IdempotencyKey = ""
		d, err := l.hold(ctx, merged, est, strconv.FormatInt(h.ID, 10))
		if err != nil || d.Kind != KindHeld {
			return d, err
		}
		reason := "job moved to account " + merged.Account + " partition " + merged.Partition
		if err := l.replaceHold(ctx, h.ID, d.HoldID, baseJobID(req.JobID), actorOf(merged), reason); err != nil {
			l.log.Error("release of replaced hold failed; recovery will release it", "hold_id", h.ID, "error", err)
		}
		d.AdminComment = "" // the job keeps naming the old hold, which links here
		return d, nil
	}
	err = l.AdjustHold(ctx, h.ID, est.Total, est.Resources.Tasks, est, merged, actorOf(merged), "job modified")
	var adjDen *Denial
	switch {
	case err == nil:
		stats.Held.Add(1)
		return Decision{Kind: KindHeld, HoldID: h.ID, Amount: est.Total, Estimate: &est, Account: merged.Account,
			Partition: merged.Partition,
			Message:   fmt.Sprintf("asbb: hold re-priced to %s (%s)", FormatMoney(est.Total, est.Currency), est.Explanation)}, nil
	case errors.As(err, &adjDen):
		adjDen.Detail = est.Explanation
		// The user needs the full worst case, not the increase alone.
		adjDen.Amount = est.Total
		return l.refuse(merged, adjDen, &est), nil
	case errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		return l.outage(merged, est, err)
	}
	return Decision{Kind: KindRefused, Message: "asbb: " + userError(err)}, err
}

// mergeJob lays the set fields of a change over a job's stored request.
func mergeJob(base, ch JobRequest) JobRequest {
	m := base
	str := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	u32 := func(dst *uint32, v uint32) {
		if v != NoVal && v != 0 {
			*dst = v
		}
	}
	str(&m.Cluster, ch.Cluster)
	str(&m.Account, ch.Account)
	str(&m.Partition, ch.Partition)
	str(&m.User, ch.User)
	str(&m.TresPerNode, ch.TresPerNode)
	str(&m.TresPerJob, ch.TresPerJob)
	str(&m.ArrayInx, ch.ArrayInx)
	str(&m.JobID, ch.JobID)
	if ch.AdminComment != "" {
		m.AdminComment = ch.AdminComment
	}
	u32(&m.TimeLimit, ch.TimeLimit)
	u32(&m.MinNodes, ch.MinNodes)
	u32(&m.MaxNodes, ch.MaxNodes)
	u32(&m.NumTasks, ch.NumTasks)
	u32(&m.MinCPUs, ch.MinCPUs)
	if ch.CPUsPerTask != NoVal16 && ch.CPUsPerTask != 0 {
		m.CPUsPerTask = ch.CPUsPerTask
	}
	if ch.PnMinMemory != NoVal64 && ch.PnMinMemory != 0 {
		m.PnMinMemory = ch.PnMinMemory
	}
	if ch.UserID != 0 {
		m.UserID = ch.UserID
	}
	m.IdempotencyKey = ""
	return m
}
