package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/asbb/asbb/budget/spool"
	"github.com/shopspring/decimal"
)

// epilogLine is what `scontrol show job -o 15` printed inside a real
// EpilogSlurmctld on Slurm 22.05 (state COMPLETING), with the end moved
// 30 minutes after the start and the given account and admin comment.
func epilogLine(t *testing.T, account, adminComment string) string {
	t.Helper()
	data, err := os.ReadFile("../../budget/slurm/testdata/scontrol-epilog-22.05.txt")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(data))
	r := strings.NewReplacer("EndTime=2026-11-27T21:43:12", "EndTime=2026-11-27T22:13:10",
		"Account=(null)", "Account="+account, "Partition=local", "Partition=cpu")
	line = r.Replace(line)
	if adminComment != "" {
		line = strings.Replace(line, "WorkDir=", "AdminComment="+adminComment+" WorkDir=", 1)
	}
	return line
}

type setup struct {
	dir, config string
	l           *budget.Ledger
}

// newSetup writes a fake scontrol printing line and a config; dbURL ""
// gives a fresh test database.
func newSetup(t *testing.T, line, dbURL, extra string) setup {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(dir, "line.txt"), []byte(line+"\n"), 0o644)
	script := fmt.Sprintf("#!/bin/sh\n[ \"$4\" = 15 ] || { echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; }\ncat %s\n", filepath.Join(dir, "line.txt"))
	os.WriteFile(filepath.Join(bin, "scontrol"), []byte(script), 0o755)
	var l *budget.Ledger
	if dbURL == "" {
		dbURL = pgtest.URL(t)
	}
	cfgText := fmt.Sprintf(`
[database]
url = %q
connect_timeout = "1s"
[slurm]
bin_dir = %q
timeout = "5s"
[epilog]
spool_dir = %q
timeout = "3s"
[pricing.partitions.cpu]
node_hour = "5.00"
max_time = "1-00:00:00"
%s`, dbURL, bin, filepath.Join(dir, "spool"), extra)
	cfgPath := filepath.Join(dir, "asbb.toml")
	os.WriteFile(cfgPath, []byte(cfgText), 0o600)
	if !strings.Contains(dbURL, "127.0.0.1:1/") {
		cfg, err := budget.LoadConfig(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		l, err = budget.Open(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		for _, a := range []string{"proj", "other"} {
			if _, err := l.CreateAccount(context.Background(), budget.AccountSpec{SlurmAccount: a, Budget: decimal.NewFromInt(100), Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return setup{dir: dir, config: cfgPath, l: l}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func (s setup) hold(t *testing.T, account, user string) int64 {
	t.Helper()
	j := budget.UnsetJob()
	j.Account, j.Partition, j.MinNodes, j.TimeLimit, j.User = account, "cpu", 1, 60, user
	d, err := s.l.Admit(context.Background(), j)
	if err != nil || d.Kind != budget.KindHeld {
		t.Fatalf("admit: %+v %v", d, err)
	}
	return d.HoldID
}

func TestEpilogSettlesWithAFittingMarker(t *testing.T) {
	t.Parallel()
	s := newSetup(t, "", "", "")
	id := s.hold(t, "proj", "root")
	os.WriteFile(filepath.Join(s.dir, "line.txt"), []byte(epilogLine(t, "proj", fmt.Sprintf("asbb:%d", id))+"\n"), 0o644)
	var logs bytes.Buffer
	e := env(map[string]string{"SLURM_JOB_ID": "15", "SLURM_JOB_ACCOUNT": "proj", "SLURM_CLUSTER_NAME": "c1"})
	if out := run(context.Background(), s.config, e, &logs); out != outSettled {
		t.Fatalf("outcome %s\n%s", out, logs.String())
	}
	h, _ := s.l.GetHold(context.Background(), id)
	if h.Status != "closed" || !h.Charged.Equal(decimal.RequireFromString("2.5")) {
		t.Errorf("hold %s charged %s, want closed at 2.50\n%s", h.Status, h.Charged, logs.String())
	}
	// A second epilog (or a node epilog too) charges nothing more.
	if out := run(context.Background(), s.config, e, &logs); out != outSettled {
		t.Fatalf("second run: %s", out)
	}
	var n int
	s.l.Pool().QueryRow(context.Background(), `SELECT count(*) FROM charges`).Scan(&n)
	if n != 1 {
		t.Errorf("%d charges, want 1", n)
	}
	if rep, err := s.l.Verify(context.Background()); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func TestEpilogIgnoresAForgedMarker(t *testing.T) {
	t.Parallel()
	s := newSetup(t, "", "", "")
	victim := s.hold(t, "other", "victim")
	// The job's own text "AdminComment=asbb:<victim>" came from user text.
	os.WriteFile(filepath.Join(s.dir, "line.txt"), []byte(epilogLine(t, "proj", fmt.Sprintf("asbb:%d", victim))+"\n"), 0o644)
	var logs bytes.Buffer
	if out := run(context.Background(), s.config, env(map[string]string{"SLURM_JOB_ID": "15"}), &logs); out != outSettled {
		t.Fatalf("outcome %s\n%s", out, logs.String())
	}
	h, _ := s.l.GetHold(context.Background(), victim)
	if h.Status != "active" || !h.Charged.IsZero() {
		t.Errorf("the victim's hold was touched: %s, charged %s", h.Status, h.Charged)
	}
	if !strings.Contains(logs.String(), "does not fit") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	// The job was charged to its own account at current prices.
	a, _ := s.l.GetAccount(context.Background(), "", "proj")
	if !a.Spent.Equal(decimal.RequireFromString("2.5")) {
		t.Errorf("proj spent %s, want 2.50", a.Spent)
	}
}

func TestEpilogNodeModeAndMissingJob(t *testing.T) {
	t.Parallel()
	s := newSetup(t, "", "", "")
	os.WriteFile(filepath.Join(s.dir, "line.txt"), []byte(epilogLine(t, "proj", "")+"\n"), 0o644)
	var logs bytes.Buffer
	ctx := context.Background()
	node := map[string]string{"SLURM_JOB_ID": "15", "SLURMD_NODENAME": "node02", "SLURM_NODELIST": "node[01-03]"}
	if out := run(ctx, s.config, env(node), &logs); out != outNotFirst {
		t.Errorf("second node: %s", out)
	}
	node["SLURMD_NODENAME"] = "node01"
	if out := run(ctx, s.config, env(node), &logs); out != outSettled {
		t.Errorf("first node: %s\n%s", out, logs.String())
	}
	if out := run(ctx, s.config, env(map[string]string{"SLURM_JOB_ID": "16"}), &logs); out != outSkipped {
		t.Errorf("unknown job: %s", out)
	}
	if out := run(ctx, s.config, env(map[string]string{"SLURM_JOB_ID": "x; rm -rf /"}), &logs); out != outSkipped {
		t.Errorf("bad job id: %s", out)
	}
}

func TestEpilogSpoolsWhenTheServiceIsDown(t *testing.T) {
	t.Parallel()
	s := newSetup(t, "", "postgres://asbb@127.0.0.1:1/asbb", "")
	os.WriteFile(filepath.Join(s.dir, "line.txt"), []byte(epilogLine(t, "proj", "")+"\n"), 0o644)
	cfg, _ := os.ReadFile(s.config)
	cfg = bytes.Replace(cfg, []byte("[epilog]\n"), []byte("[epilog]\nservice_url = \"http://127.0.0.1:1\"\ntoken = \"t\"\n"), 1)
	os.WriteFile(s.config, cfg, 0o600)
	var logs bytes.Buffer
	if out := run(context.Background(), s.config, env(map[string]string{"SLURM_JOB_ID": "15"}), &logs); out != outSpooled {
		t.Fatalf("outcome %s\n%s", out, logs.String())
	}
	left, _ := spool.New(filepath.Join(s.dir, "spool"), nil).List()
	if len(left) != 1 {
		t.Errorf("spool holds %d records", len(left))
	}
}

// The built binary, with an unreachable database: exit status 0 and a
// spool file that replays into the right settlement.
func TestEpilogBinaryExitsZeroAndSpools(t *testing.T) {
	t.Parallel()
	s := newSetup(t, "", "postgres://asbb@127.0.0.1:1/asbb", "")
	os.WriteFile(filepath.Join(s.dir, "line.txt"), []byte(epilogLine(t, "proj", "")+"\n"), 0o644)
	bin := filepath.Join(s.dir, "asbb-epilog")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--config", s.config}, {"--config", filepath.Join(s.dir, "missing.toml")}} {
		cmd := exec.Command(bin, args...)
		// SLURM_CONF points nowhere so that the missing-config run (which
		// falls back to /usr/bin/scontrol) cannot reach a real cluster.
		cmd.Env = []string{"SLURM_JOB_ID=15", "PATH=/usr/bin:/bin", "SLURM_CONF=/nonexistent/slurm.conf"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: exit %v\n%s", args, err, out)
		}
		if args[1] == s.config && !strings.Contains(string(out), "settlement spooled") {
			t.Errorf("no spool line:\n%s", out)
		}
	}
	left, err := spool.New(filepath.Join(s.dir, "spool"), nil).List()
	if err != nil || len(left) != 1 {
		t.Fatalf("spool: %+v %v", left, err)
	}
	rec, err := spool.Read(filepath.Join(s.dir, "spool", left[0].Name))
	if err != nil || rec.JobID != 15 || rec.Account != "proj" || rec.EndTime-rec.StartTime != 1800 || rec.State != budget.JobComplete {
		t.Errorf("spooled record %+v, %v", rec, err)
	}
}
