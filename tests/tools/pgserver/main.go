// Command pgserver manages a private PostgreSQL server kept in one directory
// (initdb, unix socket only, durable commits), for scripts: `make demo` keeps
// its database in .asbb-dev/pg, .ci/run stops the test server it used.
//
//	pgserver start [-db NAME] [DIR]  start (initdb first if needed); print the URL
//	pgserver stop [DIR]              stop it; nothing to do is not an error
//	pgserver status [DIR]            exit 0 if it accepts connections, 1 if not
//	pgserver url [-db NAME] [DIR]    print the URL, running or not
//
// DIR defaults to the shared test server's directory (budget/pgtest's
// DefaultDir: $ASBB_PGTEST_DIR or $TMPDIR/asbb-pgtest-<uid>). Every command
// is idempotent. When run as root the server runs as user postgres.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/asbb/asbb/budget/pgtest"
)

// Exit codes: 0 done, 1 failed (or "not running" for status), 2 usage.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd := args[0]
	fs := flag.NewFlagSet("pgserver "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "postgres", "database to print the URL of (start creates it if missing)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	dir := pgtest.DefaultDir()
	switch fs.NArg() {
	case 0:
	case 1:
		dir = fs.Arg(0)
	default:
		usage(stderr)
		return exitUsage
	}

	var err error
	switch cmd {
	case "start":
		var admin string
		if admin, err = pgtest.StartServer(ctx, dir); err == nil && *db != "postgres" {
			err = pgtest.CreateDatabase(ctx, admin, *db)
		}
		if err == nil {
			err = printURL(stdout, dir, *db)
		}
	case "stop":
		err = pgtest.StopServer(ctx, dir)
	case "status":
		if !pgtest.ServerRunning(ctx, dir) {
			fmt.Fprintf(stderr, "pgserver: no server accepts connections in %s\n", dir)
			return exitFailed
		}
		err = printURL(stdout, dir, *db)
	case "url":
		err = printURL(stdout, dir, *db)
	default:
		usage(stderr)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "pgserver %s: %v\n", cmd, err)
		return exitFailed
	}
	return 0
}

func printURL(w io.Writer, dir, db string) error {
	u, err := pgtest.ServerURL(dir, db)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, u)
	return err
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: pgserver start|stop|status|url [-db NAME] [DIR]

Manages a private PostgreSQL server in DIR (default: the shared test
server's directory). start prints the URL of database NAME (default
postgres), creating it if missing.
`)
}
