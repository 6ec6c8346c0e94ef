package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The C plugin's job_modify finds a job's hold only by job id, which the
// library's binder links every slurm.bind_interval. Here the binder's
// first pass is an hour away, so the hold stays unlinked for as long as
// the test needs: a price change is refused with "retry" (and nothing is
// held twice), and once the hold is linked (what the binder does) the same
// change is priced against the job's own hold.
func TestModifyBeforeTheBinderLinksTheHold(t *testing.T) {
	e := newEnv(t, cPlugin, envOptions{bindInterval: "1h"})
	const a = "e2e-c-unlinked"
	e.account(t, a, "10.00")
	id := e.cluster.sbatch(t, "--hold", "-A", a, "--time=1", "--wrap", "true")
	sid := strconv.FormatUint(uint64(id), 10)
	holdID := holdOfJob(t, e.cluster.job(t, id))
	if h := e.hold(t, holdID); h.JobID != nil {
		t.Fatalf("hold %d is linked to job %s already; the binder should not have run", holdID, *h.JobID)
	}

	off := e.cluster.logSize()
	r := e.cluster.execFull(30*time.Second, true, "scontrol", "update", "jobid="+sid, "TimeLimit=10")
	if r.err == nil {
		t.Fatalf("a time-limit change before the hold was linked went through unchecked: %s%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout+r.stderr, "accounting/QOS policy") {
		t.Errorf("scontrol's refusal: %s%s", r.stdout, r.stderr)
	}
	eventually(t, 10*time.Second, "slurmctld's log to say why", func() (bool, string) {
		return strings.Contains(e.cluster.logSince(off), "retry the change in a few seconds"), ""
	})
	if j := e.cluster.job(t, id); j.TimeLimit != 1 {
		t.Fatalf("job %d's time limit is %d min after the refused change, want 1", id, j.TimeLimit)
	}
	if holds := e.entries(t, a, "hold"); len(holds) != 1 {
		t.Fatalf("%d hold entries on %s, want the submit's one", len(holds), a)
	}
	requireMoney(t, "held", e.getAccount(t, a).Held, holdFor(1, 1))

	ctx, cancel := dbCtx(10 * time.Second)
	err := e.ledger.BindHold(ctx, holdID, sid)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.cluster.exec(30*time.Second, true, "scontrol", "update", "jobid="+sid, "TimeLimit=10"); err != nil {
		t.Fatalf("the change once the hold is linked: %v\n%s", err, out)
	}
	requireMoney(t, "the job's hold after the change", e.hold(t, holdID).Amount, holdFor(1, 10))
	requireMoney(t, "held", e.getAccount(t, a).Held, holdFor(1, 10))

	if out, err := e.cluster.exec(30*time.Second, true, "scancel", sid); err != nil {
		t.Fatalf("scancel: %v\n%s", err, out)
	}
	e.waitHoldClosed(t, holdID, 30*time.Second)
	e.verify(t)
}
