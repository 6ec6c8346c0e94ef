-- ASBB core schema: accounts, allocations, holds, charges and the append-only
-- ledger, plus the PL/pgSQL functions that are the only writers of money.
--
-- Why functions: a hold must be one round trip (PERF-NOTES: one statement is
-- ~2x faster than SELECT FOR UPDATE + separate statements), yet it has to
-- check an account chain, partition caps and (later) grant periods. A
-- function does all of that server-side under row locks, in one call.
-- Every change to an account's totals goes through asbb_post(), which
-- updates the totals and appends the ledger row in the same statement
-- sequence, so the totals always equal the sums over the ledger.

CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    cluster       text NOT NULL DEFAULT '*',
    slurm_account text NOT NULL,
    name          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    currency      char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    starts_at     timestamptz,
    ends_at       timestamptz,
    credit_limit  numeric(20,6) NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    max_job_cost  numeric(20,6) CHECK (max_job_cost > 0),
    parent_id     bigint REFERENCES accounts(id),
    path          bigint[] NOT NULL DEFAULT '{}',  -- ancestors then self, root first
    depth         integer NOT NULL DEFAULT 0,
    deposited     numeric(20,6) NOT NULL DEFAULT 0,
    spent         numeric(20,6) NOT NULL DEFAULT 0,
    held          numeric(20,6) NOT NULL DEFAULT 0 CHECK (held >= 0),
    next_event    timestamptz,                     -- earliest pending allocation start or expiry
    -- Set by extensions (grants) whose hooks must see this account's holds:
    -- the one-statement hold of budget.PlaceHold skips such accounts.
    hooked        boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    UNIQUE (cluster, slurm_account),
    CHECK (slurm_account ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX accounts_parent ON accounts (parent_id);

CREATE FUNCTION asbb_accounts_path() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p accounts%ROWTYPE;
BEGIN
    IF NEW.parent_id IS NULL THEN
        NEW.path := ARRAY[NEW.id];
        NEW.depth := 0;
    ELSE
        SELECT * INTO p FROM accounts WHERE id = NEW.parent_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'parent account % does not exist', NEW.parent_id USING ERRCODE = '23503';
        END IF;
        IF p.currency <> NEW.currency THEN
            RAISE EXCEPTION 'parent account % has currency %, child has %', p.slurm_account, p.currency, NEW.currency
                USING ERRCODE = '22023';
        END IF;
        NEW.path := p.path || NEW.id;
        NEW.depth := p.depth + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_path BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION asbb_accounts_path();

-- Per-partition limits of an account: a per-job cap and a cap per calendar
-- month (spent plus held on that partition, attributed to the month the
-- hold was taken in). Usage is kept only for partitions that have a limit
-- (setting one computes it from the holds), so unlimited partitions cost
-- the hold path nothing.
CREATE TABLE partition_limits (
    account_id     bigint NOT NULL REFERENCES accounts(id),
    partition      text NOT NULL,
    max_job_cost   numeric(20,6) CHECK (max_job_cost > 0),
    max_per_month  numeric(20,6) CHECK (max_per_month >= 0),
    PRIMARY KEY (account_id, partition)
);

CREATE TABLE partition_usage (
    account_id  bigint NOT NULL REFERENCES accounts(id),
    partition   text NOT NULL,
    month       date NOT NULL,
    committed   numeric(20,6) NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, partition, month)
);

CREATE TABLE allocations (
    id              bigserial PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts(id),
    amount          numeric(20,6) NOT NULL CHECK (amount > 0),
    starts_at       timestamptz NOT NULL,
    expires_at      timestamptz,
    status          text NOT NULL CHECK (status IN ('pending', 'active', 'expired')),
    forfeited       numeric(20,6) NOT NULL DEFAULT 0,
    schedule_id     bigint,
    installment     integer,
    note            text NOT NULL DEFAULT '',
    actor           text NOT NULL DEFAULT '',
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at IS NULL OR expires_at > starts_at)
);
CREATE INDEX allocations_account ON allocations (account_id, status);

