package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/asbb/asbb/budget/spool"
	"github.com/shopspring/decimal"
)

func TestWriteMsg(t *testing.T) {
	t.Parallel()
	s := "asbb: ü-part costs 5 €"
	for n := 0; n <= len(s)+3; n++ {
		mem := bytes.Repeat([]byte{0x5a}, n+4)
		writeMsg(mem[:n], s)
		if !bytes.Equal(mem[n:], []byte{0x5a, 0x5a, 0x5a, 0x5a}) {
			t.Fatalf("len %d: wrote past the buffer", n)
		}
		if n == 0 {
			continue
		}
		end := bytes.IndexByte(mem[:n], 0)
		if end < 0 {
			t.Fatalf("len %d: not NUL-terminated", n)
		}
		got := string(mem[:end])
		if !strings.HasPrefix(s, got) || !utf8.ValidString(got) {
			t.Fatalf("len %d: %q is not a valid prefix", n, got)
		}
		// As much as fits, short of cutting a rune.
		if n-1 >= len(s) && got != s {
			t.Fatalf("len %d: %q, want all", n, got)
		}
		if len(got) < n-1 && len(got) < len(s) && utf8.RuneStart(s[len(got)]) && len(got)+utf8.RuneLen([]rune(s[len(got):])[0]) <= n-1 {
			t.Fatalf("len %d: %q is shorter than needed", n, got)
		}
	}
	writeMsg(nil, s) // NULL buffer: nothing, no panic
}

func TestDecisionFieldsAndCodes(t *testing.T) {
	t.Parallel()
	d := budget.Decision{Kind: budget.KindHeld, HoldID: 42, Amount: decimal.RequireFromString("6.000000"), AdminComment: "site:x,asbb:42"}
	f, trimmed := decisionFields(d, 1024)
	if f.kind != kindHeld || f.holdID != "42" || f.amount != "6" || f.adminComment != "site:x,asbb:42" || trimmed {
		t.Errorf("held: %+v %v", f, trimmed)
	}
	d.AdminComment = strings.Repeat("x", 2000) + ",asbb:42"
	if f, trimmed = decisionFields(d, 1024); f.adminComment != "asbb:42" || !trimmed {
		t.Errorf("long comment: %q %v", f.adminComment, trimmed)
	}
	if f, _ := decisionFields(budget.Decision{Kind: budget.KindFree}, 1024); f.kind != kindFree || f.holdID != "" || f.amount != "" {
		t.Errorf("free: %+v", f)
	}
	unavail := fmt.Errorf("admit job: %w", fmt.Errorf("hold: %w: dial", budget.ErrUnavailable))
	cases := []struct {
		d    budget.Decision
		err  error
		want int
	}{
		{budget.Decision{Kind: budget.KindHeld}, nil, rcOK},
		{budget.Decision{Kind: budget.KindFree}, nil, rcOK},
		{budget.Decision{Kind: budget.KindShadow}, nil, rcOK},
		{budget.Decision{Kind: budget.KindDBAccept}, nil, rcOK},
		{budget.Decision{Kind: budget.KindRefused}, nil, rcRefused},
		{budget.Decision{Kind: budget.KindRefused}, unavail, rcUnavailable},
		{budget.Decision{Kind: budget.KindRefused}, context.DeadlineExceeded, rcUnavailable},
		{budget.Decision{Kind: budget.KindRefused}, fmt.Errorf("x: %w", budget.ErrInvalid), rcInvalid},
		{budget.Decision{Kind: budget.KindRefused}, budget.ErrHoldNotFound, rcNotFound},
		{budget.Decision{Kind: budget.KindRefused}, errors.New("bug"), rcInternal},
	}
	for i, c := range cases {
		if got := rcOf(c.d, c.err); got != c.want {
			t.Errorf("case %d: rc %d, want %d", i, got, c.want)
		}
	}
	e := jobEnd(budget.JobEnd{JobID: 5, ArrayJobID: budget.NoVal, ArrayTaskID: 0})
	if e.IsArrayTask() || e.ArrayJobID != 0 || e.Actor == "" {
		t.Errorf("jobEnd normalisation: %+v", e)
	}
}

