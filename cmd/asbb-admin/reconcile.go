package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/slurm"
)

func init() {
	register(command{name: "reconcile", summary: "settle one finished job by hand (from scontrol, or from flags)", run: runReconcile})
}

func runReconcile(ctx context.Context, e *env, args []string) error {
	fs := e.flags("reconcile <job_id>")
	start := fs.String("start", "", "start time: RFC 3339, YYYY-MM-DDTHH:MM:SS (config time zone) or unix seconds")
	end := fs.String("end", "", "end time (same forms)")
	nodes := fs.Uint32("nodes", 0, "allocated nodes")
	cpus := fs.Uint32("cpus", 0, "allocated CPUs")
	state := fs.String("state", "COMPLETED", "final job state (COMPLETED, CANCELLED, FAILED, TIMEOUT, ...)")
	account := fs.String("account", "", "account (needed when the job has no hold)")
	partition := fs.String("partition", "", "partition")
	user := fs.String("user", "", "user")
	hold := fs.Int64("hold", 0, "the job's hold id (its asbb:<id> marker)")
	arrayJob := fs.Uint32("array-job", 0, "array job id, for one task of an array")
	arrayTask := fs.Int64("array-task", -1, "array task id")
	tres := fs.String("tres", "", `allocated TRES, e.g. "cpu=4,mem=8G,node=1,gres/gpu=2"`)
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give exactly one job id")
	}
	id, err := strconv.ParseUint(fs.Arg(0), 10, 32)
	if err != nil || id == 0 || uint32(id) == budget.NoVal {
		return usagef("%q is not a Slurm job id", fs.Arg(0))
	}
	if (*arrayJob == 0) != (*arrayTask < 0) {
		return usagef("--array-job and --array-task go together")
	}
	if *arrayTask >= int64(budget.NoVal) {
		return usagef("--array-task %d is out of range", *arrayTask)
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	var rec budget.JobEnd
	source := "flags"
	if *start != "" || *end != "" {
		if *start == "" || *end == "" {
			return usagef("--start and --end go together")
		}
		s, err := e.parseInstant("start", *start)
		if err != nil {
			return err
		}
		en, err := e.parseInstant("end", *end)
		if err != nil {
			return err
		}
		if en < s {
			return usagef("--end is before --start")
		}
		code := budget.StateCode(*state)
		if code == budget.NoVal {
			return usagef("--state %q is not a Slurm job state", *state)
		}
		rec = budget.JobEnd{JobID: uint32(id), ArrayTaskID: budget.NoVal, StartTime: s, EndTime: en, State: code,
			Nodes: *nodes, CPUs: *cpus, Account: *account, Partition: *partition, User: *user, TresAlloc: *tres}
		if *arrayJob != 0 {
			rec.ArrayJobID, rec.ArrayTaskID = *arrayJob, uint32(*arrayTask)
		}
	} else {
		info, err := slurm.NewClient(l.Config()).Job(ctx, uint32(id))
		if err != nil {
			return fmt.Errorf("%w (a job Slurm has forgotten can be settled with --start/--end/--nodes/--cpus/--account)", err)
		}
		if !info.Job.Finished() && info.Job.State != "COMPLETING" {
			return fmt.Errorf("%w: job %d is %s; settle it when it has ended", budget.ErrConflict, id, info.Job.State)
		}
		rec = info.Job.End()
		source = "scontrol"
		if info.Trusted {
			source = "squeue --json"
		} else if hid, ok := budget.HoldIDFromComment(info.RawAdminComment); ok && *hold == 0 {
			fits, err := l.MarkerFits(ctx, hid, info.Job)
			if err != nil {
				return err
			}
			if fits {
				rec.AdminComment = info.RawAdminComment
			} else {
				fmt.Fprintf(e.stderr, "warning: ignoring marker asbb:%d: that hold is not this job's account and user\n", hid)
			}
		}
		for _, f := range []struct {
			dst *string
			v   string
		}{{&rec.Account, *account}, {&rec.Partition, *partition}, {&rec.User, *user}} {
			if f.v != "" {
				*f.dst = f.v
			}
		}
	}
	if *hold > 0 {
		rec.AdminComment = "asbb:" + strconv.FormatInt(*hold, 10)
	}
	rec.Actor = actor()
	s, err := l.SettleJob(ctx, rec)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(map[string]any{"source": source, "job_end": rec, "settlement": s})
	}
	verb := "settled"
	if s.Duplicate {
		verb = "already settled"
	}
	fmt.Fprintf(e.stdout, "job %d %s (from %s): charged %s, released %s", id, verb, source, e.money(s.Actual), e.money(s.Released))
	if s.HoldID != 0 {
		fmt.Fprintf(e.stdout, ", hold %d", s.HoldID)
	}
	if s.Overrun.IsPositive() {
		fmt.Fprintf(e.stdout, ", overrun %s", e.money(s.Overrun))
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// parseInstant reads an instant as unix seconds.
func (e *env) parseInstant(flag, s string) (int64, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil && v > 0 && v < 1<<40 {
		return v, nil
	}
	loc := time.UTC
	if cfg, err := e.config(); err == nil {
		loc = cfg.Location()
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, loc); err == nil {
		return t.Unix(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Unix(), nil
	}
	return 0, usagef("--%s: %q is not a time (RFC 3339, YYYY-MM-DDTHH:MM:SS or unix seconds)", flag, s)
}
