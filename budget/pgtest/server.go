package pgtest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// This file is the API for programs rather than tests: scripts manage
// long-lived private servers with it through tests/tools/pgserver.

// StartServer starts a private server in dir, running initdb first if dir
// holds none, and returns the URL of its "postgres" database. It is
// idempotent and safe to run from several processes at once; the server
// keeps running after the caller exits. It never deletes data: a directory
// it cannot use is reported, not wiped. tests/tools/pgserver wraps it for
// scripts (make demo keeps its server in .asbb-dev/pg).
func StartServer(ctx context.Context, dir string) (string, error) {
	c, err := newCluster(dir)
	if err != nil {
		return "", err
	}
	if err := c.start(ctx, false); err != nil {
		return "", err
	}
	return c.url("postgres"), nil
}

// StopServer stops the server in dir if one runs there.
func StopServer(ctx context.Context, dir string) error {
	c, err := newCluster(dir)
	if err != nil {
		return err
	}
	return c.stop(ctx, false)
}

// ServerRunning reports whether the server in dir accepts connections.
func ServerRunning(ctx context.Context, dir string) bool {
	c, err := newCluster(dir)
	return err == nil && c.running(ctx)
}

// ServerURL returns the URL of database db on the server in dir, whether or
// not it runs.
func ServerURL(dir, db string) (string, error) {
	c, err := newCluster(dir)
	if err != nil {
		return "", err
	}
	return c.url(db), nil
}

// CreateDatabase creates database db on the server at adminURL unless it
// exists (for scripts: the demo's database).
func CreateDatabase(ctx context.Context, adminURL, db string) error {
	return createIfMissing(ctx, adminURL, db)
}

func createIfMissing(ctx context.Context, adminURL, db string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", adminURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(db)); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}