CREATE TABLE holds (
    id              bigserial PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts(id),
    cluster         text NOT NULL DEFAULT '*',
    partition       text NOT NULL DEFAULT '',
    user_name       text NOT NULL DEFAULT '',
    job_id          text,                  -- bound when Slurm's job id becomes known
    tasks           integer NOT NULL DEFAULT 1 CHECK (tasks >= 1),
    amount          numeric(20,6) NOT NULL CHECK (amount >= 0), -- total ever held (after adjustments)
    remaining       numeric(20,6) NOT NULL CHECK (remaining >= 0),
    charged         numeric(20,6) NOT NULL DEFAULT 0,
    settled_tasks   integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    month           date NOT NULL,         -- partition-usage month the hold counts in
    rate_version    text NOT NULL DEFAULT '',
    pricing         jsonb NOT NULL DEFAULT '{}',
    request         jsonb NOT NULL DEFAULT '{}',
    actor           text NOT NULL DEFAULT '',
    idempotency_key text UNIQUE,
    close_reason    text,
    -- Set when job_modify moved the job to another account or partition:
    -- the job's admin_comment still names this hold (Slurm forbids a
    -- plugin to change it for non-admins in job_modify), so settlement
    -- follows this link.
    replaced_by     bigint REFERENCES holds(id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
CREATE INDEX holds_active ON holds (created_at) WHERE status = 'active';
CREATE INDEX holds_account ON holds (account_id, status);
-- One active hold per job; closed holds keep their job id for the record
-- without blocking a job id that Slurm reuses after losing its state.
CREATE UNIQUE INDEX holds_job_active ON holds (cluster, job_id) WHERE job_id IS NOT NULL AND status = 'active';
CREATE INDEX holds_job ON holds (cluster, job_id) WHERE job_id IS NOT NULL;

-- One row per settled job (or array task, or run of a requeued job): the
-- idempotency record of settlement and its result, returned on replays.
CREATE TABLE charges (
    id            bigserial PRIMARY KEY,
    hold_id       bigint REFERENCES holds(id),
    account_id    bigint NOT NULL REFERENCES accounts(id),
    cluster       text NOT NULL,
    job_id        text NOT NULL,
    array_task_id integer NOT NULL DEFAULT -1,
    run_start     bigint NOT NULL DEFAULT 0,
    partition     text NOT NULL DEFAULT '',
    user_name     text NOT NULL DEFAULT '',
    actual        numeric(20,6) NOT NULL CHECK (actual >= 0),
    released      numeric(20,6) NOT NULL DEFAULT 0,
    overrun       numeric(20,6) NOT NULL DEFAULT 0,
    refunded      numeric(20,6) NOT NULL DEFAULT 0,
    corrected     numeric(20,6) NOT NULL DEFAULT 0,
    actor         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster, job_id, array_task_id, run_start)
);
CREATE INDEX charges_hold ON charges (hold_id);
CREATE INDEX charges_account ON charges (account_id, created_at);

