package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/asbb/asbb/budget/spool"
	"github.com/shopspring/decimal"
)

func rec(job uint32) budget.JobEnd {
	return budget.JobEnd{Cluster: "c1", JobID: job, ArrayTaskID: budget.NoVal, Account: "proj", Partition: "cpu",
		User: "ann", StartTime: 1_800_000_000, EndTime: 1_800_003_600, State: budget.JobComplete, Nodes: 1, CPUs: 4}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestWriteIsDurableAndNamedByIdentity(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s := spool.New(dir, nil)
	e := rec(12)
	p1, err := s.Write(e)
	if err != nil {
		t.Fatal(err)
	}
	first := e
	e.EndTime++ // a repeated record of the same run: the first one stays
	e.AdminComment = ""
	p2, err := s.Write(e)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Errorf("same job, two files: %s %s", p1, p2)
	}
	got, err := spool.Read(p1)
	if err != nil || got != first {
		t.Errorf("Read = %+v, %v; want the first record %+v", got, err, first)
	}
	if n := names(t, dir); len(n) != 1 || strings.HasPrefix(n[0], ".") {
		t.Errorf("spool holds %q, want one record and no temp file", n)
	}
	// Another run (requeue) and an array task are separate records.
	e2 := rec(12)
	e2.StartTime += 100
	arr := rec(13)
	arr.ArrayJobID, arr.ArrayTaskID = 10, 3
	for _, x := range []budget.JobEnd{e2, arr} {
		if _, err := s.Write(x); err != nil {
			t.Fatal(err)
		}
	}
	if n := names(t, dir); len(n) != 3 {
		t.Errorf("spool holds %q, want 3 records", n)
	}
	if !strings.Contains(spool.Name(arr), "-10-3-") {
		t.Errorf("array task record name %q does not carry array id and task", spool.Name(arr))
	}
	if _, err := s.Write(budget.JobEnd{}); !errors.Is(err, budget.ErrInvalid) {
		t.Errorf("Write(no job id) err = %v", err)
	}
	evil := rec(14)
	evil.Cluster = "../../etc/passwd"
	p, err := s.Write(evil)
	if err != nil || filepath.Dir(p) != dir {
		t.Errorf("cluster with path characters escaped the spool: %s, %v", p, err)
	}
}

func TestReplayQuarantinesAndRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := spool.New(dir, nil)
	for j := uint32(1); j <= 4; j++ {
		if _, err := s.Write(rec(j)); err != nil {
			t.Fatal(err)
		}
	}
	// Bad files: not JSON, no job id, too big.
	os.WriteFile(filepath.Join(dir, "settle-bad-1.json"), []byte("{not json"), 0o600)
	os.WriteFile(filepath.Join(dir, "settle-bad-2.json"), []byte(`{"job_id":0}`), 0o600)
	os.WriteFile(filepath.Join(dir, "settle-bad-3.json"), make([]byte, 100<<10), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a record"), 0o600)
	post := func(ctx context.Context, e budget.JobEnd) error {
		switch e.JobID {
		case 2:
			return fmt.Errorf("settle: %w: bad account name", budget.ErrInvalid)
		case 3:
			return errors.New("transient failure")
		case 4:
			panic("bug in post")
		}
		return nil
	}
	rep, err := s.Replay(context.Background(), post)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Posted != 1 || rep.Quarantined != 4 || rep.Failed != 2 {
		t.Errorf("report %+v; want 1 posted, 4 quarantined, 2 failed", rep)
	}
	left, _ := s.List()
	if len(left) != 2 || left[0].Claimed || left[1].Claimed {
		t.Errorf("left %+v; want jobs 3 and 4, unclaimed", left)
	}
	q := names(t, filepath.Join(dir, "quarantine"))
	if len(q) != 4 {
		t.Errorf("quarantine holds %q", q)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Errorf("a foreign file was touched: %v", err)
	}
}

