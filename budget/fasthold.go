package budget

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"
)

// fastAccount is the WHERE clause both fast statements put on the account
// row: $1 the name, $2 the cluster asked for, $3 the currency, $14 the
// remembered id (idCache) or NULL. Each statement adds its own amount
// checks and, last, the caller's deadline ($13). Every check is on the
// row itself, so PostgreSQL re-checks all of them on the newest version
// after waiting for the row lock.
const fastAccount = `	 WHERE x.id = coalesce($14::bigint, (SELECT id FROM accounts WHERE slurm_account = $1 AND cluster IN ($2, '*')
	                                     ORDER BY cluster = '*' LIMIT 1))
	   AND x.slurm_account = $1
	   AND x.depth = 0 AND NOT x.hooked AND x.status = 'active' AND x.currency = $3::text
	   AND (x.starts_at IS NULL OR x.starts_at <= now()) AND (x.ends_at IS NULL OR x.ends_at > now())
	   AND (x.next_event IS NULL OR x.next_event > now())`

// fastHold is the hold of the common case as one statement, the cheapest a
// durable hold can be (PERF-NOTES, design b): a top-level account with no
// partition limits, no grant, no allocation event due and no idempotency
// key. It locks the account row only for the statement and its commit. It
// returns no row when anything is out of the ordinary, refusals included;
// PlaceHold then calls asbb_hold, which checks everything and explains.
// Like asbb_post, it writes the totals and the ledger row together; Verify
// proves the two stay equal. $14 is the account's id when this process has
// resolved the name before (idCache), else NULL: the name lookup is
// then part of the statement.
const fastHold = `WITH a AS (
	UPDATE accounts x SET held = held + $4::numeric, updated_at = now()
` + fastAccount + `
	   AND x.deposited - x.spent - x.held + x.credit_limit >= $4
	   AND (x.max_job_cost IS NULL OR x.max_job_cost >= $4::numeric / $5::integer)
	   AND NOT ($6::text = ANY (x.limited_partitions))
	   AND clock_timestamp() <= $13::timestamptz
	RETURNING x.id, x.cluster, x.deposited, x.spent, x.held, x.credit_limit
), h AS (
	INSERT INTO holds (account_id, cluster, partition, user_name, tasks, amount, remaining, month,
	                   rate_version, pricing, request, actor)
	SELECT a.id, $2, $6, $7::text, $5, $4, $4, $8::date, $9::text, $10::jsonb, $11::jsonb, $12::text FROM a
	RETURNING id, account_id
), e AS (
	INSERT INTO ledger (account_id, type, amount, d_held, deposited_after, spent_after, held_after,
	                    hold_id, cluster, partition, user_name, actor, reason)
	SELECT a.id, 'hold', $4, $4, a.deposited, a.spent, a.held, h.id, $2, $6, $7, $12, '' FROM a JOIN h ON h.account_id = a.id
)
SELECT h.id, a.id, a.cluster, a.deposited, a.spent, a.held - $4, a.credit_limit FROM a JOIN h ON h.account_id = a.id`

// Group holds: concurrent fast-path holds on one account share a statement.
//
// A hot account is serialised by its row lock, held from the UPDATE to the
// end of the commit's fsync, so holds racing for one account queue behind
// each other one commit at a time (PERF-NOTES: throughput falls beyond 4–16
// callers and p99 explodes). When a hold arrives while another hold on the
// same account is in flight from this process, it waits for that one to
// finish and then goes, together with every other hold that queued
// meanwhile, in one statement: one row lock, one commit, each hold its own
// hold row and ledger row. This is group commit for the hot row.
//
// Nothing waits for company: a hold with no other hold in flight on its
// account runs at once, alone, in the one-statement fast path, so a serial
// caller (slurmctld's job_submit) never sees a group. A group is
// all-or-nothing: if the account cannot cover the whole group, or any hold
// is out of the ordinary, the statement changes nothing and each member
// goes on alone, exactly as if it had never been grouped.

