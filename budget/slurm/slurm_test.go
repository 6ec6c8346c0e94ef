package slurm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
)

func TestExpandHostlist(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string
	}{
		{"node1", []string{"node1"}},
		{"node[01-03,07],gpu1", []string{"node01", "node02", "node03", "node07", "gpu1"}},
		{"n[8-10]", []string{"n8", "n9", "n10"}},
		{"n[08-10]", []string{"n08", "n09", "n10"}},
		{"rack[1-2]-n[1-2]", []string{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"}},
		{"a,b[1,3],c", []string{"a", "b1", "b3", "c"}},
		{"", nil},
	}
	for _, c := range cases {
		got, err := ExpandHostlist(c.in)
		if err != nil {
			t.Errorf("ExpandHostlist(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ExpandHostlist(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"n[1-", "n[3-1]", "n[a-b]", "n]1[", "n[1-999999999]", "n[[1]]"} {
		if got, err := ExpandHostlist(bad); err == nil {
			t.Errorf("ExpandHostlist(%q) = %d hosts, want an error", bad, len(got))
		}
	}
	if h, err := FirstHost("gpu[3-5],cpu1"); err != nil || h != "gpu3" {
		t.Errorf("FirstHost = %q, %v; want gpu3", h, err)
	}
	if h, err := FirstHost(""); err != nil || h != "" {
		t.Errorf("FirstHost(\"\") = %q, %v", h, err)
	}
}

// The fixtures were printed by Slurm 22.05.8 (Debian 12) for the same six
// jobs: 1 and 4 completed, 2 running with a job name that imitates an
// AdminComment, 3 an array (tasks 5, 6 and 3) whose admin_comment is
// asbb:42.
func TestParseSqueueJSONFixture(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/squeue-22.05.json")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := ParseSqueueJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 6 {
		t.Fatalf("got %d jobs, want 6", len(jobs))
	}
	by := map[uint32]budget.SlurmJob{}
	for _, j := range jobs {
		by[j.JobID] = j
	}
	if j := by[2]; j.State != "RUNNING" || j.AdminComment != "" || !j.Live() || j.StartTime != 1795814755 {
		t.Errorf("job 2 = %+v; want RUNNING, no admin comment (the name only imitates one)", j)
	}
	if j := by[5]; j.ArrayJobID != 3 || j.ArrayTaskID != 1 || j.AdminComment != "asbb:42" || !j.Finished() ||
		j.Nodes != 1 || j.CPUs != 1 || j.TresAlloc != "cpu=1,node=1,billing=1" || j.User != "root" || j.Cluster != "asbb-e2e" {
		t.Errorf("job 5 = %+v", j)
	}
	if j := by[1]; j.ArrayJobID != 0 || j.ArrayTaskID != budget.NoVal || j.BindID() != "1" {
		t.Errorf("job 1 = %+v", j)
	}
	if e := by[1].End(); e.StartTime != e.EndTime || e.EndTime != 1795814693 || e.Elapsed() != 0 {
		t.Errorf("a job with start == end keeps its start (the key jobcomp.lua sends) and ran no time: %+v", e)
	}
	if j := by[6]; j.BindID() != "3" {
		t.Errorf("array task binds to %q, want the array id 3", j.BindID())
	}
	e := by[6].End()
	if !e.IsArrayTask() || e.ArrayTaskID != 2 || e.State != budget.JobComplete || e.Elapsed() != 0 {
		t.Errorf("End() = %+v", e)
	}
}

func TestParseSqueueJSONNewerForm(t *testing.T) {
	t.Parallel()
	// 23.02+ wraps numbers and lists states with flags.
	doc := `{"jobs":[{"job_id":7,"array_job_id":{"set":true,"infinite":false,"number":0},
	  "array_task_id":{"set":false,"infinite":false,"number":0},"job_state":["COMPLETED","COMPLETING"],
	  "admin_comment":"asbb:9","start_time":{"set":true,"number":100},"end_time":{"set":true,"number":160},
	  "node_count":{"set":true,"number":2},"cpus":{"set":true,"number":8},"user_name":"ann"}]}`
	jobs, err := ParseSqueueJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	if j.JobID != 7 || j.State != "COMPLETING" || !j.Live() || j.StartTime != 100 || j.EndTime != 160 ||
		j.Nodes != 2 || j.CPUs != 8 || j.ArrayTaskID != budget.NoVal || j.ArrayJobID != 0 {
		t.Errorf("got %+v", j)
	}
}

func TestParseSqueueJSONBad(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{``, `{`, `[]`, `{"jobs":[{"job_id":0,"job_state":"RUNNING"}]}`,
		`{"jobs":[{"job_id":-3,"job_state":"RUNNING"}]}`, `{"jobs":[{"job_id":3,"job_state":7}]}`,
		`{"errors":[{"error":"boom"}]}`, `{"jobs":[{"job_id":"1; DROP TABLE holds","job_state":"RUNNING"}]}`} {
		if _, err := ParseSqueueJSON([]byte(doc)); err == nil {
			t.Errorf("ParseSqueueJSON(%q) succeeded", doc)
		}
	}
}

func TestParseScontrolFixture(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/scontrol-22.05.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	by := map[uint32]budget.SlurmJob{}
	for _, l := range lines {
		j, rec, err := ParseScontrolJob(l, time.UTC)
		if err != nil {
			t.Fatalf("%v in %q", err, l[:60])
		}
		if j.AdminComment != "" {
			t.Errorf("job %d: AdminComment %q taken from text", j.JobID, j.AdminComment)
		}
		by[j.JobID] = j
		if j.JobID == 3 && rec.Fields["AdminComment"] != "asbb:42" {
			t.Errorf("job 3 raw AdminComment = %q", rec.Fields["AdminComment"])
		}
	}
	start := time.Date(2026, 11, 27, 21, 25, 55, 0, time.UTC).Unix()
	if j := by[2]; j.State != "RUNNING" || j.StartTime != start || j.User != "root" ||
		j.Partition != "local" || j.Account != "" || j.Nodes != 1 || j.CPUs != 1 {
		t.Errorf("job 2 = %+v", j)
	}
	if j := by[4]; j.State != "COMPLETED" || j.StartTime != start || j.EndTime != start || j.TresAlloc != "cpu=1,node=1,billing=1" {
		t.Errorf("job 4 = %+v", j)
	}
	if j := by[6]; j.ArrayJobID != 3 || j.ArrayTaskID != 2 {
		t.Errorf("job 6 = %+v", j)
	}
}

func TestParseScontrolSpoofAndZones(t *testing.T) {
	t.Parallel()
	base := "JobId=9 JobName=%s UserId=bob(1001) GroupId=bob(1001) Account=ml QOS=normal JobState=COMPLETED " +
		"StartTime=2026-03-29T01:30:00 EndTime=2026-03-29T03:30:00 Partition=gpu NodeList=n[1-2] NumNodes=2 " +
		"NumCPUs=8 TRES=cpu=8,node=2,gres/gpu=2 Command=/bin/x WorkDir=/home/bob StdOut=%s"
	line := strings.NewReplacer("%s", "x").Replace(base)
	j, _, err := ParseScontrolJob(line, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if j.EndTime-j.StartTime != 7200 || j.Account != "ml" || j.User != "bob" || j.Nodes != 2 || j.CPUs != 8 {
		t.Errorf("got %+v", j)
	}
	// The same wall-clock times in Europe/Berlin span the DST change: one
	// hour elapsed. This is why the client runs scontrol with TZ=UTC.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	jb, _, err := ParseScontrolJob(line, berlin)
	if err != nil {
		t.Fatal(err)
	}
	if jb.EndTime-jb.StartTime != 3600 {
		t.Errorf("Berlin elapsed = %d, want 3600", jb.EndTime-jb.StartTime)
	}
	for _, evil := range []string{
		"a JobState=RUNNING", "x StartTime=2020-01-01T00:00:00", "a TRES=cpu=1000 b",
	} {
		l := strings.Replace(line, "JobName=x", "JobName="+evil, 1)
		if _, _, err := ParseScontrolJob(l, time.UTC); !errors.Is(err, ErrAmbiguous) {
			t.Errorf("name %q: err = %v, want ErrAmbiguous", evil, err)
		}
	}
	// A fake AdminComment in user text is harmless: it is never read.
	l := strings.Replace(line, "StdOut=x", "StdOut=/tmp/o AdminComment=asbb:1", 1)
	if j, _, err := ParseScontrolJob(l, time.UTC); err != nil || j.AdminComment != "" {
		t.Errorf("fake admin comment: %+v, %v", j, err)
	}
	for _, bad := range []string{"", "garbage", "JobId=abc JobState=RUNNING", "JobId=5 JobName=x",
		"JobId=5 JobState=COMPLETED StartTime=yesterday"} {
		if _, _, err := ParseScontrolJob(bad, time.UTC); err == nil {
			t.Errorf("ParseScontrolJob(%q) succeeded", bad)
		}
	}
}

// fakeBin writes executable scripts standing in for Slurm's commands.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestClient(t *testing.T) {
	t.Parallel()
	fixture, _ := filepath.Abs("testdata/squeue-22.05.json")
	sc, _ := filepath.Abs("testdata/scontrol-22.05.txt")
	dir := fakeBin(t, map[string]string{
		"squeue": `[ "$TZ" = UTC ] || { echo "TZ=$TZ" >&2; exit 9; }; cat ` + fixture,
		"scontrol": `case "$4" in 99) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;;
			3) grep 'ArrayJobId=3 ' ` + sc + `;; *) grep "^JobId=$4 " ` + sc + `;; esac`,
	})
	c := &Client{BinDir: dir, Timeout: 5 * time.Second}
	ctx := context.Background()
	jobs, err := c.Jobs(ctx, nil)
	if err != nil || len(jobs) != 6 {
		t.Fatalf("Jobs = %d, %v", len(jobs), err)
	}
	if jobs, err := c.Jobs(ctx, []string{"nobody"}); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(nobody) = %d, %v", len(jobs), err)
	}
	info, err := c.Job(ctx, 6)
	if err != nil || info.Trusted || info.Job.ArrayTaskID != 2 || info.Job.AdminComment != "" {
		t.Errorf("Job(6) = %+v, %v", info, err)
	}
	if info, err := c.Job(ctx, 3); err != nil || info.RawAdminComment != "asbb:42" || info.Job.AdminComment != "" {
		t.Errorf("Job(3) = %+v, %v; want the raw comment apart", info, err)
	}
	// Job 2's text is not ambiguous for the keys read; its JSON is used
	// only on ambiguity, so this comes from scontrol.
	if info, err := c.Job(ctx, 2); err != nil || info.Job.State != "RUNNING" {
		t.Errorf("Job(2) = %+v, %v", info, err)
	}
	if _, err := c.Job(ctx, 99); !errors.Is(err, ErrNoSuchJob) {
		t.Errorf("Job(99) err = %v, want ErrNoSuchJob", err)
	}
	if info, err := c.JobJSON(ctx, 5); err != nil || !info.Trusted || info.Job.AdminComment != "asbb:42" {
		t.Errorf("JobJSON(5) = %+v, %v", info, err)
	}
}

func TestClientTimeoutAndFailure(t *testing.T) {
	t.Parallel()
	dir := fakeBin(t, map[string]string{
		"squeue":   `sleep 30`,
		"scontrol": `echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1`,
	})
	c := &Client{BinDir: dir, Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := c.Jobs(context.Background(), nil)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Jobs err = %v, want a deadline error", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Jobs took %s despite a 200ms timeout", el)
	}
	_, err = c.Job(context.Background(), 5)
	var ce *CommandError
	if !errors.As(err, &ce) || errors.Is(err, ErrNoSuchJob) {
		t.Errorf("Job err = %v, want a CommandError that is not ErrNoSuchJob", err)
	}
	missing := &Client{BinDir: t.TempDir(), Timeout: time.Second}
	if _, err := missing.Jobs(context.Background(), nil); err == nil {
		t.Error("Jobs with no squeue succeeded")
	}
}
