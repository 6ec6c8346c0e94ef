package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/slurm"
	"github.com/asbb/asbb/budget/spool"
)

// defaultLogFile is where the library logs when log.file is empty: inside
// slurmctld, stdout and stderr belong to the daemon.
const defaultLogFile = "/var/log/asbb/asbb.log"

// library is the process-wide state behind the exports. Calls hold mu for
// reading for their whole (deadline-bounded) duration, so asbb_fini waits
// for calls in flight instead of closing the pool under them.
type library struct {
	mu     sync.RWMutex
	ledger *budget.Ledger
	cfg    *budget.Config
	log    *slog.Logger
	logOut io.Closer
	stop   context.CancelFunc // stops the binder
	done   chan struct{}      // closed when the binder has stopped
}

var lib library

// logger is the library's logger, for the panic handler (which may run
// when the library is not initialised).
func (lb *library) logger() *slog.Logger {
	lb.mu.RLock()
	defer lb.mu.RUnlock()
	if lb.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return lb.log
}

// initLibrary loads the config, opens the log and the one connection pool
// of the process and starts the binder. Idempotent.
func initLibrary(path string) (int, string) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.ledger != nil {
		if path != "" && lib.cfg.Path != "" && path != lib.cfg.Path {
			lib.log.Warn("asbb_init: already initialised; config path ignored", "path", path, "in_use", lib.cfg.Path)
		}
		return rcOK, "asbb: already initialised"
	}
	cfg, err := budget.LoadConfig(path)
	if err != nil {
		return rcConfig, "asbb: " + err.Error()
	}
	log, closer := openLog(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Database.ConnectTimeout.Duration+time.Second)
	defer cancel()
	// Open does not wait for a connection (the pool dials in the
	// background), so slurmctld starts even while the database is down.
	l, err := budget.Open(ctx, cfg, log)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return rcConfig, "asbb: " + err.Error()
	}
	lib.ledger, lib.cfg, lib.log, lib.logOut = l, cfg, log, closer
	lib.startBinder()
	log.Info("libasbb initialised", "config", cfg.Path, "pid", os.Getpid(), "process", processName(),
		"abi_version", abiVersion, "cluster", cfg.Cluster.Name)
	return rcOK, "asbb: initialised"
}

// finiLibrary stops the binder and closes the pool. A later init opens
// everything again.
func finiLibrary() {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.ledger == nil {
		return
	}
	if lib.stop != nil {
		lib.stop()
		<-lib.done
		lib.stop, lib.done = nil, nil
	}
	lib.ledger.Close()
	lib.log.Info("libasbb closed", "pid", os.Getpid())
	if lib.logOut != nil {
		lib.logOut.Close()
	}
	lib.ledger, lib.cfg, lib.log, lib.logOut = nil, nil, nil, nil
}

// openLog opens log.file for appending (or the default file, or nothing).
func openLog(cfg *budget.Config) (*slog.Logger, io.Closer) {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	candidates := []string{cfg.Log.File}
	if cfg.Log.File == "" {
		candidates = []string{defaultLogFile}
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		_ = os.MkdirAll(filepath.Dir(p), 0o750)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err == nil {
			return slog.New(slog.NewTextHandler(f, opts)).With("pid", os.Getpid()), f
		}
	}
	return slog.New(slog.DiscardHandler), nil
}

// processName is /proc/self/comm ("slurmctld" inside the controller).
func processName() string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startBinder runs the bind pass every slurm.bind_interval, off the submit
// path, in slurmctld only (or where ASBB_BINDER=1): the C plugin's
// job_modify sees only the job id, and finds the hold only once it is
// bound. Called with lib.mu held.
func (lb *library) startBinder() {
	iv := lb.cfg.Slurm.BindInterval.Duration
	if iv <= 0 || (processName() != "slurmctld" && os.Getenv("ASBB_BINDER") != "1") {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lb.stop, lb.done = cancel, done
	l, cfg, log := lb.ledger, lb.cfg, lb.log
	q := slurm.NewClient(cfg)
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				log.Error("binder panicked; binding stops until the next asbb_init", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		t := time.NewTicker(iv)
		defer t.Stop()
		var lastErr string
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, cfg.Slurm.Timeout.Duration+5*time.Second)
			rep, err := l.BindHolds(pctx, q, cfg.Slurm.BindWindow.Duration)
			pcancel()
			switch {
			case err != nil && ctx.Err() == nil:
				// Log a failure once, not every tick.
				if err.Error() != lastErr {
					log.Warn("binder: bind pass failed", "error", err)
				}
				lastErr = err.Error()
			case err == nil:
				if lastErr != "" {
					log.Info("binder: bind pass works again")
				}
				lastErr = ""
				if rep.Bound > 0 {
					log.Debug("binder: holds bound", "bound", rep.Bound, "unbound", rep.Unbound, "jobs", rep.Jobs)
				}
			}
		}
	}()
}

