package budget_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

func TestConcurrentHoldsNeverOverdrawAnAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "hot", Budget: dec("100")})
	// 64 callers each ask for 4.70: 300.80 in all, three times the balance.
	amount := dec("4.70")
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "hot", Partition: "cpu-aws", Amount: amount, Tasks: 1})
			var den *budget.Denial
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.As(err, &den) && den.Code == "insufficient_funds":
				refused.Add(1)
			default:
				t.Errorf("hold: %v", err)
			}
		}()
	}
	wg.Wait()
	// Exactly floor(100 / 4.70) = 21 holds fit.
	if accepted.Load() != 21 || refused.Load() != 43 {
		t.Fatalf("accepted %d refused %d, want 21 and 43", accepted.Load(), refused.Load())
	}
	a := account(t, l, "hot")
	if !a.Held.Equal(dec("98.70")) || !a.Available.Equal(dec("1.30")) {
		t.Fatalf("held %s available %s, want 98.70 and 1.30", a.Held, a.Available)
	}
	mustVerify(t, l)
}

func TestConcurrentAdmissionsThroughTheAdmissionFunction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "proj", Budget: dec("50")})
	// Each job: 1 node x $5/h x 1 h x 1.2 = $6.00; 64 jobs want $384.
	var held atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := l.Admit(ctx, job("proj", 1, 60))
			if err != nil {
				t.Errorf("admit: %v", err)
				return
			}
			switch d.Kind {
			case budget.KindHeld:
				held.Add(1)
			case budget.KindRefused:
				if !strings.Contains(d.Message, "account proj has") {
					t.Errorf("refusal message %q lacks the numbers", d.Message)
				}
			default:
				t.Errorf("unexpected decision %s", d.Kind)
			}
		}()
	}
	wg.Wait()
	if held.Load() != 8 {
		t.Fatalf("held %d jobs, want 8 ($48 of $50)", held.Load())
	}
	if a := account(t, l, "proj"); !a.Available.Equal(dec("2")) {
		t.Fatalf("available %s, want 2", a.Available)
	}
	mustVerify(t, l)
}

func TestParentAccountCapsItsChildren(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "dept", Budget: dec("100")})
	for i := 0; i < 4; i++ {
		mustAccount(t, l, budget.AccountSpec{SlurmAccount: fmt.Sprintf("proj%d", i), Parent: "dept", Budget: dec("100")})
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: fmt.Sprintf("proj%d", i%4), Partition: "cpu-aws", Amount: dec("5"), Tasks: 1})
			var den *budget.Denial
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.As(err, &den) && den.Code == "ancestor_insufficient_funds" && den.Account == "dept":
			default:
				t.Errorf("hold: %v", err)
			}
		}(i)
	}
	wg.Wait()
	// The children have $400 between them but the department only $100.
	if accepted.Load() != 20 {
		t.Fatalf("accepted %d holds of $5, want 20", accepted.Load())
	}
	if d := account(t, l, "dept"); !d.Held.Equal(dec("100")) || !d.Available.IsZero() {
		t.Fatalf("dept held %s available %s", d.Held, d.Available)
	}
	mustVerify(t, l)
}

func TestChildChargesCountAgainstTheParent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "dept", Budget: dec("100")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "proj", Parent: "dept", Budget: dec("100")})
	d, err := l.Admit(ctx, job("proj", 1, 60))
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %v %+v", err, d)
	}
	if _, err := l.SettleJob(ctx, budget.JobEnd{JobID: 1, AdminComment: d.AdminComment, StartTime: 1000, EndTime: 1000 + 1800, Nodes: 1, State: budget.JobComplete}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dept", "proj"} {
		a := account(t, l, name)
		if !a.Spent.Equal(dec("2.5")) || !a.Held.IsZero() {
			t.Fatalf("%s spent %s held %s, want 2.50 and 0", name, a.Spent, a.Held)
		}
	}
	mustVerify(t, l)
}

func TestDepositIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct"})
	dep := budget.Deposit{Amount: dec("10"), IdempotencyKey: "grant-2026-q1"}
	for i := 0; i < 3; i++ {
		if _, err := l.AddDeposit(ctx, "", "acct", dep); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.AddDeposit(ctx, "", "acct", budget.Deposit{Amount: dec("7"), IdempotencyKey: "concurrent"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if a := account(t, l, "acct"); !a.Deposited.Equal(dec("17")) {
		t.Fatalf("deposited %s, want 17 (10 + 7, each once)", a.Deposited)
	}
	mustVerify(t, l)
}

func TestSettleIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	d, err := l.Admit(ctx, job("acct", 2, 120))
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %v %+v", err, d)
	}
	if !d.Amount.Equal(dec("24")) { // 2 nodes x $5 x 2 h x 1.2
		t.Fatalf("hold %s, want 24", d.Amount)
	}
	end := budget.JobEnd{JobID: 42, AdminComment: "site-note," + d.AdminComment, StartTime: 1_700_000_000,
		EndTime: 1_700_000_000 + 5400, Nodes: 2, State: budget.JobComplete}
	first, err := l.SettleJob(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Actual.Equal(dec("15")) || !first.Released.Equal(dec("24")) || first.Duplicate {
		t.Fatalf("settlement %+v, want actual 15 released 24", first)
	}
	for i := 0; i < 2; i++ {
		again, err := l.SettleJob(ctx, end)
		if err != nil || !again.Duplicate || again.ChargeID != first.ChargeID {
			t.Fatalf("replay %d: %+v %v", i, again, err)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.SettleJob(ctx, end); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	a := account(t, l, "acct")
	if !a.Spent.Equal(dec("15")) || !a.Held.IsZero() || !a.Available.Equal(dec("85")) {
		t.Fatalf("spent %s held %s available %s", a.Spent, a.Held, a.Available)
	}
	mustVerify(t, l)
}

func TestConcurrentSettlersOfOneNewJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	d, _ := l.Admit(ctx, job("acct", 1, 60))
	end := budget.JobEnd{JobID: 7, AdminComment: d.AdminComment, StartTime: 100, EndTime: 3700, Nodes: 1, State: budget.JobComplete}
	var charged atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := l.SettleJob(ctx, end)
			if err != nil {
				t.Error(err)
				return
			}
			if !s.Duplicate {
				charged.Add(1)
			}
		}()
	}
	wg.Wait()
	if charged.Load() != 1 {
		t.Fatalf("%d settlers charged, want exactly 1", charged.Load())
	}
	if a := account(t, l, "acct"); !a.Spent.Equal(dec("5")) {
		t.Fatalf("spent %s, want 5", a.Spent)
	}
	mustVerify(t, l)
}

func TestPartitionLimitsHoldUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "ml", Budget: dec("10000")})
	cap, perJob := dec("500"), dec("50")
	if err := l.SetPartitionLimit(ctx, "", "ml", "gpu-aws", &perJob, &cap); err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "gpu-aws", Amount: dec("30"), Tasks: 1})
			var den *budget.Denial
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.As(err, &den) && den.Code == "partition_month_cap":
				msg := den.UserMessage()
				if !strings.Contains(msg, "partition gpu-aws") || !strings.Contains(msg, "left") {
					t.Errorf("refusal %q does not name the partition and its allowance", msg)
				}
			default:
				t.Errorf("hold: %v", err)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 16 { // 16 x 30 = 480 <= 500 < 510
		t.Fatalf("accepted %d, want 16", accepted.Load())
	}
	// The per-job cap refuses a single $60 job by name.
	_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "gpu-aws", Amount: dec("60"), Tasks: 1})
	var den *budget.Denial
	if !errors.As(err, &den) || den.Code != "partition_job_cap" || !strings.Contains(den.UserMessage(), "gpu-aws") {
		t.Fatalf("per-job cap: %v", err)
	}
	// Another partition is not capped.
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "cpu-aws", Amount: dec("600"), Tasks: 1}); err != nil {
		t.Fatalf("cpu-aws hold: %v", err)
	}
	a, _ := l.GetAccount(ctx, "", "ml")
	if len(a.Limits) != 1 || !a.Limits[0].UsedMonth.Equal(dec("480")) {
		t.Fatalf("limits %+v", a.Limits)
	}
	mustVerify(t, l)
}

