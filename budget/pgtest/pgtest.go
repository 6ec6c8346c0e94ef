// Package pgtest gives each test its own real, fully migrated PostgreSQL
// database, in milliseconds.
//
// The recipe is pgtestdb's: migrate once into a template database named after
// the hash of the migrations (sql.Hash), then create every test's database
// with CREATE DATABASE … TEMPLATE, which copies files instead of replaying
// migrations. A test's database is dropped when the test passes and kept,
// with its URL logged, when it fails, so it can be inspected with psql.
//
// The server is ASBB_TEST_DATABASE_URL when that is set (an admin URL of a
// role that may create databases). Otherwise pgtest starts a private
// PostgreSQL in DefaultDir() — initdb, unix socket only, durable commits —
// and leaves it running for the next test binary: `go test ./...` runs many
// binaries at once, and they find the one server through the directory and
// serialise its start with flock(2). Stop it with
// `go run ./tests/tools/pgserver stop`.
//
// There are no skips: if no server can be had, the test fails (t.Fatal) with
// a hint, in CI and on a laptop alike, so a green run always means the SQL ran.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	asbbsql "github.com/asbb/asbb/sql"
)

// setupTimeout bounds one helper call; it covers waiting for another test
// binary that holds the start lock or is migrating the template.
const setupTimeout = 3 * time.Minute

// templateLockKey is the advisory lock ("asbb-tmp") under which one process
// at a time builds a template database.
const templateLockKey int64 = 0x617362622d746d70

// DefaultDir is where the shared test server lives: $ASBB_PGTEST_DIR, or
// asbb-pgtest-<uid> in the temporary directory. It is outside the work tree
// so that every checkout on the machine (and every package's test binary)
// shares one server, and short enough for a unix socket path.
func DefaultDir() string {
	if d := os.Getenv("ASBB_PGTEST_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("asbb-pgtest-%d", os.Getuid()))
}

// URL returns the connection URL of a new database, migrated to the latest
// schema, that belongs to tb alone.
func URL(tb testing.TB) string {
	tb.Helper()
	tmpl, err := sharedTemplate()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return newDatabase(tb, tmpl)
}

// Pool returns a pool on a new migrated database (see URL), closed when tb
// ends.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	dbURL := URL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatalf("pgtest: open pool on %s: %v", dbURL, err)
	}
	// Registered after URL's cleanup, so it runs first: the pool's
	// connections are gone before the database is dropped.
	tb.Cleanup(pool.Close)
	return pool
}

// EmptyURL returns the URL of a new database with no migrations applied, for
// tests of the migrations themselves (up, down, up).
func EmptyURL(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, "template0")
}

// Server returns the admin URL of the shared server (its "postgres"
// database, or ASBB_TEST_DATABASE_URL). Create nothing in it: other test
// binaries use it at the same time. Use EmptyURL for a scratch database and
// NewInstance for a server that a test may stop.
func Server(tb testing.TB) string {
	tb.Helper()
	s, err := sharedServer()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return s.admin
}

// server is the shared server as this test binary sees it.
type server struct {
	admin string        // admin connection string
	pool  *pgxpool.Pool // admin connections: CREATE and DROP DATABASE
}

// sharedServer finds or starts the server once per test binary; a failure
// is remembered so that every later test fails at once with the same error
// instead of waiting for its own timeout.
var sharedServer = sync.OnceValues(func() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin := os.Getenv("ASBB_TEST_DATABASE_URL")
	if admin == "" {
		c, err := newCluster(DefaultDir())
		if err != nil {
			return nil, err
		}
		// wipe: the shared directory holds nothing but throw-away test data.
		if err := c.start(ctx, true); err != nil {
			return nil, fmt.Errorf("start the shared test server: %w", err)
		}
		admin = c.url("postgres")
	}
	cfg, err := pgxpool.ParseConfig(admin)
	if err != nil {
		return nil, fmt.Errorf("parse test server URL: %w", err)
	}
	cfg.MaxConns = 4 // CREATE/DROP DATABASE only; the tests have their own pools
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to test server %s: %w", admin, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to test server %s: %w", admin, err)
	}
	return &server{admin: admin, pool: pool}, nil
})

