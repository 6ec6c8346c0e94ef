package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/asbb/asbb/budget/pgtest"
	asbbsql "github.com/asbb/asbb/sql"
)

func TestParallelTestsGetSeparateDatabases(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	names := map[string]string{}
	t.Run("group", func(t *testing.T) {
		for _, who := range []string{"alice", "bob", "carol"} {
			t.Run(who, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				pool := pgtest.Pool(t)
				// The same table name in every database: with a shared
				// database the second CREATE would fail.
				if _, err := pool.Exec(ctx, "CREATE TABLE scratch (who text)"); err != nil {
					t.Fatalf("create table: %v", err)
				}
				if _, err := pool.Exec(ctx, "INSERT INTO scratch VALUES ($1)", who); err != nil {
					t.Fatalf("insert: %v", err)
				}
				rows, _ := pool.Query(ctx, "SELECT who FROM scratch")
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatalf("select: %v", err)
				}
				if len(got) != 1 || got[0] != who {
					t.Errorf("scratch holds %v, want only [%s]", got, who)
				}
				var db string
				if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
					t.Fatalf("current_database: %v", err)
				}
				mu.Lock()
				names[who] = db
				mu.Unlock()
			})
		}
	})
	seen := map[string]bool{}
	for who, db := range names {
		if seen[db] {
			t.Errorf("database %s handed out twice (last to %s)", db, who)
		}
		seen[db] = true
	}
}

func TestDatabaseIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.URL(t))
	var version int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM asbb_schema_migrations").Scan(&version); err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	if want := asbbsql.Latest(); version != want {
		t.Errorf("schema version %d, want the latest, %d", version, want)
	}
}

func TestEmptyURLHasNoSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.EmptyURL(t))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if n != 0 {
		t.Errorf("empty database has %d tables", n)
	}
}

// fakeTB lets a test fail "a test" without failing itself.
type fakeTB struct {
	testing.TB
	failed   bool
	cleanups []func()
	logs     []string
}

func (f *fakeTB) Cleanup(fn func())            { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Failed() bool                 { return f.failed }
func (f *fakeTB) Logf(format string, a ...any) { f.logs = append(f.logs, fmt.Sprintf(format, a...)) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestFailedTestKeepsItsDatabase(t *testing.T) {
	t.Parallel()
	for _, failed := range []bool{false, true} {
		fake := &fakeTB{TB: t, failed: failed}
		dbURL := pgtest.URL(fake)
		name := databaseOf(t, dbURL)
		fake.runCleanups()
		if got := exists(t, name); got != failed {
			t.Errorf("failed=%v: database %s exists=%v after cleanup, want %v", failed, name, got, failed)
		}
		logged := strings.Contains(strings.Join(fake.logs, "\n"), dbURL)
		if logged != failed {
			t.Errorf("failed=%v: URL logged=%v (logs %q)", failed, logged, fake.logs)
		}
		if failed {
			admin := connect(t, pgtest.Server(t))
			if _, err := admin.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop kept database: %v", err)
			}
		}
	}
}

func TestInstanceSurvivesStopAndCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inst := pgtest.NewInstance(t, "")
	conn := connect(t, inst.URL())
	if _, err := conn.Exec(ctx, "CREATE TABLE durable (n int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	conn.Close(ctx)

	for i, down := range []func(){inst.Stop, inst.Crash} {
		conn := connect(t, inst.URL())
		if _, err := conn.Exec(ctx, "INSERT INTO durable VALUES ($1)", i); err != nil {
			t.Fatalf("insert: %v", err)
		}
		down()
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatalf("query succeeded on a stopped server")
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if c, err := pgx.Connect(cctx, inst.URL()); err == nil {
			c.Close(ctx)
			t.Fatalf("connected to a stopped server")
		}
		cancel()
		inst.Start()
		conn = connect(t, inst.URL())
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM durable").Scan(&n); err != nil {
			t.Fatalf("count after restart: %v", err)
		}
		if n != i+1 {
			t.Errorf("after restart %d: %d committed rows survived, want %d", i, n, i+1)
		}
	}
}

func TestStartServerIsIdempotentAcrossCallers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "asbb-pgtest-start-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pgtest.StopServer(ctx, dir); err != nil {
			t.Errorf("stop: %v", err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	// Each call opens its own lock file description, so goroutines contend
	// for the flock exactly as separate test binaries do.
	const callers = 4
	urls := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { urls[i], errs[i] = pgtest.StartServer(ctx, dir) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, u := range urls[1:] {
		if u != urls[0] {
			t.Errorf("URLs differ: %s and %s", u, urls[0])
		}
	}
	if !pgtest.ServerRunning(ctx, dir) {
		t.Fatal("server not running after StartServer")
	}
	if _, err := pgtest.StartServer(ctx, dir); err != nil {
		t.Errorf("second start: %v", err)
	}
	if err := pgtest.CreateDatabase(ctx, urls[0], "demo"); err != nil {
		t.Errorf("create database: %v", err)
	}
	if err := pgtest.CreateDatabase(ctx, urls[0], "demo"); err != nil {
		t.Errorf("create database again: %v", err)
	}
	for range 2 {
		if err := pgtest.StopServer(ctx, dir); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	if pgtest.ServerRunning(ctx, dir) {
		t.Error("server still running after StopServer")
	}
}

func TestServerHasDurableSettings(t *testing.T) {
	if os.Getenv("ASBB_TEST_DATABASE_URL") != "" {
		t.Skip("settings of an external server are its owner's")
	}
	t.Parallel()
	conn := connect(t, pgtest.Server(t))
	for setting, want := range map[string]string{
		"fsync":              "on",
		"synchronous_commit": "on",
		"max_connections":    "300",
		"shared_buffers":     "128MB",
		"listen_addresses":   "",
	} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatalf("read %s: %v", setting, err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", dbURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func databaseOf(t *testing.T, dbURL string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("parse %s: %v", dbURL, err)
	}
	return cfg.Database
}

func exists(t *testing.T, db string) bool {
	t.Helper()
	var ok bool
	conn := connect(t, pgtest.Server(t))
	if err := conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&ok); err != nil {
		t.Fatalf("look up database: %v", err)
	}
	return ok
}

// BenchmarkURL measures the cost of one test database: CREATE DATABASE from
// the template now, DROP DATABASE at cleanup.
func BenchmarkURL(b *testing.B) {
	pgtest.URL(b) // the server and the template, outside the timing
	b.ResetTimer()
	for range b.N {
		f := &fakeTB{TB: b}
		pgtest.URL(f)
		f.runCleanups()
	}
}
