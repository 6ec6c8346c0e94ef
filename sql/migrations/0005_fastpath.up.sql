-- The one-statement hold (budget.PlaceHold) must see a partition limit set
-- while it waits for the account's row lock. After the wait PostgreSQL
-- rechecks the newest version of the locked row, but reads every other
-- table at the statement's snapshot, taken before the wait: a limit
-- committed meanwhile would be missed and its partition's usage would not
-- count the hold. So the partitions that have a limit are mirrored onto the
-- account row, which is written under that same lock (SetPartitionLimit
-- locks the account first).

ALTER TABLE accounts ADD COLUMN limited_partitions text[] NOT NULL DEFAULT '{}';

CREATE FUNCTION asbb_mirror_partition_limits(p_account bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE accounts SET limited_partitions = coalesce(
        (SELECT array_agg(partition ORDER BY partition) FROM partition_limits WHERE account_id = p_account), '{}')
     WHERE id = p_account;
$$;

UPDATE accounts a SET limited_partitions = l.parts
  FROM (SELECT account_id, array_agg(partition ORDER BY partition) AS parts
          FROM partition_limits GROUP BY account_id) l
 WHERE l.account_id = a.id;

CREATE FUNCTION asbb_partition_limits_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM asbb_mirror_partition_limits(OLD.account_id);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.account_id <> OLD.account_id) THEN
        PERFORM asbb_mirror_partition_limits(NEW.account_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER partition_limits_mirror AFTER INSERT OR UPDATE OR DELETE ON partition_limits
    FOR EACH ROW EXECUTE FUNCTION asbb_partition_limits_mirror();

-- Holds taken without an idempotency key (every job_submit hold) need no
-- entry in its unique index: one index write less under the row lock.
ALTER TABLE holds DROP CONSTRAINT holds_idempotency_key_key;
CREATE UNIQUE INDEX holds_idempotency_key ON holds (idempotency_key) WHERE idempotency_key IS NOT NULL;