// sharedTemplate builds (or finds) the template database for the current
// migrations, once per test binary.
var sharedTemplate = sync.OnceValues(func() (string, error) {
	s, err := sharedServer()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return s.ensureTemplate(ctx)
})

// ensureTemplate creates tmpl_<sql.Hash()> unless a complete one exists. The
// advisory lock makes parallel test binaries wait for the first one's
// migration rather than race it; IS_TEMPLATE, set last, marks a template
// as complete, so one left half-built by a killed process is rebuilt.
func (s *server) ensureTemplate(ctx context.Context) (string, error) {
	name := "tmpl_" + asbbsql.Hash()
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "", fmt.Errorf("connect to test server: %w", err)
	}
	// Closing the session also releases the advisory lock.
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", fmt.Errorf("lock template creation: %w", err)
	}
	var complete bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&complete)
	switch {
	case err == nil && complete:
		return name, nil
	case err == nil:
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(name)+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop incomplete template %s: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look up template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create template %s: %w", name, err)
	}
	if err := migrateDatabase(ctx, s.databaseURL(name)); err != nil {
		// Best effort: a leftover is rebuilt by the next run anyway.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" IS_TEMPLATE true"); err != nil {
		return "", fmt.Errorf("mark %s as a template: %w", name, err)
	}
	return name, nil
}

// migrateDatabase applies every migration to the database at dbURL.
func migrateDatabase(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", dbURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := asbbsql.Migrate(ctx, conn); err != nil {
		return fmt.Errorf("migrate %s: %w", dbURL, err)
	}
	return nil
}

// newDatabase creates a database for tb from template and arranges for it to
// be dropped, or kept if tb fails.
func newDatabase(tb testing.TB, template string) string {
	tb.Helper()
	s, err := sharedServer()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	name := databaseName(tb.Name())
	if err := createDatabase(ctx, s.pool, name, template); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	dbURL := s.databaseURL(name)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pgtest: kept the database of failed test %s: psql '%s'", tb.Name(), dbURL)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		// FORCE: a connection the test forgot to close must not fail it.
		if _, err := s.pool.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// createDatabase copies template into a new database name. PostgreSQL refuses
// to copy a database while anyone is connected to it, and a session that has
// just closed (the migrator's) can linger for a moment, hence the retries.
func createDatabase(ctx context.Context, pool *pgxpool.Pool, name, template string) error {
	stmt := "CREATE DATABASE " + ident(name) + " TEMPLATE " + ident(template)
	for attempt := 0; ; attempt++ {
		_, err := pool.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt >= 100 {
			if err != nil {
				return fmt.Errorf("create database %s from %s: %w", name, template, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create database %s from %s: %w", name, template, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// databaseURL is the admin URL with its database replaced by db.
func (s *server) databaseURL(db string) string {
	return withDatabase(s.admin, db)
}

// withDatabase replaces the database of a URL or of a key=value connection
// string (where a later key wins).
func withDatabase(connString, db string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		if u, err := url.Parse(connString); err == nil {
			u.Path = "/" + db
			u.RawPath = ""
			return u.String()
		}
	}
	return connString + " dbname='" + db + "'"
}

// databaseName makes a unique, readable name from a test name, so that a
// kept database says which test it belongs to: test_<name>_<random>.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	slug := strings.Trim(b.String(), "_")
	// 63 bytes is PostgreSQL's identifier limit: 5 + 40 + 1 + 16 fits.
	if len(slug) > 40 {
		slug = strings.TrimRight(slug[:40], "_")
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand panics instead)
	if slug == "" {
		return "test_" + hex.EncodeToString(rnd[:])
	}
	return "test_" + slug + "_" + hex.EncodeToString(rnd[:])
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
