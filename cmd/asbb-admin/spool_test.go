package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/spool"
	"github.com/shopspring/decimal"
)

// slurmCLI is a CLI whose config points at fake squeue/scontrol scripts
// (the Slurm side only; the database is real).
type slurmCLI struct {
	cli
	config, bin, spoolDir string
	l                     *budget.Ledger
}

func newSlurmCLI(t *testing.T) slurmCLI {
	c := newCLI(t)
	dir := t.TempDir()
	s := slurmCLI{cli: c, bin: filepath.Join(dir, "bin"), spoolDir: filepath.Join(dir, "spool"),
		config: filepath.Join(dir, "asbb.toml")}
	os.MkdirAll(s.bin, 0o755)
	os.WriteFile(s.config, []byte(fmt.Sprintf(`
[slurm]
bin_dir = %q
timeout = "5s"
[epilog]
spool_dir = %q
[recovery]
min_hold_age = "1m"
[pricing.partitions.cpu]
node_hour = "5.00"
max_time = "1-00:00:00"
`, s.bin, s.spoolDir)), 0o600)
	cfg, err := budget.LoadConfig(s.config)
	if err != nil {
		t.Fatal(err)
	}
	s.l, err = budget.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.l.Close)
	if _, err := s.l.CreateAccount(context.Background(), budget.AccountSpec{SlurmAccount: "proj", Budget: decimal.NewFromInt(1000), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s slurmCLI) script(name, body string) {
	os.WriteFile(filepath.Join(s.bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755)
}

func (s slurmCLI) hold(t *testing.T) int64 {
	t.Helper()
	j := budget.UnsetJob()
	j.Account, j.Partition, j.MinNodes, j.TimeLimit, j.User = "proj", "cpu", 1, 60, "root"
	d, err := s.l.Admit(context.Background(), j)
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %+v %v", d, err)
	}
	return d.HoldID
}

func TestSpoolCommands(t *testing.T) {
	s := newSlurmCLI(t)
	id := s.hold(t)
	sp := spool.New(s.spoolDir, nil)
	if _, err := sp.Write(budget.JobEnd{JobID: 31, ArrayTaskID: budget.NoVal, Account: "proj", Partition: "cpu",
		AdminComment: fmt.Sprintf("asbb:%d", id), StartTime: 1_800_000_000, EndTime: 1_800_001_800, State: budget.JobComplete}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.spoolDir, "settle-broken.json"), []byte("{"), 0o600)
	var entries []spool.Entry
	if err := json.Unmarshal([]byte(s.ok("spool", "list", "--config", s.config, "--json")), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("spool list: %+v %v", entries, err)
	}
	out := s.ok("spool", "replay", "--config", s.config)
	if !strings.Contains(out, "posted 1,") || !strings.Contains(out, "quarantined 1") {
		t.Errorf("replay: %s", out)
	}
	h, _ := s.l.GetHold(context.Background(), id)
	if h.Status != "closed" || !h.Charged.Equal(decimal.RequireFromString("2.5")) {
		t.Errorf("hold after replay: %s, charged %s", h.Status, h.Charged)
	}
	if out := s.ok("spool", "list", "--config", s.config); !strings.Contains(out, "0 record(s)") {
		t.Errorf("list after replay: %s", out)
	}
	// --dir wins over the config; an empty directory is fine.
	if out := s.ok("spool", "replay", "--config", s.config, "--dir", t.TempDir()); !strings.Contains(out, "posted 0") {
		t.Errorf("replay of an empty dir: %s", out)
	}
}