CREATE TABLE ledger (
    id                bigserial PRIMARY KEY,
    account_id        bigint NOT NULL REFERENCES accounts(id),
    type              text NOT NULL CHECK (type IN ('deposit', 'withdraw', 'expire', 'hold', 'hold_adjust',
                                                    'hold_release', 'charge', 'refund', 'correction')),
    amount            numeric(20,6) NOT NULL,
    d_deposited       numeric(20,6) NOT NULL DEFAULT 0,
    d_spent           numeric(20,6) NOT NULL DEFAULT 0,
    d_held            numeric(20,6) NOT NULL DEFAULT 0,
    deposited_after   numeric(20,6) NOT NULL,
    spent_after       numeric(20,6) NOT NULL,
    held_after        numeric(20,6) NOT NULL,
    hold_id           bigint,
    charge_id         bigint,
    allocation_id     bigint,
    origin_account_id bigint,              -- set on an ancestor's row: the account the money moved on
    cluster           text,
    job_id            text,
    array_task_id     integer,
    partition         text,
    user_name         text,
    actor             text NOT NULL DEFAULT '',
    reason            text NOT NULL DEFAULT '',
    idempotency_key   text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_account ON ledger (account_id, id);
CREATE INDEX ledger_account_time ON ledger (account_id, created_at);
CREATE INDEX ledger_job ON ledger (job_id) WHERE job_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_idempotency ON ledger (account_id, type, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND origin_account_id IS NULL;

CREATE FUNCTION asbb_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP USING ERRCODE = '42501';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION asbb_ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION asbb_ledger_append_only();

-- Extension points for later migrations (grants replace these). The check
-- runs under the account chain's locks before a hold or hold increase; it
-- returns NULL to allow or {"code":..., ...} to refuse. The post hook sees
-- every ledger row written for a leaf account.
CREATE FUNCTION asbb_hold_check_hook(p_account bigint, p_amount numeric) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT NULL::jsonb $$;

CREATE FUNCTION asbb_post_hook(p_row ledger) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN END $$;

-- asbb_post is the single writer of account totals and ledger rows. The
-- caller must already hold the account row lock.
CREATE FUNCTION asbb_post(
    p_account bigint, p_type text, p_amount numeric,
    p_dd numeric, p_ds numeric, p_dh numeric,
    p_hold bigint, p_charge bigint, p_alloc bigint, p_origin bigint,
    p_cluster text, p_job text, p_task integer, p_partition text, p_user text,
    p_actor text, p_reason text, p_key text
) RETURNS ledger LANGUAGE plpgsql AS $$
DECLARE
    r ledger;
    d numeric; s numeric; h numeric;
BEGIN
    UPDATE accounts
       SET deposited = deposited + p_dd, spent = spent + p_ds, held = held + p_dh, updated_at = now()
     WHERE id = p_account
    RETURNING deposited, spent, held INTO d, s, h;
    INSERT INTO ledger (account_id, type, amount, d_deposited, d_spent, d_held,
                        deposited_after, spent_after, held_after, hold_id, charge_id, allocation_id,
                        origin_account_id, cluster, job_id, array_task_id, partition, user_name,
                        actor, reason, idempotency_key)
    VALUES (p_account, p_type, p_amount, p_dd, p_ds, p_dh, d, s, h, p_hold, p_charge, p_alloc,
            p_origin, p_cluster, p_job, p_task, p_partition, p_user, p_actor, coalesce(p_reason, ''), p_key)
    RETURNING * INTO r;
    IF p_origin IS NULL THEN
        PERFORM asbb_post_hook(r);
    END IF;
    RETURN r;
END $$;

-- Posts the same movement on an account and every ancestor (their rows carry
-- origin_account_id). p_path is the account's path (root first); the caller
-- holds the locks on the whole chain.
CREATE FUNCTION asbb_post_chain(
    p_path bigint[], p_type text, p_amount numeric,
    p_dd numeric, p_ds numeric, p_dh numeric,
    p_hold bigint, p_charge bigint,
    p_cluster text, p_job text, p_task integer, p_partition text, p_user text,
    p_actor text, p_reason text, p_key text
) RETURNS ledger LANGUAGE plpgsql AS $$
DECLARE
    leaf bigint := p_path[array_length(p_path, 1)];
    anc bigint;
BEGIN
    IF array_length(p_path, 1) > 1 THEN
        FOREACH anc IN ARRAY p_path[1:array_length(p_path, 1) - 1] LOOP
            PERFORM asbb_post(anc, p_type, p_amount, 0, p_ds, p_dh, p_hold, p_charge, NULL, leaf,
                              p_cluster, p_job, p_task, p_partition, p_user, p_actor, p_reason, p_key);
        END LOOP;
    END IF;
    RETURN asbb_post(leaf, p_type, p_amount, p_dd, p_ds, p_dh, p_hold, p_charge, NULL, NULL,
                     p_cluster, p_job, p_task, p_partition, p_user, p_actor, p_reason, p_key);
END $$;

-- Locks an account and its ancestors root first (a fixed order, so two
-- children of one parent never deadlock) and returns the path.
CREATE FUNCTION asbb_lock_chain(p_account bigint) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_path bigint[];
BEGIN
    SELECT path INTO v_path FROM accounts WHERE id = p_account;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF array_length(v_path, 1) = 1 THEN
        PERFORM 1 FROM accounts WHERE id = p_account FOR UPDATE;
    ELSE
        PERFORM 1 FROM accounts WHERE id = ANY (v_path) ORDER BY depth FOR UPDATE;
    END IF;
    RETURN v_path;
END $$;

-- Activates allocations whose start has come and forfeits the unused part of
-- allocations that expired. Spending is taken to draw on the allocation that
-- expires soonest, and held money is protected (it is committed to jobs in
-- flight), so an expiring allocation forfeits
--   max(0, min(amount, deposited - spent - held - later_allocations)).
-- Caller holds the account lock.
CREATE FUNCTION asbb_process_events(p_account bigint, p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    al allocations%ROWTYPE;
    acc accounts%ROWTYPE;
    later numeric;
    forfeit numeric;
BEGIN
    FOR al IN SELECT * FROM allocations
               WHERE account_id = p_account AND status = 'pending' AND starts_at <= p_now
               ORDER BY starts_at, id LOOP
        UPDATE allocations SET status = 'active' WHERE id = al.id;
        PERFORM asbb_post(p_account, 'deposit', al.amount, al.amount, 0, 0, NULL, NULL, al.id, NULL,
                          NULL, NULL, NULL, NULL, NULL, al.actor, 'allocation starts: ' || al.note, NULL);
    END LOOP;
    FOR al IN SELECT * FROM allocations
               WHERE account_id = p_account AND status = 'active' AND expires_at <= p_now
               ORDER BY expires_at, id LOOP
        SELECT * INTO acc FROM accounts WHERE id = p_account;
        SELECT coalesce(sum(amount), 0) INTO later FROM allocations
         WHERE account_id = p_account AND status = 'active' AND id <> al.id
           AND (expires_at IS NULL OR expires_at > al.expires_at OR (expires_at = al.expires_at AND id > al.id));
        forfeit := greatest(0, least(al.amount, acc.deposited - acc.spent - acc.held - later));
        UPDATE allocations SET status = 'expired', forfeited = forfeit WHERE id = al.id;
        IF forfeit > 0 THEN
            PERFORM asbb_post(p_account, 'expire', forfeit, -forfeit, 0, 0, NULL, NULL, al.id, NULL,
                              NULL, NULL, NULL, NULL, NULL, 'asbb', 'allocation expired unused', NULL);
        END IF;
    END LOOP;
    UPDATE accounts SET next_event = (
        SELECT min(t) FROM (
            SELECT starts_at AS t FROM allocations WHERE account_id = p_account AND status = 'pending'
            UNION ALL
            SELECT expires_at FROM allocations WHERE account_id = p_account AND status = 'active' AND expires_at IS NOT NULL
        ) e)
     WHERE id = p_account;
END $$;

-- The checks of one account on a chain: status, dates, funds, and for the
-- leaf its per-job maximum. NULL = fits.
CREATE FUNCTION asbb_check_account(a accounts, p_leaf boolean, p_amount numeric, p_per_task numeric,
                                   p_now timestamptz) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    avail numeric := a.deposited - a.spent - a.held + a.credit_limit;
BEGIN
    IF a.status <> 'active' THEN
        RETURN jsonb_build_object('code', 'account_inactive', 'account', a.slurm_account, 'status', a.status);
    ELSIF a.starts_at IS NOT NULL AND p_now < a.starts_at THEN
        RETURN jsonb_build_object('code', 'account_not_started', 'account', a.slurm_account, 'starts_at', a.starts_at);
    ELSIF a.ends_at IS NOT NULL AND p_now >= a.ends_at THEN
        RETURN jsonb_build_object('code', 'account_expired', 'account', a.slurm_account, 'ends_at', a.ends_at);
    ELSIF avail < p_amount THEN
        RETURN jsonb_build_object('code', CASE WHEN p_leaf THEN 'insufficient_funds' ELSE 'ancestor_insufficient_funds' END,
                                  'account', a.slurm_account, 'available', avail, 'amount', p_amount);
    ELSIF p_leaf AND a.max_job_cost IS NOT NULL AND p_per_task > a.max_job_cost THEN
        RETURN jsonb_build_object('code', 'max_job_cost', 'account', a.slurm_account,
                                  'max_job_cost', a.max_job_cost, 'amount', p_per_task);
    END IF;
    RETURN NULL;
END $$;

-- Checks a hold (or a hold increase) of p_amount against the locked chain:
-- every account (root first), the leaf's partition caps, then the
-- extension hook (grant periods). p_leaf is the leaf's row as read under
-- its lock, with due allocation events already processed. NULL = fits.
CREATE FUNCTION asbb_check_funds(p_leaf accounts, p_amount numeric, p_per_task numeric,
                                 p_partition text, p_month date, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a accounts%ROWTYPE;
    lim partition_limits%ROWTYPE;
    used numeric;
    r jsonb;
BEGIN
    IF p_leaf.depth > 0 THEN
        FOR a IN SELECT * FROM accounts WHERE id = ANY (p_leaf.path[1:p_leaf.depth]) ORDER BY depth LOOP
            IF a.next_event IS NOT NULL AND a.next_event <= p_now THEN
                PERFORM asbb_process_events(a.id, p_now);
                SELECT * INTO a FROM accounts WHERE id = a.id;
            END IF;
            r := asbb_check_account(a, false, p_amount, p_per_task, p_now);
            IF r IS NOT NULL THEN
                RETURN r;
            END IF;
        END LOOP;
    END IF;
    r := asbb_check_account(p_leaf, true, p_amount, p_per_task, p_now);
    IF r IS NOT NULL THEN
        RETURN r;
    END IF;
    SELECT * INTO lim FROM partition_limits WHERE account_id = p_leaf.id AND partition = p_partition;
    IF FOUND THEN
        IF lim.max_job_cost IS NOT NULL AND p_per_task > lim.max_job_cost THEN
            RETURN jsonb_build_object('code', 'partition_job_cap', 'partition', p_partition,
                                      'max_job_cost', lim.max_job_cost, 'amount', p_per_task);
        END IF;
        IF lim.max_per_month IS NOT NULL THEN
            -- The account row lock serialises every writer of this account's
            -- usage rows, so reading without FOR UPDATE is safe here.
            SELECT committed INTO used FROM partition_usage
             WHERE account_id = p_leaf.id AND partition = p_partition AND month = p_month;
            used := coalesce(used, 0);
            IF used + p_amount > lim.max_per_month THEN
                RETURN jsonb_build_object('code', 'partition_month_cap', 'partition', p_partition,
                                          'max_per_month', lim.max_per_month, 'used', used,
                                          'remaining', greatest(lim.max_per_month - used, 0), 'amount', p_amount);
            END IF;
        END IF;
    END IF;
    RETURN asbb_hold_check_hook(p_leaf.id, p_amount);
END $$;

-- Locks an account's chain root first and returns the leaf's row as it is
-- under the lock, with due allocation events processed. A top-level
-- account (the common case) is locked and read in one statement.
CREATE FUNCTION asbb_lock_leaf(p_account bigint, p_now timestamptz) RETURNS accounts LANGUAGE plpgsql AS $$
DECLARE
    a accounts%ROWTYPE;
BEGIN
    SELECT * INTO a FROM accounts WHERE id = p_account AND depth = 0 FOR UPDATE;
    IF NOT FOUND THEN
        IF asbb_lock_chain(p_account) IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT * INTO a FROM accounts WHERE id = p_account;
    END IF;
    IF a.next_event IS NOT NULL AND a.next_event <= p_now THEN
        PERFORM asbb_process_events(a.id, p_now);
        SELECT * INTO a FROM accounts WHERE id = p_account;
    END IF;
    RETURN a;
END $$;

-- Counts a change of committed money against a partition's monthly usage,
-- if the account has limits on that partition. PL/pgSQL rather than SQL:
-- called from PL/pgSQL, a SQL function is planned again in every
-- transaction; PL/pgSQL keeps its plans for the session.
CREATE FUNCTION asbb_usage_add(p_account bigint, p_partition text, p_month date, p_delta numeric) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_delta <> 0 AND EXISTS (SELECT 1 FROM partition_limits WHERE account_id = p_account AND partition = p_partition) THEN
        INSERT INTO partition_usage (account_id, partition, month, committed)
        VALUES (p_account, p_partition, p_month, p_delta)
        ON CONFLICT (account_id, partition, month) DO UPDATE SET committed = partition_usage.committed + EXCLUDED.committed;
    END IF;
END $$;

-- Takes a hold of p_amount (tasks x per-task estimate) on an account, or
-- refuses with details. Idempotent on p_key. The account is named, not
-- numbered, so the submit path needs no lookup round trip first; the reply
-- carries the account's totals as they were before the hold.
CREATE FUNCTION asbb_hold(
    p_account_name text, p_cluster text, p_currency text, p_amount numeric, p_tasks integer, p_partition text,
    p_user text, p_month date, p_rate_version text, p_pricing jsonb, p_request jsonb, p_key text, p_actor text,
    p_deadline timestamptz
) RETURNS TABLE (outcome text, hold_id bigint, refusal jsonb, account_id bigint, currency text,
                 deposited numeric, spent numeric, held numeric, credit_limit numeric) LANGUAGE plpgsql AS $$
DECLARE
    a accounts%ROWTYPE;
    v_id bigint;
    v_refusal jsonb;
    v_hold bigint;
    v_now timestamptz := now();
BEGIN
    SELECT x.id INTO v_id FROM accounts x WHERE x.slurm_account = p_account_name AND x.cluster IN (p_cluster, '*')
     ORDER BY x.cluster = '*' LIMIT 1;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'refused'::text, NULL::bigint, jsonb_build_object('code', 'account_not_found', 'account', p_account_name),
                            NULL::bigint, NULL::text, NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric;
        RETURN;
    END IF;
    a := asbb_lock_leaf(v_id, v_now);
    IF a.currency <> p_currency THEN
        RETURN QUERY SELECT 'currency_mismatch'::text, NULL::bigint, NULL::jsonb, a.id, a.currency::text,
                            a.deposited, a.spent, a.held, a.credit_limit;
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT h.id INTO v_hold FROM holds h WHERE h.idempotency_key = p_key;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, v_hold, NULL::jsonb, a.id, a.currency::text,
                                a.deposited, a.spent, a.held, a.credit_limit;
            RETURN;
        END IF;
    END IF;
    v_refusal := asbb_check_funds(a, p_amount, p_amount / p_tasks, p_partition, p_month, v_now);
    -- The caller stopped waiting at p_deadline (slurmctld has answered the
    -- submission by then): a call that reached a stalled server and runs
    -- later must not leave a hold behind.
    IF v_refusal IS NULL AND clock_timestamp() > p_deadline THEN
        RETURN QUERY SELECT 'expired'::text, NULL::bigint, NULL::jsonb, a.id, a.currency::text,
                            a.deposited, a.spent, a.held, a.credit_limit;
        RETURN;
    END IF;
    IF v_refusal IS NULL THEN
        INSERT INTO holds (account_id, cluster, partition, user_name, tasks, amount, remaining, month,
                           rate_version, pricing, request, actor, idempotency_key)
        VALUES (a.id, p_cluster, p_partition, p_user, p_tasks, p_amount, p_amount, p_month,
                p_rate_version, p_pricing, p_request, p_actor, p_key)
        RETURNING id INTO v_hold;
        PERFORM asbb_post_chain(a.path, 'hold', p_amount, 0, 0, p_amount, v_hold, NULL,
                                p_cluster, NULL, NULL, p_partition, p_user, p_actor, NULL, p_key);
        PERFORM asbb_usage_add(a.id, p_partition, p_month, p_amount);
    END IF;
    -- a holds the totals from before this hold.
    RETURN QUERY SELECT CASE WHEN v_refusal IS NULL THEN 'held' ELSE 'refused' END, v_hold, v_refusal, a.id,
                        a.currency::text, a.deposited, a.spent, a.held, a.credit_limit;
END $$;

-- Re-prices an active hold to a new total. An increase is checked like a new
-- hold; a decrease is released at once.
CREATE FUNCTION asbb_adjust_hold(p_hold bigint, p_amount numeric, p_tasks integer, p_pricing jsonb,
                                 p_request jsonb, p_actor text, p_reason text)
RETURNS TABLE (outcome text, refusal jsonb) LANGUAGE plpgsql AS $$
DECLARE
    h holds%ROWTYPE;
    a accounts%ROWTYPE;
    v_path bigint[];
    v_refusal jsonb;
    delta numeric;
    v_now timestamptz := now();
BEGIN
    SELECT * INTO h FROM holds WHERE id = p_hold;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::jsonb; RETURN;
    END IF;
    a := asbb_lock_leaf(h.account_id, v_now);
    v_path := a.path;
    SELECT * INTO h FROM holds WHERE id = p_hold FOR UPDATE;
    IF h.status <> 'active' OR h.settled_tasks > 0 THEN
        RETURN QUERY SELECT 'not_adjustable'::text, NULL::jsonb; RETURN;
    END IF;
    delta := p_amount - h.remaining;
    IF delta > 0 THEN
        v_refusal := asbb_check_funds(a, delta, p_amount / p_tasks, h.partition, h.month, v_now);
        IF v_refusal IS NOT NULL THEN
            RETURN QUERY SELECT 'refused'::text, v_refusal; RETURN;
        END IF;
    END IF;
    UPDATE holds SET amount = amount + delta, remaining = p_amount, tasks = p_tasks,
                     pricing = coalesce(p_pricing, pricing), request = coalesce(p_request, request), updated_at = v_now
     WHERE id = p_hold;
    IF delta <> 0 THEN
        PERFORM asbb_post_chain(v_path, 'hold_adjust', abs(delta), 0, 0, delta, p_hold, NULL,
                                h.cluster, h.job_id, NULL, h.partition, h.user_name, p_actor, p_reason, NULL);
        PERFORM asbb_usage_add(h.account_id, h.partition, h.month, delta);
    END IF;
    RETURN QUERY SELECT 'adjusted'::text, NULL::jsonb;
END $$;

-- Charges the actual cost of one job, array task or run, and releases its
-- share of the hold, in one transaction. Never refuses for lack of funds
-- (the money is already spent): an overrun is recorded instead. Idempotent
-- on (cluster, job, task, run start): a replay returns the first result.
CREATE FUNCTION asbb_settle(
    p_hold bigint, p_account bigint, p_cluster text, p_job text, p_task integer, p_run_start bigint,
    p_actual numeric, p_final boolean, p_partition text, p_user text, p_actor text, p_reason text
) RETURNS TABLE (outcome text, charge_id bigint, actual numeric, released numeric, overrun numeric,
                 hold_remaining numeric) LANGUAGE plpgsql AS $$
DECLARE
    c charges%ROWTYPE;
    h holds%ROWTYPE;
    v_account bigint := p_account;
    share numeric := 0;
    per_task numeric;
    v_over numeric := 0;
    v_part text := coalesce(p_partition, '');
    v_path bigint[];
BEGIN
    SELECT * INTO c FROM charges
     WHERE cluster = p_cluster AND job_id = p_job AND array_task_id = p_task AND run_start = p_run_start;
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, c.id, c.actual, c.released, c.overrun,
                            (SELECT remaining FROM holds WHERE id = c.hold_id);
        RETURN;
    END IF;
    IF p_hold IS NOT NULL THEN
        SELECT account_id INTO v_account FROM holds WHERE id = p_hold;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'hold_not_found'::text, NULL::bigint, NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric;
            RETURN;
        END IF;
    END IF;
    v_path := asbb_lock_chain(v_account);
    IF v_path IS NULL THEN
        RETURN QUERY SELECT 'account_not_found'::text, NULL::bigint, NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric;
        RETURN;
    END IF;
    IF p_hold IS NOT NULL THEN
        SELECT * INTO h FROM holds WHERE id = p_hold FOR UPDATE;
        v_part := h.partition;
        per_task := h.amount / h.tasks;
        IF h.status = 'active' THEN
            IF p_final OR h.tasks = 1 OR h.settled_tasks + 1 >= h.tasks THEN
                share := h.remaining;
            ELSE
                share := least(per_task, h.remaining);
            END IF;
        END IF;
        v_over := greatest(p_actual - per_task, 0);
    END IF;
    -- Under the locks, the insert decides races between two settlers of the
    -- same job: the loser sees the winner's row and returns it.
    INSERT INTO charges (hold_id, account_id, cluster, job_id, array_task_id, run_start, partition, user_name,
                         actual, released, overrun, actor)
    VALUES (p_hold, v_account, p_cluster, p_job, p_task, p_run_start, v_part, coalesce(p_user, ''),
            p_actual, share, v_over, coalesce(p_actor, ''))
    ON CONFLICT ON CONSTRAINT charges_cluster_job_id_array_task_id_run_start_key DO NOTHING
    RETURNING * INTO c;
    IF NOT FOUND THEN
        SELECT * INTO c FROM charges
         WHERE cluster = p_cluster AND job_id = p_job AND array_task_id = p_task AND run_start = p_run_start;
        RETURN QUERY SELECT 'duplicate'::text, c.id, c.actual, c.released, c.overrun,
                            (SELECT remaining FROM holds WHERE id = c.hold_id);
        RETURN;
    END IF;
    PERFORM asbb_post_chain(v_path, 'charge', p_actual, 0, p_actual, -share, p_hold, c.id,
                            p_cluster, p_job, CASE WHEN p_task >= 0 THEN p_task END, v_part, p_user, p_actor,
                            coalesce(p_reason, '') || CASE WHEN v_over > 0 THEN ' overrun ' || v_over::text ELSE '' END,
                            NULL);
    IF p_hold IS NOT NULL THEN
        PERFORM asbb_usage_add(v_account, v_part, h.month, p_actual - share);
        UPDATE holds SET remaining = remaining - share, charged = charged + p_actual,
                         settled_tasks = settled_tasks + 1,
                         job_id = coalesce(job_id, CASE WHEN h.tasks = 1 THEN p_job END),
                         status = CASE WHEN remaining - share = 0 AND (p_final OR settled_tasks + 1 >= tasks)
                                       THEN 'closed' ELSE status END,
                         close_reason = CASE WHEN remaining - share = 0 AND (p_final OR settled_tasks + 1 >= tasks)
                                             THEN 'settled' ELSE close_reason END,
                         closed_at = CASE WHEN remaining - share = 0 AND (p_final OR settled_tasks + 1 >= tasks)
                                          THEN now() ELSE closed_at END,
                         updated_at = now()
         WHERE id = p_hold
        RETURNING remaining INTO h.remaining;
    END IF;
    RETURN QUERY SELECT 'charged'::text, c.id, c.actual, c.released, c.overrun, h.remaining;
END $$;

-- Gives back whatever a hold still holds. Idempotent: a closed hold is left.
CREATE FUNCTION asbb_release(p_hold bigint, p_actor text, p_reason text)
RETURNS TABLE (outcome text, released numeric) LANGUAGE plpgsql AS $$
DECLARE
    h holds%ROWTYPE;
    v_path bigint[];
BEGIN
    SELECT * INTO h FROM holds WHERE id = p_hold;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::numeric; RETURN;
    END IF;
    v_path := asbb_lock_chain(h.account_id);
    SELECT * INTO h FROM holds WHERE id = p_hold FOR UPDATE;
    IF h.status <> 'active' THEN
        RETURN QUERY SELECT 'already_closed'::text, 0::numeric; RETURN;
    END IF;
    IF h.remaining > 0 THEN
        PERFORM asbb_post_chain(v_path, 'hold_release', h.remaining, 0, 0, -h.remaining, p_hold, NULL,
                                h.cluster, h.job_id, NULL, h.partition, h.user_name, p_actor, p_reason, NULL);
        PERFORM asbb_usage_add(h.account_id, h.partition, h.month, -h.remaining);
    END IF;
    UPDATE holds SET remaining = 0, status = 'closed', close_reason = p_reason, closed_at = now(), updated_at = now()
     WHERE id = p_hold;
    RETURN QUERY SELECT 'released'::text, h.remaining;
END $$;

-- Records an allocation (a dated deposit). One that starts later is pending
-- and posts its deposit when asbb_process_events reaches its start.
-- Idempotent on p_key: a replay returns the first allocation.
CREATE FUNCTION asbb_deposit(p_account bigint, p_amount numeric, p_starts timestamptz, p_expires timestamptz,
                             p_note text, p_actor text, p_key text, p_schedule bigint, p_installment integer)
RETURNS TABLE (outcome text, allocation_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_next timestamptz;
    v_now timestamptz := now();
BEGIN
    p_starts := coalesce(p_starts, v_now);
    IF asbb_lock_chain(p_account) IS NULL THEN
        RETURN QUERY SELECT 'account_not_found'::text, NULL::bigint; RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT id INTO v_id FROM allocations WHERE idempotency_key = p_key;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, v_id; RETURN;
        END IF;
    END IF;
    -- Inserted in its final status (no update that would rewrite every
    -- index of allocations), and the account row touched once.
    INSERT INTO allocations (account_id, amount, starts_at, expires_at, status, note, actor, idempotency_key,
                             schedule_id, installment)
    VALUES (p_account, p_amount, p_starts, p_expires, CASE WHEN p_starts <= v_now THEN 'active' ELSE 'pending' END,
            coalesce(p_note, ''), coalesce(p_actor, ''), p_key, p_schedule, p_installment)
    RETURNING id INTO v_id;
    IF p_starts <= v_now THEN
        PERFORM asbb_post(p_account, 'deposit', p_amount, p_amount, 0, 0, NULL, NULL, v_id, NULL,
                          NULL, NULL, NULL, NULL, NULL, p_actor, p_note, p_key);
        IF p_expires IS NOT NULL THEN
            UPDATE accounts SET next_event = least(next_event, p_expires) WHERE id = p_account
            RETURNING next_event INTO v_next;
        END IF;
    ELSE
        UPDATE accounts SET next_event = least(next_event, p_starts) WHERE id = p_account
        RETURNING next_event INTO v_next;
    END IF;
    IF v_next <= v_now THEN
        PERFORM asbb_process_events(p_account, v_now);
    END IF;
    RETURN QUERY SELECT 'deposited'::text, v_id;
END $$;

-- Takes money out of an account's funding (not from holds or spending).
CREATE FUNCTION asbb_withdraw(p_account bigint, p_amount numeric, p_actor text, p_reason text, p_key text)
RETURNS TABLE (outcome text, ledger_id bigint, available numeric) LANGUAGE plpgsql AS $$
DECLARE
    a accounts%ROWTYPE;
    v_id bigint;
BEGIN
    IF asbb_lock_chain(p_account) IS NULL THEN
        RETURN QUERY SELECT 'account_not_found'::text, NULL::bigint, NULL::numeric; RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT id INTO v_id FROM ledger WHERE account_id = p_account AND type = 'withdraw' AND idempotency_key = p_key
           AND origin_account_id IS NULL;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, v_id, NULL::numeric; RETURN;
        END IF;
    END IF;
    PERFORM asbb_process_events(p_account, now());
    SELECT * INTO a FROM accounts WHERE id = p_account;
    IF a.deposited - a.spent - a.held < p_amount THEN
        RETURN QUERY SELECT 'insufficient_funds'::text, NULL::bigint, a.deposited - a.spent - a.held; RETURN;
    END IF;
    RETURN QUERY SELECT 'withdrawn'::text, (asbb_post(p_account, 'withdraw', p_amount, -p_amount, 0, 0, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, p_actor, p_reason, p_key)).id, a.deposited - a.spent - a.held - p_amount;
END $$;

-- Gives back part or all of a charge (at most what it still counts).
CREATE FUNCTION asbb_refund(p_charge bigint, p_amount numeric, p_actor text, p_reason text, p_key text)
RETURNS TABLE (outcome text, ledger_id bigint, refundable numeric) LANGUAGE plpgsql AS $$
DECLARE
    c charges%ROWTYPE;
    v_id bigint;
    left_ numeric;
    v_path bigint[];
BEGIN
    SELECT * INTO c FROM charges WHERE id = p_charge;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::numeric; RETURN;
    END IF;
    v_path := asbb_lock_chain(c.account_id);
    IF p_key IS NOT NULL THEN
        SELECT id INTO v_id FROM ledger WHERE account_id = c.account_id AND type = 'refund' AND idempotency_key = p_key
           AND origin_account_id IS NULL;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, v_id, NULL::numeric; RETURN;
        END IF;
    END IF;
    SELECT * INTO c FROM charges WHERE id = p_charge FOR UPDATE;
    left_ := c.actual + c.corrected - c.refunded;
    IF p_amount > left_ THEN
        RETURN QUERY SELECT 'exceeds_charge'::text, NULL::bigint, left_; RETURN;
    END IF;
    UPDATE charges SET refunded = refunded + p_amount WHERE id = p_charge;
    RETURN QUERY SELECT 'refunded'::text, (asbb_post_chain(v_path, 'refund', p_amount, 0, -p_amount, 0, c.hold_id, c.id,
        c.cluster, c.job_id, CASE WHEN c.array_task_id >= 0 THEN c.array_task_id END, c.partition, c.user_name,
        p_actor, p_reason, p_key)).id, left_ - p_amount;
END $$;

-- Trues up a charge to a later, more exact cost (ASBX's actual AWS bill):
-- one correction entry for the difference, never a second charge.
-- Idempotent on p_key (e.g. "asbx:<charge>").
CREATE FUNCTION asbb_correct(p_charge bigint, p_total numeric, p_actor text, p_reason text, p_key text)
RETURNS TABLE (outcome text, ledger_id bigint, delta numeric, previous numeric) LANGUAGE plpgsql AS $$
DECLARE
    c charges%ROWTYPE;
    v_id bigint;
    eff numeric;
    d numeric;
    v_path bigint[];
BEGIN
    SELECT * INTO c FROM charges WHERE id = p_charge;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    v_path := asbb_lock_chain(c.account_id);
    SELECT * INTO c FROM charges WHERE id = p_charge FOR UPDATE;
    eff := c.actual + c.corrected - c.refunded;
    IF p_key IS NOT NULL THEN
        SELECT id INTO v_id FROM ledger WHERE account_id = c.account_id AND type = 'correction' AND idempotency_key = p_key
           AND origin_account_id IS NULL;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, v_id, 0::numeric, eff; RETURN;
        END IF;
    END IF;
    d := p_total - eff;
    IF d = 0 THEN
        RETURN QUERY SELECT 'unchanged'::text, NULL::bigint, 0::numeric, eff; RETURN;
    END IF;
    UPDATE charges SET corrected = corrected + d WHERE id = p_charge;
    RETURN QUERY SELECT 'corrected'::text, (asbb_post_chain(v_path, 'correction', d, 0, d, 0, c.hold_id, c.id,
        c.cluster, c.job_id, CASE WHEN c.array_task_id >= 0 THEN c.array_task_id END, c.partition, c.user_name,
        p_actor, p_reason, p_key)).id, d, eff;
END $$;
