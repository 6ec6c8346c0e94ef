-- Analytics: alerts, and the indexes burn rates and reports read through.
--
-- An alert is one condition (rule) on one target (an account, a grant, a
-- hold or a charge). The partial unique index below is what keeps at most
-- one unresolved alert per rule and target, whatever the evaluators do:
-- two service instances evaluating at once both upsert into the same row.
-- An alert is open until acknowledged; acknowledged or not, it is resolved
-- when its condition clears, and a later recurrence opens a new row.

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    rule            text NOT NULL,
    target_kind     text NOT NULL CHECK (target_kind IN ('account', 'grant', 'hold', 'charge')),
    target          text NOT NULL,
    account_id      bigint REFERENCES accounts(id),
    grant_id        bigint REFERENCES grants(id),
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    fire_count      integer NOT NULL DEFAULT 1,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_note        text,
    resolved_at     timestamptz,
    notified_at     timestamptz,   -- webhook delivery of the opening
    CHECK (status <> 'acknowledged' OR acknowledged_at IS NOT NULL),
    CHECK (status <> 'resolved' OR resolved_at IS NOT NULL)
);
CREATE UNIQUE INDEX alerts_unresolved ON alerts (rule, target_kind, target) WHERE status <> 'resolved';
CREATE INDEX alerts_status ON alerts (status, id);
CREATE INDEX alerts_account ON alerts (account_id, status) WHERE account_id IS NOT NULL;
CREATE INDEX alerts_grant ON alerts (grant_id, status) WHERE grant_id IS NOT NULL;
CREATE INDEX alerts_unnotified ON alerts (id) WHERE notified_at IS NULL AND status = 'open';

-- The overrun rule looks at recent charges that overran their hold.
CREATE INDEX charges_overrun ON charges (created_at) WHERE overrun > 0;

-- Grant burn rates and reports read a grant's entries by time.
CREATE INDEX grant_entries_time ON grant_entries (grant_id, created_at);
