package budget_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

// fakeSlurm stands in for Slurm only; the database is real.
type fakeSlurm struct {
	jobs  []budget.SlurmJob
	err   error
	calls atomic.Int64
}

func (f *fakeSlurm) Jobs(ctx context.Context, users []string) ([]budget.SlurmJob, error) {
	f.calls.Add(1)
	return f.jobs, f.err
}

func recoveryLedger(t *testing.T) *budget.Ledger {
	t.Helper()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "proj", Budget: dec("10000"), Actor: "test"})
	return l
}

func takeHold(t *testing.T, l *budget.Ledger, age time.Duration) int64 {
	t.Helper()
	d, err := l.Admit(context.Background(), job("proj", 1, 60))
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %+v, %v", d, err)
	}
	if age > 0 {
		if _, err := l.Pool().Exec(context.Background(), `UPDATE holds SET created_at = now() - $2::interval WHERE id = $1`,
			d.HoldID, fmt.Sprintf("%d seconds", int(age.Seconds()))); err != nil {
			t.Fatal(err)
		}
	}
	return d.HoldID
}

func slurmJob(id uint32, state string, hold int64) budget.SlurmJob {
	j := budget.SlurmJob{JobID: id, ArrayTaskID: budget.NoVal, State: state, Account: "proj", Partition: "cpu-aws",
		User: "alice", Nodes: 1, CPUs: 1}
	if hold != 0 {
		j.AdminComment = fmt.Sprintf("asbb:%d", hold)
	}
	return j
}

