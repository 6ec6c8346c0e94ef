package main

import (
	"context"
	"fmt"

	"github.com/asbb/asbb/budget/api"
)

func init() {
	register(command{name: "token create", summary: "create an asbb-service bearer token (printed once)", run: runTokenCreate})
	register(command{name: "token revoke", summary: "revoke an asbb-service bearer token by name", run: runTokenRevoke})
	register(command{name: "token list", summary: "list asbb-service bearer tokens (never their secrets)", run: runTokenList})
}

func runTokenCreate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("token create")
	name := fs.String("name", "", "token name; the ledger attributes its writes to token:<name> (required)")
	roleS := fs.String("role", "", "read, reconcile (budget check/reconcile, ASBX) or admin (required)")
	asJSON := fs.Bool("json", false, "print the token and its record as JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if *name == "" || *roleS == "" {
		return usagef("--name and --role are required")
	}
	role, err := api.ParseRole(*roleS)
	if err != nil {
		return usagef("--role: %q is not read, reconcile or admin", *roleS)
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	secret, t, err := api.CreateToken(ctx, l, *name, role, actor())
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(map[string]any{"token": secret, "name": t.Name, "role": t.Role, "created_at": t.CreatedAt})
	}
	fmt.Fprintln(e.stdout, secret)
	fmt.Fprintf(e.stderr, "token %s (role %s) created; it is shown only now: store it (e.g. epilog.token).\n", t.Name, t.Role)
	return nil
}

func runTokenRevoke(ctx context.Context, e *env, args []string) error {
	fs := e.flags("token revoke")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: asbb-admin token revoke NAME")
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	if err := api.RevokeToken(ctx, l, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "token %s revoked (services stop accepting it within service.token_cache_ttl)\n", fs.Arg(0))
	return nil
}

func runTokenList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("token list")
	all := fs.Bool("all", false, "include revoked tokens")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	toks, err := api.ListTokens(ctx, l, *all)
	if err != nil {
		return err
	}
	if *asJSON {
		if toks == nil {
			toks = []api.Token{}
		}
		return e.printJSON(toks)
	}
	tw := e.table("NAME", "ROLE", "CREATED", "BY", "REVOKED")
	for _, t := range toks {
		revoked := "-"
		if t.RevokedAt != nil {
			revoked = t.RevokedAt.Format("2006-01-02 15:04")
		}
		row(tw, t.Name, t.Role, t.CreatedAt.Format("2006-01-02 15:04"), t.CreatedBy, revoked)
	}
	return tw.Flush()
}
