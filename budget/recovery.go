package budget

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SlurmJob is one job as Slurm lists it: a plain job, one array task, or
// the still-pending rest of an array (ArrayTaskID NoVal, JobID = the
// array's id).
type SlurmJob struct {
	JobID       uint32 `json:"job_id"`
	ArrayJobID  uint32 `json:"array_job_id,omitempty"`  // 0 when not part of an array
	ArrayTaskID uint32 `json:"array_task_id,omitempty"` // NoVal unless one task
	// State is the job state as Slurm prints it (PENDING, RUNNING,
	// COMPLETING, COMPLETED, CANCELLED, ...).
	State string `json:"job_state"`
	// AdminComment is only ever filled from a source users cannot forge
	// (squeue --json, jobcomp); it carries the "asbb:<hold id>" marker.
	AdminComment string `json:"admin_comment,omitempty"`
	Cluster      string `json:"cluster,omitempty"`
	Account      string `json:"account,omitempty"`
	Partition    string `json:"partition,omitempty"`
	User         string `json:"user,omitempty"`
	StartTime    int64  `json:"start_time"` // unix seconds; 0 = not started
	EndTime      int64  `json:"end_time"`
	Nodes        uint32 `json:"nodes"`
	CPUs         uint32 `json:"cpus"`
	TresAlloc    string `json:"tres_alloc,omitempty"`
}

// SlurmQuerier asks Slurm which jobs exist. The real one runs squeue with a
// hard timeout (budget/slurm); tests fake only this side, never the
// database.
type SlurmQuerier interface {
	// Jobs lists the jobs slurmctld knows, finished ones included (until
	// MinJobAge purges them). A non-empty users narrows the listing to
	// those users' jobs. An error means "no answer": callers must not
	// conclude that any job is gone.
	Jobs(ctx context.Context, users []string) ([]SlurmJob, error)
}

// Job states as Slurm prints them, by what recovery may do about them.
var (
	// liveStates may still run or be charged: their holds are never
	// released. The flag states (COMPLETING, REQUEUED, ...) are listed
	// because Slurm prints them instead of the base state while set.
	liveStates = map[string]bool{"PENDING": true, "RUNNING": true, "SUSPENDED": true, "COMPLETING": true,
		"CONFIGURING": true, "RESIZING": true, "REQUEUED": true, "REQUEUE_FED": true, "REQUEUE_HOLD": true,
		"SPECIAL_EXIT": true, "STOPPED": true, "SIGNALING": true, "STAGE_OUT": true, "POWER_UP_NODE": true,
		"RESV_DEL_HOLD": true, "UPDATE_DB": true}
	// finishedStates are final: the job's record has everything needed to
	// settle it.
	finishedStates = map[string]uint32{"COMPLETED": JobComplete, "CANCELLED": JobCancelled, "FAILED": JobFailed,
		"TIMEOUT": JobTimeout, "NODE_FAIL": JobNodeFail, "PREEMPTED": JobPreempted, "BOOT_FAIL": JobBootFail,
		"DEADLINE": JobDeadline, "OUT_OF_MEMORY": JobOOM}
)

// normState reduces "CANCELLED by 0" or "cancelled+" to "CANCELLED".
func normState(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if i := strings.IndexAny(s, " +"); i >= 0 {
		s = s[:i]
	}
	return s
}

// Live reports whether the job may still run or be charged.
func (j SlurmJob) Live() bool { return liveStates[normState(j.State)] }

// Finished reports whether the job reached a final state.
func (j SlurmJob) Finished() bool { _, ok := finishedStates[normState(j.State)]; return ok }

// StateCode is the numeric Slurm state of a state name (NoVal if unknown).
func StateCode(name string) uint32 {
	n := normState(name)
	if c, ok := finishedStates[n]; ok {
		return c
	}
	switch n {
	case "PENDING":
		return JobPending
	case "COMPLETING":
		// What an end-of-job hook sees: the job has ended (the epilog is
		// part of completing); its final state is masked by the flag.
		return JobComplete
	case "RUNNING", "CONFIGURING":
		return JobRunning
	case "SUSPENDED":
		return JobSuspended
	}
	return NoVal
}

