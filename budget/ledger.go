package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ledger is the budget core: every operation on accounts, holds and money
// is a method of it. It is safe for concurrent use.
type Ledger struct {
	pool *pgxpool.Pool
	cfg  *Config
	log  *slog.Logger
	now  func() time.Time

	groups holdGroups // fast holds in flight, per account (fasthold.go)
	ids    idCache    // account ids the fast holds resolved (fasthold.go)
}

// Open connects to the database named by cfg and returns a Ledger. The pool
// is created once and reused by every call (a new connection costs ~40x a
// hold, see PERF-NOTES).
func Open(ctx context.Context, cfg *Config, log *slog.Logger) (*Ledger, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("database.url: %w", err)
	}
	pcfg.MaxConns = cfg.Database.MaxConns
	pcfg.MinConns = 1
	pcfg.ConnConfig.ConnectTimeout = cfg.Database.ConnectTimeout.Duration
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "asbb"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return New(pool, cfg, log), nil
}

// New wraps an existing pool (tests, or a caller that manages its pool).
func New(pool *pgxpool.Pool, cfg *Config, log *slog.Logger) *Ledger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ledger{pool: pool, cfg: cfg, log: log, now: time.Now}
}

// Close closes the pool.
func (l *Ledger) Close() { l.pool.Close() }

// Pool is the underlying pool, for packages built on the core (the HTTP
// service's reporting queries, the grant store).
func (l *Ledger) Pool() *pgxpool.Pool { return l.pool }

// Config is the configuration the ledger was built with.
func (l *Ledger) Config() *Config { return l.cfg }

// Logger is the ledger's logger.
func (l *Ledger) Logger() *slog.Logger { return l.log }

// DBTX is what both a pool and a transaction offer; the …Tx forms of
// operations take one so callers can compose them in their own transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// maxTxAttempts bounds retries of serialization and deadlock failures. The
// retries never sleep: the submit path must not wait.
const maxTxAttempts = 3

// InTx runs fn in a transaction, the only place that begins one. It rolls
// back on error (even when ctx was cancelled) and retries a bounded number
// of times on SQLSTATE 40001/40P01.
func (l *Ledger) InTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = l.inTxOnce(ctx, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		l.log.Debug("retrying transaction", "attempt", attempt, "error", err)
	}
	return err
}

func (l *Ledger) inTxOnce(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return dbErr("begin transaction", err)
	}
	defer func() {
		if rerr := tx.Rollback(context.WithoutCancel(ctx)); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
			l.log.Warn("rollback failed", "error", rerr)
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return dbErr("commit", err)
	}
	return nil
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// dbErr translates a database error: unreachable or timed out becomes
// ErrUnavailable (callers apply their outage policy), constraint failures
// become the package's sentinels; the rest is wrapped with context.
func dbErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return fmt.Errorf("%s: %w: %s", what, ErrConflict, pe.Detail)
		case "23503":
			return fmt.Errorf("%s: %w: %s", what, ErrNotFound, pe.Message)
		case "23514", "22003", "22023", "22P02", "22007", "22008":
			return fmt.Errorf("%s: %w: %s", what, ErrInvalid, pe.Message)
		case "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "57014":
			return fmt.Errorf("%s: %w: %s", what, ErrUnavailable, pe.Message)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &ne) || pgconn.Timeout(err) || isConnectError(err) {
		return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// DBErr is dbErr for packages built on the core (the HTTP service's own
// tables), so every pg error is translated to the sentinels in one place.
func DBErr(what string, err error) error { return dbErr(what, err) }

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// Ping checks that the database answers.
func (l *Ledger) Ping(ctx context.Context) error {
	return dbErr("ping database", l.pool.Ping(ctx))
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

func collectInt64(rows pgx.Rows) ([]int64, error) {
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

var txRepeatableRead = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
