-- Scheduled allocations, grants and grant budget periods.
--
-- Schedules: allocation_schedules holds the plan; the Go processor turns
-- due installments into deposits through asbb_deposit with the key
-- "sched:<schedule>:<installment>". The unique index on (schedule_id,
-- installment) below is what makes each installment happen exactly once,
-- whatever the processors do.
--
-- Grants: an account (and its sub-accounts) draws on at most one grant.
-- Each grant has budget periods; grant_entries is the grant's own append-
-- only ledger: every ledger row of a linked account that holds or spends
-- money gets an entry in the period it counts in, multiplied by
-- (1 + indirect rate), and period budgets, carry-forward and lapses are
-- entries too. grant_periods keeps the running sums (maintained in the same
-- transaction, checked by budget.Verify).
--
-- Locking: every writer of a grant's entries takes the advisory lock
-- (class 1095975495 = 'ASBG', key = grant id) shared; closing a period takes
-- it exclusive. Period rows are locked FOR UPDATE in ascending period order.

CREATE TABLE allocation_schedules (
    id               bigserial PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts(id),
    total            numeric(20,6) NOT NULL CHECK (total > 0),
    amount           numeric(20,6) NOT NULL CHECK (amount > 0 AND amount <= total),
    frequency        text NOT NULL CHECK (frequency IN ('daily', 'weekly', 'monthly', 'quarterly', 'yearly')),
    starts_at        timestamptz NOT NULL,           -- installment 1 falls due here
    ends_at          timestamptz,                    -- exclusive: no installment at or after it
    timezone         text NOT NULL,                  -- calendar of the installments
    expire_after     integer CHECK (expire_after BETWEEN 1 AND 1000), -- periods an installment lives
    installments     integer NOT NULL CHECK (installments BETWEEN 1 AND 100000),
    paused           boolean NOT NULL DEFAULT false,
    next_installment integer NOT NULL DEFAULT 1 CHECK (next_installment >= 1),
    next_due         timestamptz,                    -- NULL once every installment is deposited
    note             text NOT NULL DEFAULT '',
    actor            text NOT NULL DEFAULT '',
    idempotency_key  text UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CHECK (ends_at IS NULL OR ends_at > starts_at),
    CHECK (next_installment <= installments + 1)
);
CREATE INDEX allocation_schedules_due ON allocation_schedules (next_due) WHERE next_due IS NOT NULL AND NOT paused;
CREATE INDEX allocation_schedules_account ON allocation_schedules (account_id);

ALTER TABLE allocations ADD CONSTRAINT allocations_schedule_fk
    FOREIGN KEY (schedule_id) REFERENCES allocation_schedules(id);
-- Also serves lookups by schedule_id alone (its leading column).
CREATE UNIQUE INDEX allocations_installment ON allocations (schedule_id, installment) WHERE schedule_id IS NOT NULL;

CREATE TABLE grants (
    id             bigserial PRIMARY KEY,
    number         text NOT NULL UNIQUE CHECK (number ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    agency         text NOT NULL,
    program        text NOT NULL DEFAULT '',
    pi             text NOT NULL,
    co_pis         text[] NOT NULL DEFAULT '{}',
    institution    text NOT NULL DEFAULT '',
    department     text NOT NULL DEFAULT '',
    amount         numeric(20,6) NOT NULL CHECK (amount > 0),
    currency       char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    starts_on      date NOT NULL,
    ends_on        date NOT NULL,                    -- inclusive
    period_months  integer NOT NULL CHECK (period_months BETWEEN 1 AND 120),
    indirect_rate  numeric(8,6) NOT NULL DEFAULT 0 CHECK (indirect_rate >= 0 AND indirect_rate <= 1.5),
    federal_id     text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('pending', 'active', 'suspended', 'closed')),
    carry_forward  boolean NOT NULL DEFAULT true,
    timezone       text NOT NULL,
    actor          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);