func writeConfig(t *testing.T, dbURL, extra string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "asbb.toml")
	text := fmt.Sprintf(`
[database]
url = %q
connect_timeout = "1s"
[log]
file = %q
level = "debug"
[submit]
timeout = "2s"
[slurm]
settle_timeout = "2s"
bind_interval = "0s"
[epilog]
spool_dir = %q
[pricing.partitions.cpu]
node_hour = "5.00"
max_time = "1-00:00:00"
%s`, dbURL, filepath.Join(dir, "asbb.log"), filepath.Join(dir, "spool"), extra)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The library's Go side, driven as the exports drive it (lib is process
// state, so these steps run in one test, in order).
func TestLibraryLifecycle(t *testing.T) {
	url := pgtest.URL(t)
	cfgPath := writeConfig(t, url, "")
	ctx := context.Background()
	job := budget.UnsetJob()
	job.Account, job.Partition, job.MinNodes, job.TimeLimit, job.User = "proj", "cpu", 1, 60, "ann"

	if r := admitJob(job, false); r.rc != rcNotInit {
		t.Fatalf("admit before init: %+v", r)
	}
	if rc, msg := initLibrary(filepath.Join(t.TempDir(), "missing.toml")); rc != rcConfig || !strings.Contains(msg, "missing.toml") {
		t.Fatalf("init with a missing config: %d %q", rc, msg)
	}
	if rc, msg := initLibrary(cfgPath); rc != rcOK {
		t.Fatalf("init: %d %s", rc, msg)
	}
	defer finiLibrary()
	if rc, _ := initLibrary(cfgPath); rc != rcOK {
		t.Fatalf("second init: %d", rc)
	}
	l := lib.ledger
	if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: "proj", Budget: decimal.NewFromInt(100), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	r := admitJob(job, false)
	if r.rc != rcOK || r.decision.Kind != budget.KindHeld || !r.decision.Amount.Equal(decimal.NewFromInt(6)) {
		t.Fatalf("admit: %+v", r)
	}
	big := job
	big.MinNodes = 20
	if r := admitJob(big, false); r.rc != rcRefused || !strings.HasPrefix(r.msg, "asbb: account proj has") {
		t.Fatalf("refusal: %d %q", r.rc, r.msg)
	}
	end := budget.JobEnd{JobID: 77, ArrayTaskID: budget.NoVal, Account: "proj", Partition: "cpu", User: "ann",
		AdminComment: r.decision.AdminComment, StartTime: 1_800_000_000, EndTime: 1_800_001_800, State: budget.JobComplete}
	end.AdminComment = fmt.Sprintf("asbb:%d", admitJob(job, false).decision.HoldID)
	if r := settleJob(end); r.rc != rcOK || !strings.Contains(r.msg, "charged 2.5") {
		t.Fatalf("settle: %+v", r)
	}
	if r := settleJob(end); r.rc != rcOK || !strings.Contains(r.msg, "already settled") {
		t.Fatalf("settle again: %+v", r)
	}
	if r := settleJob(budget.JobEnd{}); r.rc != rcInvalid {
		t.Fatalf("settle without a job id: %+v", r)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	logData, _ := os.ReadFile(lib.cfg.Log.File)
	if !bytes.Contains(logData, []byte("libasbb initialised")) {
		t.Errorf("log file lacks the init line: %s", logData)
	}

	// A panic is recovered into ASBB_ERR_INTERNAL with its stack logged.
	res := func() (res result) {
		defer func() {
			if r := recover(); r != nil {
				res = recovered(r, "asbb_test")
			}
		}()
		var m map[string]int
		m["boom"]++
		return result{}
	}()
	if res.rc != rcInternal {
		t.Errorf("recovered panic: %+v", res)
	}
	logData, _ = os.ReadFile(lib.cfg.Log.File)
	if !bytes.Contains(logData, []byte("panic in export")) || !bytes.Contains(logData, []byte("goroutine")) {
		t.Errorf("panic not logged with its stack")
	}

	finiLibrary()
	if r := admitJob(job, false); r.rc != rcNotInit {
		t.Fatalf("admit after fini: %+v", r)
	}

	// Database down: admission follows on_db_error=reject; settlement is
	// spooled and succeeds.
	down := writeConfig(t, "postgres://asbb@127.0.0.1:1/asbb?connect_timeout=1", "")
	if rc, msg := initLibrary(down); rc != rcOK {
		t.Fatalf("init with the database down: %d %s", rc, msg)
	}
	if r := admitJob(job, false); r.rc != rcUnavailable || !strings.Contains(r.msg, "unavailable") {
		t.Fatalf("admit with the database down: %d %q", r.rc, r.msg)
	}
	r = settleJob(end)
	if r.rc != rcOK || !strings.Contains(r.msg, "spooled") {
		t.Fatalf("settle with the database down: %+v", r)
	}
	spooled, err := spool.New(lib.cfg.Epilog.SpoolDir, nil).List()
	if err != nil || len(spooled) != 1 {
		t.Fatalf("spool: %v %v", spooled, err)
	}
	finiLibrary()
}