func TestArrayJobHoldsForEveryTaskAndSettlesEachOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "arr", Budget: dec("1000")})
	j := job("arr", 1, 10)
	j.ArrayInx = "1-20%5"
	d, err := l.Admit(ctx, j)
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %v %+v", err, d)
	}
	if !d.Amount.Equal(dec("20")) { // 20 tasks x $5 x 1/6 h x 1.2 = 20 x $1.00
		t.Fatalf("array hold %s, want 20", d.Amount)
	}
	for task := uint32(1); task <= 20; task++ {
		end := budget.JobEnd{JobID: 100 + task, ArrayJobID: 100, ArrayTaskID: task, AdminComment: d.AdminComment,
			StartTime: 0 + 1000, EndTime: 1000 + 360, Nodes: 1, State: budget.JobComplete}
		for k := 0; k < 2; k++ { // jobcomp and an epilog both report it
			if _, err := l.SettleJob(ctx, end); err != nil {
				t.Fatal(err)
			}
		}
		if task == 10 {
			h, _ := l.GetHold(ctx, d.HoldID)
			if !h.Remaining.Equal(dec("10")) || h.SettledTasks != 10 {
				t.Fatalf("after 10 tasks: remaining %s settled %d", h.Remaining, h.SettledTasks)
			}
		}
	}
	a := account(t, l, "arr")
	if !a.Spent.Equal(dec("10")) || !a.Held.IsZero() { // 20 x $5 x 0.1 h
		t.Fatalf("spent %s held %s", a.Spent, a.Held)
	}
	h, _ := l.GetHold(ctx, d.HoldID)
	if h.Status != "closed" || h.SettledTasks != 20 {
		t.Fatalf("hold %+v", h)
	}
	mustVerify(t, l)
}

func TestCancelledArrayReleasesWhatIsLeft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "arr", Budget: dec("1000")})
	j := job("arr", 1, 10)
	j.ArrayInx = "0-9"
	d, _ := l.Admit(ctx, j)
	// Two tasks ran; the rest was cancelled while pending and Slurm reports
	// the array as a whole.
	for task := uint32(0); task < 2; task++ {
		if _, err := l.SettleJob(ctx, budget.JobEnd{JobID: 50 + task, ArrayJobID: 50, ArrayTaskID: task, AdminComment: d.AdminComment,
			StartTime: 10, EndTime: 370, Nodes: 1, State: budget.JobComplete}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.SettleJob(ctx, budget.JobEnd{JobID: 50, ArrayJobID: 50, ArrayTaskID: budget.NoVal, AdminComment: d.AdminComment,
		StartTime: 0, EndTime: 500, State: budget.JobCancelled}); err != nil {
		t.Fatal(err)
	}
	a := account(t, l, "arr")
	if !a.Spent.Equal(dec("1")) || !a.Held.IsZero() {
		t.Fatalf("spent %s held %s, want 1 and 0", a.Spent, a.Held)
	}
	mustVerify(t, l)
}

func TestJobCancelledWhilePendingIsNotCharged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	d, _ := l.Admit(ctx, job("acct", 1, 60))
	s, err := l.SettleJob(ctx, budget.JobEnd{JobID: 9, AdminComment: d.AdminComment, StartTime: 500, EndTime: 500, State: budget.JobCancelled})
	if err != nil || !s.Actual.IsZero() || !s.Released.Equal(dec("6")) {
		t.Fatalf("settle: %+v %v", s, err)
	}
	a := account(t, l, "acct")
	if !a.Spent.IsZero() || !a.Held.IsZero() || !a.Available.Equal(dec("100")) {
		t.Fatalf("account %+v", a)
	}
	mustVerify(t, l)
}

func TestOverrunIsChargedAndRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("7")})
	d, _ := l.Admit(ctx, job("acct", 1, 60)) // holds 6
	// The job ran 3 h (a bigger node count than requested, say): $15 > $7.
	s, err := l.SettleJob(ctx, budget.JobEnd{JobID: 3, AdminComment: d.AdminComment, StartTime: 0 + 1, EndTime: 1 + 3*3600, Nodes: 1, State: budget.JobComplete})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Actual.Equal(dec("15")) || !s.Overrun.Equal(dec("9")) {
		t.Fatalf("settlement %+v, want actual 15 overrun 9", s)
	}
	if a := account(t, l, "acct"); !a.Available.Equal(dec("-8")) {
		t.Fatalf("available %s, want -8", a.Available)
	}
	mustVerify(t, l)
}

func TestModifyRepricesAPendingJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("30")})
	d, _ := l.Admit(ctx, job("acct", 1, 60)) // 6
	// Raise the time limit to 4 h (24): fits.
	ch := budget.UnsetJob()
	ch.TimeLimit, ch.AdminComment = 240, d.AdminComment
	m, err := l.Modify(ctx, ch)
	if err != nil || m.Kind != budget.KindHeld || !m.Amount.Equal(dec("24")) {
		t.Fatalf("modify up: %+v %v", m, err)
	}
	// Raise to 10 h (60): refused, old hold intact.
	ch.TimeLimit = 600
	m, err = l.Modify(ctx, ch)
	if err != nil || m.Kind != budget.KindRefused || !strings.Contains(m.Message, "$30.00 available") && !strings.Contains(m.Message, "$6.00 available") {
		t.Fatalf("modify refused: %+v %v", m, err)
	}
	if a := account(t, l, "acct"); !a.Held.Equal(dec("24")) {
		t.Fatalf("held %s after refused modify, want 24", a.Held)
	}
	// Lower to 30 min (3): released.
	ch.TimeLimit = 30
	if m, err = l.Modify(ctx, ch); err != nil || !m.Amount.Equal(dec("3")) {
		t.Fatalf("modify down: %+v %v", m, err)
	}
	if a := account(t, l, "acct"); !a.Held.Equal(dec("3")) {
		t.Fatalf("held %s, want 3", a.Held)
	}
	// Bind the job id, then modify by job id alone (the C plugin's view).
	if err := l.BindHold(ctx, d.HoldID, "77"); err != nil {
		t.Fatal(err)
	}
	ch2 := budget.UnsetJob()
	ch2.JobID, ch2.TimeLimit = "77", 120
	if m, err = l.Modify(ctx, ch2); err != nil || !m.Amount.Equal(dec("12")) {
		t.Fatalf("modify by job id: %+v %v", m, err)
	}
	mustVerify(t, l)
}

func TestModifyMovesTheHoldToAnotherAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "a1", Budget: dec("30")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "a2", Budget: dec("30")})
	d, _ := l.Admit(ctx, job("a1", 1, 60))
	ch := budget.UnsetJob()
	ch.Account, ch.AdminComment, ch.JobID = "a2", d.AdminComment, "4"
	m, err := l.Modify(ctx, ch)
	if err != nil || m.Kind != budget.KindHeld || m.HoldID == d.HoldID {
		t.Fatalf("move: %+v %v", m, err)
	}
	if a := account(t, l, "a1"); !a.Held.IsZero() {
		t.Fatalf("old account still holds %s", a.Held)
	}
	if a := account(t, l, "a2"); !a.Held.Equal(dec("6")) {
		t.Fatalf("new account holds %s", a.Held)
	}
	if m.AdminComment != "" {
		t.Fatalf("modify must not change admin_comment (Slurm refuses it for users): %q", m.AdminComment)
	}
	// The job still names the old hold; settlement follows the link and
	// charges the new account.
	if _, err := l.SettleJob(ctx, budget.JobEnd{JobID: 4, AdminComment: d.AdminComment, StartTime: 1, EndTime: 3601, Nodes: 1, State: budget.JobComplete}); err != nil {
		t.Fatal(err)
	}
	if a := account(t, l, "a2"); !a.Spent.Equal(dec("5")) || !a.Held.IsZero() {
		t.Fatalf("new account spent %s held %s", a.Spent, a.Held)
	}
	if a := account(t, l, "a1"); !a.Spent.IsZero() {
		t.Fatalf("old account was charged %s", a.Spent)
	}
	mustVerify(t, l)
}