func TestReconcileCommand(t *testing.T) {
	s := newSlurmCLI(t)
	out := s.ok("reconcile", "501", "--config", s.config, "--start", "2026-01-01T00:00:00", "--end", "2026-01-01T01:00:00",
		"--nodes", "1", "--account", "proj", "--partition", "cpu")
	if !strings.Contains(out, "job 501 settled (from flags): charged $5.00") {
		t.Errorf("reconcile by flags: %s", out)
	}
	if out := s.ok("reconcile", "501", "--config", s.config, "--start", "1767225600", "--end", "1767229200",
		"--nodes", "1", "--account", "proj", "--partition", "cpu"); !strings.Contains(out, "already settled") {
		t.Errorf("repeat: %s", out)
	}
	for _, bad := range [][]string{{"abc"}, {}, {"1", "2"}, {"5", "--start", "2026-01-01T00:00:00"},
		{"5", "--start", "yesterday", "--end", "today"}, {"5", "--start", "2026-01-02T00:00:00", "--end", "2026-01-01T00:00:00"},
		{"5", "--start", "1", "--end", "2", "--state", "BOGUS"}, {"5", "--array-job", "4"}} {
		if code, _, _ := s.run(append([]string{"reconcile", "--config", s.config}, bad...)...); code != 2 {
			t.Errorf("reconcile %q: exit %d, want 2", bad, code)
		}
	}
	// From scontrol: the line EpilogSlurmctld saw on 22.05 (COMPLETING).
	data, err := os.ReadFile("../../budget/slurm/testdata/scontrol-epilog-22.05.txt")
	if err != nil {
		t.Fatal(err)
	}
	id := s.hold(t)
	line := strings.NewReplacer("Account=(null)", "Account=proj", "Partition=local", "Partition=cpu",
		"EndTime=2026-11-27T21:43:12", "EndTime=2026-11-27T23:43:10",
		"WorkDir=", fmt.Sprintf("AdminComment=asbb:%d WorkDir=", id)).Replace(strings.TrimSpace(string(data)))
	os.WriteFile(filepath.Join(s.bin, "line"), []byte(line+"\n"), 0o644)
	s.script("scontrol", `[ "$4" = 15 ] && cat `+filepath.Join(s.bin, "line")+` && exit 0
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1`)
	if out := s.ok("reconcile", "15", "--config", s.config); !strings.Contains(out, "from scontrol): charged $10.00") ||
		!strings.Contains(out, fmt.Sprintf("hold %d", id)) || !strings.Contains(out, "overrun $4.00") {
		t.Errorf("reconcile from scontrol: %s", out)
	}
	if code, _, errOut := s.run("reconcile", "16", "--config", s.config); code != 1 || !strings.Contains(errOut, "--start/--end") {
		t.Errorf("unknown job: exit %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(s.bin, "line"), []byte(strings.Replace(line, "JobState=COMPLETING", "JobState=RUNNING", 1)+"\n"), 0o644)
	if code, _, errOut := s.run("reconcile", "15", "--config", s.config); code == 0 || !strings.Contains(errOut, "is RUNNING") {
		t.Errorf("running job: exit %d %s", code, errOut)
	}
	rep, err := s.l.Verify(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func TestRecoverCommand(t *testing.T) {
	s := newSlurmCLI(t)
	ctx := context.Background()
	orphan := s.hold(t)
	running := s.hold(t)
	s.l.Pool().Exec(ctx, `UPDATE holds SET created_at = now() - interval '1 hour'`)
	doc := fmt.Sprintf(`{"jobs":[{"job_id":40,"array_job_id":0,"array_task_id":null,"job_state":"RUNNING","admin_comment":"asbb:%d",
		"user_name":"root","account":"proj","partition":"cpu","start_time":1,"end_time":2,"node_count":1,"cpus":1}]}`, running)
	os.WriteFile(filepath.Join(s.bin, "squeue.json"), []byte(doc), 0o644)
	s.script("squeue", `cat `+filepath.Join(s.bin, "squeue.json"))

	var rep budget.RecoveryReport
	if err := json.Unmarshal([]byte(s.ok("recover", "--config", s.config, "--dry-run", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || rep.Released != 1 || rep.Bound != 1 || rep.Kept != 1 {
		t.Errorf("dry run: %+v", rep)
	}
	out := s.ok("recover", "--config", s.config)
	if !strings.Contains(out, "released 1") || !strings.Contains(out, "job 40 is RUNNING") {
		t.Errorf("recover: %s", out)
	}
	if h, _ := s.l.GetHold(ctx, orphan); h.Status != "closed" {
		t.Errorf("orphan is %s", h.Status)
	}
	if h, _ := s.l.GetHold(ctx, running); h.Status != "active" || h.JobID == nil || *h.JobID != "40" {
		t.Errorf("running job's hold: %s %v", h.Status, h.JobID)
	}
	// Slurm unreachable: an error, nothing released.
	s.script("squeue", `echo "squeue: error: Unable to contact slurm controller" >&2; exit 1`)
	if code, _, errOut := s.run("recover", "--config", s.config); code != 1 || !strings.Contains(errOut, "ask slurm") {
		t.Errorf("recover without Slurm: exit %d %s", code, errOut)
	}
	if h, _ := s.l.GetHold(ctx, running); h.Status != "active" {
		t.Errorf("hold released without an answer from Slurm")
	}
}