// BindID is the job id a hold of this job binds to: the array's id for an
// array task, so one hold covers the whole array.
func (j SlurmJob) BindID() string {
	if j.ArrayJobID != 0 && j.ArrayJobID != NoVal {
		return strconv.FormatUint(uint64(j.ArrayJobID), 10)
	}
	return strconv.FormatUint(uint64(j.JobID), 10)
}

// End is the job's settlement record.
func (j SlurmJob) End() JobEnd {
	// Cluster stays empty: every settlement path (jobcomp, the epilogs,
	// recovery) must key a job by the same cluster string, the configured
	// cluster.name, or a job would be charged once per spelling.
	e := JobEnd{JobID: j.JobID, ArrayJobID: j.ArrayJobID, ArrayTaskID: j.ArrayTaskID,
		Account: j.Account, Partition: j.Partition, User: j.User, AdminComment: j.AdminComment,
		StartTime: j.StartTime, EndTime: j.EndTime, State: StateCode(j.State), Nodes: j.Nodes, CPUs: j.CPUs,
		TresAlloc: j.TresAlloc}
	if e.ArrayJobID == 0 {
		e.ArrayTaskID = NoVal
	}
	// StartTime stays as Slurm reports it, even when it equals EndTime (a
	// job cancelled while pending, or one that ran under a second): it is
	// part of the settlement key, and jobcomp.lua sends the same value.
	return e
}

// RecoverOptions tunes a recovery sweep; zero values take the config's
// recovery section.
type RecoverOptions struct {
	DryRun                bool
	MinHoldAge            time.Duration
	ReconciliationTimeout time.Duration
	Actor                 string
}

// RecoveryAction is what a sweep did (or, dry, would do) about one hold.
type RecoveryAction struct {
	HoldID  int64  `json:"hold_id"`
	JobID   string `json:"job_id,omitempty"`
	Action  string `json:"action"` // bind, settle, release, keep
	Reason  string `json:"reason"`
	Amount  string `json:"amount,omitempty"`
	Error   string `json:"error,omitempty"`
	Account string `json:"account"`
}

// RecoveryReport sums up a sweep.
type RecoveryReport struct {
	// Skipped is set when another instance held the sweep lock.
	Skipped  bool             `json:"skipped"`
	DryRun   bool             `json:"dry_run"`
	Holds    int              `json:"holds"`
	Jobs     int              `json:"jobs"`
	Bound    int              `json:"bound"`
	Settled  int              `json:"settled"`
	Released int              `json:"released"`
	Kept     int              `json:"kept"`
	Errors   int              `json:"errors"`
	Actions  []RecoveryAction `json:"actions"`
}

// recoveryLockKey is the advisory lock ("asbb-rcv") one sweeper holds.
const recoveryLockKey int64 = 0x617362622d726376

