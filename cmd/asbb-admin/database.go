package main

import (
	"context"
	"fmt"

	asql "github.com/asbb/asbb/sql"
	"github.com/jackc/pgx/v5"
)

func init() {
	register(command{name: "database migrate", summary: "apply (or with --to, revert to) schema migrations", run: runMigrate})
	register(command{name: "database status", summary: "show the schema version", run: runDBStatus})
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("database migrate")
	to := fs.Int("to", -1, "target version (default: latest; 0 drops everything ASBB created)")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	before, err := asql.Version(ctx, conn)
	if err != nil {
		return err
	}
	if err := asql.MigrateTo(ctx, conn, *to); err != nil {
		return err
	}
	after, err := asql.Version(ctx, conn)
	if err != nil {
		return err
	}
	if before == after {
		fmt.Fprintf(e.stdout, "schema is at version %d; nothing to do\n", after)
	} else {
		fmt.Fprintf(e.stdout, "schema migrated from version %d to %d\n", before, after)
	}
	return nil
}

func runDBStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags("database status")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	v, err := asql.Version(ctx, conn)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(map[string]int{"version": v, "latest": asql.Latest()})
	}
	fmt.Fprintf(e.stdout, "schema version %d (latest %d)\n", v, asql.Latest())
	return nil
}

// connect opens a single connection (migrations need one session for the
// advisory lock).
func (e *env) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return conn, nil
}
