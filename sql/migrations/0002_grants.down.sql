-- Restores the no-op hooks of 0001 and drops schedules and grants.
CREATE OR REPLACE FUNCTION asbb_hold_check_hook(p_account bigint, p_amount numeric) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT NULL::jsonb $$;

CREATE OR REPLACE FUNCTION asbb_post_hook(p_row ledger) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN END $$;

DROP FUNCTION IF EXISTS asbb_grant_close_period(bigint, integer, date, text);
DROP FUNCTION IF EXISTS asbb_grant_move_hold(bigint, integer, text, text);
DROP FUNCTION IF EXISTS asbb_grant_entry(bigint, integer, text, bigint, bigint, bigint, bigint, numeric, numeric, numeric, numeric, numeric, text, text);
DROP FUNCTION IF EXISTS asbb_grant_period_at(grants, timestamptz);
DROP FUNCTION IF EXISTS asbb_grant_of(bigint);
DROP TABLE IF EXISTS grant_entries;
DROP TABLE IF EXISTS grant_holds;
DROP TRIGGER IF EXISTS grant_accounts_hooked ON grant_accounts;
DROP FUNCTION IF EXISTS asbb_grant_accounts_hooked();
UPDATE accounts SET hooked = false;
DROP TABLE IF EXISTS grant_accounts;
DROP TABLE IF EXISTS grant_periods;
DROP TABLE IF EXISTS grants;
DROP INDEX IF EXISTS allocations_installment;
ALTER TABLE allocations DROP CONSTRAINT IF EXISTS allocations_schedule_fk;
DROP TABLE IF EXISTS allocation_schedules;
