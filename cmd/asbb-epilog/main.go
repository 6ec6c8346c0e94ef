// Command asbb-epilog settles a finished job: run it as EpilogSlurmctld (or
// as slurmd's node Epilog). It reads the job's times, state and resources
// from Slurm (`scontrol show job -o`), builds the settlement record and
// settles it in the database, or posts it to asbb-service when
// epilog.service_url and epilog.token are set. When that fails (database
// or service unreachable, config missing) the record goes to the durable
// spool (epilog.spool_dir) for asbb-service or `asbb-admin spool replay`.
//
// It always exits 0: a failing Slurm epilog drains the node.
//
// Usage: asbb-epilog [--config FILE]   (default $ASBB_CONFIG or
// /etc/asbb/asbb.toml). Environment (set by Slurm): SLURM_JOB_ID, and in
// the node Epilog SLURMD_NODENAME and SLURM_NODELIST/SLURM_JOB_NODELIST
// (only the first node of the allocation acts).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/api"
	"github.com/asbb/asbb/budget/slurm"
	"github.com/asbb/asbb/budget/spool"
)

func main() {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "asbb-epilog: panic (recovered, exiting 0): %v\n%s", r, debug.Stack())
		}
		os.Exit(0)
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	path := ""
	if len(os.Args) == 3 && os.Args[1] == "--config" {
		path = os.Args[2]
	}
	run(ctx, path, os.Getenv, os.Stderr)
}

// Outcomes of run, for tests and the log.
const (
	outSettled  = "settled"
	outPosted   = "posted"
	outSpooled  = "spooled"
	outNotFirst = "not_first_node"
	outSkipped  = "skipped"
	outLost     = "lost" // could not settle nor spool: logged loudly
)

// run does the work; it never panics out (main recovers anyway) and its
// result is only informative: the process exits 0 whatever it is.
func run(ctx context.Context, configPath string, getenv func(string) string, stderr io.Writer) (outcome string) {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("prog", "asbb-epilog", "job_id", getenv("SLURM_JOB_ID"))
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic (recovered)", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			outcome = outLost
		}
	}()
	cfg, cfgErr := budget.LoadConfig(configPath)
	if cfgErr != nil {
		// Without a config there is no database to reach, but the default
		// spool still keeps the record.
		log.Error("cannot load the config; the record will be spooled", "error", cfgErr)
		cfg = budget.DefaultConfig()
	} else if cfg.Log.File != "" {
		if f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
			defer f.Close()
			log = slog.New(slog.NewTextHandler(io.MultiWriter(f, stderr), nil)).With("prog", "asbb-epilog",
				"job_id", getenv("SLURM_JOB_ID"))
		}
	}

	if node := getenv("SLURMD_NODENAME"); node != "" {
		list := getenv("SLURM_JOB_NODELIST")
		if list == "" {
			list = getenv("SLURM_NODELIST")
		}
		first, err := slurm.FirstHost(list)
		if err != nil {
			log.Warn("cannot read the node list; settling from this node anyway", "nodelist", list, "error", err)
		} else if first != "" && first != node {
			// Settlement is idempotent, but one node is enough.
			return outNotFirst
		}
	}
	id, err := strconv.ParseUint(getenv("SLURM_JOB_ID"), 10, 32)
	if err != nil || id == 0 {
		log.Error("no valid SLURM_JOB_ID in the environment; nothing to settle")
		return outSkipped
	}

	qctx, cancel := context.WithTimeout(ctx, cfg.Slurm.Timeout.Duration+time.Second)
	info, err := slurm.NewClient(cfg).Job(qctx, uint32(id))
	cancel()
	if err != nil {
		// Without its times the job cannot be priced; jobcomp or the
		// recovery sweep (which reads Slurm's record) settles it.
		log.Error("cannot read the job from Slurm; not settled here (jobcomp or recovery will)", "error", err,
			"hint", "set slurm.conf in the config if slurm.conf is not in Slurm's default place: EpilogSlurmctld has no SLURM_CONF")
		return outSkipped
	}
	e := info.Job.End()
	e.Actor = "slurm:epilog"
	if e.Account == "" {
		e.Account = getenv("SLURM_JOB_ACCOUNT")
	}
	if e.Partition == "" {
		e.Partition = getenv("SLURM_JOB_PARTITION")
	}
	if e.User == "" {
		e.User = getenv("SLURM_JOB_USER")
	}
	if !info.Job.Finished() && info.Job.State != "COMPLETING" {
		log.Warn("job has not ended; settling what Slurm reports", "state", info.Job.State)
	}
	if !info.Trusted {
		// scontrol's text can be forged by users: the marker goes along
		// unverified, and settlement uses it only if the hold fits the
		// job, wherever it happens (here, the service, a spool replay).
		e.AdminComment, e.UntrustedComment = "", info.RawAdminComment
	}

	sctx, scancel := context.WithTimeout(ctx, cfg.Epilog.Timeout.Duration)
	defer scancel()
	if cfgErr == nil && cfg.Epilog.ServiceURL != "" && cfg.Epilog.Token != "" {
		c := &api.Client{BaseURL: cfg.Epilog.ServiceURL, Token: cfg.Epilog.Token, Timeout: cfg.Epilog.Timeout.Duration, Log: log}
		if _, err = c.Reconcile(sctx, e); err == nil {
			log.Info("settlement posted to asbb-service", "state", info.Job.State)
			return outPosted
		}
		log.Error("posting the settlement failed", "error", err)
	} else if cfgErr == nil {
		var s budget.Settlement
		if s, err = settleInDB(sctx, cfg, log, e); err == nil {
			log.Info("job settled", "charged", s.Actual.String(), "released", s.Released.String(), "duplicate", s.Duplicate)
			return outSettled
		}
		log.Error("settlement failed", "error", err)
	}
	p, serr := spool.New(cfg.Epilog.SpoolDir, log).Write(e)
	if serr != nil {
		log.Error("SETTLEMENT LOST: cannot spool the record either; settle by hand with asbb-admin reconcile",
			"error", serr, "record", fmt.Sprintf("%+v", e))
		return outLost
	}
	log.Warn("settlement spooled for replay", "file", p)
	return outSpooled
}

// settleInDB settles through the database.
func settleInDB(ctx context.Context, cfg *budget.Config, log *slog.Logger, e budget.JobEnd) (budget.Settlement, error) {
	l, err := budget.Open(ctx, cfg, log)
	if err != nil {
		return budget.Settlement{}, err
	}
	defer l.Close()
	return l.SettleJob(ctx, e)
}