func TestExpiredAllocationsStopCounting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	al, err := l.AddDeposit(ctx, "", "acct", budget.Deposit{Amount: dec("50"), ExpiresAt: ptrTime(t, "2099-01-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "acct", Partition: "cpu-aws", Amount: dec("130"), Tasks: 1}); err != nil {
		t.Fatalf("hold within 150: %v", err)
	}
	rel, _ := l.ListHolds(ctx, budget.HoldFilter{Account: "acct", Status: "active"})
	if _, err := l.ReleaseHold(ctx, rel[0].ID, "test", "test"); err != nil {
		t.Fatal(err)
	}
	// Travel in time: the allocation's expiry passes (holds and ledger
	// are untouched; only the allocation's date and the account's
	// next-event marker move).
	timeTravel(t, l, `UPDATE allocations SET starts_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id = $1`, al.ID)
	_, err = l.PlaceHold(ctx, budget.HoldRequest{Account: "acct", Partition: "cpu-aws", Amount: dec("130"), Tasks: 1})
	var den *budget.Denial
	if !errors.As(err, &den) || !den.Available.Equal(dec("100")) {
		t.Fatalf("after expiry: %v (want refusal with $100 available)", err)
	}
	a := account(t, l, "acct")
	if !a.Deposited.Equal(dec("100")) {
		t.Fatalf("deposited %s, want 100 after the $50 expired", a.Deposited)
	}
	als, _ := l.ListAllocations(ctx, "acct", 10)
	for _, x := range als {
		if x.ID == al.ID && (x.Status != "expired" || !x.Forfeited.Equal(dec("50"))) {
			t.Fatalf("allocation %+v", x)
		}
	}
	mustVerify(t, l)
}

func TestFutureAllocationCountsFromItsStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("10")})
	al, err := l.AddDeposit(ctx, "", "acct", budget.Deposit{Amount: dec("90"), StartsAt: *ptrTime(t, "2099-01-01T00:00:00Z")})
	if err != nil || al.Status != "pending" {
		t.Fatalf("deposit %+v %v", al, err)
	}
	if a := account(t, l, "acct"); !a.Available.Equal(dec("10")) {
		t.Fatalf("available %s before the start", a.Available)
	}
	timeTravel(t, l, `UPDATE allocations SET starts_at = now() - interval '1 hour' WHERE id = $1`, al.ID)
	if n, err := l.ProcessEvents(ctx); err != nil || n != 1 {
		t.Fatalf("process events: %d %v", n, err)
	}
	if a := account(t, l, "acct"); !a.Available.Equal(dec("100")) {
		t.Fatalf("available %s after the start", a.Available)
	}
	mustVerify(t, l)
}

