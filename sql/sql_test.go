package sql_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/asbb/asbb/budget/pgtest"
	asql "github.com/asbb/asbb/sql"
	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// objects lists what the schema holds, to compare two applications.
func objects(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'public'
		UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
			JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
		UNION ALL SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = 'public'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrationsUpDownUp(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pgtest.EmptyURL(t))
	if err := asql.Migrate(ctx, conn); err != nil {
		t.Fatalf("up: %v", err)
	}
	first := objects(t, conn)
	if v, _ := asql.Version(ctx, conn); v != asql.Latest() || v < 1 {
		t.Fatalf("version %d after up, latest %d", v, asql.Latest())
	}
	// Step down one migration at a time, then all the way.
	for v := asql.Latest() - 1; v >= 0; v-- {
		if err := asql.MigrateTo(ctx, conn, v); err != nil {
			t.Fatalf("down to %d: %v", v, err)
		}
	}
	// Only the migrator's own bookkeeping table may remain.
	for _, o := range objects(t, conn) {
		if o != "table asbb_schema_migrations" && o != "index asbb_schema_migrations_pkey" {
			t.Fatalf("down left %q behind", o)
		}
	}
	if err := asql.Migrate(ctx, conn); err != nil {
		t.Fatalf("up again: %v", err)
	}
	second := objects(t, conn)
	if len(first) != len(second) {
		t.Fatalf("up, down, up differs: %d objects then %d", len(first), len(second))
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("up, down, up differs at %q vs %q", first[i], second[i])
		}
	}
}

func TestConcurrentMigratorsApplyOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			if err := asql.Migrate(ctx, conn); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	conn := connect(t, url)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM asbb_schema_migrations`).Scan(&n); err != nil || n != asql.Latest() {
		t.Fatalf("%d migration rows (%v), want %d", n, err, asql.Latest())
	}
}

func TestMigrationsAreWellFormed(t *testing.T) {
	ms, err := asql.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || asql.Hash() == "invalid" {
		t.Fatal("no migrations embedded")
	}
}

func TestAChangedMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pgtest.EmptyURL(t))
	if err := asql.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// As if this database had been migrated by another build.
	if _, err := conn.Exec(ctx, `UPDATE asbb_schema_migrations SET checksum = 'other' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	err := asql.Migrate(ctx, conn)
	if err == nil || !strings.Contains(err.Error(), "differs from this build") {
		t.Fatalf("migrate over a changed migration: %v", err)
	}
}