// maxGroup bounds the holds in one statement (its arrays and its time
// under the row lock).
const maxGroup = 64

// groupHoldSQL is fastHold for a group of holds on one account: the same
// checks against the total of the group, then one hold row and one ledger
// row per member in order, each ledger row with the running totals after
// it. Hold ids are drawn first so results map back by ordinality.
const groupHoldSQL = `WITH r AS (
	SELECT t.i, t.amount, t.tasks, t.part, t.usr, t.month, t.rate_version, t.pricing, t.request, t.actor,
	       nextval(pg_get_serial_sequence('holds', 'id')) AS hold_id,
	       sum(t.amount) OVER (ORDER BY t.i) AS cum
	FROM unnest($4::numeric[], $5::integer[], $6::text[], $7::text[], $8::date[], $9::text[], $10::jsonb[],
	            $11::jsonb[], $12::text[]) WITH ORDINALITY AS t(amount, tasks, part, usr, month, rate_version,
	            pricing, request, actor, i)
), tot AS (
	SELECT sum(amount) AS amount, max(amount / tasks) AS per_task, array_agg(DISTINCT part) AS parts FROM r
), a AS (
	UPDATE accounts x SET held = x.held + tot.amount, updated_at = now()
	  FROM tot
` + fastAccount + `
	   AND x.deposited - x.spent - x.held + x.credit_limit >= tot.amount
	   AND (x.max_job_cost IS NULL OR x.max_job_cost >= tot.per_task)
	   AND NOT (x.limited_partitions && tot.parts)
	   AND clock_timestamp() <= $13::timestamptz
	RETURNING x.id, x.cluster, x.deposited, x.spent, x.held - tot.amount AS held_before, x.credit_limit
), h AS (
	INSERT INTO holds (id, account_id, cluster, partition, user_name, tasks, amount, remaining, month,
	                   rate_version, pricing, request, actor)
	SELECT r.hold_id, a.id, $2, r.part, r.usr, r.tasks, r.amount, r.amount, r.month, r.rate_version,
	       r.pricing, r.request, r.actor
	  FROM a, r
), e AS (
	INSERT INTO ledger (account_id, type, amount, d_held, deposited_after, spent_after, held_after,
	                    hold_id, cluster, partition, user_name, actor, reason)
	SELECT a.id, 'hold', r.amount, r.amount, a.deposited, a.spent, a.held_before + r.cum, r.hold_id, $2,
	       r.part, r.usr, r.actor, ''
	  FROM a, r ORDER BY r.i
)
SELECT r.hold_id, a.id, a.cluster, a.deposited, a.spent, a.held_before + r.cum - r.amount, a.credit_limit
  FROM a, r ORDER BY r.i`

var errGroupShape = errors.New("group hold returned fewer rows than holds")

// fastCall is one fast-path hold, ready to run alone or in a group.
type fastCall struct {
	r                HoldRequest
	cluster          string
	month            time.Time
	deadline         time.Time // the database refuses to take the hold after this
	ctxDeadline      time.Time // when the caller stops waiting (zero: never)
	pricing, request []byte
	done             chan fastOutcome // for a queued call: its outcome
	mu               sync.Mutex
	abandoned        bool // the caller stopped waiting before its group ran
}

// fastOutcome: applied=false means the fast path did not take the hold
// (out of the ordinary, refused, or grouped with holds that did not fit)
// and the caller goes on alone.
type fastOutcome struct {
	res     HoldResult
	applied bool
	err     error
}

type groupKey struct{ account, cluster string }

// idCache remembers, per (account name, cluster asked for), the id of
// the account the name resolved to, so the fast statements skip the name
// lookup. Only exact resolutions are kept: an account scoped to the very
// cluster asked for (or "*" asked for "*") cannot be shadowed by one
// created later, while a "*" account found for cluster c could be (an
// account scoped to c takes precedence), so it is looked up every time.
// Ids are never reused and an account's name and cluster never change;
// the statements also check the name. An entry is dropped whenever the
// fast path does not apply (the account was deleted, say), and relearnt
// on the next success.
type idCache struct{ m sync.Map }