func TestRefundWithdrawAndCorrection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	d, _ := l.Admit(ctx, job("acct", 1, 60))
	s, _ := l.SettleJob(ctx, budget.JobEnd{JobID: 5, AdminComment: d.AdminComment, StartTime: 1, EndTime: 3601, Nodes: 1, State: budget.JobComplete})
	if err := l.Refund(ctx, s.ChargeID, dec("6"), "test", "too much", ""); !errors.Is(err, budget.ErrInvalid) {
		t.Fatalf("refund above the charge: %v", err)
	}
	if err := l.Refund(ctx, s.ChargeID, dec("2"), "test", "node failure", "r1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Refund(ctx, s.ChargeID, dec("2"), "test", "node failure", "r1"); err != nil {
		t.Fatal(err)
	}
	c, err := l.Correct(ctx, s.ChargeID, dec("4.50"), "asbx", "actual AWS cost", "asbx:5")
	if err != nil || !c.Delta.Equal(dec("1.5")) {
		t.Fatalf("correct: %+v %v", c, err)
	}
	if c, err = l.Correct(ctx, s.ChargeID, dec("4.50"), "asbx", "actual AWS cost", "asbx:5"); err != nil || !c.Duplicate {
		t.Fatalf("correct replay: %+v %v", c, err)
	}
	if a := account(t, l, "acct"); !a.Spent.Equal(dec("4.5")) {
		t.Fatalf("spent %s, want 4.50", a.Spent)
	}
	var den *budget.Denial
	if err := l.Withdraw(ctx, "", "acct", dec("96"), "test", "return", ""); !errors.As(err, &den) {
		t.Fatalf("withdraw more than unspent: %v", err)
	}
	if err := l.Withdraw(ctx, "", "acct", dec("95.5"), "test", "return", "w1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Withdraw(ctx, "", "acct", dec("95.5"), "test", "return", "w1"); err != nil {
		t.Fatal(err)
	}
	if a := account(t, l, "acct"); !a.Available.IsZero() {
		t.Fatalf("available %s, want 0", a.Available)
	}
	mustVerify(t, l)
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, `
[pricing.partitions.eur-part]
node_hour = "1"
`)
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "euro", Currency: "EUR", Budget: dec("100")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "gone", Budget: dec("100")})
	if _, err := l.CloseAccount(ctx, "", "gone", "test"); err != nil {
		t.Fatal(err)
	}
	before := entryCount(t, l)
	amounts := []decimal.Decimal{dec("0"), dec("-5"), dec("0.0000001"), dec("1e14"), dec("123456789012345")}
	for _, a := range amounts {
		if _, err := l.AddDeposit(ctx, "", "acct", budget.Deposit{Amount: a}); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("deposit %s: %v, want ErrInvalid", a, err)
		}
		if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "acct", Partition: "cpu-aws", Amount: a}); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("hold %s: %v, want ErrInvalid", a, err)
		}
	}
	for _, name := range []string{"nope", "x'; DROP TABLE ledger;--", "", strings.Repeat("a", 100)} {
		if _, err := l.AddDeposit(ctx, "", name, budget.Deposit{Amount: dec("1")}); !errors.Is(err, budget.ErrAccountNotFound) {
			t.Errorf("deposit to %q: %v", name, err)
		}
		if name == "nope" {
			continue
		}
		if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: name}); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("create %q: %v", name, err)
		}
	}
	if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: "acct"}); !errors.Is(err, budget.ErrAccountExists) {
		t.Errorf("duplicate account: %v", err)
	}
	if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: "kid", Parent: "euro"}); !errors.Is(err, budget.ErrInvalid) {
		t.Errorf("currency mismatch with parent: %v", err)
	}
	if _, err := l.AddDeposit(ctx, "", "acct", budget.Deposit{Amount: dec("1"), Currency: "EUR"}); !errors.Is(err, budget.ErrInvalid) {
		t.Errorf("deposit in another currency: %v", err)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "euro", Partition: "eur-part", Amount: dec("1")}); !errors.Is(err, budget.ErrInvalid) {
		t.Errorf("hold in another currency: %v", err)
	}
	// The admission function refuses with a message, never an error.
	cases := []struct {
		name string
		job  budget.JobRequest
		code string
	}{
		{"unknown account", job("nope", 1, 60), "account_not_found"},
		{"closed account", job("gone", 1, 60), "account_inactive"},
		{"no account, no default", job("", 1, 60), "no_account"},
		{"unlimited time on a partition without max_time", func() budget.JobRequest {
			j := job("acct", 1, budget.Infinite)
			j.Partition = "eur-part"
			return j
		}(), "no_time_limit"},
	}
	for _, c := range cases {
		d, err := l.Admit(ctx, c.job)
		if err != nil || d.Kind != budget.KindRefused || d.Denial == nil || d.Denial.Code != c.code {
			t.Errorf("%s: %+v %v, want refusal %s", c.name, d, err, c.code)
		}
	}
	bad := job("acct", 1, 60)
	bad.ArrayInx = "1-x"
	if d, err := l.Admit(ctx, bad); !errors.Is(err, budget.ErrInvalid) || d.Kind != budget.KindRefused {
		t.Errorf("bad array spec: %+v %v", d, err)
	}
	if _, err := l.Settle(ctx, budget.SettleRequest{HoldID: 1, JobID: "1", Actual: dec("-1")}); !errors.Is(err, budget.ErrInvalid) {
		t.Errorf("negative actual: %v", err)
	}
	if _, err := l.Settle(ctx, budget.SettleRequest{HoldID: 999999, JobID: "1", Actual: dec("1")}); !errors.Is(err, budget.ErrHoldNotFound) {
		t.Errorf("unknown hold: %v", err)
	}
	if after := entryCount(t, l); after != before {
		t.Fatalf("bad input changed the ledger: %d entries before, %d after", before, after)
	}
	// An unpriced partition is free unless prices are required.
	free := job("acct", 1, 60)
	free.Partition = "local"
	if d, err := l.Admit(ctx, free); err != nil || d.Kind != budget.KindFree {
		t.Fatalf("free partition: %+v %v", d, err)
	}
	mustVerify(t, l)
}