// result is an export's answer before it is written into C memory.
type result struct {
	rc       int
	msg      string
	decision budget.Decision
	has      bool // decision is set
}

// admitJob runs Admit or Modify (each applies submit.timeout itself).
func admitJob(job budget.JobRequest, modify bool) result {
	lib.mu.RLock()
	defer lib.mu.RUnlock()
	if lib.ledger == nil {
		return result{rc: rcNotInit, msg: "asbb: the budget library is not initialised"}
	}
	var d budget.Decision
	var err error
	if modify {
		d, err = lib.ledger.Modify(context.Background(), job)
	} else {
		d, err = lib.ledger.Admit(context.Background(), job)
	}
	msg := d.Message
	if err != nil && msg == "" {
		msg = "asbb: " + err.Error()
	}
	if err != nil && rcOfErr(err) == rcInternal {
		lib.log.Error("admission failed", "modify", modify, "account", job.Account, "partition", job.Partition,
			"user", job.User, "job_id", job.JobID, "error", err)
	}
	if err == nil && d.Kind == budget.KindHeld {
		settleSkipUntil.Store(0) // the database answers again
	}
	return result{rc: rcOf(d, err), msg: msg, decision: d, has: true}
}

// settleBreaker is how long settlement goes straight to the spool after the
// database failed to answer one: jobcomp settles inline in slurmctld, so
// without it every job ending during an outage would stall slurmctld for a
// whole slurm.settle_timeout.
const settleBreaker = 30 * time.Second

// settleSkipUntil is the unix-nanosecond time until which settlements are
// spooled without trying the database; a hold taken at submit shows the
// database is back and ends it early.
var settleSkipUntil atomic.Int64

// settleJob charges a finished job. When the database cannot be reached
// within slurm.settle_timeout, the record goes to the spool
// (epilog.spool_dir) for a later replay, and the call succeeds: the
// settlement is durable and will happen exactly once.
func settleJob(e budget.JobEnd) result {
	lib.mu.RLock()
	defer lib.mu.RUnlock()
	if lib.ledger == nil {
		return result{rc: rcNotInit, msg: "asbb: the budget library is not initialised"}
	}
	e = jobEnd(e)
	var s budget.Settlement
	var err error
	if time.Now().UnixNano() < settleSkipUntil.Load() {
		err = fmt.Errorf("%w: the database failed to answer moments ago; spooling without waiting", budget.ErrUnavailable)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), lib.cfg.Slurm.SettleTimeout.Duration)
		s, err = lib.ledger.SettleJob(ctx, e)
		cancel()
		if err != nil && rcOfErr(err) == rcUnavailable {
			settleSkipUntil.Store(time.Now().Add(settleBreaker).UnixNano())
		} else if err == nil {
			settleSkipUntil.Store(0)
		}
	}
	if err == nil {
		if s.Duplicate {
			return result{rc: rcOK, msg: fmt.Sprintf("asbb: job %d was already settled", e.JobID)}
		}
		return result{rc: rcOK, msg: fmt.Sprintf("asbb: job %d settled: charged %s, released %s", e.JobID, s.Actual, s.Released)}
	}
	rc := rcOfErr(err)
	if rc != rcUnavailable {
		lib.log.Error("settlement failed", "job_id", e.JobID, "error", err)
		return result{rc: rc, msg: "asbb: settle job " + fmt.Sprint(e.JobID) + ": " + err.Error()}
	}
	path, serr := spool.New(lib.cfg.Epilog.SpoolDir, lib.log).Write(e)
	if serr != nil {
		lib.log.Error("settlement failed and could not be spooled", "job_id", e.JobID, "error", err, "spool_error", serr)
		return result{rc: rcUnavailable, msg: fmt.Sprintf("asbb: settle job %d: %v; spooling failed too: %v", e.JobID, err, serr)}
	}
	lib.log.Warn("database unavailable; settlement spooled", "job_id", e.JobID, "file", path, "error", err)
	return result{rc: rcOK, msg: fmt.Sprintf("asbb: database unavailable; settlement of job %d spooled to %s", e.JobID, path)}
}

// recovered turns a panic into ASBB_ERR_INTERNAL with its stack logged.
// Every export defers it: a panic must never cross into C.
func recovered(r any, export string) result {
	stack := string(debug.Stack())
	lib.logger().Error("panic in export (recovered)", "export", export, "panic", fmt.Sprint(r), "stack", stack)
	return result{rc: rcInternal, msg: "asbb: internal error in " + export + " (logged)"}
}
