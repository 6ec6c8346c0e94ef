package pgtest

import (
	"context"
	"os"
	"testing"
)

// An Instance is a private PostgreSQL server owned by one test, for tests
// that stop and start the database under a running system (end-to-end tests
// of what ASBB does while PostgreSQL is down) without disturbing the shared
// server that other tests use.
//
// Its methods call tb.Fatal on error, so call them from the test's goroutine.
type Instance struct {
	tb testing.TB
	c  cluster
}

// instanceDB is the migrated database that URL points at.
const instanceDB = "asbb"

// NewInstance initialises and starts a server in dir, creates the database
// "asbb" migrated to the latest schema, and stops the server when tb ends.
//
// dir "" makes a fresh directory that is removed afterwards unless the test
// failed. A dir of your own must be short (it holds the unix socket) and,
// when tests run as root, reachable by the postgres user: t.TempDir() is not,
// as its parent is private to root.
func NewInstance(tb testing.TB, dir string) *Instance {
	tb.Helper()
	owned := dir == ""
	if owned {
		d, err := os.MkdirTemp("", "asbb-pginst-")
		if err != nil {
			tb.Fatalf("pgtest: make instance directory: %v", err)
		}
		dir = d
	}
	c, err := newCluster(dir)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	i := &Instance{tb: tb, c: c}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := c.stop(ctx, false); err != nil {
			tb.Errorf("pgtest: stop instance: %v", err)
			return
		}
		if tb.Failed() {
			tb.Logf("pgtest: kept the server of failed test %s in %s (start it with: go run ./tests/tools/pgserver start %s)", tb.Name(), c.dir, c.dir)
			return
		}
		if owned {
			if err := os.RemoveAll(c.dir); err != nil {
				tb.Errorf("pgtest: remove instance directory: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	// wipe: the directory is the test's, there is nothing to keep in it.
	if err := c.start(ctx, true); err != nil {
		tb.Fatalf("pgtest: start instance: %v", err)
	}
	if err := createIfMissing(ctx, c.url("postgres"), instanceDB); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := migrateDatabase(ctx, c.url(instanceDB)); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return i
}

// URL is the connection URL of the instance's migrated database. It stays
// the same across Stop and Start.
func (i *Instance) URL() string { return i.c.url(instanceDB) }

// AdminURL is the URL of the instance's "postgres" database.
func (i *Instance) AdminURL() string { return i.c.url("postgres") }

// Dir is the directory that holds the instance.
func (i *Instance) Dir() string { return i.c.dir }

// Stop shuts the server down cleanly (fast mode: open transactions are rolled
// back, clients are disconnected) and waits until it has exited.
func (i *Instance) Stop() {
	i.tb.Helper()
	i.stop(false)
}

// Crash stops the server the way a power cut would look to it (immediate
// mode: no shutdown checkpoint), so that the next Start runs crash recovery.
func (i *Instance) Crash() {
	i.tb.Helper()
	i.stop(true)
}

func (i *Instance) stop(immediate bool) {
	i.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := i.c.stop(ctx, immediate); err != nil {
		i.tb.Fatalf("pgtest: %v", err)
	}
}

// Start starts the server again and waits until it accepts connections.
func (i *Instance) Start() {
	i.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := i.c.start(ctx, false); err != nil {
		i.tb.Fatalf("pgtest: start instance: %v", err)
	}
}