func TestRequirePriceRefusesUnpricedPartitions(t *testing.T) {
	t.Parallel()
	l := newLedger(t, "\n[pricing]\nrequire_price = true\n")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("10")})
	j := job("acct", 1, 60)
	j.Partition = "mystery"
	d, err := l.Admit(context.Background(), j)
	if err != nil || d.Kind != budget.KindRefused || !strings.Contains(d.Message, "mystery") {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestLedgerIsAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("10")})
	for _, q := range []string{`UPDATE ledger SET amount = 0`, `DELETE FROM ledger`, `TRUNCATE ledger CASCADE`} {
		if _, err := l.Pool().Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestDeleteAccountWithHistoryIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "used", Budget: dec("10")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "empty"})
	if err := l.DeleteAccount(ctx, "", "used"); !errors.Is(err, budget.ErrConflict) {
		t.Fatalf("delete with history: %v", err)
	}
	if err := l.DeleteAccount(ctx, "", "empty"); err != nil {
		t.Fatalf("delete empty: %v", err)
	}
}

// timeTravel moves an allocation's dates into the past and marks its
// account as having a due event, as the passage of time would. Only the
// allocation's dates change; the ledger is untouched.
func timeTravel(t *testing.T, l *budget.Ledger, q string, id int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := l.Pool().Exec(ctx, q, id); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Pool().Exec(ctx, `UPDATE accounts SET next_event = now() - interval '1 second'
		WHERE id = (SELECT account_id FROM allocations WHERE id = $1)`, id); err != nil {
		t.Fatal(err)
	}
}

func TestShadowModeAcceptsDuringAnOutage(t *testing.T) {
	t.Parallel()
	cfg, err := budget.ParseConfig(testConfig + "\n[submit.partitions.cpu-aws]\nenforce = false\n")
	if err != nil {
		t.Fatal(err)
	}
	// A database that is not there: the connection fails at once.
	cfg.Database.URL = "postgres:///nowhere?host=/nonexistent&connect_timeout=1"
	l, err := budget.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Admit(context.Background(), job("acct", 1, 60))
	if err != nil || d.Kind != budget.KindDBAccept {
		t.Fatalf("shadow partition during an outage: %+v %v, want db_accept", d, err)
	}
}

func TestModifyOfAJobWithoutAHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("10")})
	// The C plugin's view of `scontrol update TimeLimit=...` on a job that
	// was free at submit: only the time limit and the job id.
	ch := budget.UnsetJob()
	ch.JobID, ch.TimeLimit = "12", 600
	if d, err := l.Modify(ctx, ch); err != nil || d.Kind != budget.KindFree {
		t.Fatalf("time change of a free job: %+v %v", d, err)
	}
	// Moving it onto a priced partition prices it (and binds the hold).
	ch.Partition, ch.Account, ch.TimeLimit = "cpu-aws", "acct", 60
	d, err := l.Modify(ctx, ch)
	if err != nil || d.Kind != budget.KindHeld || d.AdminComment != "" {
		t.Fatalf("move to a priced partition: %+v %v", d, err)
	}
	if h, err := l.HoldForJob(ctx, "", "12"); err != nil || h.ID != d.HoldID {
		t.Fatalf("hold not bound to the job: %+v %v", h, err)
	}
	mustVerify(t, l)
}