// Recover reconciles the active holds of this cluster with what Slurm
// knows. It binds holds to the jobs whose admin_comment names them; settles
// finished jobs the end-of-job hooks missed (from Slurm's own record, so a
// late hook or a spool replay is a duplicate, not a second charge);
// releases, with an audit reason, holds whose job Slurm no longer knows
// once they are older than MinHoldAge (a hold is taken before its job
// exists), and holds whose job has been in a state that is neither live nor
// final for longer than ReconciliationTimeout. A hold whose job is pending,
// running, suspended or in any other live state is never released. If
// Slurm cannot be asked, nothing is released. Two instances may run at
// once: a PostgreSQL advisory lock lets one sweep at a time.
func (l *Ledger) Recover(ctx context.Context, q SlurmQuerier, opts RecoverOptions) (RecoveryReport, error) {
	rep := RecoveryReport{DryRun: opts.DryRun, Actions: []RecoveryAction{}}
	if opts.MinHoldAge <= 0 {
		opts.MinHoldAge = l.cfg.Recovery.MinHoldAge.Duration
	}
	if opts.ReconciliationTimeout <= 0 {
		opts.ReconciliationTimeout = l.cfg.Recovery.ReconciliationTimeout.Duration
	}
	if opts.Actor == "" {
		opts.Actor = "asbb-recovery"
	}
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return rep, dbErr("recovery lock", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, recoveryLockKey).Scan(&got); err != nil {
		return rep, dbErr("recovery lock", err)
	}
	if !got {
		rep.Skipped = true
		return rep, nil
	}
	defer func() {
		// Unlock even when ctx is done: the lock belongs to the session,
		// and the connection goes back to the pool.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, recoveryLockKey); err != nil {
			l.log.Warn("recovery unlock failed; closing the connection", "error", err)
			conn.Conn().Close(uctx)
		}
	}()

	holds, err := l.activeHolds(ctx, 0)
	if err != nil {
		return rep, err
	}
	rep.Holds = len(holds)
	if len(holds) == 0 {
		return rep, nil
	}
	jobs, err := q.Jobs(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("recovery: ask slurm: %w", err)
	}
	rep.Jobs = len(jobs)
	byMarker, byID := indexJobs(jobs)
	now := l.now()
	for _, h := range holds {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		l.recoverHold(ctx, h, related(h, byMarker, byID), now, opts, &rep)
	}
	l.log.Info("recovery sweep", "holds", rep.Holds, "jobs", rep.Jobs, "bound", rep.Bound, "settled", rep.Settled,
		"released", rep.Released, "kept", rep.Kept, "errors", rep.Errors, "dry_run", opts.DryRun)
	return rep, nil
}

func (l *Ledger) recoverHold(ctx context.Context, h Hold, rel []SlurmJob, now time.Time, opts RecoverOptions, rep *RecoveryReport) {
	act := func(a RecoveryAction) {
		a.HoldID, a.Account = h.ID, h.Account
		switch {
		case a.Error != "":
			rep.Errors++
		case a.Action == "bind":
			rep.Bound++
		case a.Action == "settle":
			rep.Settled++
		case a.Action == "release":
			rep.Released++
		case a.Action == "keep":
			rep.Kept++
		}
		rep.Actions = append(rep.Actions, a)
	}
	jobID := ""
	if h.JobID != nil {
		jobID = *h.JobID
	}
	if len(rel) > 0 && jobID == "" {
		jobID = rel[0].BindID()
		a := RecoveryAction{Action: "bind", JobID: jobID, Reason: "admin_comment of job " + jobID + " carries asbb:" + strconv.FormatInt(h.ID, 10)}
		if !opts.DryRun {
			if err := l.BindHold(ctx, h.ID, jobID); err != nil {
				a.Error = err.Error()
			}
		}
		act(a)
	}
	var live, finished, other []SlurmJob
	for _, j := range rel {
		switch {
		case j.Live():
			live = append(live, j)
		case j.Finished():
			finished = append(finished, j)
		default:
			other = append(other, j)
		}
	}
	if len(live) > 0 {
		act(RecoveryAction{Action: "keep", JobID: jobID, Reason: fmt.Sprintf("job %s is %s", jobName(live[0]), live[0].State)})
		return
	}
	age := now.Sub(h.CreatedAt)
	if len(finished) > 0 {
		for _, j := range finished {
			ended := time.Unix(j.EndTime, 0)
			if now.Sub(ended) < opts.MinHoldAge {
				// The end-of-job hook is probably settling it right now.
				act(RecoveryAction{Action: "keep", JobID: jobName(j), Reason: "job " + jobName(j) + " ended " + now.Sub(ended).Round(time.Second).String() + " ago"})
				continue
			}
			e := j.End()
			e.AdminComment = commentWithHold(e.AdminComment, h.ID)
			e.Actor = opts.Actor
			a := RecoveryAction{Action: "settle", JobID: jobName(j), Reason: fmt.Sprintf("job %s is %s and was not settled", jobName(j), j.State)}
			if !opts.DryRun {
				s, err := l.SettleJob(ctx, e)
				if err != nil {
					a.Error = err.Error()
				} else {
					a.Amount = s.Actual.String()
					if s.Duplicate {
						a.Reason += " (already settled)"
					}
				}
			}
			act(a)
		}
		return
	}
	if len(other) > 0 {
		if age < opts.ReconciliationTimeout {
			act(RecoveryAction{Action: "keep", JobID: jobID, Reason: fmt.Sprintf("job %s is %s (released after recovery.reconciliation_timeout)", jobName(other[0]), other[0].State)})
			return
		}
		l.recoveryRelease(ctx, h, jobID, fmt.Sprintf("recovery: job %s in state %s for longer than reconciliation_timeout %s",
			jobName(other[0]), other[0].State, opts.ReconciliationTimeout), opts, act)
		return
	}
	if age < opts.MinHoldAge {
		act(RecoveryAction{Action: "keep", JobID: jobID, Reason: "hold is younger than recovery.min_hold_age"})
		return
	}
	reason := fmt.Sprintf("recovery: no Slurm job carries asbb:%d (the submission never became a job, or the job is gone)", h.ID)
	if jobID != "" {
		reason = fmt.Sprintf("recovery: job %s is no longer known to Slurm", jobID)
	}
	l.recoveryRelease(ctx, h, jobID, reason, opts, act)
}

