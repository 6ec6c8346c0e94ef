// Command asbb-admin is the administrator's CLI for ASBB.
//
// Each subcommand lives in its own file and registers itself in the
// commands table; main only dispatches. Exit codes: 0 success, 1 failure,
// 2 usage error or invalid input, 3 refused by the budget, 4 not found, 5 database
// unavailable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/asbb/asbb/budget"
)

// Version is set with -ldflags "-X main.Version=...".
var Version = "dev"

// command is one subcommand ("account create", "verify").
type command struct {
	name    string // words, e.g. "account create"
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

// usageError makes main exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(f string, a ...any) error { return usageError{fmt.Sprintf(f, a...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	return runIO(ctx, args, os.Stdout, os.Stderr)
}

// runIO runs one command line, writing to the given streams.
func runIO(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	defer e.close()
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		printUsage(e)
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintf(e.stdout, "asbb-admin %s\n", Version)
		return 0
	}
	// Longest match of words: "account create" before "account".
	var best *command
	var n int
	for i := range commands {
		w := strings.Fields(commands[i].name)
		if len(w) <= len(args) && len(w) > n && strings.Join(args[:len(w)], " ") == commands[i].name {
			best, n = &commands[i], len(w)
		}
	}
	if best == nil {
		fmt.Fprintf(e.stderr, "asbb-admin: unknown command %q\n\n", strings.Join(args, " "))
		printUsage(e)
		return 2
	}
	err := best.run(ctx, e, args[n:])
	if err == nil {
		return 0
	}
	var ue usageError
	var den *budget.Denial
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "asbb-admin %s: %s\n", best.name, ue.msg)
		return 2
	case errors.Is(err, budget.ErrInvalid):
		fmt.Fprintf(e.stderr, "asbb-admin %s: %v\n", best.name, err)
		return 2
	case errors.As(err, &den):
		fmt.Fprintln(e.stderr, den.UserMessage())
		return 3
	case errors.Is(err, budget.ErrAccountNotFound), errors.Is(err, budget.ErrNotFound), errors.Is(err, budget.ErrHoldNotFound):
		fmt.Fprintf(e.stderr, "asbb-admin %s: %v\n", best.name, err)
		return 4
	case errors.Is(err, budget.ErrUnavailable):
		fmt.Fprintf(e.stderr, "asbb-admin %s: %v\nhint: check database.url in the config, or ASBB_DATABASE_URL\n", best.name, err)
		return 5
	}
	fmt.Fprintf(e.stderr, "asbb-admin %s: %v\n", best.name, err)
	return 1
}

func printUsage(e *env) {
	fmt.Fprintf(e.stdout, "asbb-admin: administer ASBB budgets (version %s)\n\nUsage: asbb-admin <command> [flags]\n\nCommands:\n", Version)
	sort.Slice(commands, func(i, j int) bool { return commands[i].name < commands[j].name })
	for _, c := range commands {
		fmt.Fprintf(e.stdout, "  %-24s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(e.stdout, "\nGlobal: --config FILE (or ASBB_CONFIG); ASBB_DATABASE_URL overrides database.url.\nRun 'asbb-admin <command> --help' for a command's flags.\n")
}