func TestReplayStopsWhenDatabaseIsDown(t *testing.T) {
	t.Parallel()
	s := spool.New(t.TempDir(), nil)
	for j := uint32(1); j <= 5; j++ {
		s.Write(rec(j))
	}
	var calls int
	rep, err := s.Replay(context.Background(), func(ctx context.Context, e budget.JobEnd) error {
		calls++
		return fmt.Errorf("settle: %w: connection refused", budget.ErrUnavailable)
	})
	if !errors.Is(err, budget.ErrUnavailable) || calls != 1 || rep.Failed != 1 {
		t.Errorf("err %v, %d calls, %+v; want a stop after the first", err, calls, rep)
	}
	if left, _ := s.List(); len(left) != 5 {
		t.Errorf("%d records left, want 5", len(left))
	}
}

func TestReplayTakesOverDeadClaims(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := spool.New(dir, nil)
	p, _ := s.Write(rec(7))
	p2, _ := s.Write(rec(8))
	// Job 7 was claimed by a process that no longer exists; job 8 by this
	// (live) process, as if another goroutine were posting it.
	dead := p + ".claimed-999999999-abc"
	live := p2 + fmt.Sprintf(".claimed-%d-def", os.Getpid())
	os.Rename(p, dead)
	os.Rename(p2, live)
	var got []uint32
	rep, err := s.Replay(context.Background(), func(ctx context.Context, e budget.JobEnd) error {
		got = append(got, e.JobID)
		return nil
	})
	if err != nil || rep.Posted != 1 || rep.Skipped != 1 || len(got) != 1 || got[0] != 7 {
		t.Errorf("report %+v, posted %v, err %v; want job 7 taken over and job 8 skipped", rep, got, err)
	}
	// A live claim older than StaleClaim is taken over too.
	old := time.Now().Add(-spool.StaleClaim - time.Minute)
	os.Chtimes(live, old, old)
	rep, _ = s.Replay(context.Background(), func(ctx context.Context, e budget.JobEnd) error { return nil })
	if rep.Posted != 1 {
		t.Errorf("stale live claim not taken over: %+v", rep)
	}
}

// Two replayers over 1,000 records against a real database: every job is
// charged exactly once and no record is posted twice.
func TestConcurrentReplayersSettleExactlyOnce(t *testing.T) {
	t.Parallel()
	cfg, err := budget.ParseConfig(`
[cluster]
name = "c1"
[pricing.partitions.cpu]
node_hour = "1.00"
max_time = "1-00:00:00"
`)
	if err != nil {
		t.Fatal(err)
	}
	l := budget.New(pgtest.Pool(t), cfg, nil)
	ctx := context.Background()
	if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: "proj", Budget: decimal.NewFromInt(100000), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	s := spool.New(t.TempDir(), nil)
	for j := uint32(1); j <= n; j++ {
		if _, err := s.Write(rec(j)); err != nil {
			t.Fatal(err)
		}
	}
	var posts atomic.Int64
	post := func(ctx context.Context, e budget.JobEnd) error {
		posts.Add(1)
		_, err := l.SettleJob(ctx, e)
		return err
	}
	var wg sync.WaitGroup
	reps := make([]spool.Report, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each replayer is its own Spool value, as two services are.
			reps[i], errs[i] = spool.New(s.Dir(), nil).Replay(ctx, post)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("replayer %d: %v", i, errs[i])
		}
	}
	if got := reps[0].Posted + reps[1].Posted; got != n || posts.Load() != n {
		t.Errorf("posted %d+%d (post called %d times), want %d in all", reps[0].Posted, reps[1].Posted, posts.Load(), n)
	}
	t.Logf("replayer 0 posted %d, replayer 1 posted %d", reps[0].Posted, reps[1].Posted)
	var charges, distinct int
	var total decimal.Decimal
	if err := l.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id), coalesce(sum(actual), 0) FROM charges`).
		Scan(&charges, &distinct, &total); err != nil {
		t.Fatal(err)
	}
	if charges != n || distinct != n || !total.Equal(decimal.NewFromInt(n)) {
		t.Errorf("%d charges for %d jobs totalling %s; want %d, %d, %d.00", charges, distinct, total, n, n, n)
	}
	if left, _ := s.List(); len(left) != 0 {
		t.Errorf("%d records left in the spool", len(left))
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
}