func (l *Ledger) recoveryRelease(ctx context.Context, h Hold, jobID, reason string, opts RecoverOptions, act func(RecoveryAction)) {
	a := RecoveryAction{Action: "release", JobID: jobID, Reason: reason, Amount: h.Remaining.String()}
	if !opts.DryRun {
		amt, err := l.ReleaseHold(ctx, h.ID, opts.Actor, reason)
		if err != nil {
			a.Error = err.Error()
		}
		a.Amount = amt.String()
	}
	act(a)
}

func jobName(j SlurmJob) string {
	if j.ArrayJobID != 0 && j.ArrayJobID != NoVal {
		if j.ArrayTaskID != NoVal && j.ArrayTaskID != Infinite {
			return fmt.Sprintf("%d_%d", j.ArrayJobID, j.ArrayTaskID)
		}
		return fmt.Sprintf("%d_[pending]", j.ArrayJobID)
	}
	return strconv.FormatUint(uint64(j.JobID), 10)
}

// indexJobs indexes jobs by the hold their admin_comment names and by the
// id a hold binds to.
func indexJobs(jobs []SlurmJob) (byMarker map[int64][]SlurmJob, byID map[string][]SlurmJob) {
	byMarker = map[int64][]SlurmJob{}
	byID = map[string][]SlurmJob{}
	for _, j := range jobs {
		if id, ok := HoldIDFromComment(j.AdminComment); ok {
			byMarker[id] = append(byMarker[id], j)
		}
		byID[j.BindID()] = append(byID[j.BindID()], j)
	}
	return byMarker, byID
}

// related are the Slurm jobs of a hold: those whose marker names it and
// those with its bound id (a job of the same id that names another hold is
// a different job: Slurm ids restart after a state loss).
func related(h Hold, byMarker map[int64][]SlurmJob, byID map[string][]SlurmJob) []SlurmJob {
	seen := map[uint32]bool{}
	var out []SlurmJob
	for _, j := range byMarker[h.ID] {
		seen[j.JobID] = true
		out = append(out, j)
	}
	if h.JobID != nil {
		for _, j := range byID[*h.JobID] {
			if other, ok := HoldIDFromComment(j.AdminComment); ok && other != h.ID {
				continue
			}
			if !seen[j.JobID] {
				seen[j.JobID] = true
				out = append(out, j)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].JobID < out[b].JobID })
	return out
}

