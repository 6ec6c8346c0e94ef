// Command asbb-service is ASBB's HTTP service: the REST API, the ASBX
// integration, /metrics and the background workers (package budget/api).
// It needs nothing but a database URL (ASBB_DATABASE_URL or the config).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/api"
	asbbsql "github.com/asbb/asbb/sql"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/pflag"
)

// Version, GitCommit and BuildTime are set with -ldflags "-X main.Version=...".
var Version, GitCommit, BuildTime = "dev", "", ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "asbb-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("asbb-service", pflag.ContinueOnError)
	configPath := fs.String("config", "", "config file (default $ASBB_CONFIG or "+budget.DefaultConfigPath+")")
	listen := fs.String("listen", "", "address to listen on (overrides service.listen_addr)")
	version := fs.Bool("version", false, "print the version and exit")
	migrate := fs.Bool("migrate", true, "apply pending schema migrations at start (safe with several instances: the migrator takes an advisory lock)")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return nil
		}
		return err
	}
	api.Version, api.GitCommit, api.BuildTime = Version, GitCommit, BuildTime
	if *version {
		fmt.Println("asbb-service", Version)
		return nil
	}
	cfg, err := budget.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Service.ListenAddr = *listen
	}
	log := newLogger(cfg)
	if *migrate {
		if err := migrateSchema(ctx, cfg); err != nil {
			return err
		}
	}
	l, err := budget.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer l.Close()
	return api.New(l, cfg, log).Run(ctx)
}

func newLogger(cfg *budget.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	out := os.Stderr
	if cfg.Log.File != "" {
		if f, err := os.OpenFile(cfg.Log.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
			out = f
		} else {
			fmt.Fprintf(os.Stderr, "asbb-service: log.file: %v; logging to stderr\n", err)
		}
	}
	return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))
}

// migrateSchema brings the schema up to date, so a database URL is all the
// service needs.
func migrateSchema(ctx context.Context, cfg *budget.Config) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, cfg.Database.URL)
	if err != nil {
		return fmt.Errorf("connect to migrate the schema: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := asbbsql.Migrate(cctx, conn); err != nil {
		return fmt.Errorf("migrate the schema: %w", err)
	}
	return nil
}
