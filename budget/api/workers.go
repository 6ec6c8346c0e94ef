package api

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/slurm"
	"github.com/asbb/asbb/budget/spool"
)

// Worker is a background job of the service. Adding one is one line in
// defaultWorkers (or s.AddWorker before Run):
//
//	Worker{Name: "alerts", Interval: cfg.Alerts.Interval.Duration, Fn: s.evaluateAlerts}
//
// Fn must be safe when two service instances run it at once: either it
// coordinates through PostgreSQL itself (row locks, SKIP LOCKED, per-item
// advisory locks, idempotency keys), or Exclusive is set and the framework
// runs it under a session advisory lock named after the worker, so only one
// instance runs it at a time (the other skips that tick).
type Worker struct {
	Name      string
	Interval  time.Duration
	Fn        func(ctx context.Context) error
	Exclusive bool
}

type workerState struct {
	mu        sync.Mutex
	interval  time.Duration
	started   bool
	running   bool // the loop is alive
	inRun     bool
	runStart  time.Time
	lastEnd   time.Time
	lastErr   error
	stoppedOK bool
}

// AddWorker registers a worker; call it before Run.
func (s *Server) AddWorker(w Worker) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if w.Interval <= 0 {
		w.Interval = time.Minute
	}
	s.workers = append(s.workers, w)
	s.wstate[w.Name] = &workerState{interval: w.Interval}
}

// defaultWorkers lists the service's workers: one line each.
func (s *Server) defaultWorkers() {
	svc := s.cfg.Service
	s.AddWorker(Worker{Name: "asbx_ingest", Interval: svc.ASBXInterval.Duration, Fn: s.ingestASBX})
	s.AddWorker(Worker{Name: "asbx_pending", Interval: svc.ASBXInterval.Duration, Fn: s.retryPendingASBX})
	s.AddWorker(Worker{Name: "spool_replay", Interval: svc.SpoolInterval.Duration, Fn: s.replaySpool})
	s.AddWorker(Worker{Name: "recovery", Interval: s.cfg.Recovery.Interval.Duration, Fn: s.recoverHolds})
	if s.cfg.Allocations.AutoProcess {
		s.AddWorker(Worker{Name: "allocations", Interval: s.cfg.Allocations.ProcessInterval.Duration, Fn: s.processSchedules})
	}
}

// replaySpool settles the records asbb-epilog spooled while the database
// (or this service) was unreachable. Replayers claim records by renaming
// them (budget/spool), so two instances post each record once, and
// settlement is idempotent besides.
func (s *Server) replaySpool(ctx context.Context) error {
	dir := s.cfg.Epilog.SpoolDir
	if dir == "" {
		return nil
	}
	sp := spool.New(dir, s.log)
	rep, err := sp.Replay(ctx, func(ctx context.Context, e budget.JobEnd) error {
		start := time.Now()
		st, err := s.l.SettleJob(ctx, e)
		s.metrics.settleLatency.Observe(time.Since(start).Seconds())
		switch {
		case err != nil:
			s.metrics.settlements.WithLabelValues(settleOutcome(err)).Inc()
		case st.Duplicate:
			s.metrics.settlements.WithLabelValues("duplicate").Inc()
		default:
			s.metrics.settlements.WithLabelValues("charged").Inc()
		}
		return err
	})
	if left, lerr := sp.List(); lerr == nil {
		s.metrics.spoolBacklog.WithLabelValues("settle").Set(float64(len(left)))
	}
	if err == nil && rep.Failed > 0 {
		err = fmt.Errorf("%d spooled settlements failed: %s", rep.Failed, strings.Join(rep.Errors, "; "))
	}
	return err
}