func (a *idCache) get(k groupKey) *int64 {
	if v, ok := a.m.Load(k); ok {
		id := v.(int64)
		return &id
	}
	return nil
}

func (a *idCache) learn(k groupKey, id int64, accountCluster string) {
	if accountCluster == k.cluster {
		a.m.Store(k, id)
	}
}

// holdGroups tracks, per account, whether a fast hold is in flight and
// which holds queued behind it.
type holdGroups struct {
	mu      sync.Mutex
	pending map[groupKey][]*fastCall // present: a hold on the account is in flight
	off     bool                     // every hold alone (set only by the benchmarks, to measure the difference)
}

// fastHoldGrouped runs c alone if no hold on its account is in flight,
// else queues it for the next group.
func (l *Ledger) fastHoldGrouped(ctx context.Context, c *fastCall) fastOutcome {
	key := groupKey{c.r.Account, c.cluster}
	g := &l.groups
	g.mu.Lock()
	if g.pending == nil {
		g.pending = map[groupKey][]*fastCall{}
	}
	if q, busy := g.pending[key]; busy && !g.off {
		c.done = make(chan fastOutcome, 1)
		g.pending[key] = append(q, c)
		g.mu.Unlock()
		select {
		case o := <-c.done:
			return o
		case <-ctx.Done():
			c.mu.Lock()
			c.abandoned = true
			c.mu.Unlock()
			// It may already be in a statement; that statement's deadline
			// (the earliest of its members') stops it committing late.
			return fastOutcome{err: dbErr("hold on "+c.r.Account, ctx.Err())}
		}
	}
	g.pending[key] = nil
	g.mu.Unlock()
	// Deferred, so that even a panic (recovered by the caller: the C
	// exports recover every one) does not leave the account marked busy.
	defer l.nextGroup(key)
	return l.fastHoldOne(ctx, c)
}

// nextGroup starts the holds that queued on key while a statement ran, or
// marks the account idle.
func (l *Ledger) nextGroup(key groupKey) {
	g := &l.groups
	g.mu.Lock()
	q := g.pending[key]
	if len(q) == 0 {
		delete(g.pending, key)
		g.mu.Unlock()
		return
	}
	n := min(len(q), maxGroup)
	batch := q[:n:n]
	g.pending[key] = q[n:]
	g.mu.Unlock()
	go func() {
		defer l.nextGroup(key)
		// This goroutine is the library's own, inside slurmctld when
		// libasbb.so runs there: a panic must not cross it (it would kill
		// the process), so it becomes every member's error.
		defer func() {
			if r := recover(); r != nil {
				l.log.Error("group hold panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				for _, c := range batch {
					select {
					case c.done <- fastOutcome{err: fmt.Errorf("hold on %s: internal error: %v", c.r.Account, r)}:
					default: // already answered
					}
				}
			}
		}()
		l.runGroup(batch)
	}()
}

// runGroup takes the holds of batch in one statement and hands each its
// outcome. Members whose callers gave up are left out.
func (l *Ledger) runGroup(batch []*fastCall) {
	live := batch[:0:0]
	for _, c := range batch {
		c.mu.Lock()
		if !c.abandoned {
			live = append(live, c)
		}
		c.mu.Unlock()
	}
	if len(live) == 0 {
		return
	}
	// The statement lives as long as the most patient member waits; each
	// member stops waiting at its own deadline.
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	latest := time.Time{}
	for _, c := range live {
		if c.ctxDeadline.IsZero() {
			latest = time.Time{}
			break
		}
		if c.ctxDeadline.After(latest) {
			latest = c.ctxDeadline
		}
	}
	if !latest.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, latest)
	}
	defer cancel()
	if len(live) == 1 {
		live[0].done <- l.fastHoldOne(ctx, live[0])
		return
	}
	outs, err := l.groupHold(ctx, live)
	for i, c := range live {
		switch {
		case err == nil:
			c.done <- outs[i]
		case pgconn.SafeToRetry(err):
			// Never sent: nothing was taken, each goes on alone.
			c.done <- fastOutcome{}
		default:
			c.done <- fastOutcome{err: dbErr("hold on "+c.r.Account, err)}
		}
	}
}