-- held and spent are exact products with (1 + indirect): plain numeric, no
-- rounding, so a hold and its release always cancel.
CREATE TABLE grant_periods (
    grant_id   bigint NOT NULL REFERENCES grants(id),
    period     integer NOT NULL CHECK (period >= 1),
    starts_on  date NOT NULL,
    ends_on    date NOT NULL,
    budget     numeric(20,6) NOT NULL DEFAULT 0 CHECK (budget >= 0), -- sum of 'budget' entries
    adjusted   numeric NOT NULL DEFAULT 0,   -- carry_forward and lapse entries (+ in, - out)
    held       numeric NOT NULL DEFAULT 0,
    spent      numeric NOT NULL DEFAULT 0,
    status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    closed_at  timestamptz,
    PRIMARY KEY (grant_id, period),
    CHECK (ends_on >= starts_on)
);

CREATE TABLE grant_accounts (
    account_id bigint PRIMARY KEY REFERENCES accounts(id),
    grant_id   bigint NOT NULL REFERENCES grants(id),
    actor      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grant_accounts_grant ON grant_accounts (grant_id);

-- A linked account's holds must pass the grant hooks: keep it off the
-- one-statement hold path (its sub-accounts take the chain path anyway).
CREATE FUNCTION asbb_grant_accounts_hooked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET hooked = true WHERE id = NEW.account_id;
    RETURN NEW;
END $$;
CREATE TRIGGER grant_accounts_hooked AFTER INSERT ON grant_accounts
    FOR EACH ROW EXECUTE FUNCTION asbb_grant_accounts_hooked();

-- The period each hold on a grant-funded account counts in, and the factor
-- it was taken at (a later change of the indirect rate must not make a
-- release differ from its hold).
CREATE TABLE grant_holds (
    hold_id  bigint PRIMARY KEY REFERENCES holds(id),
    grant_id bigint NOT NULL REFERENCES grants(id),
    period   integer NOT NULL,
    factor   numeric NOT NULL CHECK (factor >= 1)
);

CREATE TABLE grant_entries (
    id         bigserial PRIMARY KEY,
    grant_id   bigint NOT NULL REFERENCES grants(id),
    period     integer NOT NULL,
    type       text NOT NULL CHECK (type IN ('budget', 'hold', 'hold_adjust', 'hold_release', 'charge', 'refund',
                                             'correction', 'hold_transfer', 'carry_forward', 'lapse')),
    account_id bigint REFERENCES accounts(id),
    ledger_id  bigint REFERENCES ledger(id),
    hold_id    bigint,
    charge_id  bigint,
    direct     numeric(20,6) NOT NULL DEFAULT 0, -- the direct amount (ledger d_held or d_spent) this entry follows
    factor     numeric NOT NULL DEFAULT 1,
    d_held     numeric NOT NULL DEFAULT 0,
    d_spent    numeric NOT NULL DEFAULT 0,
    d_budget   numeric NOT NULL DEFAULT 0,
    actor      text NOT NULL DEFAULT '',
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (grant_id, period) REFERENCES grant_periods(grant_id, period)
);
CREATE INDEX grant_entries_period ON grant_entries (grant_id, period, id);
CREATE INDEX grant_entries_ledger ON grant_entries (ledger_id) WHERE ledger_id IS NOT NULL;
CREATE INDEX grant_entries_hold ON grant_entries (hold_id) WHERE hold_id IS NOT NULL;
CREATE INDEX grant_entries_charge ON grant_entries (charge_id) WHERE charge_id IS NOT NULL AND type = 'charge';

CREATE TRIGGER grant_entries_append_only BEFORE UPDATE OR DELETE ON grant_entries
    FOR EACH ROW EXECUTE FUNCTION asbb_ledger_append_only();
CREATE TRIGGER grant_entries_no_truncate BEFORE TRUNCATE ON grant_entries
    FOR EACH STATEMENT EXECUTE FUNCTION asbb_ledger_append_only();

-- The grant an account draws on: its own link or its nearest linked
-- ancestor's (links never overlap on one path; LinkGrant refuses that).
-- (PL/pgSQL, not SQL: a SQL function called from PL/pgSQL is planned again
-- in every transaction, which cost ~100 us on every hold; PL/pgSQL keeps
-- its plans for the session.)
CREATE FUNCTION asbb_grant_of(p_account bigint) RETURNS grants LANGUAGE plpgsql STABLE AS $$
DECLARE
    g grants;
BEGIN
    SELECT gr.* INTO g FROM accounts a
      JOIN grant_accounts ga ON ga.account_id = ANY (a.path)
      JOIN grants gr ON gr.id = ga.grant_id
     WHERE a.id = p_account
     ORDER BY array_position(a.path, ga.account_id) DESC
     LIMIT 1;
    RETURN g;
END $$;

-- The period that money committed at p_at counts in: the first open period
-- that ends on or after that day in the grant's zone (so a period already
-- closed passes its business to the next one); past the last period, the
-- last one.
CREATE FUNCTION asbb_grant_period_at(p_grant grants, p_at timestamptz) RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce(
        (SELECT period FROM grant_periods
          WHERE grant_id = p_grant.id AND status = 'open' AND ends_on >= (p_at AT TIME ZONE p_grant.timezone)::date
          ORDER BY period LIMIT 1),
        (SELECT max(period) FROM grant_periods WHERE grant_id = p_grant.id));
