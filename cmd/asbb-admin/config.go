package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/etc"
)

func init() {
	register(command{name: "config init", summary: "write a documented example config", run: runConfigInit})
	register(command{name: "config check", summary: "load and validate the config", run: runConfigCheck})
}

func runConfigInit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("config init")
	out := fs.StringP("output", "o", "-", "file to write ('-' = stdout); an existing file is never overwritten")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *out == "-" {
		_, err := fmt.Fprint(e.stdout, etc.Example)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.WriteString(etc.Example); err != nil {
		f.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", *out)
	return nil
}

func runConfigCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags("config check")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	src := cfg.Path
	if src == "" {
		src = "defaults (no file)"
	}
	fmt.Fprintf(e.stdout, "config OK: %s; %d priced partitions; rate card version %s\n", src, len(cfg.Pricing.Partitions), cfg.RateVersion())
	_ = budget.DefaultConfigPath
	return nil
}