func TestPartitionLimitSetLaterCountsEarlierHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "ml", Budget: dec("1000")})
	for i := 0; i < 3; i++ { // $90 committed on gpu-aws before any limit
		if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "gpu-aws", Amount: dec("30"), Tasks: 1}); err != nil {
			t.Fatal(err)
		}
	}
	cap := dec("100")
	if err := l.SetPartitionLimit(ctx, "", "ml", "gpu-aws", nil, &cap); err != nil {
		t.Fatal(err)
	}
	_, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "gpu-aws", Amount: dec("30"), Tasks: 1})
	var den *budget.Denial
	if !errors.As(err, &den) || den.Code != "partition_month_cap" || !den.Available.Equal(dec("10")) {
		t.Fatalf("hold over a limit set later: %v", err)
	}
	mustVerify(t, l)
	if err := l.SetPartitionLimit(ctx, "", "ml", "gpu-aws", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PlaceHold(ctx, budget.HoldRequest{Account: "ml", Partition: "gpu-aws", Amount: dec("30"), Tasks: 1}); err != nil {
		t.Fatalf("after removing the limit: %v", err)
	}
	mustVerify(t, l)
}

func TestAnUntrustedMarkerIsUsedOnlyIfItsHoldFitsTheJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "mine", Budget: dec("100")})
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "theirs", Budget: dec("100")})
	victim, _ := l.Admit(ctx, job("theirs", 1, 60))
	own, _ := l.Admit(ctx, job("mine", 1, 60))
	// A job of "mine" whose name forged the other hold's marker into
	// scontrol's text: the marker does not fit and is ignored.
	forged := budget.JobEnd{JobID: 70, Account: "mine", User: "alice", UntrustedComment: victim.AdminComment,
		StartTime: 1, EndTime: 3601, Nodes: 1, State: budget.JobComplete}
	if s, err := l.SettleJob(ctx, forged); err != nil || s.HoldID == victim.HoldID {
		t.Fatalf("forged marker: %+v %v", s, err)
	}
	if h, _ := l.GetHold(ctx, victim.HoldID); h.Status != "active" || !h.Charged.IsZero() {
		t.Fatalf("the victim's hold was touched: %+v", h)
	}
	// The job's own marker fits and settles its hold.
	honest := budget.JobEnd{JobID: 71, Account: "mine", User: "alice", UntrustedComment: own.AdminComment,
		StartTime: 1, EndTime: 3601, Nodes: 1, State: budget.JobComplete}
	if s, err := l.SettleJob(ctx, honest); err != nil || s.HoldID != own.HoldID {
		t.Fatalf("own marker: %+v %v", s, err)
	}
	mustVerify(t, l)
}

func TestAHoldPastItsCallersDeadlineIsNotTaken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLedger(t, "")
	mustAccount(t, l, budget.AccountSpec{SlurmAccount: "acct", Budget: dec("100")})
	before := entryCount(t, l)
	// What a call that sat on a stalled server sees when it finally runs.
	var outcome string
	if err := l.Pool().QueryRow(ctx, `SELECT outcome FROM asbb_hold('acct', '*', 'USD', 5, 1, 'cpu-aws', 'u', current_date,
		'v', '{}', '{}', NULL, 'test', clock_timestamp() - interval '1 second')`).Scan(&outcome); err != nil {
		t.Fatal(err)
	}
	if outcome != "expired" {
		t.Fatalf("outcome %q, want expired", outcome)
	}
	if after := entryCount(t, l); after != before {
		t.Fatalf("an expired hold wrote %d ledger rows", after-before)
	}
	mustVerify(t, l)
}