END $$;

-- Appends one grant entry and keeps its period's sums. Caller holds the
-- grant's advisory lock.
CREATE FUNCTION asbb_grant_entry(p_grant bigint, p_period integer, p_type text, p_account bigint, p_ledger bigint,
                                 p_hold bigint, p_charge bigint, p_direct numeric, p_factor numeric,
                                 p_dh numeric, p_ds numeric, p_db numeric, p_actor text, p_reason text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE grant_periods
       SET held = held + p_dh, spent = spent + p_ds,
           budget = budget + CASE WHEN p_type = 'budget' THEN p_db ELSE 0 END,
           adjusted = adjusted + CASE WHEN p_type = 'budget' THEN 0 ELSE p_db END
     WHERE grant_id = p_grant AND period = p_period;
    INSERT INTO grant_entries (grant_id, period, type, account_id, ledger_id, hold_id, charge_id, direct, factor,
                               d_held, d_spent, d_budget, actor, reason)
    VALUES (p_grant, p_period, p_type, p_account, p_ledger, p_hold, p_charge, coalesce(p_direct, 0), coalesce(p_factor, 1),
            p_dh, p_ds, p_db, coalesce(p_actor, ''), coalesce(p_reason, ''));
END $$;

-- Moves what a hold holds from its period to p_to (at a period close, or
-- when an old hold grows in a later period).
CREATE FUNCTION asbb_grant_move_hold(p_hold bigint, p_to integer, p_actor text, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    gh grant_holds%ROWTYPE;
    v_direct numeric;
    v_held numeric;
BEGIN
    SELECT * INTO gh FROM grant_holds WHERE hold_id = p_hold;
    IF NOT FOUND OR gh.period = p_to THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(direct), 0), coalesce(sum(d_held), 0) INTO v_direct, v_held
      FROM grant_entries WHERE hold_id = p_hold AND grant_id = gh.grant_id AND period = gh.period AND d_held <> 0;
    IF v_held <> 0 THEN
        PERFORM asbb_grant_entry(gh.grant_id, gh.period, 'hold_transfer', NULL, NULL, p_hold, NULL, -v_direct, gh.factor,
                                 -v_held, 0, 0, p_actor, p_reason || ' (to period ' || p_to || ')');
        PERFORM asbb_grant_entry(gh.grant_id, p_to, 'hold_transfer', NULL, NULL, p_hold, NULL, v_direct, gh.factor,
                                 v_held, 0, 0, p_actor, p_reason || ' (from period ' || gh.period || ')');
    END IF;
    UPDATE grant_holds SET period = p_to WHERE hold_id = p_hold;
END $$;

-- A hold (or hold increase) of p_amount on a grant-funded account must fit
-- the remaining budget of the current period, counted with indirect costs.
-- Runs under the account chain's locks; the period rows are locked here
-- because two different accounts may draw on one grant.
CREATE OR REPLACE FUNCTION asbb_hold_check_hook(p_account bigint, p_amount numeric) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    g grants;
    p grant_periods%ROWTYPE;
    v_today date;
    v_period integer;
    need numeric;
    left_ numeric;
BEGIN
    g := asbb_grant_of(p_account);
    IF g.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1095975495, g.id::integer);
    need := p_amount * (1 + g.indirect_rate);
    v_today := (now() AT TIME ZONE g.timezone)::date;
    IF g.status <> 'active' THEN
        RETURN jsonb_build_object('code', 'grant_period', 'period', g.number || ' (grant is ' || g.status || ')',
                                  'available', 0, 'amount', need);
    END IF;
    IF v_today < g.starts_on THEN
        RETURN jsonb_build_object('code', 'grant_period', 'period', g.number || ' (starts ' || to_char(g.starts_on, 'YYYY-MM-DD') || ')',
                                  'available', 0, 'amount', need);
    END IF;
    IF v_today > g.ends_on THEN
        RETURN jsonb_build_object('code', 'grant_period', 'period', g.number || ' (ended ' || to_char(g.ends_on, 'YYYY-MM-DD') || ')',
                                  'available', 0, 'amount', need);
    END IF;
    v_period := asbb_grant_period_at(g, now());
    -- Ascending order, like every other locker of period rows.
    PERFORM 1 FROM grant_periods WHERE grant_id = g.id AND period <= v_period AND status = 'open'
      ORDER BY period FOR UPDATE;
    SELECT * INTO p FROM grant_periods WHERE grant_id = g.id AND period = v_period;
    left_ := p.budget + p.adjusted - p.held - p.spent;
    IF left_ < need THEN
        RETURN jsonb_build_object('code', 'grant_period',
                                  'period', format('%s period %s (%s..%s)', g.number, p.period,
                                                   to_char(p.starts_on, 'YYYY-MM-DD'), to_char(p.ends_on, 'YYYY-MM-DD')),
                                  'available', greatest(left_, 0), 'amount', need);
    END IF;
    RETURN NULL;
