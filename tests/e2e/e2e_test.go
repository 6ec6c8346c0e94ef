package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/spool"
)

// loadSubmissions is how many jobs the load scenario submits.
const loadSubmissions = 2000

// TestSlurmEnforcesBudgets runs the same scenarios through the C plugin and
// through job_submit.lua, one after the other on one cluster (switched by
// scontrol reconfigure); jobcomp.lua settles in both, and EpilogSlurmctld
// runs asbb-epilog as a deployment would (so every job end is settled
// twice, and must be charged once).
func TestSlurmEnforcesBudgets(t *testing.T) {
	e := newEnv(t, cPlugin, envOptions{slurmConf: []string{
		// Start jobs as soon as CPUs free up: after an EpilogSlurmctld
		// the freed CPUs are only used by the next backfill cycle
		// (bf_interval, 30 s by default), and batch_sched_delay holds
		// batch jobs back by up to 3 s.
		"SchedulerParameters=batch_sched_delay=0,bf_interval=1",
	}})
	for _, p := range []Path{cPlugin, luaPath} {
		ok := t.Run(p.Name, func(t *testing.T) {
			if e.cluster.path != p {
				e.cluster.use(t, p)
			}
			runPath(t, e, p)
		})
		if !ok {
			// The next path runs on the same cluster and database.
			t.Logf("%s failed; continuing with the next path", p.Name)
		}
	}
}

func runPath(t *testing.T, e *env, p Path) {
	pid := e.cluster.ctldPID(t)
	// Parallel scenarios: each has its own account, so their ledger
	// arithmetic is independent.
	t.Run("while PostgreSQL is up", func(t *testing.T) {
		t.Run("an over-budget sbatch is refused, telling the account, what it has and the job's maximum cost", func(t *testing.T) {
			t.Parallel()
			overBudgetIsRefused(t, e, p)
		})
		t.Run("an affordable job is held at submit and charged rate times elapsed at its end", func(t *testing.T) {
			t.Parallel()
			affordableJobIsHeldAndCharged(t, e, p)
		})
		t.Run("a 20-task array is held for 20 tasks and each task is charged once", func(t *testing.T) {
			t.Parallel()
			arrayIsHeldPerTask(t, e, p)
		})
		t.Run("a job cancelled while pending has its hold released and is not charged", func(t *testing.T) {
			t.Parallel()
			cancelledPendingJobIsReleased(t, e, p)
		})
		t.Run("a job on an unpriced partition is free and its user can modify and release it", func(t *testing.T) {
			t.Parallel()
			freeJobCanBeModified(t, e, p)
		})
		t.Run("a pending job's time limit raise beyond the budget is refused and one within it is re-held", func(t *testing.T) {
			t.Parallel()
			timeLimitRaiseIsRepriced(t, e, p)
		})
	})
	// The outage and load scenarios run even when one above failed: they
	// use their own accounts, and a run that shows every failure at once
	// is worth more than a short one.
	e.cluster.requireMarker(t)
	t.Run("with PostgreSQL stopped at submit, on_db_error applies within the deadline and slurmctld keeps serving", func(t *testing.T) {
		dbDownAtSubmit(t, e, p)
	})
	t.Run("with PostgreSQL stopped while jobs end, every job is charged exactly once after spool replay", func(t *testing.T) {
		dbDownAtJobEnd(t, e, p)
	})
	t.Run(fmt.Sprintf("%d submissions leave slurmctld alive and the ledger consistent", loadSubmissions), func(t *testing.T) {
		manySubmissions(t, e, p)
	})
	e.cluster.requireAlive(t, pid)
	e.verify(t)
}

func acct(p Path, name string) string { return "e2e-" + p.Short + "-" + name }