func holdState(t *testing.T, l *budget.Ledger, id int64) budget.Hold {
	t.Helper()
	h, err := l.GetHold(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRecoverNeverReleasesLiveJobs(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	ctx := context.Background()
	// Holds far older than reconciliation_timeout (7 days) whose jobs are
	// live in every way Slurm can say so.
	states := []string{"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "STOPPED", "running"}
	q := &fakeSlurm{}
	var holds []int64
	for i, st := range states {
		h := takeHold(t, l, 30*24*time.Hour)
		holds = append(holds, h)
		q.jobs = append(q.jobs, slurmJob(uint32(100+i), st, h))
	}
	// One more is bound to its job already and the job carries no marker.
	hb := takeHold(t, l, 30*24*time.Hour)
	if err := l.BindHold(ctx, hb, "200"); err != nil {
		t.Fatal(err)
	}
	q.jobs = append(q.jobs, slurmJob(200, "RUNNING", 0))
	holds = append(holds, hb)
	rep, err := l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Released != 0 || rep.Settled != 0 || rep.Kept != len(holds) || rep.Bound != len(states) {
		t.Errorf("report %+v; want all %d kept and %d bound", rep, len(holds), len(states))
	}
	for i, id := range holds {
		h := holdState(t, l, id)
		if h.Status != "active" {
			t.Errorf("hold %d of a live job is %s (%v)", id, h.Status, h.CloseReason)
		}
		if i < len(states) && (h.JobID == nil || *h.JobID != fmt.Sprint(100+i)) {
			t.Errorf("hold %d bound to %v, want %d", id, h.JobID, 100+i)
		}
	}
	mustVerify(t, l)
}

func TestRecoverReleasesOrphansAndSettlesFinished(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	ctx := context.Background()
	orphan := takeHold(t, l, time.Hour)      // no job carries its marker
	young := takeHold(t, l, 0)               // just taken: its job may not exist yet
	gone := takeHold(t, l, time.Hour)        // bound, job purged from Slurm
	finished := takeHold(t, l, 2*time.Hour)  // job completed, hook missed it
	justEnded := takeHold(t, l, 2*time.Hour) // job ended seconds ago
	odd := takeHold(t, l, time.Hour)         // unknown state, before timeout
	oddOld := takeHold(t, l, 8*24*time.Hour) // unknown state, past timeout
	if err := l.BindHold(ctx, gone, "300"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	done := slurmJob(301, "COMPLETED", finished)
	done.StartTime, done.EndTime = now-7200, now-1800 // 1.5 h at $5/node-hour (an overrun of the 1 h limit)
	recent := slurmJob(302, "CANCELLED", justEnded)
	recent.StartTime, recent.EndTime = now-100, now-5
	q := &fakeSlurm{jobs: []budget.SlurmJob{done, recent, slurmJob(303, "REVOKED", odd), slurmJob(304, "REVOKED", oddOld),
		// A new job that reuses the purged id 300 but names another hold
		// must not keep hold "gone" alive.
		slurmJob(300, "RUNNING", 999999)}}

	dry, err := l.Recover(ctx, q, budget.RecoverOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Released != 3 || dry.Settled != 1 {
		t.Errorf("dry run %+v; want 3 releases and 1 settlement planned", dry)
	}
	for _, id := range []int64{orphan, gone, finished, oddOld} {
		if h := holdState(t, l, id); h.Status != "active" {
			t.Fatalf("dry run changed hold %d", id)
		}
	}

	rep, err := l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{orphan: "closed", young: "active", gone: "closed", finished: "closed",
		justEnded: "active", odd: "active", oddOld: "closed"}
	for id, st := range want {
		if h := holdState(t, l, id); h.Status != st {
			t.Errorf("hold %d is %s, want %s (reason %v)", id, h.Status, st, h.CloseReason)
		}
	}
	if r := holdState(t, l, orphan).CloseReason; r == nil || !strings.Contains(*r, "no Slurm job carries") {
		t.Errorf("orphan close reason %v", r)
	}
	if r := holdState(t, l, gone).CloseReason; r == nil || !strings.Contains(*r, "job 300 is no longer known") {
		t.Errorf("gone close reason %v", r)
	}
	h := holdState(t, l, finished)
	if !h.Charged.Equal(dec("7.50")) || h.CloseReason == nil || *h.CloseReason != "settled" {
		t.Errorf("finished hold charged %s (%v), want 7.50 settled", h.Charged, h.CloseReason)
	}
	if rep.Released != 3 || rep.Settled != 1 || rep.Errors != 0 {
		t.Errorf("report %+v", rep)
	}
	// A second sweep settles nothing twice.
	rep2, err := l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil || rep2.Released != 0 || rep2.Settled != 0 {
		t.Errorf("second sweep %+v, %v", rep2, err)
	}
	// The hook's own late settlement of the finished job is a duplicate.
	s, err := l.SettleJob(ctx, done.End())
	if err != nil || !s.Duplicate {
		t.Errorf("late hook settlement: %+v, %v; want a duplicate", s, err)
	}
	mustVerify(t, l)
}

func TestRecoverWithoutAnswerReleasesNothing(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	id := takeHold(t, l, 30*24*time.Hour)
	_, err := l.Recover(context.Background(), &fakeSlurm{err: errors.New("squeue: no answer within 10s")}, budget.RecoverOptions{})
	if err == nil {
		t.Fatal("Recover succeeded without an answer from Slurm")
	}
	if h := holdState(t, l, id); h.Status != "active" {
		t.Errorf("hold released without an answer from Slurm")
	}
}

func TestRecoverArrays(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	ctx := context.Background()
	j := job("proj", 1, 60)
	j.ArrayInx = "1-3"
	d, err := l.Admit(ctx, j)
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatal(d, err)
	}
	l.Pool().Exec(ctx, `UPDATE holds SET created_at = now() - interval '1 hour' WHERE id = $1`, d.HoldID)
	now := time.Now().Unix()
	task := func(id, task uint32, state string) budget.SlurmJob {
		s := slurmJob(id, state, d.HoldID)
		s.ArrayJobID, s.ArrayTaskID = 50, task
		if state == "COMPLETED" {
			s.StartTime, s.EndTime = now-4000, now-400
		}
		return s
	}
	pendingRest := slurmJob(50, "PENDING", d.HoldID)
	pendingRest.ArrayJobID = 50
	q := &fakeSlurm{jobs: []budget.SlurmJob{task(51, 1, "COMPLETED"), pendingRest}}
	rep, err := l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := holdState(t, l, d.HoldID)
	if h.Status != "active" || h.JobID == nil || *h.JobID != "50" || rep.Released != 0 {
		t.Errorf("array with a pending rest: hold %s bound to %v, report %+v", h.Status, h.JobID, rep)
	}
	// All tasks finished; two are still listed, one was purged.
	q.jobs = []budget.SlurmJob{task(51, 1, "COMPLETED"), task(50, 3, "COMPLETED")}
	if _, err := l.Recover(ctx, q, budget.RecoverOptions{}); err != nil {
		t.Fatal(err)
	}
	h = holdState(t, l, d.HoldID)
	if h.SettledTasks != 2 || h.Status != "active" {
		t.Errorf("after two finished tasks: %d settled, %s", h.SettledTasks, h.Status)
	}
	// Once Slurm has forgotten the array, the rest is released.
	q.jobs = nil
	if _, err := l.Recover(ctx, q, budget.RecoverOptions{}); err != nil {
		t.Fatal(err)
	}
	if h = holdState(t, l, d.HoldID); h.Status != "closed" || !h.Remaining.IsZero() {
		t.Errorf("forgotten array: %s, remaining %s", h.Status, h.Remaining)
	}
	mustVerify(t, l)
}

func TestRecoverOneSweeperAtATime(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	ctx := context.Background()
	id := takeHold(t, l, time.Hour)
	conn, err := l.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// Another instance holds the sweep lock ("asbb-rcv").
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(0x617362622d726376)); err != nil {
		t.Fatal(err)
	}
	q := &fakeSlurm{}
	rep, err := l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil || !rep.Skipped || q.calls.Load() != 0 {
		t.Errorf("report %+v, err %v, %d Slurm calls; want a skip", rep, err, q.calls.Load())
	}
	conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(0x617362622d726376))
	rep, err = l.Recover(ctx, q, budget.RecoverOptions{})
	if err != nil || rep.Skipped || rep.Released != 1 || holdState(t, l, id).Status != "closed" {
		t.Errorf("after unlock: %+v, %v", rep, err)
	}
}

func TestBindHolds(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	ctx := context.Background()
	q := &fakeSlurm{}
	// Nothing unbound: Slurm is not asked.
	rep, err := l.BindHolds(ctx, q, time.Minute)
	if err != nil || q.calls.Load() != 0 || rep.Unbound != 0 {
		t.Fatalf("empty bind: %+v, %v, %d calls", rep, err, q.calls.Load())
	}
	a := takeHold(t, l, 0)
	b := takeHold(t, l, 0)
	old := takeHold(t, l, time.Hour) // outside the window
	q.jobs = []budget.SlurmJob{slurmJob(10, "PENDING", a), slurmJob(11, "RUNNING", old)}
	rep, err = l.BindHolds(ctx, q, 10*time.Minute)
	if err != nil || rep.Unbound != 2 || rep.Bound != 1 || q.calls.Load() != 1 {
		t.Fatalf("bind: %+v, %v", rep, err)
	}
	if h := holdState(t, l, a); h.JobID == nil || *h.JobID != "10" {
		t.Errorf("hold a bound to %v", h.JobID)
	}
	if h := holdState(t, l, b); h.JobID != nil {
		t.Errorf("hold b bound to %v without a job", *h.JobID)
	}
	if h := holdState(t, l, old); h.JobID != nil {
		t.Errorf("hold outside the window bound")
	}
	// The C plugin's job_modify knows only the job id; binding lets Modify
	// find the hold and re-price it.
	ch := budget.UnsetJob()
	ch.JobID, ch.TimeLimit = "10", 120
	d, err := l.Modify(ctx, ch)
	if err != nil || d.Kind != budget.KindHeld || d.HoldID != a || !d.Amount.Equal(dec("12")) {
		t.Errorf("modify by job id: %+v, %v", d, err)
	}
	// A failing Slurm is an error, not a silent no-op.
	q.err = errors.New("squeue: timeout")
	if _, err := l.BindHolds(ctx, q, 10*time.Minute); err == nil {
		t.Error("BindHolds hid a Slurm failure")
	}
	mustVerify(t, l)
}

func TestMarkerFits(t *testing.T) {
	t.Parallel()
	l := recoveryLedger(t)
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "other", Budget: dec("100"), Actor: "test"})
	ctx := context.Background()
	id := takeHold(t, l, 0)
	cases := []struct {
		j    budget.SlurmJob
		want bool
	}{
		{slurmJob(1, "COMPLETED", 0), true},
		{budget.SlurmJob{JobID: 1, Account: "other", User: "alice"}, false},
		{budget.SlurmJob{JobID: 1, Account: "proj", User: "mallory"}, false},
	}
	for i, c := range cases {
		got, err := l.MarkerFits(ctx, id, c.j)
		if err != nil || got != c.want {
			t.Errorf("case %d: %v, %v; want %v", i, got, err, c.want)
		}
	}
	if ok, err := l.MarkerFits(ctx, 987654, slurmJob(1, "COMPLETED", 0)); ok || err != nil {
		t.Errorf("missing hold fits: %v, %v", ok, err)
	}
}