// activeHolds lists this cluster's active holds; window > 0 keeps only the
// unbound ones younger than window (what the binder looks for).
func (l *Ledger) activeHolds(ctx context.Context, window time.Duration) ([]Hold, error) {
	var since *time.Time
	if window > 0 {
		t := l.now().Add(-window)
		since = &t
	}
	rows, err := l.pool.Query(ctx, `SELECT `+holdCols+` FROM holds h JOIN accounts a ON a.id = h.account_id
		WHERE h.status = 'active' AND h.cluster = $1
		  AND ($2::timestamptz IS NULL OR (h.job_id IS NULL AND h.created_at >= $2))
		ORDER BY h.id`, l.cluster(""), since)
	if err != nil {
		return nil, dbErr("list active holds", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, dbErr("list active holds", err)
		}
		out = append(out, h)
	}
	return out, dbErr("list active holds", rows.Err())
}

// BindReport sums up a bind pass.
type BindReport struct {
	Unbound int `json:"unbound"` // unbound active holds in the window
	Jobs    int `json:"jobs"`    // jobs Slurm listed (0 = not asked)
	Bound   int `json:"bound"`
	Errors  int `json:"errors"`
}

// BindHolds binds the unbound active holds taken within window to the jobs
// whose admin_comment names them, so that Modify (which the C plugin's
// job_modify calls with the job id alone) and SettleJob find them by job
// id. It asks Slurm only when there is something to bind, and only about
// the users who own such holds.
func (l *Ledger) BindHolds(ctx context.Context, q SlurmQuerier, window time.Duration) (BindReport, error) {
	var rep BindReport
	if window <= 0 {
		window = 10 * time.Minute
	}
	holds, err := l.activeHolds(ctx, window)
	if err != nil {
		return rep, err
	}
	rep.Unbound = len(holds)
	if len(holds) == 0 {
		return rep, nil
	}
	userSet := map[string]bool{}
	var users []string
	for _, h := range holds {
		if h.User == "" {
			users = nil // a hold without a user: list everyone's jobs
			break
		}
		if !userSet[h.User] {
			userSet[h.User] = true
			users = append(users, h.User)
		}
	}
	jobs, err := q.Jobs(ctx, users)
	if err != nil {
		return rep, fmt.Errorf("bind holds: ask slurm: %w", err)
	}
	rep.Jobs = len(jobs)
	byMarker, _ := indexJobs(jobs)
	for _, h := range holds {
		rel := byMarker[h.ID]
		if len(rel) == 0 {
			continue
		}
		jobID := rel[0].BindID()
		if err := l.BindHold(ctx, h.ID, jobID); err != nil {
			rep.Errors++
			if !errors.Is(err, ErrConflict) {
				return rep, err
			}
			l.log.Warn("cannot bind hold", "hold_id", h.ID, "job_id", jobID, "error", err)
			continue
		}
		rep.Bound++
		l.log.Debug("hold bound to job", "hold_id", h.ID, "job_id", jobID)
	}
	return rep, nil
}

// MarkerFits reports whether hold id can be the hold of job j: it exists
// and its account and user are the job's. Use it for a marker read from a
// source users can forge (scontrol's text output); a forged marker could
// otherwise charge or release someone else's hold.
func (l *Ledger) MarkerFits(ctx context.Context, id int64, j SlurmJob) (bool, error) {
	h, err := l.GetHold(ctx, id)
	if errors.Is(err, ErrHoldNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return l.holdFits(h, j.Account, j.User, j.Cluster), nil
}

// holdFits reports whether a hold can be a job's: same account (or the
// default one for a job without), same user, same cluster.
func (l *Ledger) holdFits(h Hold, account, user, cluster string) bool {
	if account == "" {
		account = l.cfg.Accounts.Default
	}
	return h.Account == account && h.User == user && (h.Cluster == l.cluster(cluster) || h.Cluster == "*")
}