// 1. Refusal with the numbers.
func overBudgetIsRefused(t *testing.T, e *env, p Path) {
	a := acct(p, "broke")
	e.account(t, a, "1.00")
	r := e.cluster.sbatchFull("-A", a, "--time=10", "--wrap", "true")
	if r.err == nil {
		t.Fatalf("sbatch of a $7.20 job on a $1.00 account was accepted: %s", r.stdout)
	}
	want := holdFor(1, 10) // 1 CPU x 600 s x $0.01 x 1.2 = $7.20
	for _, s := range []string{a, "$1.00", "$" + want.StringFixed(2), "Job violates accounting/QOS policy"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("sbatch's stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	if got := e.entries(t, a, "hold"); len(got) != 0 {
		t.Errorf("a refused job left %d hold rows", len(got))
	}
	acc := e.getAccount(t, a)
	requireMoney(t, "held", acc.Held, decimal.Zero)
	requireMoney(t, "available", acc.Available, decimal.RequireFromString("1"))
	e.verify(t)
}

// 2. Hold at submit, charge rate x elapsed at the end.
func affordableJobIsHeldAndCharged(t *testing.T, e *env, p Path) {
	a := acct(p, "run")
	e.account(t, a, "100.00")
	id := e.cluster.sbatch(t, "-A", a, "--time=1", "--wrap", "sleep 2")
	j := e.cluster.job(t, id)
	holdID := holdOfJob(t, j)
	want := holdFor(1, 1) // $0.72
	h := e.hold(t, holdID)
	requireMoney(t, "hold amount", h.Amount, want)
	if h.Account != a || h.Partition != "cpu-aws" {
		t.Fatalf("hold %d is on %s/%s, want %s/cpu-aws", holdID, h.Account, h.Partition, a)
	}
	holds := e.entries(t, a, "hold")
	if len(holds) != 1 || !holds[0].Amount.Equal(want) || holds[0].HoldID == nil || *holds[0].HoldID != holdID {
		t.Fatalf("ledger hold rows: %+v, want one of %s for hold %d", holds, want, holdID)
	}

	js := e.cluster.waitJobsDone(t, id, 90*time.Second)
	h = e.waitHoldClosed(t, holdID, 30*time.Second)
	j = js[0]
	if j.State != "COMPLETED" {
		t.Fatalf("job %d ended %s", id, j.State)
	}
	cost := charge(j)
	if el := j.EndTime - j.StartTime; el < 2 {
		t.Fatalf("job %d ran %ds by Slurm's record; sleep 2 takes at least 2", id, el)
	}
	charges := e.entries(t, a, "charge")
	if len(charges) != 1 {
		t.Fatalf("%d charge rows for job %d, want 1: %+v", len(charges), id, charges)
	}
	requireMoney(t, fmt.Sprintf("charge of job %d (%d CPU x %ds)", id, j.CPUs, j.EndTime-j.StartTime), charges[0].Amount, cost)
	if charges[0].JobID == nil || *charges[0].JobID != strconv.FormatUint(uint64(id), 10) {
		t.Errorf("charge row names job %v, want %d", charges[0].JobID, id)
	}
	requireMoney(t, "hold remaining", h.Remaining, decimal.Zero)
	requireMoney(t, "hold charged", h.Charged, cost)
	acc := e.getAccount(t, a)
	requireMoney(t, "account spent", acc.Spent, cost)
	requireMoney(t, "account held", acc.Held, decimal.Zero)
	requireMoney(t, "account available", acc.Available, decimal.RequireFromString("100").Sub(cost))
	e.verify(t)
}

// 3. Arrays: one hold for N tasks, one charge per task.
func arrayIsHeldPerTask(t *testing.T, e *env, p Path) {
	a := acct(p, "array")
	e.account(t, a, "100.00")
	id := e.cluster.sbatch(t, "-A", a, "--time=1", "--array=1-20", "--wrap", "true")
	holdID := holdOfJob(t, e.cluster.job(t, id))
	h := e.hold(t, holdID)
	if h.Tasks != 20 {
		t.Fatalf("hold %d is for %d tasks, want 20", holdID, h.Tasks)
	}
	requireMoney(t, "array hold", h.Amount, holdFor(1, 1).Mul(decimal.NewFromInt(20)))

	js := e.cluster.waitJobsDone(t, id, 3*time.Minute)
	h = e.waitHoldClosed(t, holdID, 60*time.Second)
	tasks := map[int64]slurmJob{}
	for _, j := range js {
		if j.ArrayTaskID == nil {
			t.Fatalf("array record without a task id: %+v", j)
		}
		if j.State != "COMPLETED" {
			t.Fatalf("task %d_%d ended %s", id, *j.ArrayTaskID, j.State)
		}
		tasks[*j.ArrayTaskID] = j
	}
	if len(tasks) != 20 {
		t.Fatalf("Slurm has %d task records, want 20", len(tasks))
	}
	charges := e.entries(t, a, "charge")
	byTask := map[int][]string{}
	for _, c := range charges {
		if c.ArrayTaskID == nil {
			t.Fatalf("charge row %d has no array task id", c.ID)
		}
		byTask[*c.ArrayTaskID] = append(byTask[*c.ArrayTaskID], fmt.Sprintf("row %d %s by %s", c.ID, c.Amount, c.Actor))
	}
	for task, rows := range byTask {
		if len(rows) > 1 {
			// e.g. jobcomp and the epilog settling one run under two
			// different run starts.
			t.Errorf("task %d charged %d times: %s", task, len(rows), strings.Join(rows, "; "))
		}
	}
	if len(charges) != 20 || t.Failed() {
		t.Fatalf("%d charge rows, want 20 (one per task)", len(charges))
	}
	total := decimal.Zero
	for _, c := range charges {
		task := *c.ArrayTaskID
		j, ok := tasks[int64(task)]
		if !ok {
			t.Fatalf("charge for task %d, which Slurm does not know", task)
		}
		requireMoney(t, fmt.Sprintf("charge of task %d", task), c.Amount, charge(j))
		total = total.Add(c.Amount)
	}
	if h.SettledTasks != 20 {
		t.Errorf("hold settled %d tasks, want 20", h.SettledTasks)
	}
	requireMoney(t, "hold remaining", h.Remaining, decimal.Zero)
	requireMoney(t, "hold charged", h.Charged, total)
	acc := e.getAccount(t, a)
	requireMoney(t, "account spent", acc.Spent, total)
	requireMoney(t, "account held", acc.Held, decimal.Zero)
	e.verify(t)
}

// 4. Cancelled while pending: released, nothing charged.
func cancelledPendingJobIsReleased(t *testing.T, e *env, p Path) {
	a := acct(p, "cancel")
	e.account(t, a, "10.00")
	id := e.cluster.sbatch(t, "--hold", "-A", a, "--time=5", "--wrap", "true")
	holdID := holdOfJob(t, e.cluster.job(t, id))
	requireMoney(t, "held", e.getAccount(t, a).Held, holdFor(1, 5))
	if out, err := e.cluster.exec(30*time.Second, true, "scancel", strconv.FormatUint(uint64(id), 10)); err != nil {
		t.Fatalf("scancel: %v\n%s", err, out)
	}
	js := e.cluster.waitJobsDone(t, id, 60*time.Second)
	if js[0].State != "CANCELLED" {
		t.Fatalf("job %d is %s, want CANCELLED", id, js[0].State)
	}
	h := e.waitHoldClosed(t, holdID, 30*time.Second)
	requireMoney(t, "hold remaining", h.Remaining, decimal.Zero)
	requireMoney(t, "hold charged", h.Charged, decimal.Zero)
	for _, c := range e.entries(t, a, "charge") {
		requireMoney(t, fmt.Sprintf("charge row %d", c.ID), c.Amount, decimal.Zero)
	}
	acc := e.getAccount(t, a)
	requireMoney(t, "spent", acc.Spent, decimal.Zero)
	requireMoney(t, "held", acc.Held, decimal.Zero)
	requireMoney(t, "available", acc.Available, decimal.RequireFromString("10"))
	e.verify(t)
}

// 5. job_modify re-prices: a raise beyond the budget is refused, one within
// it is accepted and re-held.
func timeLimitRaiseIsRepriced(t *testing.T, e *env, p Path) {
	a := acct(p, "modify")
	e.account(t, a, "10.00")
	id := e.cluster.sbatch(t, "--hold", "-A", a, "--time=1", "--wrap", "true")
	sid := strconv.FormatUint(uint64(id), 10)
	holdID := holdOfJob(t, e.cluster.job(t, id))
	requireMoney(t, "initial hold", e.hold(t, holdID).Amount, holdFor(1, 1))
	if p == cPlugin {
		// The C plugin sees only the job id in job_modify: the library's
		// binder must have bound the hold to it.
		eventually(t, 20*time.Second, fmt.Sprintf("hold %d bound to job %d by the library's binder", holdID, id), func() (bool, string) {
			h := e.hold(t, holdID)
			if h.JobID == nil {
				return false, "unbound"
			}
			return *h.JobID == sid, "bound to " + *h.JobID
		})
	}

	// 60 min = $43.20 > $10.00.
	r := e.cluster.execFull(30*time.Second, true, "scontrol", "update", "jobid="+sid, "TimeLimit=60")
	if r.err == nil {
		t.Fatalf("nobody raised job %d's time limit to 60 min ($%s) on a $10 account: %s%s", id, holdFor(1, 60).StringFixed(2), r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout+r.stderr, "accounting/QOS policy") {
		t.Errorf("scontrol's refusal does not say why: %s%s", r.stdout, r.stderr)
	}
	if j := e.cluster.job(t, id); j.TimeLimit != 1 {
		t.Fatalf("job %d's time limit is %d min after a refused raise, want 1", id, j.TimeLimit)
	}
	requireMoney(t, "hold after the refused raise", e.hold(t, holdID).Amount, holdFor(1, 1))

	// 10 min = $7.20 <= $10.00.
	if out, err := e.cluster.exec(30*time.Second, true, "scontrol", "update", "jobid="+sid, "TimeLimit=10"); err != nil {
		t.Fatalf("a raise to 10 min ($7.20 of $10) was refused: %v\n%s", err, out)
	}
	if j := e.cluster.job(t, id); j.TimeLimit != 10 {
		t.Fatalf("job %d's time limit is %d min, want 10", id, j.TimeLimit)
	}
	h := e.hold(t, holdID)
	requireMoney(t, "hold after the raise", h.Amount, holdFor(1, 10))
	requireMoney(t, "account held", e.getAccount(t, a).Held, holdFor(1, 10))
	if adj := e.entries(t, a, "hold_adjust"); len(adj) != 1 || !adj[0].Amount.Equal(holdFor(1, 10).Sub(holdFor(1, 1))) {
		t.Fatalf("hold_adjust rows %+v, want one of %s", adj, holdFor(1, 10).Sub(holdFor(1, 1)))
	}
	e.verify(t)

	if out, err := e.cluster.exec(30*time.Second, true, "scancel", sid); err != nil {
		t.Fatalf("scancel: %v\n%s", err, out)
	}
	h = e.waitHoldClosed(t, holdID, 30*time.Second)
	requireMoney(t, "hold remaining after cancel", h.Remaining, decimal.Zero)
	requireMoney(t, "account held after cancel", e.getAccount(t, a).Held, decimal.Zero)
	e.verify(t)
}

// An unpriced partition: no hold, and job_modify (scontrol update,
// release) must not refuse the job for lack of one.
func freeJobCanBeModified(t *testing.T, e *env, p Path) {
	a := acct(p, "free")
	e.account(t, a, "1.00")
	id := e.cluster.sbatch(t, "--hold", "-A", a, "-p", "local", "--time=1", "--wrap", "true")
	sid := strconv.FormatUint(uint64(id), 10)
	if j := e.cluster.job(t, id); strings.Contains(j.AdminComment, "asbb:") {
		t.Fatalf("a job on the unpriced partition carries a hold marker %q", j.AdminComment)
	}
	if out, err := e.cluster.exec(30*time.Second, true, "scontrol", "update", "jobid="+sid, "TimeLimit=5"); err != nil {
		t.Errorf("nobody could not raise the time limit of a free job: %v\n%s", err, out)
	}
	if out, err := e.cluster.exec(30*time.Second, true, "scontrol", "release", sid); err != nil {
		// Cancel it, or it stays in the queue for the rest of the suite.
		e.cluster.slurm(30*time.Second, "scancel", sid) //nolint:errcheck // best effort
		t.Fatalf("nobody could not release a free job: %v\n%s", err, out)
	}
	js := e.cluster.waitJobsDone(t, id, 90*time.Second)
	if js[0].State != "COMPLETED" {
		t.Fatalf("job %d ended %s", id, js[0].State)
	}
	for _, typ := range []string{"hold", "charge"} {
		if es := e.entries(t, a, typ); len(es) != 0 {
			t.Errorf("a free job left %d %s rows", len(es), typ)
		}
	}
	requireMoney(t, "available", e.getAccount(t, a).Available, decimal.RequireFromString("1"))
}

// 6a. The database is down at submit: reject (cpu-aws) or accept
// (gpu-aws), within the deadline, and slurmctld keeps serving.
func dbDownAtSubmit(t *testing.T, e *env, p Path) {
	a := acct(p, "outage")
	e.account(t, a, "100.00")
	pid := e.cluster.ctldPID(t)
	e.pg.Stop()
	restarted := false
	defer func() {
		if !restarted {
			e.restartPG(t)
		}
	}()
	// Deadline: submit.timeout inside slurmctld; slack: sbatch's own
	// process start, munge and RPC round trips on a loaded 2-core machine.
	const slack = 2 * time.Second
	limit := submitTimeout + slack

	r := e.cluster.sbatchFull("-A", a, "-p", "cpu-aws", "--time=1", "--wrap", "true")
	if r.err == nil {
		t.Fatalf("on_db_error=reject: job accepted while PostgreSQL was down: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "database is unavailable") || !strings.Contains(r.stderr, "on_db_error=reject") {
		t.Errorf("on_db_error=reject: sbatch's stderr lacks the 'database unavailable' message:\n%s", r.stderr)
	}
	if r.took > limit {
		t.Errorf("on_db_error=reject: sbatch took %s, more than the %s deadline + %s", r.took, submitTimeout, slack)
	}
	t.Logf("on_db_error=reject: refused in %s", r.took.Round(time.Millisecond))

	// It runs at once; it may end before or after PostgreSQL is back
	// (then jobcomp spools it and the replay below charges it).
	r = e.cluster.sbatchFull("-A", a, "-p", "gpu-aws", "--time=1", "--wrap", "sleep 2")
	if r.err != nil {
		t.Fatalf("on_db_error=accept (gpu-aws): job refused while PostgreSQL was down: %v\n%s", r.err, r.stderr)
	}
	if r.took > limit {
		t.Errorf("on_db_error=accept: sbatch took %s, more than the %s deadline + %s", r.took, submitTimeout, slack)
	}
	t.Logf("on_db_error=accept: accepted in %s", r.took.Round(time.Millisecond))
	if !strings.Contains(r.stderr, "accepted without a hold") {
		t.Errorf("on_db_error=accept: the user is not told the job was accepted without a hold:\n%s", r.stderr)
	}
	accepted := parseJobID(t, r.stdout)
	if j := e.cluster.job(t, accepted); strings.Contains(j.AdminComment, "asbb:") {
		t.Fatalf("job %d accepted during the outage carries a hold marker %q", accepted, j.AdminComment)
	}
	e.cluster.requireAlive(t, pid)

	e.restartPG(t)
	restarted = true
	if hs := e.entries(t, a, "hold"); len(hs) != 0 {
		t.Fatalf("the outage left %d hold rows", len(hs))
	}
	// The first submission after the restart is held as usual: the
	// library's pool must not hand out a connection that died with the
	// server.
	after := e.cluster.sbatchFull("--hold", "-A", a, "-p", "cpu-aws", "--time=1", "--wrap", "true")
	if after.err != nil {
		t.Errorf("the first submission after PostgreSQL came back was refused: %v\n%s", after.err, after.stderr)
	} else {
		id := parseJobID(t, after.stdout)
		holdID := holdOfJob(t, e.cluster.job(t, id))
		if out, err := e.cluster.exec(30*time.Second, true, "scancel", strconv.FormatUint(uint64(id), 10)); err != nil {
			t.Fatalf("scancel: %v\n%s", err, out)
		}
		e.waitHoldClosed(t, holdID, 30*time.Second)
	}
	// PostgreSQL hung rather than stopped: connections hang instead of
	// failing at once, so only the deadline bounds the submission.
	holdsBefore := len(e.entries(t, a, "hold"))
	thaw := e.freezePG(t)
	r = e.cluster.sbatchFull("-A", a, "-p", "cpu-aws", "--time=1", "--wrap", "true")
	if r.err == nil {
		t.Errorf("on_db_error=reject: job accepted while PostgreSQL hung: %s", r.stdout)
	} else if !strings.Contains(r.stderr, "database is unavailable") {
		t.Errorf("on_db_error=reject, PostgreSQL hung: sbatch's stderr lacks the 'database unavailable' message:\n%s", r.stderr)
	}
	if r.took > limit {
		t.Errorf("on_db_error=reject, PostgreSQL hung: sbatch took %s, more than the %s deadline + %s", r.took, submitTimeout, slack)
	}
	t.Logf("on_db_error=reject, PostgreSQL hung: answered in %s", r.took.Round(time.Millisecond))
	r = e.cluster.sbatchFull("--hold", "-A", a, "-p", "gpu-aws", "--time=1", "--wrap", "true")
	var hungAccepted uint32
	if r.err != nil {
		t.Errorf("on_db_error=accept, PostgreSQL hung: job refused: %v\n%s", r.err, r.stderr)
	} else {
		hungAccepted = parseJobID(t, r.stdout)
		if j := e.cluster.job(t, hungAccepted); strings.Contains(j.AdminComment, "asbb:") {
			t.Errorf("job %d accepted while PostgreSQL hung carries a hold marker %q", hungAccepted, j.AdminComment)
		}
	}
	if r.took > limit {
		t.Errorf("on_db_error=accept, PostgreSQL hung: sbatch took %s, more than the %s deadline + %s", r.took, submitTimeout, slack)
	}
	t.Logf("on_db_error=accept, PostgreSQL hung: answered in %s", r.took.Round(time.Millisecond))
	e.cluster.requireAlive(t, pid)
	thaw()
	if hungAccepted != 0 {
		if out, err := e.cluster.slurm(30*time.Second, "scancel", strconv.FormatUint(uint64(hungAccepted), 10)); err != nil {
			t.Fatalf("scancel: %v\n%s", err, out)
		}
	}
	// A hold whose admission gave up at the deadline must not commit
	// when the server wakes up: the job it was for was refused (or
	// accepted without one).
	time.Sleep(2 * time.Second)
	if hs := e.entries(t, a, "hold"); len(hs) != holdsBefore {
		for _, h := range hs[holdsBefore:] {
			t.Errorf("hold %v (%s) was written after PostgreSQL woke up, for a submission that had already been answered without it", *h.HoldID, h.Amount)
		}
	}

	// The job accepted without a hold is charged at today's prices when
	// it ends.
	js := e.cluster.waitJobsDone(t, accepted, 90*time.Second)
	var charges []budget.Entry
	eventually(t, 30*time.Second, fmt.Sprintf("job %d (accepted without a hold) charged", accepted), func() (bool, string) {
		e.admin(t, "spool", "replay")
		charges = jobEntries(e.entries(t, a, "charge"), accepted)
		return len(charges) > 0, ""
	})
	if len(charges) != 1 {
		t.Fatalf("%d charge rows for job %d, want 1", len(charges), accepted)
	}
	requireMoney(t, "charge without a hold", charges[0].Amount, charge(js[0]))
	e.cluster.requireAlive(t, pid)
	e.verify(t)
}

// 6b. The database is down while jobs end: jobcomp (and the epilog) spool;
// after the restart, replaying the spool charges every job exactly once.
func dbDownAtJobEnd(t *testing.T, e *env, p Path) {
	a := acct(p, "spool")
	e.account(t, a, "100.00")
	pid := e.cluster.ctldPID(t)
	before := spooled(t, e)

	// The running jobs end only when told to, after PostgreSQL is down: a
	// fixed sleep raced the test on a loaded machine (the jobs could end
	// before the database stopped).
	release := filepath.Join(os.TempDir(), fmt.Sprintf("asbb-e2e-release-%d", time.Now().UnixNano()))
	defer os.Remove(release)
	wait := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.2; done; sleep 1", release)
	running := []uint32{
		e.cluster.sbatch(t, "-A", a, "--time=1", "--wrap", wait),
		e.cluster.sbatch(t, "-A", a, "--time=1", "--wrap", wait),
	}
	pending := e.cluster.sbatch(t, "--hold", "-A", a, "--time=1", "--wrap", "true")
	all := append(append([]uint32{}, running...), pending)
	holds := map[uint32]int64{}
	for _, id := range all {
		holds[id] = holdOfJob(t, e.cluster.job(t, id))
	}
	for _, id := range running {
		eventually(t, 60*time.Second, fmt.Sprintf("job %d running", id), func() (bool, string) {
			s := e.cluster.job(t, id).State
			return s == "RUNNING", s
		})
	}

	e.pg.Stop()
	restarted := false
	defer func() {
		if !restarted {
			e.restartPG(t)
		}
	}()
	if out, err := e.cluster.exec(30*time.Second, true, "scancel", strconv.FormatUint(uint64(pending), 10)); err != nil {
		t.Fatalf("scancel: %v\n%s", err, out)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ends := map[uint32]slurmJob{}
	for _, id := range all {
		js := e.cluster.waitJobsDone(t, id, 90*time.Second)
		ends[id] = js[0]
	}
	// Every end must be in the spool before the database comes back.
	eventually(t, 30*time.Second, "a spooled settlement for each of the 3 jobs", func() (bool, string) {
		got := spooledJobs(t, e, before)
		for _, id := range all {
			if !got[id] {
				return false, fmt.Sprintf("spooled: %v", got)
			}
		}
		return true, ""
	})
	// Each record must name its hold: the hold may not be bound to the
	// job id yet (the library's binder could not reach the database
	// either), and a record without the marker is charged to the account
	// at today's prices while its hold stays active.
	for name := range spooled(t, e) {
		if before[name] {
			continue
		}
		rec, err := spool.Read(filepath.Join(e.spool, name))
		if err != nil {
			t.Fatalf("spool record %s: %v", name, err)
		}
		want, ours := holds[rec.JobID]
		if !ours {
			continue
		}
		if got, ok := budget.HoldIDFromComment(rec.AdminComment); !ok || got != want {
			t.Errorf("the spooled settlement of job %d (%s) does not name its hold %d: admin_comment %q", rec.JobID, name, want, rec.AdminComment)
		}
	}

	e.restartPG(t)
	restarted = true
	out := e.admin(t, "spool", "replay")
	t.Logf("asbb-admin spool replay: %s", strings.TrimSpace(out))
	// A second replay finds nothing new to charge.
	e.admin(t, "spool", "replay")
	if left := spooledJobs(t, e, nil); len(left) != 0 {
		t.Errorf("records left in the spool after replay: %v", left)
	}

	charges := e.entries(t, a, "charge")
	byJob := map[string][]budget.Entry{}
	for _, c := range charges {
		if c.JobID == nil {
			t.Fatalf("charge row %d without a job id", c.ID)
		}
		byJob[*c.JobID] = append(byJob[*c.JobID], c)
	}
	total := decimal.Zero
	for _, id := range all {
		sid := strconv.FormatUint(uint64(id), 10)
		cs := byJob[sid]
		if len(cs) != 1 {
			t.Fatalf("job %d has %d charge rows, want exactly 1: %+v", id, len(cs), cs)
		}
		requireMoney(t, fmt.Sprintf("charge of job %d (%s)", id, ends[id].State), cs[0].Amount, charge(ends[id]))
		total = total.Add(cs[0].Amount)
		h := e.hold(t, holds[id])
		if h.Status == "active" {
			t.Fatalf("hold %d of job %d still active after replay", h.ID, id)
		}
		requireMoney(t, fmt.Sprintf("hold %d remaining", h.ID), h.Remaining, decimal.Zero)
	}
	if len(byJob) != len(all) {
		t.Fatalf("charges for jobs %v, want exactly %v", keys(byJob), all)
	}
	acc := e.getAccount(t, a)
	requireMoney(t, "spent", acc.Spent, total)
	requireMoney(t, "held", acc.Held, decimal.Zero)
	e.cluster.requireAlive(t, pid)
	e.verify(t)
}

// jobEntries are the rows of es that name job id.
func jobEntries(es []budget.Entry, id uint32) []budget.Entry {
	var out []budget.Entry
	sid := strconv.FormatUint(uint64(id), 10)
	for _, e := range es {
		if e.JobID != nil && *e.JobID == sid {
			out = append(out, e)
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// spooled lists the spool's waiting records by file name.
func spooled(t *testing.T, e *env) map[string]bool {
	t.Helper()
	ents, err := spool.New(e.spool, nil).List()
	if err != nil {
		t.Fatalf("list the spool: %v", err)
	}
	out := map[string]bool{}
	for _, d := range ents {
		out[d.Name] = true
	}
	return out
}

// spooledJobs are the job ids of the spool records not in before.
func spooledJobs(t *testing.T, e *env, before map[string]bool) map[uint32]bool {
	t.Helper()
	got := map[uint32]bool{}
	for name := range spooled(t, e) {
		if before[name] {
			continue
		}
		rec, err := spool.Read(filepath.Join(e.spool, name))
		if os.IsNotExist(err) {
			continue // replayed meanwhile
		}
		if err != nil {
			t.Fatalf("spool record %s: %v", name, err)
		}
		got[rec.JobID] = true
	}
	return got
}

// 7. Load: many submissions through the plugin.
func manySubmissions(t *testing.T, e *env, p Path) {
	a := acct(p, "load")
	e.account(t, a, "100000.00")
	pid := e.cluster.ctldPID(t)
	const workers = 4
	var next atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	var firstErr string
	ids := make([]uint32, 0, loadSubmissions)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= loadSubmissions {
				r := e.cluster.sbatchFull("--hold", "-A", a, "--time=1", "--wrap", "true")
				id, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 32)
				mu.Lock()
				if r.err != nil || err != nil {
					failed.Add(1)
					if firstErr == "" {
						firstErr = fmt.Sprintf("%v: %s%s", r.err, r.stdout, r.stderr)
					}
				} else {
					ids = append(ids, uint32(id))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d submissions in %s (%.1f/s, %d parallel sbatch loops)", loadSubmissions, took.Round(time.Millisecond),
		float64(loadSubmissions)/took.Seconds(), workers)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d submissions failed; first: %s", n, loadSubmissions, firstErr)
	}
	e.cluster.requireAlive(t, pid)
	ctx, cancel := dbCtx(30 * time.Second)
	holds, err := e.ledger.ListHolds(ctx, budget.HoldFilter{Account: a, Status: "active", Limit: 100000})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(holds) != loadSubmissions {
		t.Fatalf("%d active holds for %d accepted submissions", len(holds), loadSubmissions)
	}
	requireMoney(t, "held", e.getAccount(t, a).Held, holdFor(1, 1).Mul(decimal.NewFromInt(loadSubmissions)))
	e.verify(t)

	if out, err := e.cluster.slurm(2*time.Minute, "scancel", "--account="+a); err != nil {
		t.Fatalf("scancel --account: %v\n%s", err, out)
	}
	eventually(t, 3*time.Minute, fmt.Sprintf("all %d holds released by jobcomp", loadSubmissions), func() (bool, string) {
		acc := e.getAccount(t, a)
		return acc.Held.IsZero(), "held " + acc.Held.String()
	})
	requireMoney(t, "spent", e.getAccount(t, a).Spent, decimal.Zero)
	e.cluster.requireAlive(t, pid)
	e.verify(t)
}