// recoverHolds runs the recovery sweep (budget.Ledger.Recover, which takes
// its own advisory lock so one instance sweeps at a time) against Slurm.
func (s *Server) recoverHolds(ctx context.Context) error {
	rep, err := s.l.Recover(ctx, slurm.NewClient(s.cfg), budget.RecoverOptions{Actor: "asbb-service"})
	for _, a := range rep.Actions {
		if a.Action == "release" && a.Error == "" {
			// Reasons are sentences; the label is their kind.
			kind := "job_gone"
			if strings.Contains(a.Reason, "reconciliation_timeout") {
				kind = "timeout"
			}
			s.metrics.recoveryReleases.WithLabelValues(kind).Inc()
		}
	}
	return err
}

// startWorkers runs every worker in its own goroutine until ctx is done.
func (s *Server) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	s.wmu.Lock()
	ws := append([]Worker(nil), s.workers...)
	s.wmu.Unlock()
	for _, w := range ws {
		st := s.wstate[w.Name]
		st.mu.Lock()
		st.started, st.running = true, true
		st.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				st.mu.Lock()
				st.running, st.stoppedOK = false, ctx.Err() != nil
				st.mu.Unlock()
			}()
			s.loop(ctx, w, st)
		}()
	}
}

func (s *Server) loop(ctx context.Context, w Worker, st *workerState) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		s.runWorker(ctx, w, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runWorker runs one tick, recovering a panic (a worker bug must not take
// the API down).
func (s *Server) runWorker(ctx context.Context, w Worker, st *workerState) {
	st.mu.Lock()
	st.inRun, st.runStart = true, time.Now()
	st.mu.Unlock()
	var err error
	result := "ok"
	func() {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		if w.Exclusive {
			var ran bool
			ran, err = s.exclusive(ctx, w.Name, w.Fn)
			if !ran && err == nil {
				result = "skipped"
			}
			return
		}
		err = w.Fn(ctx)
	}()
	if err != nil && ctx.Err() == nil {
		result = "error"
		s.log.Warn("worker failed", "worker", w.Name, "error", err)
	}
	s.metrics.workerRuns.WithLabelValues(w.Name, result).Inc()
	if result == "ok" {
		s.metrics.workerLast.WithLabelValues(w.Name).SetToCurrentTime()
	}
	st.mu.Lock()
	st.inRun, st.lastEnd, st.lastErr = false, time.Now(), err
	st.mu.Unlock()
}

// exclusive runs fn under a session advisory lock named after the worker;
// ran is false when another instance holds it.
func (s *Server) exclusive(ctx context.Context, name string, fn func(context.Context) error) (ran bool, err error) {
	conn, err := s.l.Pool().Acquire(ctx)
	if err != nil {
		return false, budget.DBErr("acquire worker lock connection", err)
	}
	defer conn.Release()
	key := lockKey("asbb-worker:" + name)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return false, budget.DBErr("take worker lock", err)
	}
	if !got {
		return false, nil
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); uerr != nil {
			// The lock dies with the session; make sure the pool drops it.
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck
		}
	}()
	return true, fn(ctx)
}

// lockKey is a stable advisory-lock key for a name.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// workerHealth reports each worker: ok, error (last run failed, still
// scheduled), running, stalled (a run or the schedule is 3 intervals late),
// stopped (its loop died) or not_started (Handler served without Run).
func (s *Server) workerHealth() map[string]string {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	out := map[string]string{}
	now := time.Now()
	for _, w := range s.workers {
		st := s.wstate[w.Name]
		st.mu.Lock()
		late := 3*st.interval + time.Minute
		switch {
		case !st.started:
			out[w.Name] = "not_started"
		case !st.running && !st.stoppedOK:
			out[w.Name] = "stopped"
		case !st.running:
			out[w.Name] = "stopping"
		case st.inRun && now.Sub(st.runStart) > late:
			out[w.Name] = "stalled"
		case st.inRun:
			out[w.Name] = "running"
		case now.Sub(st.lastEnd) > late:
			out[w.Name] = "stalled"
		case st.lastErr != nil:
			out[w.Name] = "error"
		default:
			out[w.Name] = "ok"
		}
		st.mu.Unlock()
	}
	return out
}
