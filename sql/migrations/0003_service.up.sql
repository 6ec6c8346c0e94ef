-- asbb-service: bearer tokens, ASBX reconciliation bookkeeping and the record
-- of ingested ASBX files. Money still moves only through the 0001 functions
-- (asbb_correct, asbb_settle); these tables record who asked and what came
-- back, so a repeated report returns its first answer.

-- Bearer tokens. Only the SHA-256 of a token is stored: tokens are 256-bit
-- random strings, so a fast hash is enough (no password stretching needed)
-- and lookup is one index probe. A revoked token keeps its row (audit); the
-- name may then be reused.
CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role        text NOT NULL CHECK (role IN ('read', 'reconcile', 'admin')),
    hash        bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- One row per ASBX cost report that matched (or failed to match) the
-- ledger. key identifies the report (what it matched and the cost it
-- carried): a repeat finds the row and gets its stored response. Pending
-- reports arrived before the job was charged; the service retries them.
CREATE TABLE asbx_reconciliations (
    id            bigserial PRIMARY KEY,
    key           text UNIQUE,              -- NULL for failed reports
    source        text NOT NULL CHECK (source IN ('http', 'file')),
    job_id        text NOT NULL DEFAULT '',
    array_task_id integer NOT NULL DEFAULT -1,
    cluster       text NOT NULL DEFAULT '*',
    hold_id       bigint,
    charge_id     bigint,
    ledger_id     bigint,                   -- the correction (or charge) entry
    status        text NOT NULL CHECK (status IN ('corrected', 'unchanged', 'charged', 'pending', 'failed')),
    actual        numeric(20,6) NOT NULL,
    previous      numeric(20,6),            -- the computed charge it trued up
    accuracy      numeric(10,6),
    duration_us   bigint NOT NULL DEFAULT 0,
    report        jsonb NOT NULL DEFAULT '{}',
    response      jsonb NOT NULL DEFAULT '{}',
    error         text NOT NULL DEFAULT '',
    actor         text NOT NULL DEFAULT '',
    attempts      integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX asbx_reconciliations_pending ON asbx_reconciliations (id) WHERE status = 'pending';

-- ASBX files ingested from the spool directory, by name and content digest:
-- a file seen again (a crash between recording and moving it aside) is moved
-- aside without being processed twice; a re-export with new content is new.
CREATE TABLE asbx_files (
    name              text NOT NULL,
    digest            text NOT NULL,
    status            text NOT NULL CHECK (status IN ('done', 'failed')),
    reconciliation_id bigint REFERENCES asbx_reconciliations(id),
    error             text NOT NULL DEFAULT '',
    processed_by      text NOT NULL DEFAULT '',
    processed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, digest)
);