// fastHoldOne is the one-statement hold of a single call.
func (l *Ledger) fastHoldOne(ctx context.Context, c *fastCall) fastOutcome {
	r := c.r
	key := groupKey{r.Account, c.cluster}
	acct := Account{SlurmAccount: r.Account, Currency: l.cfg.Pricing.Currency}
	var holdID int64
	err := l.pool.QueryRow(ctx, fastHold, r.Account, c.cluster, l.cfg.Pricing.Currency, r.Amount, int32(r.Tasks),
		r.Partition, r.User, c.month, r.RateVersion, c.pricing, c.request, r.Actor, c.deadline, l.ids.get(key)).
		Scan(&holdID, &acct.ID, &acct.Cluster, &acct.Deposited, &acct.Spent, &acct.Held, &acct.CreditLimit)
	switch {
	case err == nil:
		l.ids.learn(key, acct.ID, acct.Cluster)
		acct.Available = acct.Deposited.Sub(acct.Spent).Sub(acct.Held).Add(acct.CreditLimit)
		return fastOutcome{res: HoldResult{HoldID: holdID, Account: acct}, applied: true}
	case isNoRows(err):
		l.ids.m.Delete(key)
		return fastOutcome{}
	}
	return fastOutcome{err: dbErr("hold on "+r.Account, err)}
}

// groupHold runs groupHoldSQL for calls on one account. No rows: the group
// did not apply, and each member goes on alone.
func (l *Ledger) groupHold(ctx context.Context, calls []*fastCall) ([]fastOutcome, error) {
	n := len(calls)
	var (
		amounts  = make([]decimal.Decimal, n)
		tasks    = make([]int32, n)
		parts    = make([]string, n)
		users    = make([]string, n)
		months   = make([]time.Time, n)
		rates    = make([]string, n)
		pricings = make([][]byte, n)
		requests = make([][]byte, n)
		actors   = make([]string, n)
		deadline = calls[0].deadline
	)
	for i, c := range calls {
		amounts[i], tasks[i], parts[i], users[i] = c.r.Amount, int32(c.r.Tasks), c.r.Partition, c.r.User
		months[i], rates[i], pricings[i], requests[i], actors[i] = c.month, c.r.RateVersion, c.pricing, c.request, c.r.Actor
		if c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	first := calls[0]
	key := groupKey{first.r.Account, first.cluster}
	rows, err := l.pool.Query(ctx, groupHoldSQL, first.r.Account, first.cluster, l.cfg.Pricing.Currency,
		amounts, tasks, parts, users, months, rates, pricings, requests, actors, deadline, l.ids.get(key))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	outs := make([]fastOutcome, n)
	i := 0
	for rows.Next() && i < n {
		acct := Account{SlurmAccount: first.r.Account, Currency: l.cfg.Pricing.Currency}
		var holdID int64
		if err := rows.Scan(&holdID, &acct.ID, &acct.Cluster, &acct.Deposited, &acct.Spent, &acct.Held, &acct.CreditLimit); err != nil {
			return nil, err
		}
		acct.Available = acct.Deposited.Sub(acct.Spent).Sub(acct.Held).Add(acct.CreditLimit)
		outs[i] = fastOutcome{res: HoldResult{HoldID: holdID, Account: acct}, applied: true}
		i++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if i == 0 {
		l.ids.m.Delete(key)
	}
	if i != 0 && i != n {
		// Cannot happen (the statement returns one row per member or none);
		// the holds are taken, so report them rather than guess.
		return nil, errGroupShape
	}
	return outs, nil
}