END $$;

-- Follows every ledger row of a grant-funded account into the grant's
-- periods: held money (hold, hold_adjust, hold_release, the release part of
-- a charge) counts in the hold's period; spent money (charge) in the period
-- of the charge; a refund or correction in its charge's period while that
-- is open, else the current one. Deposits, withdrawals and expiries do not
-- touch a grant.
CREATE OR REPLACE FUNCTION asbb_post_hook(p_row ledger) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g grants;
    gh grant_holds%ROWTYPE;
    ce grant_entries%ROWTYPE;
    v_period integer;
    v_factor numeric;
    v_counted boolean := false;
BEGIN
    IF p_row.d_held = 0 AND p_row.d_spent = 0 THEN
        RETURN;
    END IF;
    g := asbb_grant_of(p_row.account_id);
    IF g.id IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1095975495, g.id::integer);
    IF p_row.d_held <> 0 AND p_row.hold_id IS NOT NULL THEN
        IF p_row.type = 'hold' THEN
            INSERT INTO grant_holds (hold_id, grant_id, period, factor)
            VALUES (p_row.hold_id, g.id, asbb_grant_period_at(g, p_row.created_at), 1 + g.indirect_rate)
            RETURNING * INTO gh;
            v_counted := true;
        ELSE
            SELECT * INTO gh FROM grant_holds WHERE hold_id = p_row.hold_id;
            v_counted := FOUND; -- a hold taken before the link never counted
            IF v_counted AND p_row.d_held > 0 THEN
                v_period := asbb_grant_period_at(g, p_row.created_at);
                IF v_period > gh.period THEN
                    PERFORM asbb_grant_move_hold(gh.hold_id, v_period, p_row.actor, 'hold grew in a later period');
                    gh.period := v_period;
                END IF;
            END IF;
        END IF;
        IF v_counted THEN
            PERFORM asbb_grant_entry(g.id, gh.period, p_row.type, p_row.account_id, p_row.id, p_row.hold_id,
                                     p_row.charge_id, p_row.d_held, gh.factor, p_row.d_held * gh.factor, 0, 0,
                                     p_row.actor, p_row.reason);
        END IF;
    END IF;
    IF p_row.d_spent <> 0 THEN
        v_period := NULL;
        v_factor := 1 + g.indirect_rate;
        IF p_row.type IN ('refund', 'correction') THEN
            SELECT * INTO ce FROM grant_entries
             WHERE charge_id = p_row.charge_id AND type = 'charge' AND grant_id = g.id ORDER BY id LIMIT 1;
            IF NOT FOUND THEN
                RETURN; -- its charge never counted on this grant
            END IF;
            v_factor := ce.factor;
            IF (SELECT status FROM grant_periods WHERE grant_id = g.id AND period = ce.period) = 'open' THEN
                v_period := ce.period;
            END IF;
        END IF;
        v_period := coalesce(v_period, asbb_grant_period_at(g, p_row.created_at));
        PERFORM asbb_grant_entry(g.id, v_period, p_row.type, p_row.account_id, p_row.id, p_row.hold_id,
                                 p_row.charge_id, p_row.d_spent, v_factor, 0, p_row.d_spent * v_factor, 0,
                                 p_row.actor, p_row.reason);
    END IF;
