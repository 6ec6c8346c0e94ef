// Package budget is the core of ASBB: an exact, concurrency-safe ledger of
// real-money budgets on PostgreSQL, the pricing of Slurm jobs, and the one
// admission function that every entry point (the job_submit plugin, the Lua
// module, the HTTP API and the CLI) calls.
//
// Money is decimal.Decimal in Go and NUMERIC(20,6) in PostgreSQL; no float
// ever carries an amount. Every change to an account's totals is made by a
// PL/pgSQL function in sql/migrations that appends the matching ledger row
// in the same transaction, so totals always equal the sums of the ledger
// (Verify proves it).
//
// The main type is Ledger. Operations that may be retried take an
// idempotency key.
package budget
