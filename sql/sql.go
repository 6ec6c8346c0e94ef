// Package sql holds ASBB's numbered schema migrations and the small
// migrator that applies them.
//
// Migrations live in migrations/NNNN_name.up.sql and NNNN_name.down.sql and
// are embedded into every binary, so `asbb-admin database migrate` needs no
// files on disk. Each migration runs in its own transaction, and the whole
// run holds a session advisory lock so that two binaries migrating at once
// (two service instances starting together) apply each step exactly once.
package sql

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var files embed.FS

// lockKey is the advisory lock that serialises migrators ("asbb-mig").
const lockKey int64 = 0x617362622d6d6967

// Migration is one numbered step.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

var nameRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// Migrations returns every embedded migration in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.up.sql or .down.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := files.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &Migration{Version: v, Name: m[2]}
			byVersion[v] = mig
		}
		if m[3] == "up" {
			mig.Up = string(body)
		} else {
			mig.Down = string(body)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %04d_%s: needs both an up and a down file", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: versions must be contiguous from 0001", m.Version, m.Name)
		}
	}
	return out, nil
}

// Latest is the highest migration version.
func Latest() int {
	ms, err := Migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Hash identifies the exact set of migrations (used to key test templates).
func Hash() string {
	h := sha256.New()
	ms, err := Migrations()
	if err != nil {
		return "invalid"
	}
	for _, m := range ms {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s\x00", m.Version, m.Name, m.Up, m.Down)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Migrate applies every pending migration.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	return MigrateTo(ctx, conn, -1)
}

// Version reports the schema version the database is at (0 = none).
func Version(ctx context.Context, conn *pgx.Conn) (int, error) {
	if err := ensureTable(ctx, conn); err != nil {
		return 0, err
	}
	return current(ctx, conn)
}

// MigrateTo moves the schema up or down to version (-1 = latest, 0 = empty).
func MigrateTo(ctx context.Context, conn *pgx.Conn, version int) (err error) {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if version < 0 {
		version = len(ms)
	}
	if version > len(ms) {
		return fmt.Errorf("migrate to %d: the latest migration is %d", version, len(ms))
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// The unlock must run even if ctx was cancelled mid-migration.
		_, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey)
		err = errors.Join(err, uerr)
	}()
	if err := ensureTable(ctx, conn); err != nil {
		return err
	}
	cur, err := current(ctx, conn)
	if err != nil {
		return err
	}
	if err := checkApplied(ctx, conn, ms); err != nil {
		return err
	}
	for cur < version {
		m := ms[cur]
		if err := step(ctx, conn, m.Up, "INSERT INTO asbb_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			m.Version, m.Name, m.checksum()); err != nil {
			return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
		}
		cur++
	}
	for cur > version {
		m := ms[cur-1]
		if err := step(ctx, conn, m.Down, "DELETE FROM asbb_schema_migrations WHERE version = $1 AND name = $2", m.Version, m.Name); err != nil {
			return fmt.Errorf("revert migration %04d_%s: %w", m.Version, m.Name, err)
		}
		cur--
	}
	return nil
}

func ensureTable(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS asbb_schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		checksum   text,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	// Databases migrated before checksums were recorded.
	if _, err := conn.Exec(ctx, `ALTER TABLE asbb_schema_migrations ADD COLUMN IF NOT EXISTS checksum text`); err != nil {
		return fmt.Errorf("upgrade migrations table: %w", err)
	}
	return nil
}

// checksum identifies a migration's up script as applied.
func (m Migration) checksum() string {
	h := sha256.Sum256([]byte(m.Up))
	return hex.EncodeToString(h[:8])
}

// checkApplied refuses to work on a database whose applied migrations are
// not the ones embedded here: a migration edited after it ran (a
// development build) would otherwise fail later in confusing ways.
func checkApplied(ctx context.Context, conn *pgx.Conn, ms []Migration) error {
	rows, err := conn.Query(ctx, `SELECT version, name, coalesce(checksum, '') FROM asbb_schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var name, sum string
		if err := rows.Scan(&v, &name, &sum); err != nil {
			return fmt.Errorf("read applied migrations: %w", err)
		}
		if v < 1 || v > len(ms) {
			return fmt.Errorf("database has migration %04d_%s, which this build does not know: it was migrated by a newer ASBB", v, name)
		}
		if m := ms[v-1]; m.Name != name || (sum != "" && sum != m.checksum()) {
			return fmt.Errorf("migration %04d_%s in the database differs from this build's %04d_%s: it was migrated by another build of ASBB", v, name, m.Version, m.Name)
		}
	}
	return rows.Err()
}

func current(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM asbb_schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func step(ctx context.Context, conn *pgx.Conn, body, record string, args ...any) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, body); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, record, args...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