END $$;

-- Closes a period that has ended (p_today is past its end): active holds
-- move to the next period, and the unspent remainder is carried into the
-- next period (carry_forward) or lapses, each as grant entries. Periods
-- close in order; the last one closes only without active holds, and its
-- remainder always lapses.
CREATE FUNCTION asbb_grant_close_period(p_grant bigint, p_period integer, p_today date, p_actor text)
RETURNS TABLE (outcome text, unspent numeric, carried numeric, lapsed numeric) LANGUAGE plpgsql AS $$
DECLARE
    g grants%ROWTYPE;
    p grant_periods%ROWTYPE;
    nxt grant_periods%ROWTYPE;
    h record;
    u numeric;
BEGIN
    SELECT * INTO g FROM grants WHERE id = p_grant;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1095975495, p_grant::integer);
    PERFORM 1 FROM grant_periods WHERE grant_id = p_grant AND period IN (p_period, p_period + 1)
      ORDER BY period FOR UPDATE;
    SELECT * INTO p FROM grant_periods WHERE grant_id = p_grant AND period = p_period;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    IF p.status = 'closed' THEN
        RETURN QUERY SELECT 'already_closed'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    IF p.ends_on >= p_today THEN
        RETURN QUERY SELECT 'not_ended'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM grant_periods WHERE grant_id = p_grant AND period < p_period AND status = 'open') THEN
        RETURN QUERY SELECT 'earlier_open'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
    END IF;
    SELECT * INTO nxt FROM grant_periods WHERE grant_id = p_grant AND period = p_period + 1;
    FOR h IN SELECT gh.hold_id FROM grant_holds gh JOIN holds ho ON ho.id = gh.hold_id
              WHERE gh.grant_id = p_grant AND gh.period = p_period AND ho.status = 'active' ORDER BY gh.hold_id LOOP
        IF nxt.period IS NULL THEN
            RETURN QUERY SELECT 'active_holds'::text, NULL::numeric, NULL::numeric, NULL::numeric; RETURN;
        END IF;
        PERFORM asbb_grant_move_hold(h.hold_id, nxt.period, p_actor, 'period ' || p_period || ' closed');
    END LOOP;
    SELECT * INTO p FROM grant_periods WHERE grant_id = p_grant AND period = p_period;
    u := p.budget + p.adjusted - p.held - p.spent;
    carried := 0;
    lapsed := 0;
    IF u > 0 AND g.carry_forward AND nxt.period IS NOT NULL THEN
        PERFORM asbb_grant_entry(p_grant, p_period, 'carry_forward', NULL, NULL, NULL, NULL, 0, 1, 0, 0, -u,
                                 p_actor, 'unspent budget carried to period ' || nxt.period);
        PERFORM asbb_grant_entry(p_grant, nxt.period, 'carry_forward', NULL, NULL, NULL, NULL, 0, 1, 0, 0, u,
                                 p_actor, 'unspent budget carried from period ' || p_period);
        carried := u;
    ELSIF u > 0 THEN
        PERFORM asbb_grant_entry(p_grant, p_period, 'lapse', NULL, NULL, NULL, NULL, 0, 1, 0, 0, -u,
                                 p_actor, CASE WHEN nxt.period IS NULL THEN 'unspent budget lapses at the end of the grant'
                                               ELSE 'unspent budget lapses (no carry-forward)' END);
        lapsed := u;
    END IF;
    UPDATE grant_periods SET status = 'closed', closed_at = now() WHERE grant_id = p_grant AND period = p_period;
    RETURN QUERY SELECT 'closed'::text, u, carried, lapsed;
END $$;
